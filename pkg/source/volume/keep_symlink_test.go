package volume

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/walktest"
)

// TestKeepThroughLiveSymlink: a user who turns a folder above a kept
// file (an sqlite database configured inside their volume) into a
// symlink to another folder (another user's volume, /etc) before a
// forced restore must not have the restore move the file found there
// into their volume: the kept file is reached without following a
// symlink, so it is not kept, and the file outside stays where it is.
func TestKeepThroughLiveSymlink(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	live, staged, hold := filepath.Join(base, "live"), filepath.Join(base, "staged"), filepath.Join(base, "hold")
	outside := filepath.Join(base, "victim")
	walktest.WriteTree(t, outside, map[string]string{"app.db": "the victim's database"})
	walktest.WriteTree(t, live, map[string]string{"n": "old"})
	if err := os.Symlink(outside, filepath.Join(live, "work")); err != nil {
		t.Fatal(err)
	}
	walktest.WriteTree(t, staged, map[string]string{"n": "new", "work/": ""})
	err := swap(live, staged, hold, []string{"work/app.db"})
	if got := readTree(t, outside); got["app.db"] != "the victim's database" {
		t.Errorf("the file outside the volume was moved away by the restore (swap err %v): outside now %v", err, got)
	}
	if b, rerr := os.ReadFile(filepath.Join(live, "work", "app.db")); rerr == nil && string(b) == "the victim's database" {
		t.Errorf("the restored volume holds the file from outside it: work/app.db = %q", b)
	}
}

// TestKeepThroughStagedSymlink: a snapshot whose part holds a folder
// above a kept file as a symlink to a host folder must not have the
// restore create folders or put the user's kept files there: the kept
// file is not kept (the restored tree wins).
func TestKeepThroughStagedSymlink(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	live, staged, hold := filepath.Join(base, "live"), filepath.Join(base, "staged"), filepath.Join(base, "hold")
	outside := filepath.Join(base, "etc")
	walktest.WriteTree(t, outside, map[string]string{"passwd": "root:x:0:0"})
	walktest.WriteTree(t, live, map[string]string{"work/app.db": "planted by the user", "work/sub/app2.db": "planted too"})
	walktest.WriteTree(t, staged, map[string]string{"n": "new"})
	if err := os.Symlink(outside, filepath.Join(staged, "work")); err != nil {
		t.Fatal(err)
	}
	err := swap(live, staged, hold, []string{"work/app.db", "work/sub/app2.db"})
	if got := readTree(t, outside); len(got) != 1 {
		t.Errorf("a restore wrote outside the volume (swap err %v): %s now holds %v", err, outside, got)
	}
}

// TestKeepBelowRealFolders: a kept file below real folders is still kept,
// into staged folders made for it.
func TestKeepBelowRealFolders(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	live, staged, hold := filepath.Join(base, "live"), filepath.Join(base, "staged"), filepath.Join(base, "hold")
	walktest.WriteTree(t, live, map[string]string{"work/sub/app.db": "kept", "n": "old"})
	walktest.WriteTree(t, staged, map[string]string{"n": "new"})
	if err := swap(live, staged, hold, []string{"work/sub/app.db"}); err != nil {
		t.Fatal(err)
	}
	if got := readTree(t, live); got["work/sub/app.db"] != "kept" || got["n"] != "new" {
		t.Errorf("live after the swap: %v", got)
	}
}

// TestSwapManyCutNames: a user with more entries whose names share their
// first 246 bytes than aside names were once searched (1,000) does not
// make their volume unrestorable.
func TestSwapManyCutNames(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	live, staged, hold := filepath.Join(base, "live"), filepath.Join(base, "staged"), filepath.Join(base, "hold")
	tree := map[string]string{}
	prefix := strings.Repeat("x", 246)
	for i := 0; i < 1001; i++ {
		tree[fmt.Sprintf("%s%04d", prefix, i)] = ""
	}
	walktest.WriteTree(t, live, tree)
	walktest.WriteTree(t, staged, map[string]string{"a": "restored"})
	if err := swap(live, staged, hold, nil); err != nil {
		t.Fatalf("restore of a volume holding 1001 long names with one prefix: %v", err)
	}
	if got := readTree(t, live); len(got) != 1 || got["a"] != "restored" {
		t.Errorf("live after the swap holds %d files, want only a=restored", len(got))
	}
}
