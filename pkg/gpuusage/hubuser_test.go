package gpuusage

import (
	"testing"

	"github.com/firetech/fireops/pkg/users"
)

// TestHubUser decodes DockerSpawner's container names back to the hub user
// and the server name, and refuses every other container.
func TestHubUser(t *testing.T) {
	compose := map[string]string{"com.docker.compose.project": "jupyter", "com.docker.compose.service": "hub-1"}
	for _, tc := range []struct {
		name         string
		c            Container
		user, server string
		ok           bool
	}{
		{"plain", Container{Name: "jupyter-alice"}, "alice", "", true},
		{"leading slash (the API's form)", Container{Name: "/jupyter-alice"}, "alice", "", true},
		{"escaped dash and dot", Container{Name: "jupyter-bob-2dsmith-2ejr"}, "bob-smith.jr", "", true},
		{"escaped at sign", Container{Name: "jupyter-ann-40lab"}, "ann@lab", "", true},
		{"upper case byte", Container{Name: "jupyter--42ob"}, "Bob", "", true},
		{"utf-8", Container{Name: "jupyter-j-c3-bcrgen"}, "jürgen", "", true},
		{"named server", Container{Name: "jupyter-alice--exp-2d1"}, "alice", "exp-1", true},
		{"digits", Container{Name: "jupyter-user42"}, "user42", "", true},
		{"other prefix", Container{Name: "notebook-alice"}, "", "", false},
		{"prefix only", Container{Name: "jupyter-"}, "", "", false},
		{"the hub's Compose container", Container{Name: "jupyter-hub-1", Labels: compose}, "", "", false},
		{"Compose label on a valid name", Container{Name: "jupyter-alice", Labels: compose}, "", "", false},
		{"incomplete escape", Container{Name: "jupyter-hub-1"}, "", "", false},
		{"upper-case hex is not DockerSpawner's", Container{Name: "jupyter-bob-2Dsmith"}, "", "", false},
		{"upper-case letter", Container{Name: "jupyter-Alice"}, "", "", false},
		{"underscore (legacy escaping)", Container{Name: "jupyter-bob_2Dsmith"}, "", "", false},
		{"invalid utf-8", Container{Name: "jupyter-a-ff"}, "", "", false},
		{"empty server name", Container{Name: "jupyter-alice--"}, "", "", false},
		{"no name", Container{}, "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, server, ok := HubUser(tc.c)
			if user != tc.user || server != tc.server || ok != tc.ok {
				t.Errorf("HubUser(%q) = %q, %q, %v; want %q, %q, %v", tc.c.Name, user, server, ok, tc.user, tc.server, tc.ok)
			}
		})
	}
}

// TestHubUserRoundTrip: every name pkg/users escapes the way DockerSpawner
// does comes back unchanged, with and without a server name.
func TestHubUserRoundTrip(t *testing.T) {
	for _, name := range []string{"a", "alice", "bob-smith", "x.y@z", "Bob", "ü", "日本", "a--b", "-", "0-2d"} {
		c := Container{Name: ServerPrefix + users.EscapeUsername(name)}
		if user, server, ok := HubUser(c); !ok || user != name || server != "" {
			t.Errorf("%q -> %q -> %q, %q, %v", name, c.Name, user, server, ok)
		}
		c.Name += "--" + users.EscapeUsername("gpu-"+name)
		if user, server, ok := HubUser(c); !ok || user != name || server != "gpu-"+name {
			t.Errorf("%q -> %q -> %q, %q, %v", name, c.Name, user, server, ok)
		}
	}
}
