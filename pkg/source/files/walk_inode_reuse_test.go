package files

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/firetech/fireops/internal/walktest"
	"github.com/firetech/fireops/pkg/config"
)

// TestReusedFolderInodeStrict: a user whose home folder a
// files source backs up removes a folder the walk already archived (a
// build or cache folder) and creates a new one in a folder not walked
// yet, which ext4 gives the removed folder's inode number. Nothing was
// moved and nothing archived vanished: the part must succeed with the new
// folder in it, not fail "was moved during the walk" (which would fail
// the part of every user the source backs up).
func TestReusedFolderInodeStrict(t *testing.T) {
	// Not parallel: another test's files could take the freed inode number.
	app := filepath.Join(t.TempDir(), "home")
	walktest.WriteTree(t, app, map[string]string{"a/x/tmp": "t", "m": "m", "z/keep": "k"})
	var st syscall.Stat_t
	must(t, syscall.Stat(filepath.Join(app, "a"), &st))
	s, err := New(config.FileSource{Name: "cfg", Paths: []string{app}})
	must(t, err)
	reused, done := false, false
	s.afterRead = func(p string) {
		if p != filepath.Join(app, "m") || done {
			return
		}
		done = true
		must(t, os.RemoveAll(filepath.Join(app, "a")))
		z := filepath.Join(app, "z")
		if reused = walktest.ReuseDirInode(t, z, "new", st.Ino); reused {
			must(t, os.WriteFile(filepath.Join(z, "new", "data"), []byte("precious"), 0o644))
		}
	}
	b, err := writeTar(t, s)
	if !reused {
		// Not a missing service (testenv does not apply): whether a freed
		// inode number is handed out again at once is the file system's
		// choice (ext4 and xfs do, tmpfs and btrfs do not).
		t.Skip("the file system did not hand the folder's inode number out again")
	}
	if err != nil {
		t.Fatalf("WriteTar: %v (nothing was moved: a new folder got a removed one's inode number)", err)
	}
	if got := walktest.Entries(t, b); got[app[1:]+"/z/new/data"] != "precious" {
		t.Errorf("z/new/data not archived: %v", walktest.Names(t, b))
	}
}
