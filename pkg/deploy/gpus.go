package deploy

import (
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"text/template"

	"github.com/firetech/fireops/pkg/config"
)

// CUDACheckFile is the notebook image's CUDA check, rendered beside its
// Dockerfile with stack.gpus: the build runs it, and so can an admin in a
// user's server (`python /opt/fireops/cuda-check.py --require-gpu`).
const CUDACheckFile = "notebook/fireops-cuda-check.py"

// cudaCheck returns the CUDA check script (templates/notebook, copied as
// it is).
func cudaCheck() ([]byte, error) {
	data, err := fs.ReadFile(templatesFS, "templates/"+CUDACheckFile)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", CUDACheckFile, err)
	}
	return data, nil
}

var (
	// reqNameRE takes the project name of a pinned pip requirement.
	reqNameRE = regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?(==.*)$`)
	// reqSepRE are the separators PEP 503 normalizes to '-'.
	reqSepRE = regexp.MustCompile(`[-_.]+`)
)

// reqName is a requirement's normalized project name (PEP 503).
func reqName(req string) string {
	m := reqNameRE.FindStringSubmatch(req)
	if m == nil {
		return ""
	}
	return strings.ToLower(reqSepRE.ReplaceAllString(m[1], "-"))
}

// withCUDAExtra adds TensorFlow's and-cuda extra (the CUDA libraries as
// pip wheels) to a tensorflow requirement that names no extra.
func withCUDAExtra(req string) string {
	m := reqNameRE.FindStringSubmatch(req)
	if m == nil || m[2] != "" {
		return req
	}
	return m[1] + "[and-cuda]" + m[3]
}

// gpuFuncs are the template helpers of the GPU parts: the hub's GPU policy
// and the notebook image's CUDA packages and check.
func (d *renderData) gpuFuncs() template.FuncMap {
	return template.FuncMap{
		"gpupolicy": gpuPolicyPy,
		// tfpkgs: the notebook's TensorFlow requirements, installed
		// first, with the and-cuda extra.
		"tfpkgs": func(reqs []string) []string {
			var out []string
			for _, r := range reqs {
				if reqName(r) == "tensorflow" {
					out = append(out, withCUDAExtra(r))
				}
			}
			return out
		},
		// otherpkgs: the rest, installed after TensorFlow.
		"otherpkgs": func(reqs []string) []string {
			var out []string
			for _, r := range reqs {
				if reqName(r) != "tensorflow" {
					out = append(out, r)
				}
			}
			return out
		},
		// haspkg: whether a requirement names the project.
		"haspkg": func(reqs []string, name string) bool {
			for _, r := range reqs {
				if reqName(r) == name {
					return true
				}
			}
			return false
		},
		// cudacheckhash: a hash of the check script, named in the
		// Dockerfile so that a changed script gives a new image tag.
		"cudacheckhash": func() (string, error) {
			data, err := cudaCheck()
			return shortHash(data), err
		},
	}
}

// gpuPolicyPy writes stack.hub.gpus as the Python dict GPU_POLICY of
// jupyterhub_config.py: grants as {"count": N} (-1: all) or {"devices":
// [...]}.
func gpuPolicyPy(g config.StackHubGPUs) string {
	var b strings.Builder
	list := func(items []string) string {
		q := make([]string, len(items))
		for i, s := range items {
			q[i] = jsonString(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	grant := func(gr config.GPUGrant) string {
		if len(gr.Devices) > 0 {
			return `{"devices": ` + list(gr.Devices) + "}"
		}
		return fmt.Sprintf(`{"count": %d}`, gr.Count)
	}
	b.WriteString("{\n")
	fmt.Fprintf(&b, "    \"pool\": %s,\n", list(g.Pool))
	fmt.Fprintf(&b, "    \"default\": %s,\n", grant(g.Default))
	exclusive, _ := pyLiteral(g.Exclusive)
	fmt.Fprintf(&b, "    \"exclusive\": %s,\n", exclusive)
	b.WriteString("    \"users\": {")
	for i, u := range sortedNames(g.Users) {
		if i == 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "        %s: %s,\n", jsonString(u), grant(g.Users[u]))
	}
	if len(g.Users) > 0 {
		b.WriteString("    ")
	}
	b.WriteString("},\n    \"groups\": {")
	for i, name := range sortedNames(g.Groups) {
		if i == 0 {
			b.WriteString("\n")
		}
		gr := g.Groups[name]
		fmt.Fprintf(&b, "        %s: {\"members\": %s, \"gpus\": %s},\n", jsonString(name), list(gr.Members), grant(gr.GPUs))
	}
	if len(g.Groups) > 0 {
		b.WriteString("    ")
	}
	b.WriteString("},\n    \"profiles\": [")
	for i, p := range g.Profiles {
		if i == 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "        {\"name\": %s, \"description\": %s, \"gpus\": %s},\n", jsonString(p.Name), jsonString(p.Description), grant(p.GPUs))
	}
	if len(g.Profiles) > 0 {
		b.WriteString("    ")
	}
	b.WriteString("],\n}")
	return b.String()
}

// sortedNames returns the keys of m in order.
func sortedNames[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
