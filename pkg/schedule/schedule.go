// Package schedule is the fireops daemon: it runs the configured jobs
// (snapshot, rotate, verify, gpu check) on their cron specs with
// robfig/cron/v3, one run of a kind at a time, with optional jitter; it
// logs missed runs (a run whose predecessor is still going, runs that fell
// while the daemon was down, runs it stopped during their jitter delay);
// it reloads its configuration on SIGHUP; it serves /metrics
// (prometheus/client_golang) with its own counters and the job results
// the jobs publish.
//
// The jobs themselves are functions given by the caller (cmd/fireops,
// which calls pkg/runner's jobs, the same code as the one-shot commands):
// this package knows nothing about snapshots. On shutdown (the context
// ends: SIGTERM or SIGINT) it starts no new run, cancels the running ones
// through their context, and waits for them at most StopTimeout; it never
// leaves a job half done on purpose, and never kills one.
package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/robfig/cron/v3"

	"github.com/firetech/fireops/internal/atomicfile"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/metrics"
)

// Job is one scheduled job.
type Job struct {
	// Name is the job's kind: snapshot, rotate, verify, gpu_check. Two
	// runs of the same name never overlap.
	Name string
	// Spec is a cron spec: 5 fields, or @daily, @every 2h and the like.
	Spec string
	// Run does the work; it must return soon after ctx ends.
	Run func(ctx context.Context) error
}

// Config is what the daemon runs; Options.Load returns it at start and on
// every SIGHUP.
type Config struct {
	// Jobs are the jobs with a schedule.
	Jobs []Job
	// Jitter delays each run by a random time in [0, Jitter).
	Jitter time.Duration
	// Listen is the address of /metrics; empty serves none.
	Listen string
	// StateFile keeps the last run time of each job, to log the runs
	// missed while the daemon was down; empty: not kept.
	StateFile string
}

// Options are the daemon's settings and dependencies.
type Options struct {
	// Load reads the configuration; an error at start is fatal, on reload
	// it is logged and the old configuration stays.
	Load func() (*Config, error)
	// Log receives structured logs.
	Log *slog.Logger
	// StopTimeout bounds the wait for running jobs at shutdown (default 60 s).
	StopTimeout time.Duration
	// Results, when set, is served on /metrics: the job results that the
	// jobs publish (the same families as their textfiles).
	Results *Results
	// Collectors are served on /metrics too (the per-user GPU usage).
	Collectors []prometheus.Collector
	// Version is reported by fireops_build_info.
	Version string
	// Hangup delivers reload requests; nil subscribes to SIGHUP.
	Hangup <-chan os.Signal
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Ready, when set, is called once the jobs are scheduled and /metrics
	// listens, with the address it listens on ("" when none).
	Ready func(addr string)
}

// Results of the job runs.
const (
	ResultSuccess     = "success"
	ResultFailure     = "failure"
	ResultBusy        = "lock_busy"
	ResultInterrupted = "interrupted"
)

type daemon struct {
	o   Options
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	cfg     *Config
	cron    *cron.Cron
	ids     map[string]cron.EntryID
	running map[string]bool
	jobs    sync.WaitGroup
	stopped bool
	server  *http.Server
	addr    string
	jobCtx  context.Context
	last    map[string]time.Time // last run start per job (for the state file)
	counted map[string]time.Time // missed runs due up to then are counted, per job (for the state file)

	reg        *prometheus.Registry
	runs       *prometheus.CounterVec
	missed     *prometheus.CounterVec
	runningG   *prometheus.GaugeVec
	lastRun    *prometheus.GaugeVec
	lastOK     *prometheus.GaugeVec
	lastDur    *prometheus.GaugeVec
	lastSucc   *prometheus.GaugeVec
	nextRun    *prometheus.GaugeVec
	reloads    *prometheus.CounterVec
	reloadedAt prometheus.Gauge
}

// StopTimeoutError is what Run returns when running jobs did not end
// within StopTimeout after the context ended.
type StopTimeoutError struct {
	// Jobs are the names of the jobs still running.
	Jobs []string
	// Timeout is the StopTimeout they outlasted.
	Timeout time.Duration
}

// Error names the jobs and the timeout.
func (e *StopTimeoutError) Error() string {
	return fmt.Sprintf("schedule: job(s) %s did not stop within %s", strings.Join(e.Jobs, ", "), e.Timeout)
}

// Run runs the daemon until ctx ends. It returns nil after a clean stop,
// and an error when the first configuration cannot be loaded, /metrics
// cannot listen, or a job did not stop within StopTimeout (a
// *StopTimeoutError).
func Run(ctx context.Context, o Options) error {
	// SIGHUP first: its default action ends the process, and a reload
	// request that comes while starting is answered by the Load below.
	hup := o.Hangup
	if hup == nil {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGHUP)
		defer signal.Stop(ch)
		hup = ch
	}
	drain(hup)
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = time.Minute
	}
	d := &daemon{o: o, log: o.Log, now: o.Now, running: map[string]bool{}, last: map[string]time.Time{},
		counted: map[string]time.Time{}, jobCtx: ctx}
	if d.now == nil {
		d.now = time.Now
	}
	d.metrics()
	cfg, err := o.Load()
	if err != nil {
		return err
	}
	if err := d.apply(cfg); err != nil {
		return err
	}
	d.log.Info("scheduler started", "jobs", jobNames(cfg.Jobs), "metrics", d.addr, "jitter", cfg.Jitter.String())
	if o.Ready != nil {
		o.Ready(d.addr)
	}
	for {
		select {
		case <-ctx.Done():
			return d.shutdown()
		case <-hup:
			d.reload()
		}
	}
}

// drain discards the reload requests already queued.
func drain(ch <-chan os.Signal) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func jobNames(js []Job) []string {
	var out []string
	for _, j := range js {
		out = append(out, j.Name+" ("+j.Spec+")")
	}
	return out
}

func (d *daemon) metrics() {
	d.reg = prometheus.NewRegistry()
	task := []string{"task"}
	d.runs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fireops_schedule_runs_total",
		Help: "Job runs the daemon started, by task and result (success, failure, lock_busy, interrupted)."}, []string{"task", "result"})
	perTask := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, task)
	}
	d.missed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fireops_schedule_missed_runs_total",
		Help: "Scheduled runs that did not happen: the previous run was still going, the daemon was down, or it stopped during the jitter delay."}, task)
	d.runningG = perTask("fireops_schedule_running", "1 while a run of the task is in progress.")
	d.lastRun = perTask("fireops_schedule_last_run_timestamp_seconds", "Time the task's last run by the daemon ended, in seconds since the epoch.")
	d.lastOK = perTask("fireops_schedule_last_run_success", "1 if the task's last run by the daemon succeeded, else 0.")
	d.lastDur = perTask("fireops_schedule_last_run_duration_seconds", "Duration of the task's last run by the daemon.")
	d.lastSucc = perTask("fireops_schedule_last_success_timestamp_seconds", "Time the task's last successful run by the daemon ended, in seconds since the epoch.")
	d.nextRun = perTask("fireops_schedule_next_run_timestamp_seconds", "Time the task runs next (before jitter), in seconds since the epoch.")
	d.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fireops_schedule_config_reloads_total",
		Help: "Configuration reloads on SIGHUP, by result (success, failure)."}, []string{"result"})
	d.reloadedAt = prometheus.NewGauge(prometheus.GaugeOpts{Name: "fireops_schedule_config_last_reload_success_timestamp_seconds",
		Help: "Time the configuration was last loaded successfully, in seconds since the epoch."})
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "fireops_build_info", Help: "Always 1; the version label says which fireops runs.",
		ConstLabels: prometheus.Labels{"version": d.o.Version}})
	build.Set(1)
	d.reg.MustRegister(d.runs, d.missed, d.runningG, d.lastRun, d.lastOK, d.lastDur, d.lastSucc, d.nextRun, d.reloads, d.reloadedAt, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if d.o.Results != nil {
		d.reg.MustRegister(d.o.Results)
	}
	d.reg.MustRegister(d.o.Collectors...)
}

// apply schedules the jobs of cfg in place of the current ones and moves
// /metrics when its address changed. Running jobs go on. A cfg it
// refuses (an invalid cron spec, an address it cannot listen on) changes
// nothing: the specs are parsed before /metrics moves.
func (d *daemon) apply(cfg *Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := cron.New()
	ids := map[string]cron.EntryID{}
	for _, j := range cfg.Jobs {
		id, err := c.AddFunc(j.Spec, func() { d.fire(j) })
		if err != nil {
			return exitcode.Usagef("fix schedule."+j.Name+" in the config", "schedule.%s: invalid cron spec %q: %v", j.Name, j.Spec, err)
		}
		ids[j.Name] = id
	}
	if cfg.Listen != d.cfg.listen() || d.server == nil && cfg.Listen != "" {
		if err := d.serve(cfg.Listen); err != nil {
			return err
		}
	}
	for _, j := range cfg.Jobs {
		d.runs.WithLabelValues(j.Name, ResultSuccess)
		d.missed.WithLabelValues(j.Name)
		d.runningG.WithLabelValues(j.Name)
	}
	if d.cron != nil {
		d.cron.Stop() // running jobs are tracked by d.jobs, not by cron
	}
	d.nextRun.Reset()
	d.cron, d.cfg, d.ids = c, cfg, ids
	d.loadState()
	c.Start()
	d.updateNext()
	d.reloadedAt.SetToCurrentTime()
	return nil
}

func (c *Config) listen() string {
	if c == nil {
		return ""
	}
	return c.Listen
}

// serve starts /metrics on addr and stops the previous server.
func (d *daemon) serve(addr string) error {
	old, oldAddr := d.server, d.addr
	d.server, d.addr = nil, ""
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			d.server, d.addr = old, oldAddr
			hint := "change metrics.listen in the config"
			if errors.Is(err, syscall.EADDRINUSE) {
				hint = "change metrics.listen or stop what listens there (ss -ltnp shows it)"
			}
			return exitcode.New(exitcode.Failure, fmt.Errorf("metrics.listen %s: %w", addr, err), hint)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelError)}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("metrics server stopped", "err", err)
			}
		}()
		d.server, d.addr = srv, ln.Addr().String()
		d.log.Info("serving metrics", "addr", d.addr, "path", "/metrics")
	}
	if old != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		old.Shutdown(ctx)
		cancel()
	}
	return nil
}

func (d *daemon) updateNext() {
	for name, id := range d.ids {
		if e := d.cron.Entry(id); e.Valid() {
			d.nextRun.WithLabelValues(name).Set(float64(e.Next.Unix()))
		}
	}
}

// reload re-reads the configuration; a bad one is logged and ignored.
func (d *daemon) reload() {
	cfg, err := d.o.Load()
	if err == nil {
		err = d.apply(cfg)
	}
	if err != nil {
		d.reloads.WithLabelValues(ResultFailure).Inc()
		d.log.Error("configuration not reloaded; the previous one stays", "err", err)
		return
	}
	d.reloads.WithLabelValues(ResultSuccess).Inc()
	d.log.Info("configuration reloaded", "jobs", jobNames(cfg.Jobs), "metrics", d.addr)
}

// fire is called by cron for one scheduled run.
func (d *daemon) fire(j Job) {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return
	}
	if d.running[j.Name] {
		d.mu.Unlock()
		d.missed.WithLabelValues(j.Name).Inc()
		d.log.Warn("missed run: the previous run is still going", "task", j.Name, "spec", j.Spec)
		return
	}
	d.running[j.Name] = true
	d.jobs.Add(1)
	due := d.now()
	jitter := d.cfg.Jitter
	ctx := d.jobCtx
	d.updateNext()
	d.mu.Unlock()
	defer d.jobs.Done()
	defer func() {
		d.mu.Lock()
		d.running[j.Name] = false
		d.mu.Unlock()
	}()

	if jitter > 0 {
		wait := rand.N(jitter)
		d.log.Debug("jitter", "task", j.Name, "delay", wait.String())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			// The run never starts. It counts as missed now; its due time
			// goes into the state file as counted, so that the next start
			// does not count it a second time.
			d.missed.WithLabelValues(j.Name).Inc()
			d.log.Warn("missed run: the daemon stopped during its jitter delay", "task", j.Name, "spec", j.Spec)
			d.mu.Lock()
			d.counted[j.Name] = due
			d.saveState()
			d.mu.Unlock()
			return
		case <-t.C:
		}
	}
	begin := d.now()
	d.mu.Lock()
	d.last[j.Name] = begin
	d.saveState()
	d.mu.Unlock()
	d.runningG.WithLabelValues(j.Name).Set(1)
	d.log.Info("job started", "task", j.Name)
	err := run(ctx, j)
	end := d.now()
	d.runningG.WithLabelValues(j.Name).Set(0)
	result := ResultSuccess
	switch {
	case err == nil:
	case exitcode.Code(err) == exitcode.LockBusy:
		result = ResultBusy
	case ctx.Err() != nil:
		result = ResultInterrupted
	default:
		result = ResultFailure
	}
	d.runs.WithLabelValues(j.Name, result).Inc()
	if result == ResultBusy {
		// The job never got its lock: it did not run, and that is no
		// failure (another run of it, by hand or by a timer, holds the
		// lock). The last run's gauges stay as that run left them.
		d.log.Warn("job skipped: another run holds its lock", "task", j.Name, "err", err)
		return
	}
	d.lastRun.WithLabelValues(j.Name).Set(float64(end.Unix()))
	d.lastDur.WithLabelValues(j.Name).Set(end.Sub(begin).Seconds())
	d.lastOK.WithLabelValues(j.Name).Set(metrics.Bool(err == nil))
	if err == nil {
		d.lastSucc.WithLabelValues(j.Name).Set(float64(end.Unix()))
		d.log.Info("job finished", "task", j.Name, "result", result, "seconds", end.Sub(begin).Seconds())
	} else {
		d.log.Error("job failed", "task", j.Name, "result", result, "seconds", end.Sub(begin).Seconds(), "err", err)
	}
}

// run calls the job, turning a panic into an error so that one bad run
// does not take the daemon down.
func run(ctx context.Context, j Job) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("job %s panicked: %v", j.Name, r)
		}
	}()
	return j.Run(ctx)
}

// shutdown starts no new run and waits for the running ones (their
// context has ended) at most StopTimeout.
func (d *daemon) shutdown() error {
	d.mu.Lock()
	d.stopped = true
	if d.cron != nil {
		d.cron.Stop()
	}
	var running []string
	for n, r := range d.running {
		if r {
			running = append(running, n)
		}
	}
	d.mu.Unlock()
	slices.Sort(running)
	if len(running) > 0 {
		d.log.Info("stopping: cancelling running jobs", "tasks", running, "timeout", d.o.StopTimeout.String())
	}
	var err error
	if len(running) > 0 {
		done := make(chan struct{})
		go func() { d.jobs.Wait(); close(done) }()
		t := time.NewTimer(d.o.StopTimeout)
		select {
		case <-done:
		case <-t.C:
			err = &StopTimeoutError{Jobs: running, Timeout: d.o.StopTimeout}
		}
		t.Stop()
	}
	d.mu.Lock()
	if d.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		d.server.Shutdown(ctx)
		cancel()
	}
	d.mu.Unlock()
	if err == nil {
		d.log.Info("scheduler stopped")
	}
	return err
}

// state is the state file: the last run start of every job, and the time
// up to which its missed runs have been counted.
type state struct {
	LastRun map[string]time.Time `json:"last_run"`
	// MissedCounted: the runs of a job due up to this time that did not
	// happen are counted already (at a start of the daemon, or when it
	// stopped during a run's jitter delay); a later start does not count
	// them again.
	MissedCounted map[string]time.Time `json:"missed_counted,omitempty"`
}

// loadState reads the state file and logs, once per job, a scheduled run
// that fell between the job's last run (or the runs already counted as
// missed) and now: the daemon was down. It records in the file that the
// runs due until now are counted, so that the next start (before the job
// runs again) does not count them again. Called with d.mu held.
func (d *daemon) loadState() {
	if d.cfg.StateFile == "" {
		return
	}
	b, err := os.ReadFile(d.cfg.StateFile)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			d.log.Warn("schedule state not read; missed runs are not detected", "file", d.cfg.StateFile, "err", err)
		}
		return
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		d.log.Warn("schedule state not read; missed runs are not detected", "file", d.cfg.StateFile, "err", err)
		return
	}
	now := d.now()
	for name, t := range st.MissedCounted {
		if t.After(d.counted[name]) {
			d.counted[name] = t
		}
	}
	changed := false
	for _, j := range d.cfg.Jobs {
		last, ok := st.LastRun[j.Name]
		if !ok {
			continue
		}
		if prev, seen := d.last[j.Name]; seen && !prev.Before(last) || d.running[j.Name] {
			continue // this process knows it already, or runs it now
		}
		d.last[j.Name] = last
		sched, err := cron.ParseStandard(j.Spec)
		if err != nil {
			continue
		}
		from := last
		if c := d.counted[j.Name]; c.After(from) {
			from = c
		}
		// A run due after the last one (and after those counted already)
		// and before now did not happen: the daemon was not running then
		// (cron only runs what is due later).
		if due := sched.Next(from.Add(time.Second)); due.Before(now) {
			d.missed.WithLabelValues(j.Name).Inc()
			d.log.Warn("missed run: the daemon was not running when it was due", "task", j.Name, "due", due.UTC().Format(time.RFC3339),
				"last_run", last.UTC().Format(time.RFC3339))
			d.counted[j.Name] = now
			changed = true
		}
	}
	if changed {
		d.saveState()
	}
}

// saveState writes the state file atomically (0600, fsynced). Called with
// d.mu held.
func (d *daemon) saveState() {
	if d.cfg.StateFile == "" {
		return
	}
	b, _ := json.Marshal(state{LastRun: d.last, MissedCounted: d.counted})
	if err := atomicfile.WriteFile(d.cfg.StateFile, append(b, '\n'), 0o600); err != nil {
		d.log.Warn("schedule state not written", "file", d.cfg.StateFile, "err", err)
	}
}
