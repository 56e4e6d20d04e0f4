package backup

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/destination"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/restore"
	"github.com/firetech/fireops/pkg/snapshot"
)

// usageStore is a destination whose listing fails with a usage-coded
// error (exit 2), as a store refusing a file of its own would.
type usageStore struct{ snapshot.Store }

func (usageStore) Name() string { return "odd" }
func (usageStore) List(context.Context, string) ([]snapshot.Entry, error) {
	return nil, exitcode.Usagef("fix the odd destination", "destination odd: list refused")
}

// TestLatestUsageErrorOfOneDestination: restore (and verify) latest take
// a destination's error as that destination's, whatever its exit code,
// and go on with the next one; only the config (the trusted keys, loaded
// before any destination is read) stops the job.
func TestLatestUsageErrorOfOneDestination(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "{name: local, remote: "+filepath.Join(t.TempDir(), "b")+"}")
	ctx := context.Background()
	res, err := Snapshot(ctx, f.cfg, SnapshotOptions{})
	testutil.Must(t, err)
	ds, _, err := destination.Open(ctx, f.cfg, nil)
	testutil.Must(t, err)
	defer destination.Close(ctx, ds, nil)
	ids, err := destination.Identities(f.cfg, "")
	testutil.Must(t, err)

	dests := append([]destination.Dest{{Name: "odd", Store: usageStore{ds[0].Store}}}, ds...)
	plan, _, err := restore.LatestParts(ctx, f.cfg, dests, mustTrusted(t, f), ids, restore.Options{Snapshot: "latest"}, nil)
	if err != nil {
		t.Fatalf("latest with one destination failing with exit %d: %v; want the other's snapshot", exitcode.Code(err), err)
	}
	if len(plan) == 0 {
		t.Fatal("latest planned no part")
	}
	for _, p := range plan {
		if p.SnapshotID() != res.ID || p.Destination() != "local" {
			t.Errorf("part %s from %s on %s, want %s on local", p.PartID(), p.SnapshotID(), p.Destination(), res.ID)
		}
	}
}
