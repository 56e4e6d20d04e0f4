// Package runner runs fireops's jobs (snapshot, verify, rotate, restore,
// gpu check) the one way both the one-shot commands and the schedule
// daemon run them: take the job's lock (waiting up to LockWait), run it,
// record its metrics in the textfiles and hand them to Publish (the
// daemon's /metrics). It prints nothing: the commands print the results
// it returns, the daemon logs.
//
// A run that never got its lock (busy, or its wait interrupted, or the
// lock folder unwritable) did not run: it records nothing, so no alert
// fires for a run that never started. Nor does a run stopped by a usage
// error (exit code 2: a malformed or unknown snapshot id, an --only or
// --dest that names nothing configured, a missing or wrong identity): it
// checked and wrote nothing, and its failure is the command line's, not
// the backups'. A timer whose every run is a usage error shows as
// FireopsJobNeverRan once its job's time is up.
package runner

import (
	"context"
	"log/slog"
	"time"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/lock"
	"github.com/firetech/fireops/pkg/metrics"
)

// Runner runs jobs under their locks and records their metrics. The zero
// value waits for no lock, logs nothing and publishes nothing.
type Runner struct {
	// LockWait is how long a job waits for a run of its kind that holds
	// the lock (--lock-wait) before it gives up with exit code 4.
	LockWait time.Duration
	// Log receives what goes wrong on the side (a metrics textfile not
	// written); nil discards it.
	Log *slog.Logger
	// Publish, when set (the schedule daemon), receives every job's
	// metrics besides the textfiles.
	Publish func(metrics.JobMetrics)
}

func (r *Runner) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

// locked runs a job holding the lock of its kind. begin is when it
// started: zero when it never got its lock, so it did not run.
func locked[T any](ctx context.Context, r *Runner, cfg *config.Config, job string, run func() (T, error)) (res T, begin time.Time, err error) {
	l, err := lock.Acquire(ctx, lock.Dir(cfg.StateDir), job, lock.Options{Wait: r.LockWait, Command: "fireops " + job})
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

// record writes a job's metrics to the textfiles and hands them to
// Publish; a failure to write is logged with what to fix, not fatal.
func (r *Runner) record(cfg *config.Config, m metrics.JobMetrics) {
	if err := m.Write(cfg.Metrics.TextfileDir); err != nil {
		r.log().Warn("metrics textfile not written", "job", m.Job, "err", err,
			"hint", "check that metrics.textfile_dir "+cfg.Metrics.TextfileDir+" exists and that this user may write to it (node-exporter's folder; fireops deploy mounts it)")
	}
	if r.Publish != nil {
		r.Publish(m)
	}
}

func destNames(cfg *config.Config) []string {
	var out []string
	for _, d := range cfg.Destinations {
		out = append(out, d.Name)
	}
	return out
}
