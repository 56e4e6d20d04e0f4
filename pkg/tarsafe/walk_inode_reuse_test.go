package tarsafe

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/internal/walktest"
)

// TestWalkReusedFolderInode: a folder walked and then removed
// (a cache or temporary folder an application drops) frees its inode
// number; a new folder created meanwhile in a folder not walked yet gets
// that number again on ext4/xfs. It was never walked: nothing was moved.
// The Walker must walk it like any other folder, not take it for the
// walked folder moved there (the strict walk of a files part would fail,
// the tolerant one of a volume would silently leave the new folder and
// everything in it out of the archive): folders are told apart by birth
// time too.
func TestWalkReusedFolderInode(t *testing.T) {
	for _, policy := range []WalkPolicy{WalkStrict, WalkTolerant} {
		t.Run(fmt.Sprint(policy), func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "vol")
			for _, d := range []string{"a/x", "z"} {
				if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range []string{"a/x/tmp", "m", "z/keep"} {
				if err := os.WriteFile(filepath.Join(root, f), []byte(f), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(root, "a"), &st); err != nil {
				t.Fatal(err)
			}
			reused := false
			visited := map[string]bool{}
			var skipped []string
			w := &Walker{Policy: policy, Prefix: "test"}
			w.Skipped = func(e WalkEntry, why WalkSkip) { skipped = append(skipped, e.Rel) }
			w.Visit = func(e WalkEntry) error {
				visited[e.Rel] = true
				if e.Rel != "m" {
					return nil
				}
				// a was walked and left: the application removes it and
				// makes a new folder with data in z, not listed yet.
				if err := os.RemoveAll(filepath.Join(root, "a")); err != nil {
					t.Fatal(err)
				}
				if reused = walktest.ReuseDirInode(t, filepath.Join(root, "z"), "new", st.Ino); !reused {
					return nil
				}
				return os.WriteFile(filepath.Join(root, "z", "new", "data"), []byte("precious"), 0o644)
			}
			err := w.Walk(context.Background(), root, "vol")
			if !reused {
				// Not a missing service (testenv does not apply):
				// whether a freed inode number is handed out again at
				// once is the file system's choice (ext4 and xfs do,
				// tmpfs and btrfs do not).
				t.Skip("the file system did not hand the folder's inode number out again")
			}
			if err != nil {
				t.Fatalf("walk: %v; nothing was moved, a new folder got a removed one's inode number", err)
			}
			if !visited["z/new"] || !visited["z/new/data"] {
				t.Errorf("the new folder z/new and its file were left out (skipped %q); visited %v", skipped, visited)
			}
		})
	}
}

// TestWalkBindMountedFolder: a configured path holding the
// same folder twice through a bind mount (an admin's /srv/data mounted
// again at /srv/export; nothing changes during the walk) was archived
// with both names: the two mounts are told apart (nothing moved), so the
// strict walk of a files part does not fail "was moved during the
// walk".
func TestWalkBindMountedFolder(t *testing.T) {
	testenv.RequireRoot(t) // a bind mount
	root := filepath.Join(t.TempDir(), "srv")
	for _, d := range []string{"data", "export"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "data", "f"), []byte("f"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(filepath.Join(root, "data"), filepath.Join(root, "export"), "", syscall.MS_BIND, ""); err != nil {
		testenv.Unavailable(t, "bind mount", err)
	}
	t.Cleanup(func() { syscall.Unmount(filepath.Join(root, "export"), syscall.MNT_DETACH) })
	visited := map[string]bool{}
	w := &Walker{Policy: WalkStrict, Prefix: "test", Visit: func(e WalkEntry) error { visited[e.Rel] = true; return nil }}
	if err := w.Walk(context.Background(), root, "srv"); err != nil {
		t.Fatalf("walk of an unchanging tree: %v", err)
	}
	if !visited["data/f"] || !visited["export/f"] {
		t.Errorf("visited %v, want data/f and export/f", visited)
	}
}
