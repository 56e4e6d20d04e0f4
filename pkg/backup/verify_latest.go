package backup

// What verify latest checks, and the rollback finding of verify.
//
// latest is, on each destination, for each part, the snapshot restore
// latest takes it from (pkg/restore, restore_latest.go): after a `snapshot --only` run,
// the other parts come from the night's full run, and verify checks them
// there. Levels full and restore-test read the indexes (they need the
// identity anyway) and check exactly the parts restore latest plans from
// each snapshot (restore.LatestPartsOf, on that destination alone, from
// the one listing verify made: a provider answering a second listing
// otherwise cannot change what is checked). Levels quick and
// hashes need no identity, so they cannot name the parts: they check whole
// the snapshots restore latest reads a part from, found by the manifests'
// keyed part tags (restore.LatestByTags). Which parts failed in a run is
// in the index too: when the newest full run had failed parts, restore
// latest takes them from older snapshots, past clean full runs that do
// not hold them, so these levels then check every older snapshot holding
// a part no newer one does. They may check more than restore reads, never
// less.
//
// A rollback (a snapshot this host wrote there gone, without manifest or
// refused while older ones stand in for it or for some of its parts) is a
// finding of its own, not a damaged snapshot: verify names it on the row
// of the destination's newest snapshot (VerifyResult.Rollback) and exits
// 3 with RollbackHint, under latest and --all alike.

import (
	"context"
	"crypto/ed25519"
	"slices"

	"filippo.io/age"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/destination"
	"github.com/firetech/fireops/pkg/restore"
	"github.com/firetech/fireops/pkg/snapshot"
)

// RollbackHint is the hint of a verify that found a rollback.
const RollbackHint = "a newer snapshot this host wrote is gone or refused: check who changed the destination; take a new snapshot"

// verifyTarget is one snapshot verify checks, and the parts of it to
// check (nil: every part).
type verifyTarget struct {
	id    string
	parts []string
}

// latestTargets returns what verify latest checks on d (whose listing is
// x), newest snapshot first. The plan is made from x itself
// (restore.LatestPartsOf): d is not listed a second time, so a provider
// that shows a snapshot to one listing and hides it from the next cannot
// keep the snapshot verify found to be the newest (and judged the
// rollback by) out of the check. That snapshot is always checked: when a
// plan leaves it out (it holds no part restore would take), it is checked
// whole. When the indexes cannot be read for the plan (a wrong identity,
// a damaged index), levels full and restore-test check whole the
// snapshots restore.LatestByTags finds: each one's check then says what is wrong
// with it.
func latestTargets(ctx context.Context, cfg *config.Config, d destination.Dest, x *restore.DestLatest, o VerifyOptions, trusted []ed25519.PublicKey, ids []age.Identity) []verifyTarget {
	if o.Level == LevelFull || o.Level == LevelRestoreTest {
		plan, note, err := restore.LatestPartsOf(ctx, cfg, []*restore.DestLatest{x}, trusted, ids, restore.Options{Snapshot: "latest"}, nil)
		if err == nil {
			if note != "" && o.Log != nil {
				o.Log.Info("latest: the parts restore latest takes from each snapshot", "destination", d.Name, "note", note)
			}
			out := targetsOfPlan(x.Listings(), plan)
			if newest := x.Latest().ID; !slices.ContainsFunc(out, func(t verifyTarget) bool { return t.id == newest }) {
				out = append([]verifyTarget{{id: newest}}, out...)
			}
			return out
		}
		if o.Log != nil {
			o.Log.Warn("latest: the parts of each snapshot could not be planned; checking the snapshots whole", "destination", d.Name, "err", err)
		}
	}
	var out []verifyTarget
	for _, l := range restore.LatestByTags(x) {
		out = append(out, verifyTarget{id: l.ID})
	}
	return out
}

// targetsOfPlan groups a restore plan's parts by their snapshot, newest
// snapshot first (by ls, the destination's listing).
func targetsOfPlan(ls []snapshot.Listing, plan []restore.PartFrom) []verifyTarget {
	var out []verifyTarget
	for _, pf := range plan {
		id := pf.SnapshotID()
		i := slices.IndexFunc(out, func(t verifyTarget) bool { return t.id == id })
		if i < 0 {
			i = len(out)
			out = append(out, verifyTarget{id: id})
		}
		out[i].parts = append(out[i].parts, pf.PartID())
	}
	byID := make(map[string]snapshot.Listing, len(ls))
	for _, l := range ls {
		byID[l.ID] = l
	}
	slices.SortStableFunc(out, func(a, b verifyTarget) int {
		return restore.NewerFirst(byID[a.id], byID[b.id])
	})
	return out
}
