package partkind

import "testing"

// TestRestoreTargetString: the plan shows a typed target as the strings
// it always showed.
func TestRestoreTargetString(t *testing.T) {
	for _, c := range []struct {
		t    Target
		want string
	}{
		{Target{Path: "/srv/restore/files-stack"}, "/srv/restore/files-stack"},
		{Target{Volume: "jupyterhub-user-ada"}, "volume:jupyterhub-user-ada"},
		{Target{Volume: "jupyterhub-data", File: "jupyterhub.sqlite"}, "volume:jupyterhub-data/jupyterhub.sqlite"},
		{Target{Shown: "metrics.* (3) on the configured server"}, "metrics.* (3) on the configured server"},
	} {
		if got := c.t.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.t, got, c.want)
		}
	}
}
