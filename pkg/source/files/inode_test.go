package files

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/firetech/fireops/internal/walktest"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/tarsafe"
)

// TestInodeReusedByHardLinks: during the walk a hard-linked file already
// archived (a, with a second name outside the configured path: the files
// source fails on a listed name that vanishes) is removed and a new
// hard-linked pair (m/b, m/b2) gets its inode number. m/b is archived as
// the new file, not as a hard link to a: a restore gives it its own
// contents. (TestHeaderBuilderInodeReused in pkg/tarsafe checks the same
// without a file system.)
func TestInodeReusedByHardLinks(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	app := filepath.Join(base, "app")
	walktest.WriteTree(t, app, map[string]string{"a": "AAAA old", "m/": "", "z": "last"})
	a, a2 := filepath.Join(app, "a"), filepath.Join(base, "a2")
	must(t, os.Link(a, a2))
	s, err := New(config.FileSource{Name: "cfg", Paths: []string{app}})
	must(t, err)
	done, reused := false, false
	s.afterRead = func(p string) {
		if p != a || done {
			return
		}
		done = true
		reused = walktest.LinkedPairOnInode(t, []string{a, a2}, filepath.Join(app, "m"), "b", "BBBB new")
	}
	var buf bytes.Buffer
	_, err = s.WriteTar(context.Background(), &buf)
	must(t, err)
	if !done {
		t.Fatal("the hook did not run")
	}
	if !reused {
		t.Log("the file system gave the new file another inode number: only the restored contents are checked")
	}
	out := filepath.Join(base, "out")
	_, err = tarsafe.Extract(context.Background(), bytes.NewReader(buf.Bytes()), out, tarsafe.Options{})
	must(t, err)
	m := filepath.Join(out, app[1:], "m")
	for _, n := range []string{"b", "b2"} {
		if r, _ := os.ReadFile(filepath.Join(m, n)); string(r) != "BBBB new" {
			t.Errorf("restored m/%s = %q, want %q", n, r, "BBBB new")
		}
	}
	var b1, b2 unix.Stat_t
	must(t, unix.Stat(filepath.Join(m, "b"), &b1))
	must(t, unix.Stat(filepath.Join(m, "b2"), &b2))
	if b1.Ino != b2.Ino {
		t.Error("m/b and m/b2 restored as two files")
	}
}
