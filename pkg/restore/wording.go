package restore

import (
	"context"
	"log/slog"
	"slices"
	"strings"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/interrupt"
	"github.com/firetech/fireops/pkg/redact"
	"github.com/firetech/fireops/pkg/snapshot"
)

// partReason is err's text for a part's row (the plan's STATUS column,
// PlannedPart.Error): the row names the part, so the "part ID: " the
// error starts with when it stands alone is left out, and so is the id
// its source names itself with (snapshot.WithoutPartID), and what a
// terminal would act on is escaped (redact.Line).
func partReason(id string, err error) string {
	return redact.Line(snapshot.WithoutPartID(id, err.Error()))
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
	slices.SortStableFunc(ls, NewerFirst)
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

// Interrupted words a restore's error when SIGINT or SIGTERM
// stopped it: the parts restored before the stop were committed, the
// others' targets were left as they were (a part is staged and checked
// before it replaces its target, and a commit that is stopped puts back
// what it moved). A part that failed on its own (damaged data: exit 3) or
// a usage error keeps its error.
func Interrupted(ctx context.Context, res *Result, err error) error {
	if !interrupt.Stopped(ctx, err, exitcode.Failure) {
		return err
	}
	var done, left []string
	if res != nil {
		for _, p := range res.Parts {
			if p.Status == StatusRestored {
				done = append(done, p.Part)
			} else {
				left = append(left, p.Part)
			}
		}
	}
	if len(done) == 0 {
		return interrupt.Job(err, "nothing was restored; the targets were left as they were (the live data was not replaced)",
			"run the same restore again")
	}
	msg := "restored " + strings.Join(done, ", ") + " before the stop"
	if len(left) == 0 {
		return interrupt.Job(err, msg+"; every part was restored", "check the restored data")
	}
	return interrupt.Job(err, msg+"; "+strings.Join(left, ", ")+" not restored (their targets were left as they were)",
		"restore the rest with --part "+strings.Join(left, " --part "))
}

// ForgetDamaged tells this host's snapshots to upload again the pieces err
// names as damaged on a destination, instead of referencing them in every
// new snapshot (snapshot.ForgetObjects).
func ForgetDamaged(cfg *config.Config, dest string, err error, log *slog.Logger) {
	ids := snapshot.DamagedObjects(err)
	if len(ids) == 0 {
		return
	}
	if ferr := snapshot.ForgetObjects(cfg.StateDir, cfg.Host, dest, ids); ferr != nil {
		if log != nil {
			log.Warn("damaged pieces not recorded: the next snapshot may reference them again", "destination", dest, "err", ferr)
		}
		return
	}
	if log != nil {
		log.Warn("damaged pieces forgotten: the next snapshot uploads them again", "destination", dest, "pieces", len(ids))
	}
}
