package backup

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/restore"
)

// TestRollbackByDeletionIsNoticed: whoever can write to the destination
// deletes the newest snapshot (or only its manifest); `latest` is then an
// older snapshot. verify latest fails (exit 3) naming the missing one, and
// restore latest still restores the older one but says so.
func TestRollbackByDeletionIsNoticed(t *testing.T) {
	t.Parallel()
	for _, what := range []string{"the whole folder", "only the manifest"} {
		t.Run(what, func(t *testing.T) {
			t.Parallel()
			f, root := localFixture(t, "b")
			ctx := context.Background()
			first, err := Snapshot(ctx, f.cfg, SnapshotOptions{})
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(f.data, "new.txt"), []byte("newer data"), 0o644)
			second, err := Snapshot(ctx, f.cfg, SnapshotOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Verify(ctx, f.cfg, VerifyOptions{Snapshot: "latest"}); err != nil {
				t.Fatalf("before the deletion: %v", err)
			}
			dir := filepath.Join(root, "gpu01", "snapshots", second.ID)
			if what == "the whole folder" {
				testutil.Must(t, os.RemoveAll(dir))
			} else {
				testutil.Must(t, os.Remove(filepath.Join(dir, "manifest.json")))
			}
			res, err := Verify(ctx, f.cfg, VerifyOptions{Snapshot: "latest"})
			if exitcode.Code(err) != exitcode.CheckFailed || !strings.Contains(err.Error(), second.ID) {
				t.Fatalf("verify latest after the newest snapshot was deleted: %v (%+v)", err, res)
			}
			rr, err := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: "latest", Parts: []string{"sqlite"}, To: filepath.Join(t.TempDir(), "hub.sqlite")})
			if err != nil || rr.Snapshot != first.ID {
				t.Fatalf("restore latest: %v, snapshot %v, want the older %s", err, rr, first.ID)
			}
		})
	}
}
