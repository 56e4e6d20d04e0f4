package snapshot

import "strings"

// PartError is the error of one part (of a snapshot run, a verify or a
// restore): "part ID: cause", naming the part once even when the cause
// names it again. A source names itself in its errors ("files:stack: read
// ...") so that they stand alone; under "part files:stack: " that is the
// id twice. errors.Is and errors.As see Err.
type PartError struct {
	// ID is the part's id (files:stack, sqlite:app, mongo:mongodb, ...).
	ID string
	// Err is the cause.
	Err error
}

// Error returns "part ID: cause", the id named once: a cause that names
// the part itself further on ("integrity check failed: part files:stack:
// piece 0 ...") is not prefixed again.
func (e *PartError) Error() string {
	msg := WithoutPartID(e.ID, e.Err.Error())
	if strings.Contains(msg, "part "+e.ID+": ") {
		return msg
	}
	return "part " + e.ID + ": " + msg
}

// Unwrap returns the cause.
func (e *PartError) Unwrap() error { return e.Err }

// WithoutPartID returns msg, an error of part id, without the places where
// it names the part again: a leading "part ID: " or "ID: " (repeated), and
// the source's own "ID: " after a step of the message ("fingerprint:
// files:stack: ..."). A part's row or a "part ID: " prefix names it
// already. A "part ID: " further on stays ("integrity check failed: part
// files:stack: piece 0 ...": a sentence of its own).
func WithoutPartID(id, msg string) string {
	if id == "" {
		return msg
	}
	for {
		rest, ok := strings.CutPrefix(msg, "part "+id+": ")
		if !ok {
			rest, ok = strings.CutPrefix(msg, id+": ")
		}
		if !ok {
			break
		}
		msg = rest
	}
	return strings.ReplaceAll(msg, ": "+id+": ", ": ")
}
