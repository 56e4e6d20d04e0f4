package backup

// What verify latest checks, and the rollback finding of verify.
//
// latest is, on each destination, for each part, the snapshot restore
// latest takes it from (restore_latest.go): after a `snapshot --only` run,
// the other parts come from the night's full run, and verify checks them
// there. Levels full and restore-test read the indexes (they need the
// identity anyway) and check exactly the parts restore latest plans from
// each snapshot (latestParts, on that destination alone). Levels quick and
// hashes need no identity, so they cannot name the parts: they check whole
// the snapshots restore latest reads a part from, found by the manifests'
// keyed part tags (latestByTags).
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
// x), newest snapshot first. When the indexes cannot be read for the plan
// (a wrong identity, a damaged index), levels full and restore-test check
// whole the snapshots latestByTags finds: each one's check then says what
// is wrong with it.
func latestTargets(ctx context.Context, cfg *config.Config, d destination.Dest, x *destLatest, o VerifyOptions, trusted []ed25519.PublicKey, ids []age.Identity) []verifyTarget {
	if o.Level == LevelFull || o.Level == LevelRestoreTest {
		plan, note, err := latestParts(ctx, cfg, []destination.Dest{d}, trusted, ids, RestoreOptions{Snapshot: "latest"}, nil)
		if err == nil {
			if note != "" && o.Log != nil {
				o.Log.Info("latest: the parts restore latest takes from each snapshot", "destination", d.Name, "note", note)
			}
			return targetsOfPlan(x.ls, plan)
		}
		if o.Log != nil {
			o.Log.Warn("latest: the parts of each snapshot could not be planned; checking the snapshots whole", "destination", d.Name, "err", err)
		}
	}
	var out []verifyTarget
	for _, l := range latestByTags(x) {
		out = append(out, verifyTarget{id: l.ID})
	}
	return out
}

// targetsOfPlan groups a restore plan's parts by their snapshot, newest
// snapshot first (by ls, the destination's listing).
func targetsOfPlan(ls []snapshot.Listing, plan []partFrom) []verifyTarget {
	var out []verifyTarget
	for _, pf := range plan {
		id := pf.snapshotID()
		i := slices.IndexFunc(out, func(t verifyTarget) bool { return t.id == id })
		if i < 0 {
			i = len(out)
			out = append(out, verifyTarget{id: id})
		}
		out[i].parts = append(out[i].parts, pf.part.ID)
	}
	byID := make(map[string]snapshot.Listing, len(ls))
	for _, l := range ls {
		byID[l.ID] = l
	}
	slices.SortStableFunc(out, func(a, b verifyTarget) int {
		return newerFirst(byID[a.id], byID[b.id])
	})
	return out
}

// latestByTags returns, newest first, the usable snapshots of a
// destination that restore latest reads a part from, by their manifests'
// part tags (no index is read): the newest one, then each older one that
// holds a part no newer one does, back to the newest full run (a snapshot
// not limited with --only; one without tags counts as full and holds
// everything). When that run has failed parts, restore latest takes them
// from older snapshots: the walk goes on with each older one holding a
// part none walked does, back to a full run in which no part failed (which
// parts failed is in the encrypted index, so a part left out of the config
// since may make it check a snapshot more than restore would read).
func latestByTags(x *destLatest) []snapshot.Listing {
	var cands []snapshot.Listing
	for _, l := range x.ls {
		if usable(l) {
			cands = append(cands, l)
		}
	}
	slices.SortStableFunc(cands, newerFirst)
	seen := map[string]bool{}
	var out []snapshot.Listing
	for i, l := range cands {
		fresh := i == 0 || l.PartTags == nil
		for _, t := range l.PartTags {
			if !seen[t] {
				seen[t], fresh = true, true
			}
		}
		if fresh {
			out = append(out, l)
		}
		if (latestCand{l: l}).full() && l.FailedParts == 0 {
			break // a full run that read every part: older ones hold none restore takes
		}
	}
	return out
}

// rollbackOn is the rollback finding of a destination's listing ls
// (rolledBack, partRollbacks: each missing snapshot named once), "" when
// there is none, and the newest usable snapshot there ("" when none).
func rollbackOn(cfg *config.Config, d destination.Dest, ls []snapshot.Listing) (alarm, newest string) {
	x := &destLatest{ls: ls, parts: partRollbacks(cfg, d, ls)}
	if id, ok := snapshot.Latest(ls); ok {
		for _, l := range ls {
			if l.ID == id {
				x.latest = l
			}
		}
		if x.latest.ID != "" {
			x.rollback = rolledBack(cfg, d, ls, x.latest)
			newest = id
		}
	}
	return x.rollbackAlarm(), newest
}

// newerFirst orders snapshot listings newest first (by Listing.Newer), for
// slices.SortStableFunc; listings neither of which is newer compare equal.
func newerFirst(a, b snapshot.Listing) int {
	switch {
	case a.Newer(b):
		return -1
	case b.Newer(a):
		return 1
	}
	return 0
}
