package volume

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/firetech/fireops/internal/walktest"
	"github.com/firetech/fireops/pkg/tarsafe"
)

// inodeOf returns p's inode number.
func inodeOf(t *testing.T, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Stat(p, &st))
	return st.Ino
}

// TestInodeReusedByHardLinks: during the walk a hard-linked file already
// archived (a, a2) is removed and a new hard-linked pair (m/b, m/b2) gets
// its inode number, as conda, pip or git gc do. m/b is archived as the
// new file, not as a hard link to ./a: a restore gives it its own
// contents. (Not parallel: test hooks. TestHeaderBuilderInodeReused in
// pkg/tarsafe checks the same without a file system.)
func TestInodeReusedByHardLinks(t *testing.T) {
	base := t.TempDir()
	vol := filepath.Join(base, "vol")
	walktest.WriteTree(t, vol, map[string]string{"a": "AAAA old", "m/": "", "z": "last"})
	must(t, os.Link(filepath.Join(vol, "a"), filepath.Join(vol, "a2")))
	a := filepath.Join(vol, "a")
	done, reused := false, false
	setHook(t, &testHookAfterFile, func(p string) {
		if p != a || done {
			return
		}
		done = true
		reused = walktest.LinkedPairOnInode(t, []string{a, filepath.Join(vol, "a2")}, filepath.Join(vol, "m"), "b", "BBBB new")
	})
	b, c, err := readMountpoint(t, vol)
	must(t, err)
	if !done {
		t.Fatal("the hook did not run")
	}
	if !reused {
		t.Log("the file system gave the new file another inode number: only the restored contents are checked")
	}
	out := filepath.Join(base, "out")
	_, err = tarsafe.Extract(context.Background(), bytes.NewReader(b), out, tarsafe.Options{})
	must(t, err)
	for _, n := range []string{"b", "b2"} {
		if r, _ := os.ReadFile(filepath.Join(out, "m", n)); string(r) != "BBBB new" {
			t.Errorf("restored m/%s = %q, want %q; changed=%d", n, r, "BBBB new", c.changed)
		}
	}
	if inodeOf(t, filepath.Join(out, "m", "b")) != inodeOf(t, filepath.Join(out, "m", "b2")) {
		t.Error("m/b and m/b2 restored as two files")
	}
}

// TestInodeReusedAfterLeftOut: a hard-linked file left out (an sqlite
// source's database) is removed during the walk and a new hard-linked
// file gets its inode number: the new file is archived, not dropped as
// a later name of the one left out. (Not parallel: test hooks.)
func TestInodeReusedAfterLeftOut(t *testing.T) {
	base := t.TempDir()
	vol := filepath.Join(base, "vol")
	walktest.WriteTree(t, vol, map[string]string{"a.sqlite": "left out", "b": "mine b", "m/": ""})
	must(t, os.Link(filepath.Join(vol, "a.sqlite"), filepath.Join(vol, "x")))
	target := filepath.Join(vol, "b")
	done, reused := false, false
	setHook(t, &testHookBeforeOpen, func(p string) {
		if p != target || done {
			return
		}
		done = true
		reused = walktest.LinkedPairOnInode(t, []string{filepath.Join(vol, "a.sqlite"), filepath.Join(vol, "x")}, filepath.Join(vol, "m"), "c", "CCCC new")
	})
	s := &Source{name: "t", excluded: map[string]bool{"a.sqlite": true}, leftOut: []string{"a.sqlite"}, log: slog.New(slog.DiscardHandler)}
	var buf bytes.Buffer
	_, err := s.writeMountpoint(context.Background(), &pinned{mode: ReadMountpoint, dir: vol, ident: "t"}, &buf)
	must(t, err)
	if !done {
		t.Fatal("the hook did not run")
	}
	if !reused {
		t.Log("the file system gave the new file another inode number: only the archive's names are checked")
	}
	got := walktest.Entries(t, buf.Bytes())
	if got["./m/c"] != "CCCC new" {
		t.Errorf("./m/c = %q, want it archived (entries %v)", got["./m/c"], got)
	}
	if _, ok := got["./m/c2"]; !ok {
		t.Errorf("./m/c2 is not in the archive (entries %v)", got)
	}
	if _, ok := got["./a.sqlite"]; ok {
		t.Error("the file left out is in the archive")
	}
}
