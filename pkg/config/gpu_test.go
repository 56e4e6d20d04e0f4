package config

import (
	"encoding/json"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestHubGPUsDefault(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg, err := f.parse(t, "")
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Stack.Hub.GPUs
	if !reflect.DeepEqual(g, StackHubGPUs{Default: GPUGrant{Count: 1}}) {
		t.Errorf("default stack.hub.gpus = %+v, want one GPU per user from the host's GPUs", g)
	}
}

func TestHubGPUsParse(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg, err := f.parse(t, `
stack:
  hub:
    gpus:
      pool: ["0", "1", "MIG-4f4b5a4e-1c2d-5e6f-8a9b-0c1d2e3f4a5b"]
      default: none
      exclusive: true
      users:
        alice: ["2", "GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77"]
        bob: all
        carol: 2
      groups:
        rl: {members: [dave], gpus: 1}
      profiles:
        - {name: cpu, description: No GPU, gpus: 0}
        - {name: one, gpus: 1}
        - {name: mine, gpus: [2]}
`)
	if err != nil {
		t.Fatal(err)
	}
	want := StackHubGPUs{
		Pool:      []string{"0", "1", "MIG-4f4b5a4e-1c2d-5e6f-8a9b-0c1d2e3f4a5b"},
		Default:   GPUGrant{},
		Exclusive: true,
		Users: map[string]GPUGrant{
			"alice": {Devices: []string{"2", "GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77"}},
			"bob":   {Count: GPUAll},
			"carol": {Count: 2},
		},
		Groups: map[string]GPUGroup{"rl": {Members: []string{"dave"}, GPUs: GPUGrant{Count: 1}}},
		Profiles: []GPUProfile{
			{Name: "cpu", Description: "No GPU"},
			{Name: "one", GPUs: GPUGrant{Count: 1}},
			{Name: "mine", GPUs: GPUGrant{Devices: []string{"2"}}},
		},
	}
	if got := cfg.Stack.Hub.GPUs; !reflect.DeepEqual(got, want) {
		t.Errorf("stack.hub.gpus =\n%+v\nwant\n%+v", got, want)
	}
}

// TestGPUGrantRoundTrip: config check prints grants the way the config
// writes them, in YAML and JSON, and what it prints reads back the same.
func TestGPUGrantRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		g          GPUGrant
		yaml, json string
	}{
		{GPUGrant{}, "none\n", `"none"`},
		{GPUGrant{Count: 2}, "2\n", `2`},
		{GPUGrant{Count: GPUAll}, "all\n", `"all"`},
		{GPUGrant{Devices: []string{"0", "MIG-4f4b5a4e-1c2d"}}, "- \"0\"\n- MIG-4f4b5a4e-1c2d\n", `["0","MIG-4f4b5a4e-1c2d"]`},
	} {
		y, err := yaml.Marshal(tc.g)
		if err != nil || string(y) != tc.yaml {
			t.Errorf("yaml of %v = %q, %v; want %q", tc.g, y, err, tc.yaml)
		}
		j, err := json.Marshal(tc.g)
		if err != nil || string(j) != tc.json {
			t.Errorf("json of %v = %s, %v; want %s", tc.g, j, err, tc.json)
		}
		var back GPUGrant
		if err := yaml.Unmarshal(y, &back); err != nil || !reflect.DeepEqual(back, tc.g) {
			t.Errorf("yaml %q reads back as %+v, %v; want %+v", y, back, err, tc.g)
		}
	}
}

func TestHubGPUsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, yaml, want string }{
		{"grant word", "stack:\n  hub:\n    gpus:\n      default: some\n", "stack.hub.gpus.default: want a number of GPUs, all, none or a list"},
		{"negative grant", "stack:\n  hub:\n    gpus:\n      default: -1\n", "stack.hub.gpus.default: want a number of GPUs"},
		{"float grant", "stack: {hub: {gpus: {users: {alice: 1.5}}}}\n", "want a number of GPUs"},
		{"map grant", "stack: {hub: {gpus: {users: {alice: {count: 1}}}}}\n", "want a number of GPUs"},
		{"unknown key", "stack: {hub: {gpus: {shared: true}}}\n", `unknown key "shared"`},
		{"pool id", "stack: {hub: {gpus: {pool: [gpu0]}}}\n", `stack.hub.gpus.pool[0]: "gpu0" is not a GPU id`},
		{"pool twice", "stack: {hub: {gpus: {pool: ['0', '1', '0']}}}\n", `stack.hub.gpus.pool[2]: "0" is listed twice`},
		{"more than the pool", "stack: {hub: {gpus: {pool: ['0', '1'], users: {bob: 3}}}}\n", "stack.hub.gpus.users.bob: 3 GPUs is more than the pool's 2"},
		{"device id", "stack: {hub: {gpus: {users: {alice: ['0', 'GPU 1']}}}}\n", `stack.hub.gpus.users.alice[1]: "GPU 1" is not a GPU id`},
		{"device twice", "stack: {hub: {gpus: {groups: {rl: {gpus: ['1', '1']}}}}}\n", `stack.hub.gpus.groups.rl.gpus[1]: "1" is listed twice`},
		{"user name", "stack: {hub: {gpus: {users: {Alice: 1}}}}\n", `stack.hub.gpus.users.Alice: "Alice" is not a valid hub user name`},
		{"member name", "stack: {hub: {gpus: {groups: {rl: {members: [Bob], gpus: 1}}}}}\n", "stack.hub.gpus.groups.rl.members[0]"},
		{"group name", "stack: {hub: {gpus: {groups: {'r l': {gpus: 1}}}}}\n", `stack.hub.gpus.groups.r l: "r l" is not a valid group name`},
		{"profile name", "stack: {hub: {gpus: {profiles: [{name: One GPU, gpus: 1}]}}}\n", "stack.hub.gpus.profiles[0].name"},
		{"profile twice", "stack: {hub: {gpus: {profiles: [{name: a, gpus: 1}, {name: a, gpus: 0}]}}}\n", `stack.hub.gpus.profiles[1].name: "a" is used twice`},
		{"profile description", "stack: {hub: {gpus: {profiles: [{name: a, description: \"x\\ny\", gpus: 1}]}}}\n", "stack.hub.gpus.profiles[0].description"},
		{"profile more than the pool", "stack: {hub: {gpus: {pool: ['0'], profiles: [{name: two, gpus: 2}]}}}\n", "stack.hub.gpus.profiles[0].gpus: 2 GPUs is more than the pool's 1"},
		{"without stack.gpus", "stack: {gpus: false, hub: {gpus: {users: {alice: 1}}}}\n", "stack.hub.gpus: is set but stack.gpus is false"},
	}
	newFixture(t).refuseAll(t, tests)
}

// TestHubGPUsWithoutGPUs: a machine without GPUs keeps the default grant
// (it never renders) and config check accepts it.
func TestHubGPUsWithoutGPUs(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if _, err := f.parse(t, "stack: {gpus: false, hub: {gpus: {default: 2}}}\n"); err != nil {
		t.Fatal(err)
	}
}
