// Package interrupt words the end of a job that SIGINT or SIGTERM stopped
// (the command's context cancelled): which errors are only that stop and
// not a finding of their own, the plain-words error that says what the
// job had done and left, and its exit code (130). Each job says what it
// left in its own package (backup.SnapshotInterrupted, restore.Interrupted,
// ...).
package interrupt

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/snapshot"
)

// Error is a job stopped by SIGINT or SIGTERM, in plain words:
// "interrupted: " and what the job had done and left. Err, the stopped
// job's own error (a context.Canceled somewhere in it), stays in the chain
// for errors.Is and errors.As; its text is not shown, being about the
// cancellation rather than what it means for the user's data.
type Error struct {
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
func (e *Error) Error() string {
	if e.During != "" {
		return "interrupted " + e.During + ": " + e.Left
	}
	return "interrupted: " + e.Left
}

// Unwrap returns the stopped job's own error.
func (e *Error) Unwrap() error { return e.Err }

// Wrap returns err, the error of a command stopped by SIGINT or SIGTERM,
// with the interrupted exit code (130): the Error in its chain when the
// job said what it left (backup.SnapshotInterrupted, ...), else err's own
// text without the Go cancellation jargon.
func Wrap(err error) error {
	if err == nil {
		return nil
	}
	var ie *Error
	if !errors.As(err, &ie) {
		what := strings.TrimSpace(err.Error())
		for _, jargon := range []string{context.Canceled.Error(), context.DeadlineExceeded.Error(), "signal: interrupt", "signal: terminated"} {
			what = strings.TrimSuffix(strings.TrimSuffix(what, ": "+jargon), jargon)
		}
		if what == "" {
			what = "stopped before it finished"
		}
		ie = &Error{Left: what, Next: "run the command again", Err: err}
	}
	return exitcode.New(exitcode.Interrupted, ie, ie.Next)
}

// Stopped tells whether err is the end of a job that ctx's cancellation
// stopped and whose exit code says no more than that it failed (code): a
// lock held by another run, a usage error or a check that found damage
// before the stop keep their own error.
func Stopped(ctx context.Context, err error, codes ...int) bool {
	return err != nil && ctx.Err() != nil && slices.Contains(codes, exitcode.Code(err))
}

// Reason is the text of a part's or a snapshot's row (its
// STATUS or RESULT) when SIGINT or SIGTERM stopped its work (Is):
// "not restored: interrupted", "not finished: interrupted".
const Reason = "interrupted"

// Is tells whether err, the error of a part's restore or of a
// check, is only the end of work that ctx's cancellation (SIGINT or
// SIGTERM: signal.NotifyContext) cut short, not a finding of its own: ctx
// is done and err is a cancellation (context.Canceled, which the signal's
// cause matches too, context.DeadlineExceeded, or ctx's cause itself). An
// integrity error found before the stop is a finding and keeps its text.
func Is(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() == nil || errors.Is(err, snapshot.ErrIntegrity) {
		return false
	}
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Cause(ctx))
}

// Job is an Error as a job's failure (exit code 1, which Wrap turns into
// 130).
func Job(err error, left, next string) error {
	return exitcode.New(exitcode.Failure, &Error{Left: left, Next: next, Err: err}, next)
}
