package files

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/tarsafe"
)

// reuseInode creates files holding body in dir until one gets the inode
// number ino (ext4 and xfs hand a freed number out again at once), names
// it name and removes the others. It reports whether one got it.
func reuseInode(t *testing.T, dir, name, body string, ino uint64) bool {
	t.Helper()
	var tries []string
	defer func() {
		for _, p := range tries {
			must(t, os.Remove(p))
		}
	}()
	for i := range 256 {
		p := filepath.Join(dir, fmt.Sprintf(".try%d", i))
		must(t, os.WriteFile(p, []byte(body), 0o644))
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
func differentCtime(t *testing.T, p string, old unix.Timespec) {
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
	writeFiles(t, app, map[string]string{"a": "AAAA old", "m/": "", "z": "last"})
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
		var st unix.Stat_t
		must(t, unix.Stat(a, &st))
		must(t, os.Remove(a))
		must(t, os.Remove(a2))
		reused = reuseInode(t, filepath.Join(app, "m"), "b", "BBBB new", st.Ino)
		if !reused {
			must(t, os.WriteFile(filepath.Join(app, "m", "b"), []byte("BBBB new"), 0o644))
		}
		must(t, os.Link(filepath.Join(app, "m", "b"), filepath.Join(app, "m", "b2")))
		differentCtime(t, filepath.Join(app, "m", "b"), st.Ctim)
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
