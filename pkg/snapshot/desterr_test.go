package snapshot

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/firetech/fireops/pkg/remote"
	"github.com/firetech/fireops/pkg/source"
)

// TestDestinationNamedOnce: a destination's own error that names it
// (pkg/remote's: `destination "d0": put PATH: ...`) is not wrapped in a
// second "destination d0: write PATH: ...", whether the started file, a
// piece or the manifest failed; a cause that does not name it still gets
// the destination and the path (TestEveryDestinationFailsNamesCauses).
func TestDestinationNamedOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, fails string }{
		{"started file", "/" + StartedFile},
		{"piece", "/" + ObjectsDir + "/"},
		{"manifest", "/" + ManifestFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, 1)
			st := &gatedStore{dirStore: e.stores[0], before: func(p string) error {
				if strings.Contains(p, tc.fails) {
					return &remote.Error{Dest: e.stores[0].Name(), Op: "put", Path: p, Err: errors.New("disk full")}
				}
				return nil
			}}
			src := &memSource{kind: "files", name: "x", files: map[string][]byte{"f": []byte("x")}}
			_, err := Create(context.Background(), e.opts, []Store{st}, []source.Source{src})
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, `destination "d0": put `) || !strings.Contains(msg, "disk full") {
				t.Errorf("err = %v; want the destination's own error", err)
			}
			if n := strings.Count(msg, "destination d0") + strings.Count(msg, `destination "d0"`); n != 1 {
				t.Errorf("err = %v; names the destination %d times, want once", err, n)
			}
		})
	}
}
