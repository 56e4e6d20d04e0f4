package snapshot

import (
	"errors"
	"fmt"
)

// destNamer is an error that names the destination it is about
// (pkg/remote's errors: `destination "NAME": put PATH: ...`).
type destNamer interface {
	Destination() string
}

// destError is the error err of the destination called name while doing
// what ("write PATH"; "" for nothing more to say): "destination NAME:
// WHAT: err", or err as it is when it names that destination already, so
// that a message names the destination once.
func destError(name string, err error, what string) error {
	var n destNamer
	if errors.As(err, &n) && n.Destination() == name {
		return err
	}
	if what == "" {
		return fmt.Errorf("destination %s: %w", name, err)
	}
	return fmt.Errorf("destination %s: %s: %w", name, what, err)
}
