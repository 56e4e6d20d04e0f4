package backup

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/firetech/fireops/pkg/exitcode"
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

// InterruptedError is a job stopped by SIGINT or SIGTERM, in plain words:
// "interrupted: " and what the job had done and left. Err, the stopped
// job's own error (a context.Canceled somewhere in it), stays in the chain
// for errors.Is and errors.As; its text is not shown, being about the
// cancellation rather than what it means for the user's data.
type InterruptedError struct {
	// During, when set, says what it was doing: "during part
	// files:stack".
	During string
	// Left says what was done and what is left, e.g. "nothing was
	// committed; ...".
	Left string
	// Next is what to do now: the hint.
	Next string
	// Err is the stopped job's own error.
	Err error
}

// Error returns "interrupted", During, and Left.
func (e *InterruptedError) Error() string {
	if e.During != "" {
		return "interrupted " + e.During + ": " + e.Left
	}
	return "interrupted: " + e.Left
}

// Unwrap returns the stopped job's own error.
func (e *InterruptedError) Unwrap() error { return e.Err }

// Interrupted returns err, the error of a command stopped by SIGINT or
// SIGTERM, with the interrupted exit code (130): the InterruptedError in
// its chain when the job said what it left (SnapshotInterrupted, ...),
// else err's own text without the Go cancellation jargon.
func Interrupted(err error) error {
	if err == nil {
		return nil
	}
	var ie *InterruptedError
	if !errors.As(err, &ie) {
		what := strings.TrimSpace(err.Error())
		for _, jargon := range []string{context.Canceled.Error(), context.DeadlineExceeded.Error(), "signal: interrupt", "signal: terminated"} {
			what = strings.TrimSuffix(strings.TrimSuffix(what, ": "+jargon), jargon)
		}
		if what == "" {
			what = "stopped before it finished"
		}
		ie = &InterruptedError{Left: what, Next: "run the command again", Err: err}
	}
	return exitcode.New(exitcode.Interrupted, ie, ie.Next)
}

// stopped tells whether err is the end of a job that ctx's cancellation
// stopped and whose exit code says no more than that it failed (code): a
// lock held by another run, a usage error or a check that found damage
// before the stop keep their own error.
func stopped(ctx context.Context, err error, codes ...int) bool {
	return err != nil && ctx.Err() != nil && slices.Contains(codes, exitcode.Code(err))
}

// interruptedReason is the text of a part's or a snapshot's row (its
// STATUS or RESULT) when SIGINT or SIGTERM stopped its work (interrupted):
// "not restored: interrupted", "not finished: interrupted".
const interruptedReason = "interrupted"

// interrupted tells whether err, the error of a part's restore or of a
// check, is only the end of work that ctx's cancellation (SIGINT or
// SIGTERM: signal.NotifyContext) cut short, not a finding of its own: ctx
// is done and err is a cancellation (context.Canceled, which the signal's
// cause matches too, context.DeadlineExceeded, or ctx's cause itself). An
// integrity error found before the stop is a finding and keeps its text.
func interrupted(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() == nil || errors.Is(err, snapshot.ErrIntegrity) {
		return false
	}
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Cause(ctx))
}

// interruptedJob is an InterruptedError as a job's failure (exit code 1,
// which Interrupted turns into 130).
func interruptedJob(err error, left, next string) error {
	return exitcode.New(exitcode.Failure, &InterruptedError{Left: left, Next: next, Err: err}, next)
}

// SnapshotInterrupted words a snapshot run's error when SIGINT or SIGTERM
// stopped it before any destination had it (res is nil): no manifest was
// written, the run removed its snapshot folder (what it could not remove
// is an incomplete snapshot that rotate removes), and the pieces it
// uploaded stay, recorded in the state_dir for the next run to reference
// (docs/format.md); rotate sweeps those no snapshot references after
// retention.incomplete_grace. Any other error is returned as it is.
func SnapshotInterrupted(ctx context.Context, res *snapshot.Result, err error) error {
	if res != nil || !stopped(ctx, err, exitcode.Failure) {
		return err
	}
	const next = "run fireops snapshot again: it uploads only what the destinations do not hold yet"
	ie := &InterruptedError{
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
	if !stopped(ctx, err, exitcode.Failure) {
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
		return interruptedJob(err, "nothing was restored; the targets were left as they were (the live data was not replaced)",
			"run the same restore again")
	}
	msg := "restored " + strings.Join(done, ", ") + " before the stop"
	if len(left) == 0 {
		return interruptedJob(err, msg+"; every part was restored", "check the restored data")
	}
	return interruptedJob(err, msg+"; "+strings.Join(left, ", ")+" not restored (their targets were left as they were)",
		"restore the rest with --part "+strings.Join(left, " --part "))
}

// VerifyInterrupted words a verify's error when SIGINT or SIGTERM stopped
// it: verify changes nothing on the destinations; the snapshots checked
// before the stop are named by count. A snapshot found damaged or a
// rollback found before the stop keeps verify's own error (exit 3): that
// finding stands.
func VerifyInterrupted(ctx context.Context, res []VerifyResult, err error) error {
	if !stopped(ctx, err, exitcode.Failure, exitcode.CheckFailed) {
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
	return interruptedJob(err, left, "run fireops verify again")
}

// RotateInterrupted words a rotate's error when SIGINT or SIGTERM stopped
// it: what was removed before the stop is gone, the rest is left for the
// next rotate, which also finishes a snapshot whose removal was cut short
// (snapshot.HalfRemoved).
func RotateInterrupted(ctx context.Context, res *RotateResult, err error) error {
	if !stopped(ctx, err, exitcode.Failure) {
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
	return interruptedJob(err, left+"; the next rotate does the rest (it also finishes a snapshot whose removal was cut short)",
		"run fireops rotate again")
}
