package main

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/firetech/fireops/pkg/backup"
	"github.com/firetech/fireops/pkg/buildinfo"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/deploy"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/gpuusage"
	"github.com/firetech/fireops/pkg/lock"
	"github.com/firetech/fireops/pkg/metrics"
	"github.com/firetech/fireops/pkg/runner"
	"github.com/firetech/fireops/pkg/schedule"
)

func (a *app) scheduleCommand() *cobra.Command {
	var stopTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Run the configured jobs on their cron schedules (a daemon)",
		Long: `schedule is the long-running alternative to systemd timers or cron
(docs/scheduling.md: pick one of them). It runs the jobs of the config's
schedule: section (snapshot, rotate, verify, gpu_check) with the same code
as the one-shot commands, each under its lock: one run of a kind at a time,
also against a run started by hand or by cron. schedule.jitter delays each
run by a random time. A run missed because the previous one was still
going, or because the daemon was down, is logged.

It serves /metrics on metrics.listen: its own counters and every job's
results (the same metrics as the textfiles in metrics.textfile_dir), and
the GPU usage per user server. When metrics.textfile_dir is set and the
stack's Prometheus does not scrape metrics.listen (a loopback address, the
default), it also writes the GPU usage to fireops_gpu_usage.prom there
every 15 s, and removes that file when it stops (docs/gpu.md); it decides
so at start: restart it after changing either key.

SIGHUP reloads the config (a bad one is logged and the old one stays).
SIGTERM or SIGINT stops it: no new run starts, a running snapshot is
cancelled cleanly (no manifest is written; its uploaded pieces stay for
the next snapshot to reference), and it exits within --stop-timeout.

Logs go to stderr; use --log-format json under systemd (journald).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			// First thing: SIGHUP's default action ends the process, and
			// systemctl reload may come while the daemon starts.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			l, err := lock.Acquire(ctx, lock.Dir(cfg.StateDir), "schedule", lock.Options{
				Wait: a.lockWait, Command: "fireops schedule",
				BusyHint: "another fireops schedule daemon runs: stop it (systemctl stop fireops-schedule) or use the timers, not both",
				Waiting: func(h lock.Holder) {
					a.log.Info("waiting for the schedule lock", "holder", h.String(), "lock_wait", a.lockWait.String())
				},
			})
			if err != nil {
				return err
			}
			defer l.Release()
			results := schedule.NewResults()
			a.publish = func(m metrics.JobMetrics) {
				for _, f := range m.Textfiles() {
					results.Set(f.Name, f.Families)
				}
			}
			// The jobs run on pkg/runner directly: they print nothing, the
			// daemon logs.
			jobs := a.runner()
			// GPU memory and utilisation per user server, measured at
			// each scrape (docs/gpu.md); nothing on a host without GPUs.
			gpuUsage := gpuusage.NewCollector(gpuusage.CollectorOptions{Log: a.log, NVML: gpuUsageNVML})
			defer gpuUsage.Close()
			// ... and written to metrics.textfile_dir for node-exporter
			// when the stack's Prometheus does not scrape /metrics.
			stopGPUTextfile := a.gpuUsageTextfile(ctx, cfg.Metrics, gpuUsage)
			defer stopGPUTextfile()
			err = schedule.Run(ctx, schedule.Options{
				Load: func() (*schedule.Config, error) { return a.scheduleConfig(jobs) },
				Log:  a.log, StopTimeout: stopTimeout, Results: results,
				Collectors: []prometheus.Collector{gpuUsage},
				Version:    buildinfo.Get().Version, Hangup: hup,
			})
			if st := (*schedule.StopTimeoutError)(nil); errors.As(err, &st) {
				// Exit 1, not 130 (see run): the stop was asked for, the
				// job's clean-up did not fit in the time given.
				return exitcode.New(exitcode.Failure, err,
					"raise --stop-timeout (and TimeoutStopSec= in fireops-schedule.service above it) so that the job can clean up")
			}
			return err
		},
	}
	cmd.Flags().DurationVar(&stopTimeout, "stop-timeout", time.Minute, "on SIGTERM, wait this long for running jobs to clean up")
	return cmd
}

// The per-user GPU usage of the daemon; tests set them (a go-nvml mock, a
// short interval).
var (
	// gpuUsageNVML is the NVML library the daemon measures with; nil
	// means the real one.
	gpuUsageNVML nvml.Interface
	// gpuUsageInterval is how often the daemon rewrites the textfile.
	gpuUsageInterval = gpuusage.TextfileInterval
)

// gpuUsageTextfileDir returns the folder the daemon writes the per-user
// GPU usage textfile to, "" for none, and why. The series reach the
// stack's Prometheus once: through node-exporter's textfile collector
// when fireops deploy renders no scrape job for metrics.listen (the
// default, loopback), else on /metrics only; both would count every
// container twice in the dashboards' sums.
func gpuUsageTextfileDir(m config.Metrics) (dir, why string) {
	switch target := deploy.FireopsScrapeTarget(m.Listen); {
	case m.TextfileDir == "":
		return "", "metrics.textfile_dir is not set"
	case target != "":
		return "", "the stack's Prometheus scrapes /metrics at " + target
	}
	return m.TextfileDir, ""
}

// gpuUsageTextfile starts writing the per-user GPU usage to
// metrics.textfile_dir (gpuUsageTextfileDir) every gpuUsageInterval;
// stop ends it and removes the file, so that node-exporter serves no
// stale values once the daemon stops. Without a textfile, a file an
// earlier daemon left is removed.
func (a *app) gpuUsageTextfile(ctx context.Context, m config.Metrics, c *gpuusage.Collector) (stop func()) {
	dir, why := gpuUsageTextfileDir(m)
	if dir == "" {
		a.log.Info("per-user GPU usage: on /metrics only, no textfile", "reason", why)
		if m.TextfileDir != "" {
			if err := os.Remove(filepath.Join(m.TextfileDir, gpuusage.TextfileName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				a.log.Warn("per-user GPU usage: cannot remove an earlier daemon's textfile", "err", err)
			}
		}
		return func() {}
	}
	tf, err := gpuusage.NewTextfile(c, dir, "", a.log)
	if err != nil {
		a.log.Warn("per-user GPU usage: no textfile", "err", err)
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tf.Run(ctx, gpuUsageInterval)
	}()
	return func() {
		cancel()
		<-done
	}
}

// scheduleConfig loads the config and turns its schedule: section into the
// daemon's jobs, each calling the same pkg/runner job as its command.
func (a *app) scheduleConfig(jobs *runner.Runner) (*schedule.Config, error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, err
	}
	version := buildinfo.Get().Version
	out := &schedule.Config{
		Jitter:    time.Duration(cfg.Schedule.Jitter),
		Listen:    cfg.Metrics.Listen,
		StateFile: filepath.Join(cfg.StateDir, "schedule.json"),
	}
	add := func(name, spec string, run func(ctx context.Context) error) {
		if spec != "" {
			out.Jobs = append(out.Jobs, schedule.Job{Name: name, Spec: spec, Run: run})
		}
	}
	add("snapshot", cfg.Schedule.Snapshot, func(ctx context.Context) error {
		_, err := jobs.Snapshot(ctx, cfg, backup.SnapshotOptions{Version: version, Log: a.log})
		return err
	})
	add("rotate", cfg.Schedule.Rotate, func(ctx context.Context) error {
		_, err := jobs.Rotate(ctx, cfg, backup.RotateOptions{Log: a.log})
		return err
	})
	add("verify", cfg.Schedule.Verify, func(ctx context.Context) error {
		_, err := jobs.Verify(ctx, cfg, backup.VerifyOptions{Level: cfg.Schedule.VerifyLevel, Log: a.log})
		return err
	})
	add("gpu_check", cfg.Schedule.GPUCheck, func(ctx context.Context) error {
		// Like `fireops gpu check --config`, it reads the config at
		// every run.
		cfg, err := a.gpuConfig(true)
		if err != nil {
			return err
		}
		_, err = jobs.GPUCheck(ctx, cfg, runner.GPUCheckOptions{})
		return err
	})
	return out, nil
}
