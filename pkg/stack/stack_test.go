package stack

import (
	"testing"

	"github.com/firetech/fireops/pkg/snapshot"
	"github.com/firetech/fireops/pkg/source/mongo"
)

// TestKeepRunning: MongoDB keeps running only when a mongo part is
// restored (through it).
func TestKeepRunning(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		kinds []string
		want  string
	}{
		{name: "none"},
		{name: "files and volumes", kinds: []string{"files", "volume"}},
		{name: "with mongo", kinds: []string{"files", mongo.Kind, "sqlite"}, want: MongoService},
	} {
		var parts []snapshot.Part
		for _, k := range tc.kinds {
			parts = append(parts, snapshot.Part{ID: k + ":x", Kind: k})
		}
		if got := KeepRunning(parts); got != tc.want {
			t.Errorf("%s: KeepRunning = %q, want %q", tc.name, got, tc.want)
		}
	}
}
