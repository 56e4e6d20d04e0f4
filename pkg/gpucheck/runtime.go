package gpucheck

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/firetech/fireops/pkg/engine"
)

// Engine is what the checks need from the Docker Engine. DockerEngine is
// the real one; tests pass a fake.
type Engine interface {
	// RuntimeInfo says which runtimes and CDI devices the Engine offers.
	RuntimeInfo(ctx context.Context) (RuntimeInfo, error)
	// RunGPUContainer runs cmd in a throwaway container of image with all
	// GPUs attached and returns its output (stdout and stderr). A non-zero
	// exit is an error that includes the output.
	RunGPUContainer(ctx context.Context, image string, cmd []string) (string, error)
}

// RuntimeInfo is the part of the Engine's info that says whether
// containers can reach the GPUs.
type RuntimeInfo struct {
	// ServerVersion is the Engine's version.
	ServerVersion string `json:"server_version"`
	// Runtimes are the names of the configured OCI runtimes, sorted.
	Runtimes []string `json:"runtimes"`
	// DefaultRuntime is the runtime containers get unless they ask.
	DefaultRuntime string `json:"default_runtime"`
	// CDISpecDirs are the folders the Engine reads CDI specs from; empty
	// when CDI is off (or the Engine predates it).
	CDISpecDirs []string `json:"cdi_spec_dirs"`
	// CDIDevices are the nvidia.com/gpu CDI devices found, sorted
	// ("nvidia.com/gpu=0", "nvidia.com/gpu=all").
	CDIDevices []string `json:"cdi_devices"`
}

// NVIDIARuntimes returns the configured runtimes made by NVIDIA's
// container toolkit ("nvidia", "nvidia-cdi", "nvidia-legacy").
func (ri RuntimeInfo) NVIDIARuntimes() []string {
	var out []string
	for _, r := range ri.Runtimes {
		if r == "nvidia" || strings.HasPrefix(r, "nvidia-") {
			out = append(out, r)
		}
	}
	return out
}

// brokenEngine stands for an Engine whose client could not be built.
type brokenEngine struct{ err error }

// RuntimeInfo returns the client's error.
func (b brokenEngine) RuntimeInfo(context.Context) (RuntimeInfo, error) { return RuntimeInfo{}, b.err }

// RunGPUContainer returns the client's error.
func (b brokenEngine) RunGPUContainer(context.Context, string, []string) (string, error) {
	return "", b.err
}

// Hints for the container runtime check.
const (
	hintEngine  = engine.Hint
	hintRuntime = "install nvidia-container-toolkit, then `sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker` (or generate a CDI spec: `sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`)"
)

// checkEngine adds the container runtime check and, when asked, the smoke
// test.
func checkEngine(ctx context.Context, e Engine, opts Options, r *Report, log *slog.Logger) {
	info, err := e.RuntimeInfo(ctx)
	if err != nil {
		log.Debug("Docker Engine info failed", "err", err)
	} else {
		r.ContainerRuntime = &info
	}
	r.add(runtimeCheck(info, err, opts.Thresholds.RequireContainerRuntime))
	if opts.SmokeImage == "" {
		return
	}
	out, err := e.RunGPUContainer(ctx, opts.SmokeImage, []string{"nvidia-smi", "-L"})
	r.add(smokeCheck(opts.SmokeImage, out, err, r))
}

// runtimeCheck decides whether containers can reach the GPUs: the Engine
// has an NVIDIA runtime, or CDI is on and a spec offers nvidia.com/gpu
// devices. Without either it fails when require is true and warns
// otherwise; an unreachable Engine, or one that answered with an error, is
// treated the same way.
func runtimeCheck(info RuntimeInfo, infoErr error, require bool) Check {
	c := Check{Name: CheckContainerRuntime, Threshold: "nvidia runtime or CDI nvidia.com/gpu"}
	bad := Fail
	if !require {
		bad = Warn
		c.Threshold += " (not required)"
	}
	if infoErr != nil && engine.Answered(infoErr) {
		c.Status, c.Value = bad, "engine error"
		c.Message = "the Docker Engine answered with an error: " + infoErr.Error()
		c.Hint = engine.AnsweredHint
		return c
	}
	if infoErr != nil {
		c.Status, c.Value = bad, "engine unreachable"
		c.Message = "cannot ask the Docker Engine: " + infoErr.Error()
		c.Hint = hintEngine
		return c
	}
	if rts := info.NVIDIARuntimes(); len(rts) > 0 {
		c.Status, c.Value = Pass, "runtime "+strings.Join(rts, ",")
		if info.DefaultRuntime != "" {
			c.Value += " (default " + info.DefaultRuntime + ")"
		}
		return c
	}
	if len(info.CDIDevices) > 0 {
		c.Status, c.Value = Pass, "CDI "+strings.Join(info.CDIDevices, ",")
		return c
	}
	c.Status = bad
	c.Value = "runtimes " + strings.Join(info.Runtimes, ",")
	switch {
	case len(info.CDISpecDirs) == 0:
		c.Value += "; CDI off"
	default:
		c.Value += "; no nvidia.com/gpu CDI spec in " + strings.Join(info.CDISpecDirs, ",")
	}
	c.Message = "the Docker Engine has no nvidia runtime and no CDI spec for nvidia.com/gpu, so containers cannot use the GPUs"
	c.Hint = hintRuntime
	return c
}

// cdiSpec is the part of a CDI spec file this package reads.
type cdiSpec struct {
	// Kind is vendor/class, "nvidia.com/gpu" for NVIDIA GPUs.
	Kind string `yaml:"kind"`
	// Devices are the spec's devices; a name N makes the device Kind=N.
	Devices []struct {
		Name string `yaml:"name"`
	} `yaml:"devices"`
}

// cdiDevices returns the nvidia.com/gpu devices defined by the CDI spec
// files (*.yaml, *.yml, *.json) in dirs, plus the ones the Engine
// discovered itself, sorted and without duplicates. Unreadable folders
// and files are logged and skipped.
func cdiDevices(dirs, discovered []string, log *slog.Logger) []string {
	seen := map[string]bool{}
	for _, id := range discovered {
		if strings.HasPrefix(id, "nvidia.com/gpu=") {
			seen[id] = true
		}
	}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			if !os.IsNotExist(err) {
				log.Debug("cannot read CDI spec folder", "dir", dir, "err", err)
			}
			continue
		}
		for _, e := range entries {
			ext := filepath.Ext(e.Name())
			if e.IsDir() || (ext != ".yaml" && ext != ".yml" && ext != ".json") {
				continue
			}
			path := filepath.Join(dir, e.Name())
			data, err := os.ReadFile(path)
			if err != nil {
				log.Debug("cannot read CDI spec", "file", path, "err", err)
				continue
			}
			var spec cdiSpec
			if err := yaml.Unmarshal(data, &spec); err != nil {
				log.Debug("cannot parse CDI spec", "file", path, "err", err)
				continue
			}
			if spec.Kind != "nvidia.com/gpu" {
				continue
			}
			for _, d := range spec.Devices {
				if d.Name != "" {
					seen[spec.Kind+"="+d.Name] = true
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// smokeLine matches one GPU line of `nvidia-smi -L`:
// "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5fd5...)".
var smokeLine = regexp.MustCompile(`^GPU (\d+): (.*) \(UUID: (GPU-[0-9a-fA-F-]+)\)\s*$`)

// parseSmokeList returns the GPU UUIDs listed by `nvidia-smi -L`, in order.
// MIG device lines and anything else are ignored.
func parseSmokeList(out string) []string {
	var uuids []string
	for _, line := range strings.Split(out, "\n") {
		if m := smokeLine.FindStringSubmatch(strings.TrimRight(line, "\r")); m != nil {
			uuids = append(uuids, m[3])
		}
	}
	return uuids
}

// smokeCheck compares the GPUs a container sees with the ones NVML sees on
// the host. Without NVML it passes when the container sees at least one.
func smokeCheck(image, out string, runErr error, r *Report) Check {
	c := Check{Name: CheckSmoke, Threshold: "the container sees the host's GPUs"}
	if runErr != nil {
		c.Status, c.Value = Fail, "container failed"
		c.Message = fmt.Sprintf("nvidia-smi -L in %s: %v", image, runErr)
		c.Hint = "run `docker run --rm --gpus all " + image + " nvidia-smi -L` by hand; " + hintRuntime
		return c
	}
	inside := parseSmokeList(out)
	c.Value = fmt.Sprintf("%d GPUs in the container", len(inside))
	var host []string
	for _, g := range r.GPUs {
		if g.UUID != "" {
			host = append(host, g.UUID)
		}
	}
	if len(host) == 0 {
		c.Status = Pass
		if len(inside) == 0 {
			c.Status = Fail
			c.Message = "the container sees no GPU"
			c.Hint = hintRuntime
		}
		return c
	}
	missing, extra := diff(host, inside), diff(inside, host)
	c.Status = Pass
	if len(missing) > 0 || len(extra) > 0 {
		c.Status = Fail
		var parts []string
		if len(missing) > 0 {
			parts = append(parts, "missing in the container: "+strings.Join(missing, ", "))
		}
		if len(extra) > 0 {
			parts = append(parts, "unknown to NVML on the host: "+strings.Join(extra, ", "))
		}
		c.Message = fmt.Sprintf("the container sees %d GPUs, the host %d; %s", len(inside), len(host), strings.Join(parts, "; "))
		c.Hint = "check NVIDIA_VISIBLE_DEVICES in the image and the toolkit's config (/etc/nvidia-container-runtime/config.toml)"
	}
	return c
}

// diff returns the elements of a that are not in b, in a's order.
func diff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
