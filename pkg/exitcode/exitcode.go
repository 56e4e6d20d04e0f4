// Package exitcode defines the exit codes every fireops command shares and
// an error type that carries an exit code and a hint for the user.
//
// The table is a contract for cron, systemd and runbooks: docs/exit-codes.md
// documents it, and a value never changes meaning once released.
package exitcode

import (
	"errors"
	"fmt"
)

// The exit codes of every fireops command.
const (
	// OK means the command did what it was asked.
	OK = 0
	// Failure means the command failed for a reason outside the user's input
	// (a destination is down, a dump broke off, a disk is full).
	Failure = 1
	// Usage means bad flags, arguments or configuration: fix the command line
	// or the config file and run again.
	Usage = 2
	// CheckFailed means a check ran and found a problem: a verify found a
	// tampered or missing object, a GPU check failed.
	CheckFailed = 3
	// LockBusy means another run of the same job holds the lock.
	LockBusy = 4
	// Interrupted means the command was stopped by SIGINT or SIGTERM and
	// cleaned up what it had started.
	Interrupted = 130
)

// Error is an error with an exit code and an optional hint that tells the
// user how to fix the cause.
type Error struct {
	// Code is the process exit code for this error.
	Code int
	// Hint is one line telling the user what to do, or "".
	Hint string
	// Err is the cause.
	Err error
}

// Error returns the cause's message.
func (e *Error) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// New wraps err with an exit code and a hint. A nil err gives nil.
func New(code int, err error, hint string) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Hint: hint, Err: err}
}

// Usagef returns a usage/config error (exit code 2) with a hint.
func Usagef(hint, format string, args ...any) error {
	return &Error{Code: Usage, Hint: hint, Err: fmt.Errorf(format, args...)}
}

// Code returns the exit code for err: OK for nil, the code of the outermost
// *Error in its chain, or Failure.
func Code(err error) int {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Failure
}

// Hint returns the first non-empty hint in err's chain, or "".
func Hint(err error) string {
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return ""
		}
		if e.Hint != "" {
			return e.Hint
		}
		err = e.Err
	}
	return ""
}
