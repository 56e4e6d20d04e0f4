package backup

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/snapshot"
)

// TestProviderWipeVerifyAllNoPartRecord: the attack: the provider wipes
// every snapshot of a host whose state_dir names its newest snapshot there
// (the known-objects log) but holds no per-part record (written before the
// record existed). verify latest reports the rollback (WipedError), but
// verify --all found nothing to check and passed (exit 0). Expected: a
// failed check (exit 3) naming the snapshot the host wrote there.
func TestProviderWipeVerifyAllNoPartRecord(t *testing.T) {
	t.Parallel()
	eachWipe(t, func(t *testing.T, f *fixture, x *snapshot.Result) {
		recs, err := filepath.Glob(filepath.Join(f.cfg.StateDir, "known", "*.parts"))
		testutil.Must(t, err)
		if len(recs) == 0 {
			t.Fatal("no per-part record to remove")
		}
		for _, r := range recs {
			testutil.Must(t, os.Remove(r))
		}
		ctx := context.Background()
		if _, err := Verify(ctx, f.cfg, VerifyOptions{Snapshot: "latest"}); exitcode.Code(err) != exitcode.CheckFailed {
			t.Fatalf("verify latest: exit %d: %v", exitcode.Code(err), err)
		}
		_, err = Verify(ctx, f.cfg, VerifyOptions{All: true})
		if exitcode.Code(err) != exitcode.CheckFailed || !strings.Contains(err.Error(), x.ID) {
			t.Fatalf("verify --all after the provider wiped the host's snapshots: exit %d: %v (hint %q); want a failed check naming %s",
				exitcode.Code(err), err, exitcode.Hint(err), x.ID)
		}
	})
}
