package volume

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/internal/walktest"
)

// TestDeviceSwappedInIsNotOpened: a user renames a device node, a named
// pipe or a socket of their own over a listed file between the listing
// and the open. fireops, root on the host, never opens it (no driver
// open: /dev/watchdog would reboot the host, a tape rewind, a tty become
// the controlling terminal): the name is left out and counted as
// vanished, and the rest of the volume is archived. (Not parallel: test
// hooks.)
func TestDeviceSwappedInIsNotOpened(t *testing.T) {
	for _, tc := range walktest.Specials() {
		t.Run(tc.Name, func(t *testing.T) {
			if tc.Root {
				testenv.RequireRoot(t)
			}
			base := t.TempDir()
			vol := filepath.Join(base, "vol")
			walktest.WriteTree(t, vol, map[string]string{"a": "mine a", "f": "mine f"})
			dev := filepath.Join(base, "dev")
			tc.Make(t, dev)
			opened := walktest.WatchOpen(t, dev)
			target := filepath.Join(vol, "f")
			done := false
			setHook(t, &testHookBeforeOpen, func(p string) {
				if p == target && !done {
					done = true
					must(t, os.Rename(dev, target))
				}
			})
			b, c, err := readMountpoint(t, vol)
			if !done {
				t.Fatal("hook did not run")
			}
			if err != nil {
				t.Fatalf("the read failed: %v", err)
			}
			if opened() {
				t.Errorf("the walk opened the %s swapped in for ./f (vanished=%d)", tc.Name, c.vanished)
			}
			got := walktest.Entries(t, b)
			if _, ok := got["./f"]; ok || c.vanished != 1 || got["./a"] != "mine a" {
				t.Errorf("entries %v, vanished %d: want ./a and ./f left out as vanished", got, c.vanished)
			}
		})
	}
}
