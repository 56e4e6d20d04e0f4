package runner

import (
	"context"
	"errors"
	"time"

	"github.com/firetech/fireops/pkg/backup"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/interrupt"
	"github.com/firetech/fireops/pkg/metrics"
	"github.com/firetech/fireops/pkg/restore"
	"github.com/firetech/fireops/pkg/snapshot"
)

// Snapshot takes a snapshot under the snapshot lock. Each job words its
// error in plain words when SIGINT or SIGTERM stopped it
// (backup.SnapshotInterrupted, ...).
func (r *Runner) Snapshot(ctx context.Context, cfg *config.Config, o backup.SnapshotOptions) (*snapshot.Result, error) {
	res, begin, err := locked(ctx, r, cfg, "snapshot", func() (*snapshot.Result, error) { return backup.Snapshot(ctx, cfg, o) })
	if !ran(begin, err) {
		return res, err
	}
	dur := time.Since(begin)
	if res != nil && !res.Finished.IsZero() {
		dur = res.Finished.Sub(res.Started)
	}
	// An --only run publishes its own families: the alerts read the full
	// runs', and an --only run never ends them.
	record := metrics.SnapshotMetrics
	if len(o.Only) > 0 {
		record = metrics.SnapshotOnlyMetrics
	}
	r.record(cfg, record(time.Now(), dur, res, err, destNames(cfg)))
	return res, backup.SnapshotInterrupted(ctx, res, err)
}

// Verify verifies under the verify lock.
func (r *Runner) Verify(ctx context.Context, cfg *config.Config, o backup.VerifyOptions) ([]backup.VerifyResult, error) {
	res, begin, err := locked(ctx, r, cfg, "verify", func() ([]backup.VerifyResult, error) { return backup.Verify(ctx, cfg, o) })
	if !ran(begin, err) {
		return res, err
	}
	level := o.Level
	if level == "" {
		level = backup.LevelQuick
	}
	verr := backup.VerifyInterrupted(ctx, res, err)
	// A verify stopped by SIGINT or SIGTERM before it found anything
	// wrong gave no verdict: it records nothing, so that FireopsVerifyFailed
	// ("a snapshot may be damaged") does not fire after a Ctrl-C. One that
	// had found damage first keeps its exit 3 and records it.
	if !verdict(verr) {
		return res, verr
	}
	if level == backup.LevelQuick || level == backup.LevelHashes || level == backup.LevelFull || level == backup.LevelRestoreTest {
		r.record(cfg, verifyMetrics(level, time.Now(), time.Since(begin), res, err))
	}
	return res, verr
}

// Rotate applies the retention policy under the rotate lock, its sweep
// waiting LockWait for the snapshot lock; a dry run takes no lock and
// records nothing.
func (r *Runner) Rotate(ctx context.Context, cfg *config.Config, o backup.RotateOptions) (*backup.RotateResult, error) {
	if o.DryRun {
		res, err := backup.Rotate(ctx, cfg, o)
		return res, backup.RotateInterrupted(ctx, res, err)
	}
	o.SweepWait = r.LockWait
	res, begin, err := locked(ctx, r, cfg, "rotate", func() (*backup.RotateResult, error) { return backup.Rotate(ctx, cfg, o) })
	if !ran(begin, err) {
		return res, err
	}
	r.record(cfg, rotateMetrics(time.Now(), time.Since(begin), res, err, destNames(cfg)))
	return res, backup.RotateInterrupted(ctx, res, err)
}

// Restore restores under the restore lock; a dry run records nothing.
func (r *Runner) Restore(ctx context.Context, cfg *config.Config, o restore.Options) (*restore.Result, error) {
	res, begin, err := locked(ctx, r, cfg, "restore", func() (*restore.Result, error) { return restore.Restore(ctx, cfg, o) })
	if ran(begin, err) && !o.DryRun {
		r.record(cfg, restoreMetrics(time.Now(), time.Since(begin), res, err))
	}
	return res, restore.Interrupted(ctx, res, err)
}

// verdict tells whether a verify that ended with err (as worded by
// backup.VerifyInterrupted) judged the snapshots it checked, so that its
// metrics are recorded: not when SIGINT or SIGTERM stopped it before it
// found anything wrong.
func verdict(err error) bool {
	var stopped *interrupt.Error
	return !errors.As(err, &stopped)
}
