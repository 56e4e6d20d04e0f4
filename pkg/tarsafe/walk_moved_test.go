package tarsafe

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestWalkMovedFolderOnce: a user who moves a folder, while it is walked,
// into an empty folder not walked yet (and again, along N of them) must
// not have it walked N times (the archive and the job's time N times the
// folder's size): a folder met again is left out (tolerant) or fails the
// walk (strict), and its file is archived once.
func TestWalkMovedFolderOnce(t *testing.T) {
	t.Parallel()
	for _, policy := range []WalkPolicy{WalkStrict, WalkTolerant} {
		t.Run(fmt.Sprint(policy), func(t *testing.T) {
			t.Parallel()
			const n = 5
			root := filepath.Join(t.TempDir(), "vol")
			if err := os.MkdirAll(filepath.Join(root, "b0", "a"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "b0", "a", "big"), []byte("1 GiB of data"), 0o644); err != nil {
				t.Fatal(err)
			}
			for i := 1; i < n; i++ {
				if err := os.Mkdir(filepath.Join(root, fmt.Sprintf("b%d", i)), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			at := 0 // a is in b<at>
			seen := map[[2]uint64]int{}
			files, skipped := 0, 0
			w := &Walker{Policy: policy, Prefix: "test"}
			w.Skipped = func(WalkEntry, WalkSkip) { skipped++ }
			w.Visit = func(e WalkEntry) error {
				if e.Info.Mode().IsRegular() {
					files++
				}
				if !e.Info.IsDir() {
					return nil
				}
				st := e.Info.Sys().(*syscall.Stat_t)
				k := [2]uint64{uint64(st.Dev), st.Ino}
				if seen[k]++; seen[k] > 1 {
					t.Errorf("%s: folder visited %d times (the same folder, moved)", e.Rel, seen[k])
				}
				if e.Base == "a" && at < n-1 {
					// a is open and listed: move it on to the next b,
					// not listed yet.
					from := filepath.Join(root, fmt.Sprintf("b%d", at), "a")
					to := filepath.Join(root, fmt.Sprintf("b%d", at+1), "a")
					if err := os.Rename(from, to); err != nil {
						t.Fatal(err)
					}
					at++
				}
				return nil
			}
			err := w.Walk(context.Background(), root, "vol")
			switch policy {
			case WalkStrict:
				if err == nil || !strings.Contains(err.Error(), "was moved during the walk") {
					t.Errorf("strict walk: %v, want a moved folder's error", err)
				}
			case WalkTolerant:
				if err != nil || files != 1 || skipped != 1 {
					t.Errorf("tolerant walk: %v, the file archived %d times, %d left out; want once and one left out", err, files, skipped)
				}
			}
		})
	}
}
