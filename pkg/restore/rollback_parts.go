package restore

// Per-part rollback: the newest snapshot on a destination may hold only
// some parts (`snapshot --only`, or a nightly run in which a part failed),
// and restore latest then takes the other parts from older snapshots. A
// provider that deletes (or spoils the manifest of) the snapshot before it
// rolls those parts back, and the newest snapshot, still the one the host
// wrote last, shows nothing. So the host records, per destination, the
// newest snapshot it wrote holding each part (snapshot.PartsWritten), and
// restore latest and verify latest compare each entry with the listing.

import (
	"fmt"
	"slices"
	"strings"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/destination"
	"github.com/firetech/fireops/pkg/snapshot"
)

// partRollback is a snapshot this host wrote to a destination, the newest
// holding some parts, that is not usable there, while no newer snapshot
// there holds those parts or retires them.
type partRollback struct {
	Dest string
	// Snapshot is the id of the snapshot the host wrote.
	Snapshot string
	// Why says what became of it: gone, incomplete or refused; Problem is
	// why a refused one was refused.
	Why, Problem string
	// Parts are the parts it was the newest snapshot holding (part ids,
	// from the host's record).
	Parts []string
}

func (r partRollback) String() string {
	return fmt.Sprintf("snapshot %s, the newest this host wrote to %s holding %s, is %s there and no newer one holds them: they would be restored from older snapshots (rollback): check who changed the destination",
		r.Snapshot, r.Dest, namesOf(r.Parts), r.Why)
}

// namesOf names parts, the first few of them.
func namesOf(parts []string) string {
	const shown = 5
	if len(parts) <= shown {
		return strings.Join(parts, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(parts[:shown], ", "), len(parts)-shown)
}

// partRollbacks compares the host's per-part record of destination dest with
// its listing ls: for each part recorded, the snapshot written holding it
// must be listed and usable, unless a snapshot there of a later second
// holds the part or is a clean run (a full run in which no part failed,
// see snapshot.Written) that does not: the part is then retired, and
// rotate may remove its snapshots (the record of an older state_dir, or a
// part retired under an earlier signing key). Nil when the host has no
// record (a new host after a disaster: as before the record existed).
func partRollbacks(cfg *config.Config, dest string, ls []snapshot.Listing) []partRollback {
	rec := snapshot.PartsWritten(cfg.StateDir, cfg.Host, dest)
	if len(rec) == 0 {
		return nil
	}
	byID := make(map[string]snapshot.Listing, len(ls))
	for _, l := range ls {
		byID[l.ID] = l
	}
	var out []partRollback
	at := map[string]int{} // snapshot id -> index in out
	for _, e := range rec {
		l, listed := byID[e.Snapshot]
		if listed && usable(l) || supersededOn(ls, e) {
			continue
		}
		i, ok := at[e.Snapshot]
		if !ok {
			r := partRollback{Dest: dest, Snapshot: e.Snapshot, Why: unusableWhy(l, listed), Problem: l.Problem}
			i = len(out)
			at[e.Snapshot] = i
			out = append(out, r)
		}
		out[i].Parts = append(out[i].Parts, e.Part)
	}
	return out
}

// unusableWhy says what became of a snapshot the host wrote that is not
// usable, l as listed (listed: it is): gone, incomplete or refused.
func unusableWhy(l snapshot.Listing, listed bool) string {
	switch {
	case !listed:
		return "gone"
	case l.Problem != "":
		return "refused (`fireops snapshots` says why)"
	}
	return "incomplete (no manifest)"
}

// usable reports whether a listed snapshot can be read: complete, its
// manifest accepted.
func usable(l snapshot.Listing) bool { return l.Complete && l.Problem == "" }

// supersededOn reports whether a usable snapshot of ls taken in a later
// second than the recorded one holds the part, or is a clean run without
// it (a snapshot that records no parts counts as holding it).
func supersededOn(ls []snapshot.Listing, e snapshot.PartWritten) bool {
	for _, l := range ls {
		if !usable(l) || snapshot.IDSecond(l.ID) <= snapshot.IDSecond(e.Snapshot) {
			continue
		}
		if l.PartTags == nil || !l.Only && l.FailedParts == 0 {
			return true
		}
		for _, t := range l.PartTags {
			if t == e.Tag {
				return true
			}
		}
	}
	return false
}

// RollbackAlarm is the verdict of DestLatest: the whole-snapshot rollback
// (rolledBack) and the per-part ones, each missing snapshot named once.
func (x *DestLatest) RollbackAlarm() string {
	out := x.rollback
	for _, r := range x.partsOnly() {
		out = JoinNote(out, r.String())
	}
	return out
}

// partsOnly are the per-part rollbacks whose snapshot the whole-snapshot
// one (rolledBack) does not name already.
func (x *DestLatest) partsOnly() []partRollback {
	if x.rollback == "" {
		return x.parts
	}
	var out []partRollback
	for _, r := range x.parts {
		if !strings.Contains(x.rollback, r.Snapshot) {
			out = append(out, r)
		}
	}
	return out
}

// RollbackOn is the rollback finding of a destination's listing ls
// (rolledBack, partRollbacks: each missing snapshot named once), "" when
// there is none, and the newest usable snapshot there ("" when none).
// A listing with no usable snapshot where this host wrote one is a
// rollback too (wipedOn: LastWritten names it when the host has no
// per-part record), as LatestListing finds it.
func RollbackOn(cfg *config.Config, d destination.Dest, ls []snapshot.Listing) (alarm, newest string) {
	x := judge(cfg, d, ls)
	alarm = x.RollbackAlarm()
	if x.latest.ID == "" && alarm == "" {
		if err := wipedOn(cfg, d, ls); err != nil {
			alarm = err.Error()
		}
	}
	return alarm, x.latest.ID
}

// rolledBackParts says which planned parts a per-part rollback affects:
// those of r that out takes from a snapshot older than r.Snapshot, or does
// not restore at all. Empty when another destination still had it.
func rolledBackParts(out []PartFrom, r partRollback) (older, missing []string) {
	for _, id := range r.Parts {
		i := -1
		for j, pf := range out {
			if pf.part.ID == id {
				i = j
				break
			}
		}
		switch {
		case i < 0:
			missing = append(missing, id)
		case out[i].SnapshotID() == r.Snapshot || snapshot.IDSecond(out[i].SnapshotID()) > snapshot.IDSecond(r.Snapshot):
		default:
			older = append(older, id)
		}
	}
	return older, missing
}

// rollbackNote is the plan's note about the per-part rollbacks of every
// destination that the plan out is affected by.
func rollbackNote(out []PartFrom, rs []partRollback) string {
	note := ""
	for _, r := range rs {
		older, missing := rolledBackParts(out, r)
		if len(older) > 0 {
			note = JoinNote(note, fmt.Sprintf("%s from snapshots older than %s, the newest this host wrote holding them, which is %s on %s (rollback: check who changed the destination)",
				namesOf(older), r.Snapshot, r.Why, r.Dest))
		}
		if len(missing) > 0 {
			note = JoinNote(note, fmt.Sprintf("%s not restored: %s, the newest snapshot this host wrote holding them, is %s on %s and no other holds them (rollback: check who changed the destination)",
				namesOf(missing), r.Snapshot, r.Why, r.Dest))
		}
	}
	return note
}

// namedIn reports whether one of rs is about snapshot id.
func namedIn(rs []partRollback, id string) bool {
	for _, r := range rs {
		if r.Snapshot == id {
			return true
		}
	}
	return false
}

// PartRollback is the rollback finding of one part on destination dest,
// whose listing is ls: the newest snapshot this host wrote there holding
// the part (snapshot.PartsWritten) is gone, incomplete or refused there,
// and no newer one there holds the part or retires it (partRollbacks).
// It returns that snapshot's id and the finding, "" when there is none.
// A host with no per-part record for dest (one written before the record
// existed) falls back to its newest snapshot there (snapshot.LastWritten):
// when that one is not usable and no usable snapshot of the same second
// or later stands in for it, it counts for every part (what it held is
// not known). A host with no record at all cannot tell ("").
func PartRollback(cfg *config.Config, dest string, ls []snapshot.Listing, part string) (id, finding string) {
	for _, r := range partRollbacks(cfg, dest, ls) {
		if slices.Contains(r.Parts, part) {
			return r.Snapshot, r.String()
		}
	}
	if len(snapshot.PartsWritten(cfg.StateDir, cfg.Host, dest)) > 0 {
		return "", ""
	}
	last := snapshot.LastWritten(cfg.StateDir, cfg.Host, dest)
	if last == "" {
		return "", ""
	}
	var at snapshot.Listing
	listed := false
	for _, l := range ls {
		if usable(l) && snapshot.IDSecond(l.ID) >= snapshot.IDSecond(last) {
			return "", ""
		}
		if l.ID == last {
			at, listed = l, true
		}
	}
	return last, fmt.Sprintf("snapshot %s, the newest this host wrote to %s, is %s there and no snapshot as new holds %s (rollback): check who changed the destination",
		last, dest, unusableWhy(at, listed), part)
}
