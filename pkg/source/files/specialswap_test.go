package files

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/config"
)

// watchOpen watches p for IN_OPEN and returns a function reporting
// whether it was opened since. fsnotify queues the event during open(2)
// itself, so the answer is complete as soon as the open returned.
func watchOpen(t *testing.T, p string) func() bool {
	t.Helper()
	in, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	must(t, err)
	t.Cleanup(func() { unix.Close(in) })
	_, err = unix.InotifyAddWatch(in, p, unix.IN_OPEN|unix.IN_DONT_FOLLOW)
	must(t, err)
	return func() bool {
		n, _ := unix.Read(in, make([]byte, 4096))
		return n > 0
	}
}

// TestDeviceSwappedInIsNotOpened: a device node, named pipe or socket
// renamed over a listed file between the listing and the open fails the
// part ("was replaced", the files source's strict policy), and is never
// opened: no driver open, no IN_OPEN.
func TestDeviceSwappedInIsNotOpened(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		root bool // mknod needs CAP_MKNOD
		make func(t *testing.T, p string)
	}{
		{"character device", true, func(t *testing.T, p string) {
			must(t, unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))) // any host device
		}},
		{"named pipe", false, func(t *testing.T, p string) { must(t, syscall.Mkfifo(p, 0o666)) }},
		{"socket", false, func(t *testing.T, p string) {
			l, err := net.Listen("unix", p)
			must(t, err)
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			t.Cleanup(func() { l.Close() })
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.root {
				testenv.RequireRoot(t)
			}
			base := t.TempDir()
			app := filepath.Join(base, "app")
			writeFiles(t, app, map[string]string{"a": "mine a", "f": "mine f"})
			dev := filepath.Join(base, "dev")
			tc.make(t, dev)
			opened := watchOpen(t, dev)
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
				t.Errorf("the walk opened the %s swapped in for %s", tc.name, target)
			}
		})
	}
}
