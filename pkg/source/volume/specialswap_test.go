package volume

import (
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/firetech/fireops/internal/testenv"
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

// TestDeviceSwappedInIsNotOpened: a user renames a device node, a named
// pipe or a socket of their own over a listed file between the listing
// and the open. fireops, root on the host, never opens it (no driver
// open: /dev/watchdog would reboot the host, a tape rewind, a tty become
// the controlling terminal): the name is left out and counted as
// vanished, and the rest of the volume is archived. (Not parallel: test
// hooks.)
func TestDeviceSwappedInIsNotOpened(t *testing.T) {
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
			if tc.root {
				testenv.RequireRoot(t)
			}
			base := t.TempDir()
			vol := filepath.Join(base, "vol")
			writeTree(t, vol, map[string]string{"a": "mine a", "f": "mine f"})
			dev := filepath.Join(base, "dev")
			tc.make(t, dev)
			opened := watchOpen(t, dev)
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
				t.Errorf("the walk opened the %s swapped in for ./f (vanished=%d)", tc.name, c.vanished)
			}
			got := archiveFiles(t, b)
			if _, ok := got["./f"]; ok || c.vanished != 1 || got["./a"] != "mine a" {
				t.Errorf("entries %v, vanished %d: want ./a and ./f left out as vanished", got, c.vanished)
			}
		})
	}
}
