// Package walktest holds what the tests of the code that walks a host
// folder (tarsafe.Walker and the sources built on it, pkg/source/files and
// pkg/source/volume) share: trees written from a map and read back, an
// archive read back (its headers, names or contents by name), a host
// folder of secrets to swap in and the check that none of it was
// archived, chains of folders past PATH_MAX made and read through
// descriptors, a watch that tells whether a path was opened, the special
// files a user can swap in for a listed file, and a file given the inode
// number of one removed during the walk.
//
// It imports nothing of the project but internal/testutil, so that the
// tests of pkg/tarsafe can use it too. It is for tests only: nothing
// outside _test.go files imports it.
package walktest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/firetech/fireops/internal/testutil"
)

var must = testutil.Must

// WriteTree creates dir and the entries of tree in it: path (slashes)
// -> contents, a path ending in / being a folder. Missing parent folders
// are made.
func WriteTree(t testing.TB, dir string, tree map[string]string) {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o755))
	for p, body := range tree {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if strings.HasSuffix(p, "/") {
			must(t, os.MkdirAll(full, 0o755))
			continue
		}
		must(t, os.MkdirAll(filepath.Dir(full), 0o755))
		must(t, os.WriteFile(full, []byte(body), 0o644))
	}
}

// Entries returns an archive's entries: name -> contents ("" for entries
// other than regular files).
func Entries(t testing.TB, b []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	each(t, b, func(h *tar.Header, r io.Reader) {
		body, err := io.ReadAll(r)
		must(t, err)
		out[h.Name] = string(body)
	})
	return out
}

// Headers returns an archive's headers, in order.
func Headers(t testing.TB, b []byte) []*tar.Header {
	t.Helper()
	var hs []*tar.Header
	each(t, b, func(h *tar.Header, _ io.Reader) { hs = append(hs, h) })
	return hs
}

// each calls fn with every header of the archive b and a reader of its
// contents.
func each(t testing.TB, b []byte, fn func(*tar.Header, io.Reader)) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		must(t, err)
		fn(h, tr)
	}
}

// Names returns an archive's entry names, in order.
func Names(t testing.TB, b []byte) []string {
	t.Helper()
	var names []string
	for _, h := range Headers(t, b) {
		names = append(names, h.Name)
	}
	return names
}

// HostSecrets makes dir, a host folder outside what is archived, holding
// files whose names hold "secret" or whose contents hold "SECRET", some
// named like files of the archived folder (z, sub/own).
func HostSecrets(t testing.TB, dir string) {
	t.Helper()
	WriteTree(t, dir, map[string]string{"z": "SECRET z", "secret": "SECRET", "sub/": "", "sub/secret": "SECRET sub", "sub/own": "SECRET own"})
}

// NoSecret fails the test (without ending it) for each archive entry
// whose name holds "secret" or whose contents hold "SECRET": a file of
// [HostSecrets]'s folder.
func NoSecret(t testing.TB, got map[string]string) {
	t.Helper()
	for name, body := range got {
		if strings.Contains(name, "secret") || strings.Contains(body, "SECRET") {
			t.Errorf("the archive holds a host file: %s (%q)", name, body)
		}
	}
}

// DeepChain creates depth nested folders below dir through descriptors
// (the path may pass PATH_MAX), named by name(i), and a file "leaf" in
// the deepest holding leaf. It returns the slash-separated path of the
// deepest folder relative to dir.
func DeepChain(t testing.TB, dir string, depth int, name func(int) string, leaf string) string {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(t, err)
	var rel []string
	for i := range depth {
		n := name(i)
		rel = append(rel, n)
		must(t, unix.Mkdirat(fd, n, 0o755))
		next, err := unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		must(t, err)
		fd = next
	}
	defer unix.Close(fd)
	f, err := unix.Openat(fd, "leaf", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
	must(t, err)
	_, err = unix.Write(f, []byte(leaf))
	unix.Close(f)
	must(t, err)
	return strings.Join(rel, "/")
}

// ReadDeep reads the file rel (slash-separated, however long) below dir
// through descriptors, following no symlink.
func ReadDeep(t testing.TB, dir, rel string) string {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(t, err)
	parts := strings.Split(rel, "/")
	for _, n := range parts[:len(parts)-1] {
		next, err := unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		must(t, err)
		fd = next
	}
	defer unix.Close(fd)
	ffd, err := unix.Openat(fd, parts[len(parts)-1], unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	must(t, err)
	f := os.NewFile(uintptr(ffd), parts[len(parts)-1])
	defer f.Close()
	b, err := io.ReadAll(f)
	must(t, err)
	return string(b)
}

// WatchOpen watches p for IN_OPEN and returns a function reporting
// whether it was opened since the watch began or since the function's
// last call. The kernel queues the event during open(2) itself, so the
// answer is complete as soon as the open returned. A read of the watch
// that fails otherwise than with nothing queued fails the test.
func WatchOpen(t testing.TB, p string) func() bool {
	t.Helper()
	in, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	must(t, err)
	t.Cleanup(func() { unix.Close(in) })
	_, err = unix.InotifyAddWatch(in, p, unix.IN_OPEN|unix.IN_DONT_FOLLOW)
	must(t, err)
	buf := make([]byte, 4096)
	return func() bool {
		n, err := unix.Read(in, buf)
		if err != nil && err != unix.EAGAIN {
			t.Errorf("reading the inotify watch of %s: %v", p, err)
		}
		return n > 0
	}
}

// Special is a kind of special file a user can rename over a listed file,
// which a walk must never open (a device's driver open can reboot the
// host, rewind a tape or take a terminal).
type Special struct {
	Name string
	Root bool // making one needs root (mknod needs CAP_MKNOD)
	// Make creates one at p.
	Make func(t *testing.T, p string)
}

// Specials returns a character device (/dev/null's numbers), a named pipe
// and a socket (listening until the test ends).
func Specials() []Special {
	return []Special{
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
}

// reuseInode makes entries in dir with mk (a file, a folder) until one
// gets the inode number ino (ext4 and xfs hand a freed number out again
// at once), names it name and removes the others. It reports whether one
// got it.
func reuseInode(t testing.TB, dir, name string, ino uint64, mk func(p string) error) bool {
	t.Helper()
	var tries []string
	defer func() {
		for _, p := range tries {
			if err := os.Remove(p); err != nil {
				t.Error(err)
			}
		}
	}()
	for i := range 256 {
		p := filepath.Join(dir, fmt.Sprintf(".try%d", i))
		must(t, mk(p))
		var st unix.Stat_t
		must(t, unix.Stat(p, &st))
		if st.Ino == ino {
			must(t, os.Rename(p, filepath.Join(dir, name)))
			return true
		}
		tries = append(tries, p)
	}
	return false
}

// differentCtime changes p's status (chmod, to its own mode) until its
// change time is not old: on a kernel whose change times follow a coarse
// clock, a file created in the same tick as another's last change could
// otherwise carry the same one (see tarsafe.FileStamp). On a kernel with
// fine-grained change times the first check passes.
func differentCtime(t testing.TB, p string, old unix.Timespec) {
	t.Helper()
	for {
		var st unix.Stat_t
		must(t, unix.Stat(p, &st))
		if st.Ctim != old {
			return
		}
		must(t, os.Chmod(p, os.FileMode(st.Mode&0o7777)))
	}
}

// LinkedPairOnInode removes the names gone of one file (gone[0] is
// stat'ed for its inode number and change time) and makes, in their
// place, a new file dir/name holding body with a second name
// dir/name+"2": given the removed file's inode number where the file
// system hands it out again (reuseInode), with another change time
// (differentCtime). It reports whether the number was reused.
func LinkedPairOnInode(t testing.TB, gone []string, dir, name, body string) bool {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Stat(gone[0], &st))
	for _, p := range gone {
		must(t, os.Remove(p))
	}
	reused := reuseInode(t, dir, name, st.Ino, func(p string) error { return os.WriteFile(p, []byte(body), 0o644) })
	if !reused {
		must(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	must(t, os.Link(filepath.Join(dir, name), filepath.Join(dir, name+"2")))
	differentCtime(t, filepath.Join(dir, name), st.Ctim)
	return reused
}

// Entry is what [Tree] records of one path.
type Entry struct {
	Mode     fs.FileMode
	Uid, Gid uint32
	Mtime    time.Time
	Atime    int64 // nanoseconds, as before Tree read the file
	Size     int64
	Ino      uint64
	Nlink    uint64
	Link     string // a symlink's target
	Body     string // a regular file's contents
	// LinkID is, for a regular file with more than one name, a number
	// its names share, counted from 1 in the order of the walk; else 0.
	LinkID int
}

// Tree records every path below root, and root itself ("."), by its path
// relative to root, as Lstat sees it (symlinks are not followed). It
// reads every regular file whole.
func Tree(t testing.TB, root string) map[string]Entry {
	t.Helper()
	out := map[string]Entry{}
	links := map[uint64]int{}
	must(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := Entry{Mode: fi.Mode(), Uid: st.Uid, Gid: st.Gid, Mtime: fi.ModTime(), Atime: st.Atim.Nano(),
			Size: fi.Size(), Ino: st.Ino, Nlink: uint64(st.Nlink)}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if e.Link, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.Body = string(b)
			if st.Nlink > 1 {
				if links[st.Ino] == 0 {
					links[st.Ino] = len(links) + 1
				}
				e.LinkID = links[st.Ino]
			}
		}
		out[rel] = e
		return nil
	}))
	return out
}

// ReuseDirInode makes, in dir, a folder named name that has the inode
// number ino (ext4 and xfs hand a freed number out again at once, to a
// folder too) and reports whether it got it; the folders tried are
// removed. Tests of how a walk tells a new folder from a moved one use
// it after removing a folder already walked.
func ReuseDirInode(t testing.TB, dir, name string, ino uint64) bool {
	t.Helper()
	return reuseInode(t, dir, name, ino, func(p string) error { return os.Mkdir(p, 0o755) })
}
