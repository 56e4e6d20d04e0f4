package tarsafe

import (
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/internal/walktest"
)

// TestOpenRegularOpensNothingElse: whatever took a listed regular file's
// name (a device node, a named pipe, a socket, a symlink, a folder,
// another file) is refused with ErrChanged without being opened: no
// driver open, no IN_OPEN. The listed file itself opens and reads.
func TestOpenRegularOpensNothingElse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		root bool // mknod needs CAP_MKNOD
		// make creates the object at p; plain says whether a plain
		// O_RDONLY|O_NONBLOCK open of it succeeds (the watch is then
		// checked to see such an open).
		make  func(t *testing.T, p string)
		plain bool
	}{
		{"character device", true, func(t *testing.T, p string) {
			must(t, unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))) // /dev/null's
		}, true},
		{"named pipe", false, func(t *testing.T, p string) { must(t, syscall.Mkfifo(p, 0o666)) }, true},
		{"socket", false, func(t *testing.T, p string) {
			l, err := net.Listen("unix", p)
			must(t, err)
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			t.Cleanup(func() { l.Close() })
		}, false},
		{"symlink to a file", false, func(t *testing.T, p string) {
			must(t, os.WriteFile(p+".target", []byte("SECRET"), 0o644))
			must(t, os.Symlink(p+".target", p))
		}, false},
		{"folder", false, func(t *testing.T, p string) { must(t, os.Mkdir(p, 0o755)) }, true},
		{"another file", false, func(t *testing.T, p string) { must(t, os.WriteFile(p, []byte("SECRET"), 0o644)) }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.root {
				testenv.RequireRoot(t)
			}
			dir := t.TempDir()
			f := filepath.Join(dir, "f")
			must(t, os.WriteFile(f, []byte("mine"), 0o644))
			want, err := os.Lstat(f)
			must(t, err)
			other := filepath.Join(dir, "other")
			tc.make(t, other)
			opened := walktest.WatchOpen(t, other)
			must(t, os.Remove(f)) // a folder cannot be renamed over a file
			must(t, os.Rename(other, f))
			dfd, err := Openat(unix.AT_FDCWD, dir, dir, unix.O_RDONLY|unix.O_DIRECTORY)
			must(t, err)
			defer unix.Close(dfd)
			fd, _, err := OpenRegular(dfd, "f", f, want)
			if err == nil {
				unix.Close(fd)
			}
			if !errors.Is(err, ErrChanged) {
				t.Errorf("OpenRegular: %v, want ErrChanged", err)
			}
			if opened() {
				t.Errorf("OpenRegular opened the %s that took the file's name", tc.name)
			}
			// A folder listed where the name now holds it: O_DIRECTORY
			// refuses a non-folder before any driver open.
			if _, _, err := openDir(dfd, "f", f, nil); tc.name != "folder" && !errors.Is(err, ErrChanged) {
				t.Errorf("openDir: %v, want ErrChanged", err)
			}
			if tc.name != "folder" && opened() {
				t.Errorf("openDir opened the %s that took a folder's name", tc.name)
			}
			if tc.plain { // the watch sees a plain open
				fd, err := Openat(dfd, "f", f, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
				must(t, err)
				unix.Close(fd)
				if !opened() {
					t.Fatal("the watch missed a plain open")
				}
			}
		})
	}
	t.Run("the listed file", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		f := filepath.Join(dir, "f")
		must(t, os.WriteFile(f, []byte("mine"), 0o644))
		want, err := os.Lstat(f)
		must(t, err)
		fd, fi, err := OpenRegular(unix.AT_FDCWD, f, f, want)
		must(t, err)
		defer unix.Close(fd)
		if CheckSame(want, fi, f) != nil || fi.Size() != 4 {
			t.Errorf("fstat %+v, want %+v", fi.Sys(), want.Sys())
		}
		b, err := io.ReadAll(FileReader(fd))
		if err != nil || string(b) != "mine" {
			t.Errorf("read %q, %v", b, err)
		}
		if fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); fl&unix.O_PATH != 0 || fl&unix.O_ACCMODE != unix.O_RDONLY {
			t.Errorf("flags %#o: want a readable descriptor", fl)
		}
		must(t, os.Remove(f))
		if _, _, err := OpenRegular(unix.AT_FDCWD, f, f, want); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("OpenRegular of a removed file: %v", err)
		}
	})
}
