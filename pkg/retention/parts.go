package retention

// # Counting per part
//
// A snapshot holds parts: every configured one for a scheduled run, one or
// a few for `snapshot --only`, all but the failed ones for a run in which
// a source failed. Counting snapshots as if each held everything would let
// a small snapshot stand in for parts it does not hold: with a full run at
// 03:00 and `snapshot --only volume:X` at noon, the noon one would be "the
// day's snapshot" and the full one removed. So the policy is applied to
// each part on its own, over the snapshots that hold it, and a snapshot
// stays when it is kept for at least one of its parts:
//
//   - keep_last N keeps, for each live part, the N newest snapshots
//     holding it.
//   - A calendar rule (keep_hourly ... keep_yearly N) keeps, for each part,
//     the newest snapshot holding it in each of the N newest buckets that
//     have a snapshot holding it (for a live part) or any snapshot at all
//     (for a retired part); with fewer buckets than N, also the oldest
//     snapshot holding it (restic's rule).
//   - keep_within D keeps, for each part, every snapshot holding it taken
//     less than D before the newest snapshot holding it (for a live part)
//     or the newest complete snapshot (for a retired part).
//   - The newest complete snapshot, and the newest holding each live part,
//     are never removed.
//
// A part is retired once a newer full run does not hold it: a snapshot
// that records its parts, was not limited with --only and in which no part
// failed. Such a run read every configured part, so the part is no longer
// on the server (a deleted user's volume, a source taken out of the
// config) or no longer under this tag (a new signing key tags every part
// anew). A retired part keeps only what the calendar windows, counted over
// every snapshot, still reach: its snapshots then age out like any others
// instead of being kept for ever as the newest of their part.
//
// Snapshots that record no parts (written by an older fireops) count as
// holding every part, the recorded ones included, plus the pseudo-part
// everyPart that stands for whatever they held: before the first full run
// that records its parts they are planned exactly as before.
//
// This is restic's grouping with one group per part, a snapshot in as
// many groups as it holds parts, rather than one group per part set: a
// set changes whenever a user is added or removed, and every old set
// would keep its newest snapshots for ever.

import (
	"fmt"
	"sort"
)

// everyPart is the pseudo-part of the snapshots that record no parts.
const everyPart = "*"

// partIndex is which complete snapshots (newest first) hold which parts.
type partIndex struct {
	ds []*Decision
	// sets are the parts of each snapshot; nil: it records none.
	sets []map[string]bool
	// parts are every part, sorted (everyPart first when present).
	parts []string
	// newestFull is the index of the newest full run, len(ds) if none.
	newestFull int
}

func newPartIndex(ds []*Decision) *partIndex {
	x := &partIndex{ds: ds, sets: make([]map[string]bool, len(ds)), newestFull: len(ds)}
	seen := map[string]bool{}
	legacy := false
	for i, d := range ds {
		if d.Parts == nil {
			legacy = true
			continue
		}
		x.sets[i] = map[string]bool{}
		for _, p := range d.Parts {
			x.sets[i][p] = true
			if !seen[p] {
				seen[p] = true
				x.parts = append(x.parts, p)
			}
		}
		if x.newestFull == len(ds) && !d.Only && d.FailedParts == 0 {
			x.newestFull = i
		}
	}
	sort.Strings(x.parts)
	if legacy {
		x.parts = append([]string{everyPart}, x.parts...)
	}
	return x
}

func (x *partIndex) holds(i int, part string) bool {
	if x.sets[i] == nil {
		return true
	}
	return x.sets[i][part]
}

// holders returns the snapshots holding part, newest first.
func (x *partIndex) holders(part string) []int {
	var out []int
	for i := range x.ds {
		if x.holds(i, part) {
			out = append(out, i)
		}
	}
	return out
}

// retired reports whether a full run newer than every snapshot holding
// part (holders, newest first) exists.
func (x *partIndex) retired(holders []int) bool {
	return len(holders) > 0 && x.newestFull < holders[0]
}

// PartCounts returns how many parts the complete snapshots record, and
// how many of those are retired (see parts.go). Snapshots that record no
// parts add none.
func PartCounts(snaps []Snapshot) (parts, retired int) {
	var ds []*Decision
	for _, s := range snaps {
		if s.State == Complete || s.State == "" {
			ds = append(ds, &Decision{Snapshot: s})
		}
	}
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i], ds[j]
		if !a.Time.Equal(b.Time) {
			return a.Time.After(b.Time)
		}
		return a.ID > b.ID
	})
	x := newPartIndex(ds)
	for _, p := range x.parts {
		if p == everyPart {
			continue
		}
		parts++
		if x.retired(x.holders(p)) {
			retired++
		}
	}
	return parts, retired
}

// planParts applies the policy to the complete snapshots ds (newest
// first), per part, and sets Keep and Reasons.
func planParts(p Policy, ds []*Decision) {
	x := newPartIndex(ds)
	all := make([]int, len(ds))
	for i := range all {
		all[i] = i
	}
	// counts[i][reason] is for how many of its parts a reason keeps ds[i].
	counts := make([]map[string]int, len(ds))
	add := func(i int, reason string) {
		if counts[i] == nil {
			counts[i] = map[string]int{}
		}
		counts[i][reason]++
	}
	newestOf := make([]bool, len(ds))
	const within = "keep_within"
	rules := p.rules()
	for _, part := range x.parts {
		holders := x.holders(part)
		if len(holders) == 0 {
			continue
		}
		retired := x.retired(holders)
		seq := holders // the snapshots whose buckets count
		if retired {
			seq = all
		} else {
			newestOf[holders[0]] = true
		}
		if p.KeepWithin > 0 {
			newest := ds[seq[0]].Time
			for _, i := range holders {
				if newest.Sub(ds[i].Time) < p.KeepWithin {
					add(i, within)
				}
			}
		}
		for _, r := range rules {
			if r.count <= 0 {
				continue
			}
			if r.name == "keep_last" {
				if !retired {
					for _, i := range holders[:min(r.count, len(holders))] {
						add(i, r.name)
					}
				}
				continue
			}
			allowed := map[int64]bool{}
			for _, i := range seq {
				if v := r.bucket(ds[i].Time, 0); !allowed[v] && len(allowed) < r.count {
					allowed[v] = true
				}
			}
			kept := map[int64]int{} // bucket -> the holder kept in it
			for _, i := range holders {
				v := r.bucket(ds[i].Time, 0)
				if _, ok := kept[v]; allowed[v] && !ok {
					kept[v] = i
					add(i, r.name)
				}
			}
			if len(allowed) < r.count {
				// Like restic: a rule with counts left also keeps the
				// oldest snapshot, so the history kept is as long as the
				// policy allows while there are too few snapshots yet.
				oldest := holders[len(holders)-1]
				if k, ok := kept[r.bucket(ds[oldest].Time, 0)]; !ok || k != oldest {
					add(oldest, "oldest "+r.name)
				}
			}
		}
	}
	for i, d := range ds {
		d.Reasons = []string{}
		if c := counts[i][within]; c > 0 {
			d.Reasons = append(d.Reasons, qualify(d, "keep_within "+FormatDuration(p.KeepWithin), c))
		}
		for _, r := range rules {
			for _, name := range []string{r.name, "oldest " + r.name} {
				if c := counts[i][name]; c > 0 {
					d.Reasons = append(d.Reasons, qualify(d, name, c))
				}
			}
		}
		d.Keep = len(d.Reasons) > 0
		switch {
		case d.Keep:
		case i == 0:
			// Unreachable with a valid policy (every rule keeps the
			// newest), kept as the safety net the contract promises.
			d.Keep, d.Reasons = true, []string{ReasonNewest}
		case newestOf[i]:
			// Unreachable too (every rule keeps each live part's newest
			// snapshot): the per-part safety net.
			d.Keep, d.Reasons = true, []string{ReasonNewestOfPart}
		default:
			d.Reasons = []string{ReasonNoRule}
		}
	}
}

// qualify names a rule that keeps d for only some of its recorded parts:
// "keep_daily (4 of 5 parts)".
func qualify(d *Decision, reason string, n int) string {
	if d.Parts == nil || n >= len(d.Parts) {
		return reason
	}
	return fmt.Sprintf("%s (%d of %d parts)", reason, n, len(d.Parts))
}
