package backup

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

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

// SnapshotInterrupted words a snapshot run's error when SIGINT or SIGTERM
// stopped it before any destination had it (res is nil): no manifest was
// written, the run removed its snapshot folder (what it could not remove
// is an incomplete snapshot that rotate removes), and the pieces it
// uploaded stay, recorded in the state_dir for the next run to reference
// (docs/format.md); rotate sweeps those no snapshot references after
// retention.incomplete_grace. Any other error is returned as it is.
func SnapshotInterrupted(ctx context.Context, res *snapshot.Result, err error) error {
	if res != nil || !interrupt.Stopped(ctx, err, exitcode.Failure) {
		return err
	}
	const next = "run fireops snapshot again: it uploads only what the destinations do not hold yet"
	ie := &interrupt.Error{
		Left: "nothing was committed; the pieces already uploaded are kept for the next run to reuse (rotate removes those no snapshot uses after retention.incomplete_grace)",
		Next: next, Err: err,
	}
	var pe *snapshot.PartError
	if errors.As(err, &pe) {
		ie.During = "during part " + pe.ID
	}
	return exitcode.New(exitcode.Failure, ie, next)
}

// RestoreInterrupted words a restore's error when SIGINT or SIGTERM
// stopped it: the parts restored before the stop were committed, the
// others' targets were left as they were (a part is staged and checked
// before it replaces its target, and a commit that is stopped puts back
// what it moved). A part that failed on its own (damaged data: exit 3) or
// a usage error keeps its error.
func RestoreInterrupted(ctx context.Context, res *RestoreResult, err error) error {
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

// VerifyInterrupted words a verify's error when SIGINT or SIGTERM stopped
// it: verify changes nothing on the destinations; the snapshots checked
// before the stop are named by count. A snapshot found damaged or a
// rollback found before the stop keeps verify's own error (exit 3): that
// finding stands.
func VerifyInterrupted(ctx context.Context, res []VerifyResult, err error) error {
	if !interrupt.Stopped(ctx, err, exitcode.Failure, exitcode.CheckFailed) {
		return err
	}
	ok := 0
	for _, r := range res {
		if r.damaged || r.Rollback != "" || r.untrustedSigner {
			return err
		}
		if r.OK {
			ok++
		}
	}
	left := "nothing was changed; no snapshot was checked to its end"
	if ok > 0 {
		left = fmt.Sprintf("nothing was changed; %d snapshot check(s) passed before the stop, the others were not finished", ok)
	}
	return interrupt.Job(err, left, "run fireops verify again")
}

// RotateInterrupted words a rotate's error when SIGINT or SIGTERM stopped
// it: what was removed before the stop is gone, the rest is left for the
// next rotate, which also finishes a snapshot whose removal was cut short
// (snapshot.HalfRemoved).
func RotateInterrupted(ctx context.Context, res *RotateResult, err error) error {
	if !interrupt.Stopped(ctx, err, exitcode.Failure) {
		return err
	}
	snaps, objs := 0, 0
	if res != nil && !res.DryRun {
		for _, d := range res.Destinations {
			snaps += d.Removed + d.IncompleteRemoved
			objs += d.Objects.Removed
		}
	}
	left := "nothing was removed"
	if snaps > 0 || objs > 0 {
		left = fmt.Sprintf("%d snapshot folder(s) and %d unreferenced object(s) were removed before the stop", snaps, objs)
	}
	return interrupt.Job(err, left+"; the next rotate does the rest (it also finishes a snapshot whose removal was cut short)",
		"run fireops rotate again")
}
