package backup

import (
	"context"
	"slices"
	"strings"

	"github.com/firetech/fireops/pkg/snapshot"
)

// partReason is err's text for a part's row (the plan's STATUS column,
// PlannedPart.Error): the row names the part, so the "part ID: " the
// error starts with when it stands alone is left out.
func partReason(id string, err error) string {
	msg := err.Error()
	for {
		rest, ok := strings.CutPrefix(msg, "part "+id+": ")
		if !ok {
			return msg
		}
		msg = rest
	}
}

// closestIDs returns up to n of ids (sorted, oldest first) that share the
// longest prefix with id, newest first by start time (snapshot.Listing's
// Newer): ids order by the second they name only, so within one second
// the ones that second holds are ordered by listing(id), which reads when
// each started. listing is called only for ids that share their second
// with another one shown.
func closestIDs(ids []string, id string, n int, listing func(string) snapshot.Listing) []string {
	best, cands := -1, []string(nil)
	for i := len(ids) - 1; i >= 0; i-- {
		c := ids[i]
		k := 0
		for k < len(c) && k < len(id) && c[k] == id[k] {
			k++
		}
		switch {
		case k > best:
			best, cands = k, []string{c}
		case k == best:
			cands = append(cands, c)
		}
	}
	// cands is newest second first; keep every id of the n-th one's
	// second, then order those seconds by start time.
	if len(cands) > n {
		last := snapshot.IDSecond(cands[n-1])
		cut := n
		for cut < len(cands) && snapshot.IDSecond(cands[cut]) == last {
			cut++
		}
		cands = cands[:cut]
	}
	ls := make([]snapshot.Listing, len(cands))
	for i, c := range cands {
		tied := i > 0 && snapshot.IDSecond(cands[i-1]) == snapshot.IDSecond(c) || i+1 < len(cands) && snapshot.IDSecond(cands[i+1]) == snapshot.IDSecond(c)
		if tied && listing != nil {
			ls[i] = listing(c)
			ls[i].ID = c
		} else {
			t, _ := snapshot.SnapshotTime(c)
			ls[i] = snapshot.Listing{ID: c, Time: t}
		}
	}
	slices.SortStableFunc(ls, newerFirst)
	out := make([]string, 0, min(n, len(ls)))
	for _, l := range ls[:min(n, len(ls))] {
		out = append(out, l.ID)
	}
	return out
}

// startedListing is what a destination holding snapshot id says of when
// it started: its started file (to the nanosecond), else the second its
// id names. Only for ordering: nothing of it is checked.
func startedListing(ctx context.Context, st snapshot.Store, host, id string) snapshot.Listing {
	t, _ := snapshot.SnapshotTime(id)
	l := snapshot.Listing{ID: id, Time: t}
	l.Started = snapshot.StartedTime(ctx, st, host, id)
	return l
}
