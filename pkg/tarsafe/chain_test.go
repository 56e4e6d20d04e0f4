package tarsafe

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// mkdirChain creates depth nested folders named d0, d1, ... below dir
// through descriptors (the path may pass PATH_MAX).
func mkdirChain(t *testing.T, dir string, depth int) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	for i := range depth {
		name := "d" + strings.Repeat("x", i%7)
		must(t, unix.Mkdirat(fd, name, 0o755))
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		must(t, err)
		fd = next
	}
	unix.Close(fd)
}

// chainName is the name of level i of mkdirChain's folders (the root is
// level 0).
func chainName(i int) string { return "d" + strings.Repeat("x", (i-1)%7) }

// TestDirChainBoundedAndReopened walks 1,000 levels down and back up:
// the open descriptors stay within the bound at every level, every level
// is the right folder on the way up (reopened ones too), and the
// reopening work is linear (each closed level reopened once).
func TestDirChainBoundedAndReopened(t *testing.T) {
	t.Parallel()
	const depth = 1000
	root := t.TempDir()
	mkdirChain(t, root, depth)
	var c DirChain
	defer c.Close()
	fi, err := os.Lstat(root)
	must(t, err)
	_, err = c.OpenRoot(root, fi)
	must(t, err)
	var want []syscall.Stat_t // identity of each level, from the way down
	var st syscall.Stat_t
	must(t, syscall.Fstat(c.Fd(), &st))
	want = append(want, st)
	bound := 1 + depth/walkHeldDirs + walkHeldDirs
	for i := 1; i <= depth; i++ {
		name := chainName(i)
		fi, err := Lstatat(c.Fd(), name, name)
		must(t, err)
		if _, err := c.Enter(name, name, fi); err != nil {
			t.Fatalf("level %d: %v", i, err)
		}
		must(t, syscall.Fstat(c.Fd(), &st))
		want = append(want, st)
		if c.open > bound || c.open != countOpen(&c) {
			t.Fatalf("level %d: %d descriptors held (counted %d), bound %d", i, c.open, countOpen(&c), bound)
		}
	}
	for i := depth; i > 0; i-- {
		must(t, c.Leave())
		must(t, syscall.Fstat(c.Fd(), &st))
		if w := want[i-1]; st.Dev != w.Dev || st.Ino != w.Ino {
			t.Fatalf("level %d after Leave is another folder", i-1)
		}
		if c.open > bound {
			t.Fatalf("level %d: %d descriptors held, bound %d", i-1, c.open, bound)
		}
	}
	if closed := depth - walkHeldDirs - depth/walkHeldDirs; c.reopens < closed-1 || c.reopens > closed+1 {
		t.Errorf("%d folders reopened for %d closed", c.reopens, closed)
	}
}

func countOpen(c *DirChain) int {
	n := 0
	for _, l := range c.levels {
		if l.fd >= 0 {
			n++
		}
	}
	return n
}

// TestDirChainRefusesSwaps: a folder swapped for a symlink or for another
// folder between the listing's lstat and the open is refused (ErrChanged),
// and so is a closed level replaced before Leave reopens it; a root that
// is a symlink or another folder than the lstat saw is refused too.
func TestDirChainRefusesSwaps(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	root, host := filepath.Join(base, "root"), filepath.Join(base, "host")
	must(t, os.MkdirAll(filepath.Join(root, "D"), 0o755))
	must(t, os.MkdirAll(filepath.Join(root, "E"), 0o755))
	must(t, os.MkdirAll(host, 0o755))
	rootFi, err := os.Lstat(root)
	must(t, err)

	var c DirChain
	defer c.Close()
	_, err = c.OpenRoot(root, rootFi)
	must(t, err)
	listed, err := Lstatat(c.Fd(), "D", "D")
	must(t, err)
	// D becomes a symlink to a host folder.
	must(t, os.Rename(filepath.Join(root, "D"), filepath.Join(root, "D.old")))
	must(t, os.Symlink(host, filepath.Join(root, "D")))
	if _, err := c.Enter("D", "D", listed); !errors.Is(err, ErrChanged) {
		t.Errorf("Enter through a symlink: %v, want ErrChanged", err)
	}
	// D becomes another folder.
	must(t, os.Remove(filepath.Join(root, "D")))
	must(t, os.Rename(filepath.Join(root, "E"), filepath.Join(root, "D")))
	if _, err := c.Enter("D", "D", listed); !errors.Is(err, ErrChanged) {
		t.Errorf("Enter another folder: %v, want ErrChanged", err)
	}
	if c.Depth() != 1 {
		t.Errorf("depth %d after refused Enters, want 1", c.Depth())
	}
	c.Close()

	// The root swapped for another folder, or for a symlink.
	if _, err := c.OpenRoot(host, rootFi); !errors.Is(err, ErrChanged) {
		t.Errorf("OpenRoot of another folder: %v, want ErrChanged", err)
	}
	link := filepath.Join(base, "link")
	must(t, os.Symlink(root, link))
	if _, err := c.OpenRoot(link, rootFi); !errors.Is(err, ErrChanged) {
		t.Errorf("OpenRoot of a symlink: %v, want ErrChanged", err)
	}

	// A closed level replaced before Leave reopens it.
	deep := filepath.Join(base, "deep")
	must(t, os.Mkdir(deep, 0o755))
	mkdirChain(t, deep, 3*walkHeldDirs)
	deepFi, err := os.Lstat(deep)
	must(t, err)
	_, err = c.OpenRoot(deep, deepFi)
	must(t, err)
	for i := 1; i <= 3*walkHeldDirs; i++ {
		fi, err := Lstatat(c.Fd(), chainName(i), chainName(i))
		must(t, err)
		_, err = c.Enter(chainName(i), chainName(i), fi)
		must(t, err)
	}
	// Level 3 (closed) goes away; a symlink to the host takes its name.
	p := deep
	for i := 1; i <= 3; i++ {
		p = filepath.Join(p, chainName(i))
	}
	must(t, os.Rename(p, filepath.Join(deep, "moved")))
	must(t, os.Symlink(host, p))
	var lost error
	for c.Depth() > 4 && lost == nil {
		lost = c.Leave()
	}
	if !errors.Is(lost, ErrChanged) || c.Fd() != -1 {
		t.Fatalf("Leave up to a replaced level: %v (fd %d), want ErrChanged and no descriptor", lost, c.Fd())
	}
	for c.Depth() > 4 { // down to level 3 itself, at depth 4
		if err := c.Leave(); !errors.Is(err, ErrChanged) {
			t.Fatalf("Leave at depth %d: %v", c.Depth(), err)
		}
	}
	// Leaving the lost level 3 reopens nothing more: 2 is fine.
	must(t, c.Leave())
	if c.Fd() < 0 || c.Depth() != 3 {
		t.Fatalf("after leaving the replaced level: fd %d, depth %d", c.Fd(), c.Depth())
	}
}
