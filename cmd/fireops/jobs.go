package main

import (
	"context"
	"time"

	"github.com/firetech/fireops/pkg/backup"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/lock"
	"github.com/firetech/fireops/pkg/snapshot"
)

// The jobs below are what both the one-shot commands and `fireops
// schedule` run: take the job's lock (waiting up to --lock-wait), run it,
// record its metrics in the textfiles (and on /metrics in the daemon).
// A run that never got its lock (busy, or its wait interrupted, or the
// lock folder unwritable) did not run: it records nothing, so no alert
// fires for a run that never started. Nor does a run stopped by a usage
// error (exit code 2: a malformed or unknown snapshot id, an --only or
// --dest that names nothing configured, a missing or wrong identity): it
// checked and wrote nothing, and its failure is the command line's, not
// the backups'. A timer whose every run is a usage error shows as
// FireopsJobNeverRan once its job's time is up.

// locked runs a job holding the lock of its kind. begin is when it
// started: zero when it never got its lock, so it did not run.
func locked[T any](ctx context.Context, a *app, cfg *config.Config, job string, run func() (T, error)) (res T, begin time.Time, err error) {
	l, err := lock.Acquire(ctx, lock.Dir(cfg.StateDir), job, lock.Options{Wait: a.lockWait, Command: "fireops " + job})
	if err != nil {
		return res, begin, err
	}
	defer l.Release()
	begin = time.Now()
	res, err = run()
	return res, begin, err
}

// ran reports whether a job that got its lock at begin (zero: never) and
// ended with err did run, so that it records its metrics: not when it
// never got its lock, nor when a usage error stopped it.
func ran(begin time.Time, err error) bool {
	return !begin.IsZero() && exitcode.Code(err) != exitcode.Usage
}

// record writes a job's metrics to the textfiles and hands them to the
// daemon; a failure to write is logged, not fatal.
func (a *app) record(cfg *config.Config, m backup.JobMetrics) {
	if err := m.Write(cfg.Metrics.TextfileDir); err != nil {
		a.log.Warn("metrics textfile not written", "job", m.Job, "err", err)
	}
	if a.publish != nil {
		a.publish(m)
	}
}

func destNames(cfg *config.Config) []string {
	var out []string
	for _, d := range cfg.Destinations {
		out = append(out, d.Name)
	}
	return out
}

// snapshotJob takes a snapshot under the snapshot lock.
func (a *app) snapshotJob(ctx context.Context, cfg *config.Config, o backup.SnapshotOptions) (*snapshot.Result, error) {
	res, begin, err := locked(ctx, a, cfg, "snapshot", func() (*snapshot.Result, error) { return backup.Snapshot(ctx, cfg, o) })
	if !ran(begin, err) {
		return res, err
	}
	dur := time.Since(begin)
	if res != nil && !res.Finished.IsZero() {
		dur = res.Finished.Sub(res.Started)
	}
	// An --only run publishes its own families: the alerts read the full
	// runs', and an --only run never ends them.
	record := backup.SnapshotMetrics
	if len(o.Only) > 0 {
		record = backup.SnapshotOnlyMetrics
	}
	a.record(cfg, record(time.Now(), dur, res, err, destNames(cfg)))
	return res, err
}

// verifyJob verifies under the verify lock.
func (a *app) verifyJob(ctx context.Context, cfg *config.Config, o backup.VerifyOptions) ([]backup.VerifyResult, error) {
	res, begin, err := locked(ctx, a, cfg, "verify", func() ([]backup.VerifyResult, error) { return backup.Verify(ctx, cfg, o) })
	if !ran(begin, err) {
		return res, err
	}
	level := o.Level
	if level == "" {
		level = backup.LevelQuick
	}
	if level == backup.LevelQuick || level == backup.LevelHashes || level == backup.LevelFull || level == backup.LevelRestoreTest {
		a.record(cfg, backup.VerifyMetrics(level, time.Now(), time.Since(begin), res, err))
	}
	return res, err
}

// rotateJob applies the retention policy under the rotate lock; a dry run
// takes no lock and records nothing.
func (a *app) rotateJob(ctx context.Context, cfg *config.Config, o backup.RotateOptions) (*backup.RotateResult, error) {
	if o.DryRun {
		return backup.Rotate(ctx, cfg, o)
	}
	o.SweepWait = a.lockWait
	res, begin, err := locked(ctx, a, cfg, "rotate", func() (*backup.RotateResult, error) { return backup.Rotate(ctx, cfg, o) })
	if !ran(begin, err) {
		return res, err
	}
	a.record(cfg, backup.RotateMetrics(time.Now(), time.Since(begin), res, err, destNames(cfg)))
	return res, err
}

// restoreJob restores under the restore lock; a dry run records nothing.
func (a *app) restoreJob(ctx context.Context, cfg *config.Config, o backup.RestoreOptions) (*backup.RestoreResult, error) {
	res, begin, err := locked(ctx, a, cfg, "restore", func() (*backup.RestoreResult, error) { return backup.Restore(ctx, cfg, o) })
	if ran(begin, err) && !o.DryRun {
		a.record(cfg, backup.RestoreMetrics(time.Now(), time.Since(begin), res, err))
	}
	return res, err
}
