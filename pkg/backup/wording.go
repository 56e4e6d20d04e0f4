package backup

import (
	"context"
	"errors"
	"fmt"

	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/interrupt"
	"github.com/firetech/fireops/pkg/snapshot"
)

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
