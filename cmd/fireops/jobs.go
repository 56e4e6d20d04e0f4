package main

import (
	"context"

	"github.com/firetech/fireops/pkg/backup"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/restore"
	"github.com/firetech/fireops/pkg/runner"
	"github.com/firetech/fireops/pkg/snapshot"
)

// The jobs below are what the one-shot commands run: pkg/runner's, which
// take the job's lock (waiting up to --lock-wait), run it and record its
// metrics in the textfiles. On a terminal they draw their progress
// (progress.go) until they return. The commands print what they return; `fireops
// schedule` calls pkg/runner itself (scheduleConfig).

// runner returns the job runner of the command line's flags.
func (a *app) runner() *runner.Runner {
	return &runner.Runner{LockWait: a.lockWait, Log: a.log, Publish: a.publish}
}

// snapshotJob takes a snapshot under the snapshot lock.
func (a *app) snapshotJob(ctx context.Context, cfg *config.Config, o backup.SnapshotOptions) (*snapshot.Result, error) {
	var stop func()
	o.Progress, stop = a.startProgress(ctx)
	defer stop()
	return a.runner().Snapshot(ctx, cfg, o)
}

// verifyJob verifies under the verify lock.
func (a *app) verifyJob(ctx context.Context, cfg *config.Config, o backup.VerifyOptions) ([]backup.VerifyResult, error) {
	var stop func()
	o.Progress, stop = a.startProgress(ctx)
	defer stop()
	return a.runner().Verify(ctx, cfg, o)
}

// rotateJob applies the retention policy under the rotate lock; a dry run
// takes no lock and records nothing.
func (a *app) rotateJob(ctx context.Context, cfg *config.Config, o backup.RotateOptions) (*backup.RotateResult, error) {
	var stop func()
	o.Progress, stop = a.startProgress(ctx)
	defer stop()
	return a.runner().Rotate(ctx, cfg, o)
}

// restoreJob restores under the restore lock; a dry run records nothing.
func (a *app) restoreJob(ctx context.Context, cfg *config.Config, o restore.Options) (*restore.Result, error) {
	var stop func()
	o.Progress, stop = a.startProgress(ctx)
	defer stop()
	return a.runner().Restore(ctx, cfg, o)
}
