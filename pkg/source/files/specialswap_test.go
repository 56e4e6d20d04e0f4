package files

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/internal/walktest"
	"github.com/firetech/fireops/pkg/config"
)

// TestDeviceSwappedInIsNotOpened: a device node, named pipe or socket
// renamed over a listed file between the listing and the open fails the
// part ("was replaced", the files source's strict policy), and is never
// opened: no driver open, no IN_OPEN.
func TestDeviceSwappedInIsNotOpened(t *testing.T) {
	t.Parallel()
	for _, tc := range walktest.Specials() {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			if tc.Root {
				testenv.RequireRoot(t)
			}
			base := t.TempDir()
			app := filepath.Join(base, "app")
			walktest.WriteTree(t, app, map[string]string{"a": "mine a", "f": "mine f"})
			dev := filepath.Join(base, "dev")
			tc.Make(t, dev)
			opened := walktest.WatchOpen(t, dev)
			target := filepath.Join(app, "f")
			s, err := New(config.FileSource{Name: "cfg", Paths: []string{app}})
			must(t, err)
			done := false
			s.beforeOpen = func(p string) {
				if p == target && !done {
					done = true
					must(t, os.Rename(dev, target))
				}
			}
			var buf bytes.Buffer
			_, err = s.WriteTar(context.Background(), &buf)
			if !done {
				t.Fatal("the hook did not run")
			}
			if err == nil || !strings.Contains(err.Error(), target) || !strings.Contains(err.Error(), "replaced") {
				t.Errorf("WriteTar: %v, want an error saying %s was replaced", err, target)
			}
			if opened() {
				t.Errorf("the walk opened the %s swapped in for %s", tc.Name, target)
			}
		})
	}
}
