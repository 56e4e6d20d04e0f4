package partkind

import "errors"

// ErrRefused is matched (errors.Is) by the errors of a restore's options
// or targets that ask the admin to change the command or the host, found
// only when a part is restored (the plan passed): Refused marks
// them.
var ErrRefused = errors.New("restore refused")

// refusedError is an error marked as ErrRefused; its message, exit code
// and hint are the cause's.
type refusedError struct{ err error }

func (e *refusedError) Error() string        { return e.err.Error() }
func (e *refusedError) Unwrap() error        { return e.err }
func (e *refusedError) Is(target error) bool { return target == ErrRefused }

// Refused marks err (if any) as ErrRefused.
func Refused(err error) error {
	if err == nil {
		return nil
	}
	return &refusedError{err: err}
}
