package snapshot

import (
	"context"
	"os"
	"path"
	"sync/atomic"
	"testing"
	"time"
)

// snapshotListCounter counts the listings of a host's snapshots folder.
type snapshotListCounter struct {
	Store
	n atomic.Int32
}

func (s *snapshotListCounter) List(ctx context.Context, dir string) ([]Entry, error) {
	if dir == path.Join("gpu01", SnapshotsDir) {
		s.n.Add(1)
	}
	return s.Store.List(ctx, dir)
}

// TestRefilledDestinationListedOnce: when the last manifest this host
// wrote to a destination is gone, loading the known objects lists the
// destination's snapshots once (not once for the newer ones and again for
// all of them).
func TestRefilledDestinationListedOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	ctx := context.Background()
	e.opts.Now = func() time.Time { return time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC) }
	res, err := Create(ctx, e.opts, []Store{e.stores[0]}, testSources())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path.Join(e.stores[0].root, SnapshotPath("gpu01", res.ID), ManifestFile)); err != nil {
		t.Fatal(err)
	}
	e.opts.Now = func() time.Time { return time.Date(2026, 12, 1, 3, 0, 10, 0, time.UTC) }
	c := &snapshotListCounter{Store: e.stores[0]}
	if _, err := Create(ctx, e.opts, []Store{c}, testSources()); err != nil {
		t.Fatal(err)
	}
	if got := c.n.Load(); got != 1 {
		t.Fatalf("the snapshots folder was listed %d times, want 1", got)
	}
}
