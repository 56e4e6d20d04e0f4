package volume

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/firetech/fireops/internal/walktest"
)

// TestReusedFolderInodeArchived: while the volume is read, an
// application in the container removes a folder already archived (a
// cache, a temporary folder) and creates a new one with data in a folder
// not read yet; ext4 (the Engine's volumes) gives the new folder the
// removed one's inode number. Nothing was moved: the new folder and its
// file belong in the archive, not be taken for the old folder moved and
// left out, counted as vanished (the user's new data silently missing
// from the snapshot). (Not parallel: test hooks.)
func TestReusedFolderInodeArchived(t *testing.T) {
	vol := filepath.Join(t.TempDir(), "vol")
	walktest.WriteTree(t, vol, map[string]string{"a/": "", "a/x/": "", "a/x/tmp": "t", "m": "m", "z/": "", "z/keep": "k"})
	var st syscall.Stat_t
	must(t, syscall.Stat(filepath.Join(vol, "a"), &st))
	reused := false
	setHook(t, &testHookAfterFile, func(p string) {
		if p != filepath.Join(vol, "m") {
			return
		}
		must(t, os.RemoveAll(filepath.Join(vol, "a")))
		z := filepath.Join(vol, "z")
		if reused = walktest.ReuseDirInode(t, z, "new", st.Ino); reused {
			must(t, os.WriteFile(filepath.Join(z, "new", "data"), []byte("precious"), 0o644))
		}
	})
	b, c, err := readMountpoint(t, vol)
	if err != nil {
		t.Fatal(err)
	}
	if !reused {
		// Not a missing service (testenv does not apply): whether a freed
		// inode number is handed out again at once is the file system's
		// choice (ext4 and xfs do, tmpfs and btrfs do not).
		t.Skip("the file system did not hand the folder's inode number out again")
	}
	got := walktest.Entries(t, b)
	if got["./z/new/data"] != "precious" {
		t.Errorf("z/new/data not archived (vanished %d): entries %v", c.vanished, walktest.Names(t, b))
	}
}
