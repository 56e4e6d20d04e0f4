package backup

import (
	"errors"
	"strings"
	"testing"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/destination"
	"github.com/firetech/fireops/pkg/snapshot"
)

// TestFailureHint: the hint of a snapshot run with failed destinations
// names --dest OTHER only when a destination of the config did not fail
// (one that stored the snapshot, or one the run left out with --dest);
// when every one failed (a destination down at open and the other failing
// mid-upload included) it is destination.OpenAllHint. A failed part's
// hint comes first.
func TestFailureHint(t *testing.T) {
	t.Parallel()
	down := errors.New("put gpu01/objects/9b/9baa: not a directory")
	one := &config.Config{Destinations: []config.Destination{{Name: "local"}}}
	two := &config.Config{Destinations: []config.Destination{{Name: "nas"}, {Name: "local"}}}
	ok := func(n string) snapshot.DestResult { return snapshot.DestResult{Name: n} }
	bad := func(n string) snapshot.DestResult {
		return snapshot.DestResult{Name: n, Err: down, Error: down.Error()}
	}
	for _, c := range []struct {
		name  string
		cfg   *config.Config
		err   error
		dests []snapshot.DestResult
		want  string
	}{
		{"none failed", two, nil, []snapshot.DestResult{ok("nas"), ok("local")}, ""},
		{"the only one failed", one, down, []snapshot.DestResult{bad("local")}, destination.OpenAllHint},
		{"both failed", two, down, []snapshot.DestResult{bad("nas"), bad("local")}, destination.OpenAllHint},
		{"one of two failed", two, down, []snapshot.DestResult{ok("nas"), bad("local")}, destination.OpenHint},
		{"the other left out with --dest", two, down, []snapshot.DestResult{bad("local")}, destination.OpenHint},
		{"a part and every destination failed", one, &snapshot.PartsError{Failed: []snapshot.FailedPart{{ID: "files:stack", Reason: "gone"}}}, []snapshot.DestResult{bad("local")},
			partsHint + " (the snapshot holds the other parts; --only PART takes the failed ones alone); " + destination.OpenAllHint},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := failureHint(c.cfg, c.err, &snapshot.Result{Destinations: c.dests})
			if got != c.want {
				t.Errorf("hint %q, want %q", got, c.want)
			}
			if c.want == destination.OpenAllHint && strings.Contains(got, "--dest") {
				t.Errorf("hint %q names --dest with no other destination", got)
			}
		})
	}
}
