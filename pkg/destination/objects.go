package destination

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/lock"
)

// ObjectsLock is the lock that keeps rotate's removals and the runs that
// read or write snapshots apart. A snapshot holds it shared for its whole
// run (it may reference objects of earlier snapshots that no manifest on
// the destination references any more), and so do verify and restore (the
// snapshots they read must not be removed under them); rotate takes it
// exclusive to remove snapshots (by policy or incomplete) and sweep
// objects, and removes nothing while it cannot.
const ObjectsLock = "objects"

// HoldObjects takes the objects lock shared for a run of command (a
// snapshot, verify or restore), waiting (up to an hour, or until ctx ends)
// while rotate removes snapshots and sweeps.
func HoldObjects(ctx context.Context, cfg *config.Config, command string, log *slog.Logger) (*lock.Lock, error) {
	dir := lock.Dir(cfg.StateDir)
	l, err := lock.Acquire(ctx, dir, ObjectsLock, lock.Options{Shared: true, Command: command})
	if !errors.As(err, new(*lock.BusyError)) {
		return l, err
	}
	if log != nil {
		log.Info("waiting for rotate to finish removing snapshots and sweeping objects", "err", err)
	}
	return lock.Acquire(ctx, dir, ObjectsLock, lock.Options{Shared: true, Wait: time.Hour, Command: command})
}
