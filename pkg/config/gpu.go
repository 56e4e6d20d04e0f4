package config

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// StackHubGPUs is stack.hub.gpus: which GPUs each user server gets
// (docs/deploy.md, "GPU sharing"). It applies only with stack.gpus.
//
// A user's grant is their Users entry, else the largest grant of the
// groups they are in (Groups members, or members of the hub group of the
// same name), else Default. A count takes that many GPUs from Pool, those
// that the fewest running user servers hold; a list of ids takes those
// GPUs. With Profiles the spawn page lets a user choose one of the
// profiles that fit within their grant.
type StackHubGPUs struct {
	// Pool lists the GPUs that counts are taken from: indices ("0"),
	// UUIDs ("GPU-<uuid>") or MIG instances ("MIG-<uuid>"). Empty: the
	// host's GPUs as `nvidia-smi -L` lists them in the notebook image,
	// with the MIG instances of a GPU in MIG mode in its place.
	Pool []string `yaml:"pool" json:"pool"`
	// Default is the grant of a user who has no Users entry and is in no
	// group of Groups.
	Default GPUGrant `yaml:"default" json:"default"`
	// Exclusive makes a count take only GPUs that no other running user
	// server holds; a start fails when too few are free.
	Exclusive bool `yaml:"exclusive" json:"exclusive"`
	// Users are grants per hub user name.
	Users map[string]GPUGrant `yaml:"users" json:"users"`
	// Groups are grants per group.
	Groups map[string]GPUGroup `yaml:"groups" json:"groups"`
	// Profiles are the choices of the spawn page; empty: no choice.
	Profiles []GPUProfile `yaml:"profiles" json:"profiles"`
}

// GPUGroup is a grant for a group of users.
type GPUGroup struct {
	// Members are hub user names; members of the hub group of the same
	// name (the admin page's Groups) belong to it too.
	Members []string `yaml:"members" json:"members"`
	// GPUs is the grant of the group's members.
	GPUs GPUGrant `yaml:"gpus" json:"gpus"`
}

// GPUProfile is one choice of the spawn page.
type GPUProfile struct {
	// Name is the profile's id (lowercase letters, digits, '-', '_').
	Name string `yaml:"name" json:"name"`
	// Description is what the spawn page shows; empty: Name.
	Description string `yaml:"description" json:"description"`
	// GPUs is what the profile gives: a count (from the pool, or from the
	// user's own GPUs when their grant is a list), a list, all or none.
	GPUs GPUGrant `yaml:"gpus" json:"gpus"`
}

// GPUGrant is a number of GPUs or a list of GPU ids. In YAML: a number
// (`1`), `all`, `none` (the same as 0), or a list of ids (`["0", "1"]`).
type GPUGrant struct {
	// Count is the number of GPUs taken from the pool; -1: every GPU of
	// the host; 0 (and no Devices): none.
	Count int
	// Devices are the GPU ids given as they are; when set Count is 0.
	Devices []string
}

// GPUAll is the Count of a grant of every GPU.
const GPUAll = -1

// String formats the grant as the config writes it.
func (g GPUGrant) String() string {
	switch {
	case len(g.Devices) > 0:
		return "[" + strings.Join(g.Devices, ", ") + "]"
	case g.Count == GPUAll:
		return "all"
	case g.Count == 0:
		return "none"
	}
	return strconv.Itoa(g.Count)
}

// Size is the number of GPUs the grant gives; a grant of all is larger
// than any other.
func (g GPUGrant) Size() int {
	switch {
	case len(g.Devices) > 0:
		return len(g.Devices)
	case g.Count == GPUAll:
		return int(^uint(0) >> 1)
	}
	return g.Count
}

// UnmarshalYAML reads a number, all, none or a list of GPU ids.
func (g *GPUGrant) UnmarshalYAML(n *yaml.Node) error {
	bad := fmt.Errorf("line %d: want a number of GPUs, all, none or a list of GPU ids such as [\"0\", \"1\"]", n.Line)
	switch n.Kind {
	case yaml.ScalarNode:
		switch strings.ToLower(n.Value) {
		case "all":
			*g = GPUGrant{Count: GPUAll}
			return nil
		case "none":
			*g = GPUGrant{}
			return nil
		}
		v, err := strconv.Atoi(n.Value)
		if err != nil || v < 0 || (n.ShortTag() != "!!int" && n.ShortTag() != "!!str") {
			return bad
		}
		*g = GPUGrant{Count: v}
		return nil
	case yaml.SequenceNode:
		ids := make([]string, 0, len(n.Content))
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode || item.Value == "" {
				return bad
			}
			ids = append(ids, item.Value)
		}
		*g = GPUGrant{Devices: ids}
		return nil
	}
	return bad
}

// MarshalYAML writes the grant the way UnmarshalYAML reads it.
func (g GPUGrant) MarshalYAML() (any, error) { return g.plain(), nil }

// MarshalJSON writes the grant as a number, "all", "none" or a list.
func (g GPUGrant) MarshalJSON() ([]byte, error) { return json.Marshal(g.plain()) }

func (g GPUGrant) plain() any {
	switch {
	case len(g.Devices) > 0:
		return g.Devices
	case g.Count == GPUAll:
		return "all"
	case g.Count == 0:
		return "none"
	}
	return g.Count
}

var (
	// gpuIDRE is a GPU as the NVIDIA container toolkit takes it: an
	// index, GPU:MIG indices, a GPU UUID or a MIG UUID (MIG-<uuid>, or
	// the older MIG-GPU-<uuid>/<gi>/<ci>).
	gpuIDRE = regexp.MustCompile(`^([0-9]+|[0-9]+:[0-9]+|GPU-[0-9a-fA-F-]{8,}|MIG-[0-9a-fA-F-]{8,}|MIG-GPU-[0-9a-fA-F-]{8,}/[0-9]+/[0-9]+)$`)
	// hubGroupRE is a group name the hub accepts and the policy renders.
	hubGroupRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]*$`)
	// gpuProfileRE is a profile name (a form value).
	gpuProfileRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
)

// configured reports whether anything beyond the default grant is set.
func (g *StackHubGPUs) configured() bool {
	return len(g.Pool) > 0 || len(g.Users) > 0 || len(g.Groups) > 0 || len(g.Profiles) > 0 || g.Exclusive
}

// validateHubGPUs checks stack.hub.gpus.
func (c *Config) validateHubGPUs(p *problems) {
	g := &c.Stack.Hub.GPUs
	const key = "stack.hub.gpus"
	if !c.Stack.GPUs {
		if g.configured() {
			p.add(key, "set stack.gpus: true, or remove stack.hub.gpus (without stack.gpus no user server gets a GPU)", "is set but stack.gpus is false")
		}
		return
	}
	checkGPUIDs(p, key+".pool", g.Pool)
	checkGPUGrant(p, key+".default", g.Default, len(g.Pool))
	for _, u := range sortedKeys(g.Users) {
		k := key + ".users." + u
		if !hubUserRE.MatchString(u) {
			p.add(k, "use a lowercase user name as the hub stores it", "%q is not a valid hub user name", u)
		}
		checkGPUGrant(p, k, g.Users[u], len(g.Pool))
	}
	for _, name := range sortedKeys(g.Groups) {
		k := key + ".groups." + name
		if !hubGroupRE.MatchString(name) {
			p.add(k, "use letters, digits, '.', '_', '@' and '-'", "%q is not a valid group name", name)
		}
		for i, m := range g.Groups[name].Members {
			if !hubUserRE.MatchString(m) {
				p.add(fmt.Sprintf("%s.members[%d]", k, i), "use a lowercase user name as the hub stores it", "%q is not a valid hub user name", m)
			}
		}
		checkGPUGrant(p, k+".gpus", g.Groups[name].GPUs, len(g.Pool))
	}
	names := map[string]bool{}
	for i, pr := range g.Profiles {
		k := fmt.Sprintf("%s.profiles[%d]", key, i)
		switch {
		case !gpuProfileRE.MatchString(pr.Name):
			p.add(k+".name", "use lowercase letters, digits, '-' and '_', e.g. one-gpu", "%q is not a valid profile name", pr.Name)
		case names[pr.Name]:
			p.add(k+".name", "give every profile its own name", "%q is used twice", pr.Name)
		}
		names[pr.Name] = true
		if len(pr.Description) > 200 || strings.ContainsAny(pr.Description, "\n\r") {
			p.add(k+".description", "use one line of at most 200 characters", "is too long or has a line break")
		}
		checkGPUGrant(p, k+".gpus", pr.GPUs, len(g.Pool))
	}
}

// checkGPUGrant checks one grant: valid ids, each once, and a count the
// pool can give when the pool is listed.
func checkGPUGrant(p *problems, key string, g GPUGrant, pool int) {
	if g.Count < GPUAll {
		p.add(key, "use a number of GPUs, all, none or a list of GPU ids", "%d is not a number of GPUs", g.Count)
	}
	if pool > 0 && g.Count > pool {
		p.add(key, fmt.Sprintf("grant at most %d (the GPUs of stack.hub.gpus.pool), list more GPUs in the pool, or use all", pool),
			"%d GPUs is more than the pool's %d", g.Count, pool)
	}
	checkGPUIDs(p, key, g.Devices)
}

// checkGPUIDs checks a list of GPU ids under key: each a valid id, each once.
func checkGPUIDs(p *problems, key string, ids []string) {
	seen := map[string]bool{}
	for i, id := range ids {
		k := fmt.Sprintf("%s[%d]", key, i)
		switch {
		case !gpuIDRE.MatchString(id):
			p.add(k, `use a GPU index ("0"), a GPU UUID ("GPU-...") or a MIG UUID ("MIG-...") as nvidia-smi -L shows them`, "%q is not a GPU id", id)
		case seen[id]:
			p.add(k, "list every GPU once", "%q is listed twice", id)
		}
		seen[id] = true
	}
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
