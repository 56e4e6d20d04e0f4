package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TreeOption changes what [DiffTrees] and [SameTree] compare.
type TreeOption func(*treeOptions)

type treeOptions struct {
	ignoreTimes, ignoreOwners bool
}

// IgnoreTimes leaves modification times out of the comparison.
func IgnoreTimes() TreeOption { return func(o *treeOptions) { o.ignoreTimes = true } }

// IgnoreOwners leaves the owner and group (numeric ids) out of the
// comparison.
func IgnoreOwners() TreeOption { return func(o *treeOptions) { o.ignoreOwners = true } }

// treeEntry is what DiffTrees knows of one path below a root.
type treeEntry struct {
	mode     fs.FileMode
	uid, gid uint32
	mtime    time.Time
	size     int64
	link     string // a symlink's target
}

// maxTreeDiffs is how many differences SameTree reports one by one.
const maxTreeDiffs = 50

// SameTree fails the test (without ending it) with one line per
// difference between the folders want and got, as [DiffTrees] finds them.
func SameTree(t testing.TB, want, got string, opts ...TreeOption) {
	t.Helper()
	diffs, err := DiffTrees(want, got, opts...)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range diffs {
		if i == maxTreeDiffs {
			t.Errorf("and %d more differences", len(diffs)-i)
			break
		}
		t.Error(d)
	}
}

// DiffTrees compares every path below the folders want and got (not the
// two roots themselves): that each is in both, its type and mode bits
// (permissions, setuid, setgid, sticky), a file's size and contents, a
// symlink's target (symlinks are not followed), the owner and group and
// the modification time (a symlink's own). It returns one line per
// difference, "path: what", in the order of the paths; nil when the trees
// are the same. Hard links are not compared. An error is a folder it
// could not read. Files are compared in chunks, never read whole.
func DiffTrees(want, got string, opts ...TreeOption) ([]string, error) {
	var o treeOptions
	for _, opt := range opts {
		opt(&o)
	}
	w, err := readTree(want)
	if err != nil {
		return nil, err
	}
	g, err := readTree(got)
	if err != nil {
		return nil, err
	}
	var paths []string
	for p := range w {
		paths = append(paths, p)
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	var diffs []string
	for _, p := range paths {
		we, inWant := w[p]
		ge, inGot := g[p]
		switch {
		case !inGot:
			diffs = append(diffs, fmt.Sprintf("%s: missing (want a %s)", p, kind(we.mode)))
			continue
		case !inWant:
			diffs = append(diffs, fmt.Sprintf("%s: unexpected %s", p, kind(ge.mode)))
			continue
		case we.mode.Type() != ge.mode.Type():
			diffs = append(diffs, fmt.Sprintf("%s: a %s, want a %s", p, kind(ge.mode), kind(we.mode)))
			continue
		}
		if we.mode != ge.mode {
			diffs = append(diffs, fmt.Sprintf("%s: mode %v, want %v", p, ge.mode, we.mode))
		}
		if !o.ignoreOwners && (we.uid != ge.uid || we.gid != ge.gid) {
			diffs = append(diffs, fmt.Sprintf("%s: owner %d:%d, want %d:%d", p, ge.uid, ge.gid, we.uid, we.gid))
		}
		if !o.ignoreTimes && !we.mtime.Equal(ge.mtime) {
			diffs = append(diffs, fmt.Sprintf("%s: modified %s, want %s", p, ge.mtime.Format(time.RFC3339Nano), we.mtime.Format(time.RFC3339Nano)))
		}
		switch {
		case we.mode.Type() == fs.ModeSymlink && we.link != ge.link:
			diffs = append(diffs, fmt.Sprintf("%s: symlink to %q, want %q", p, ge.link, we.link))
		case we.mode.IsRegular() && we.size != ge.size:
			diffs = append(diffs, fmt.Sprintf("%s: %d bytes, want %d", p, ge.size, we.size))
		case we.mode.IsRegular():
			off, err := firstDifference(filepath.Join(want, p), filepath.Join(got, p))
			if err != nil {
				return nil, err
			}
			if off >= 0 {
				diffs = append(diffs, fmt.Sprintf("%s: contents differ from byte %d", p, off))
			}
		}
	}
	return diffs, nil
}

// readTree lists every path below root, relative to it, with slashes.
func readTree(root string) (map[string]treeEntry, error) {
	out := map[string]treeEntry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			if !d.IsDir() {
				return fmt.Errorf("compare trees: %s is not a folder", root)
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		e := treeEntry{mode: fi.Mode(), mtime: fi.ModTime(), size: fi.Size()}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			e.uid, e.gid = st.Uid, st.Gid
		}
		if fi.Mode().Type() == fs.ModeSymlink {
			if e.link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		out[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("compare trees: %w", err)
	}
	return out, nil
}

// firstDifference is the offset of the first byte where the files a and
// b differ, or -1 when they are the same.
func firstDifference(a, b string) (int64, error) {
	fa, err := os.Open(a)
	if err != nil {
		return 0, fmt.Errorf("compare trees: %w", err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return 0, fmt.Errorf("compare trees: %w", err)
	}
	defer fb.Close()
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	var off int64
	for {
		na, erra := io.ReadFull(fa, ba)
		nb, errb := io.ReadFull(fb, bb)
		if i := mismatch(ba[:na], bb[:nb]); i >= 0 {
			return off + int64(i), nil
		}
		off += int64(na)
		endA, endB := isEnd(erra), isEnd(errb)
		if erra != nil && !endA {
			return 0, fmt.Errorf("compare trees: read %s: %w", a, erra)
		}
		if errb != nil && !endB {
			return 0, fmt.Errorf("compare trees: read %s: %w", b, errb)
		}
		if endA || endB {
			return -1, nil
		}
	}
}

// mismatch is the index of the first byte where a and b differ (one
// ending first counts), or -1.
func mismatch(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

func isEnd(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// kind names a mode's type for a difference.
func kind(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return "file"
	case fs.ModeDir:
		return "folder"
	case fs.ModeSymlink:
		return "symlink"
	default:
		return "special file (" + m.Type().String() + ")"
	}
}
