package volume

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/walktest"
)

// TestSwapGivesRootMeta: after a swap the live root has the staged root's
// owner (as root), mode with setgid and sticky, and both times.
func TestSwapGivesRootMeta(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	live, staged, hold := filepath.Join(base, "live"), filepath.Join(base, "staged"), filepath.Join(base, "hold")
	walktest.WriteTree(t, live, map[string]string{"a": "old"})
	walktest.WriteTree(t, staged, map[string]string{"a": "new"})
	if err := os.Chmod(staged, 0o750|fs.ModeSetgid|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}
	root := os.Geteuid() == 0
	if root {
		if err := os.Chown(staged, 1000, 1001); err != nil {
			t.Fatal(err)
		}
	}
	at, mt := time.Unix(1500000000, 123), time.Unix(1600000000, 456)
	if err := os.Chtimes(staged, at, mt); err != nil {
		t.Fatal(err)
	}
	if err := swap(live, staged, hold, nil); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(live)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if got := st.Mode & 0o7777; got != 0o3750 {
		t.Errorf("live root mode %04o, want 3750", got)
	}
	if root && (st.Uid != 1000 || st.Gid != 1001) {
		t.Errorf("live root owner %d:%d, want 1000:1001", st.Uid, st.Gid)
	}
	if got := time.Unix(st.Mtim.Unix()); !got.Equal(mt) {
		t.Errorf("live root mtime %v, want %v", got, mt)
	}
	if got := time.Unix(st.Atim.Unix()); !got.Equal(at) {
		t.Errorf("live root atime %v, want %v", got, at)
	}
}

// TestCopyRootMetaRefusesSymlink: a symbolic link at the live root is not
// followed: the folder it points to keeps its mode.
func TestCopyRootMetaRefusesSymlink(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	src, dst, link := filepath.Join(base, "src"), filepath.Join(base, "dst"), filepath.Join(base, "link")
	for _, d := range []string{src, dst} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dst, link); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := copyRootMeta(fi, link); err == nil {
		t.Error("copyRootMeta through a symlink succeeded")
	}
	fi, err = os.Lstat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("the symlink's target has mode %v; want 0700", fi.Mode())
	}
}
