package schedule

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/metrics"
)

// startDaemon runs Run with opts in the background, with a Ready hook,
// and returns once the daemon is ready: the address it serves /metrics on,
// and stop, which cancels Run and returns what Run returned. Run is
// cancelled when the test ends if stop was not called. A Run that returns
// before it is ready ends the test with its error.
func startDaemon(t *testing.T, opts Options) (addr string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ready := make(chan string, 1)
	done := make(chan error, 1)
	opts.Ready = func(a string) { ready <- a }
	go func() { done <- Run(ctx, opts) }()
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("schedule.Run returned before it was ready: %v", err)
	}
	return addr, func() error { cancel(); return <-done }
}

// snapshotEvery loads a config with the state file state (none when ""),
// the jitter jitter and one job, a snapshot on spec that does nothing.
func snapshotEvery(state, spec string, jitter time.Duration) func() (*Config, error) {
	return func() (*Config, error) {
		return &Config{StateFile: state, Jitter: jitter, Jobs: []Job{
			{Name: "snapshot", Spec: spec, Run: func(context.Context) error { return nil }}}}, nil
	}
}

// waitFor polls cond every 10 ms for at most a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, what, 10*time.Millisecond, cond)
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestDaemon: a slow job misses its next ticks (logged and counted), a
// failing job and a busy one are told apart, SIGHUP swaps the jobs, a bad
// reload keeps the old ones, /metrics serves the daemon's counters and the
// published results, and stopping cancels the running job and waits for it.
func TestDaemon(t *testing.T) {
	t.Parallel()
	logs := &testutil.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	var slowRuns, failRuns, newRuns atomic.Int32
	release := make(chan struct{})
	cancelled := make(chan struct{})
	results := NewResults()
	results.Set("fireops_snapshot.prom", []metrics.Family{{Name: "fireops_snapshot_last_run_success", Help: "h", Type: metrics.Gauge,
		Samples: []metrics.Sample{{Value: 1}}}})
	gen := atomic.Int32{}
	badReload := atomic.Bool{}
	load := func() (*Config, error) {
		if badReload.Load() {
			return nil, errors.New("config broken")
		}
		if gen.Add(1) == 1 {
			return &Config{Listen: "127.0.0.1:0", Jobs: []Job{
				{Name: "snapshot", Spec: "@every 1s", Run: func(ctx context.Context) error {
					if slowRuns.Add(1) == 1 {
						select {
						case <-release:
						case <-ctx.Done():
							close(cancelled)
							return ctx.Err()
						}
					}
					return nil
				}},
				{Name: "verify", Spec: "@every 1s", Run: func(context.Context) error {
					if failRuns.Add(1)%2 == 1 {
						return errors.New("bad chunk")
					}
					return exitcode.New(exitcode.LockBusy, errors.New("busy"), "")
				}},
			}}, nil
		}
		return &Config{Listen: "127.0.0.1:0", Jobs: []Job{
			{Name: "rotate", Spec: "@every 1s", Run: func(context.Context) error { newRuns.Add(1); return nil }},
			// Still running from before the reload: must not start twice.
			{Name: "snapshot", Spec: "@every 1s", Run: func(context.Context) error { return nil }},
		}}, nil
	}
	hup := make(chan os.Signal, 1)
	addr, stop := startDaemon(t, Options{Load: load, Log: log, Hangup: hup, Results: results, Version: "test",
		StopTimeout: time.Minute})
	url := "http://" + addr + "/metrics"
	waitFor(t, "a missed snapshot run", func() bool { return strings.Contains(logs.String(), "missed run: the previous run is still going") })
	waitFor(t, "two verify runs", func() bool { return failRuns.Load() >= 2 })
	waitFor(t, "the verify results on /metrics", func() bool {
		return strings.Contains(get(t, url), `fireops_schedule_runs_total{result="lock_busy",task="verify"}`)
	})
	page := get(t, url)
	for _, want := range []string{
		`fireops_schedule_runs_total{result="failure",task="verify"}`,
		`fireops_schedule_running{task="snapshot"} 1`,
		`fireops_schedule_missed_runs_total{task="snapshot"}`,
		`fireops_schedule_next_run_timestamp_seconds{task="verify"}`,
		`fireops_snapshot_last_run_success 1`,
		`fireops_build_info{version="test"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, page)
		}
	}

	// docs/metrics.md lists every family the daemon serves.
	docs, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(page, "\n") {
		if name, ok := strings.CutPrefix(line, "# HELP fireops_schedule_"); ok {
			name = "fireops_schedule_" + strings.Fields(name)[0]
			if !strings.Contains(string(docs), "`"+name+"`") {
				t.Errorf("docs/metrics.md does not list %s", name)
			}
		}
	}

	// A broken config on SIGHUP: logged, the old jobs stay.
	badReload.Store(true)
	hup <- os.Interrupt
	waitFor(t, "the failed reload", func() bool { return strings.Contains(logs.String(), "configuration not reloaded") })
	badReload.Store(false)
	hup <- os.Interrupt
	waitFor(t, "the reloaded jobs", func() bool { return newRuns.Load() >= 1 })
	before := failRuns.Load()
	time.Sleep(1500 * time.Millisecond) // verify is gone: no more runs of it
	if failRuns.Load() > before+1 {
		t.Errorf("verify still runs after the reload removed it")
	}
	if slowRuns.Load() != 1 {
		t.Errorf("a second snapshot started while the first ran: %d", slowRuns.Load())
	}
	page = get(t, url)
	if !strings.Contains(page, `fireops_schedule_config_reloads_total{result="failure"} 1`) || !strings.Contains(page, `fireops_schedule_config_reloads_total{result="success"} 1`) {
		t.Errorf("reload counters:\n%s", page)
	}

	// Stop: the running snapshot is cancelled and waited for.
	if err := stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, logs.String())
	}
	select {
	case <-cancelled:
	default:
		t.Fatal("the running job was not cancelled")
	}
	if !strings.Contains(logs.String(), "scheduler stopped") {
		t.Fatalf("log:\n%s", logs.String())
	}
}

// TestStopTimeout: a job that ignores its context makes Run return an
// error after StopTimeout instead of hanging.
func TestStopTimeout(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	block := make(chan struct{})
	defer close(block)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Hangup: make(chan os.Signal), StopTimeout: 100 * time.Millisecond, Load: func() (*Config, error) {
			return &Config{Jobs: []Job{{Name: "stubborn", Spec: "@every 1s", Run: func(context.Context) error {
				select {
				case started <- struct{}{}:
				default:
				}
				<-block
				return nil
			}}}}, nil
		}})
	}()
	<-started
	stop()
	err := <-done
	var st *StopTimeoutError
	if !errors.As(err, &st) || !strings.Contains(err.Error(), "did not stop within") || len(st.Jobs) != 1 || st.Jobs[0] != "stubborn" {
		t.Fatalf("Run returned %v", err)
	}
}

// TestMissedWhileDown: a run due while the daemon was not running is
// logged at start from the state file.
func TestMissedWhileDown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	state := filepath.Join(dir, "schedule.json")
	last := time.Now().Add(-50 * time.Hour).UTC().Format(time.RFC3339)
	if err := os.WriteFile(state, []byte(`{"last_run":{"snapshot":"`+last+`"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	_, stop := startDaemon(t, Options{Log: slog.New(slog.NewTextHandler(logs, nil)), Hangup: make(chan os.Signal),
		Load: snapshotEvery(state, "0 3 * * *", time.Millisecond)})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "missed run: the daemon was not running when it was due") || !strings.Contains(logs.String(), "last_run="+last) {
		t.Fatalf("log:\n%s", logs.String())
	}
}

// TestStopWithoutJobs: with no job running, stopping never reports a
// timeout, however short StopTimeout is.
func TestStopWithoutJobs(t *testing.T) {
	t.Parallel()
	for range 50 {
		_, stop := startDaemon(t, Options{Hangup: make(chan os.Signal), StopTimeout: time.Nanosecond,
			Load: snapshotEvery("", "0 3 1 1 *", 0)})
		if err := stop(); err != nil {
			t.Fatalf("stop with no job running: %v", err)
		}
	}
}

// TestMissedAtStart: a run due between the last run in the state file and
// the start is counted as missed, however short the gap; one not yet due
// is not.
func TestMissedAtStart(t *testing.T) {
	t.Parallel()
	last := time.Date(2026, 11, 27, 3, 0, 0, 0, time.Local)
	for _, tc := range []struct {
		name   string
		now    time.Time
		missed bool
	}{
		{"30 s after the due time", time.Date(2026, 11, 28, 3, 0, 30, 0, time.Local), true},
		{"two days later", time.Date(2026, 11, 29, 12, 0, 0, 0, time.Local), true},
		{"before the due time", time.Date(2026, 11, 28, 2, 59, 0, 0, time.Local), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			state := filepath.Join(t.TempDir(), "schedule.json")
			if err := os.WriteFile(state, []byte(`{"last_run":{"snapshot":"`+last.UTC().Format(time.RFC3339)+`"}}`), 0o600); err != nil {
				t.Fatal(err)
			}
			logs := &testutil.SyncBuffer{}
			_, stop := startDaemon(t, Options{Log: slog.New(slog.NewTextHandler(logs, nil)), Hangup: make(chan os.Signal),
				Now: func() time.Time { return tc.now }, Load: snapshotEvery(state, "0 3 * * *", 0)})
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(logs.String(), "missed run: the daemon was not running"); got != tc.missed {
				t.Fatalf("missed run logged: %v, want %v\n%s", got, tc.missed, logs.String())
			}
		})
	}
}

// TestJitterCancelledIsMissed: a run stopped while it waits for its
// jitter is counted as missed once, and the next start does not count it
// again.
func TestJitterCancelledIsMissed(t *testing.T) {
	t.Parallel()
	state := filepath.Join(t.TempDir(), "schedule.json")
	daemon := func(spec string, jitter time.Duration, running func(logs *testutil.SyncBuffer)) string {
		logs := &testutil.SyncBuffer{}
		_, stop := startDaemon(t, Options{Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Hangup: make(chan os.Signal), Load: snapshotEvery(state, spec, jitter)})
		running(logs)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		return logs.String()
	}
	log := daemon("@every 1s", 24*time.Hour, func(logs *testutil.SyncBuffer) {
		waitFor(t, "the jitter delay", func() bool { return strings.Contains(logs.String(), "msg=jitter") })
	})
	if n := strings.Count(log, "missed run: the daemon stopped during its jitter delay"); n != 1 {
		t.Fatalf("%d missed runs logged for the cancelled jitter, want 1:\n%s", n, log)
	}
	// The next start, with an hourly spec (nothing else fell due), does
	// not count the cancelled run again.
	if log := daemon("@every 1h", 0, func(*testutil.SyncBuffer) {}); strings.Contains(log, "missed run") {
		t.Fatalf("the cancelled run is counted again at the next start:\n%s", log)
	}
}

// TestListenInUse: a metrics.listen address in use is an error naming it,
// with a hint.
func TestListenInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = Run(context.Background(), Options{Hangup: make(chan os.Signal), Load: func() (*Config, error) {
		return &Config{Listen: ln.Addr().String()}, nil
	}})
	if err == nil || !strings.Contains(err.Error(), "metrics.listen "+ln.Addr().String()) ||
		!strings.Contains(exitcode.Hint(err), "change metrics.listen or stop what listens there") {
		t.Fatalf("got %v (hint %q)", err, exitcode.Hint(err))
	}
}

// TestHangupWhileStarting: reload requests queued before the daemon runs
// do not stop it, and the configuration is loaded once for them.
func TestHangupWhileStarting(t *testing.T) {
	t.Parallel()
	hup := make(chan os.Signal, 1)
	hup <- syscall.SIGHUP
	var loads atomic.Int32
	logs := &testutil.SyncBuffer{}
	_, stop := startDaemon(t, Options{Log: slog.New(slog.NewTextHandler(logs, nil)), Hangup: hup,
		Load: func() (*Config, error) { loads.Add(1); return &Config{}, nil }})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := loads.Load(); n != 1 || strings.Contains(logs.String(), "configuration reloaded") {
		t.Fatalf("%d loads; log:\n%s", n, logs.String())
	}
}

// TestMissedCountedOnce: a run missed while the daemon was down is counted
// at the start after it, not again at every later start before the job
// runs; a run missed during a later downtime is counted again.
func TestMissedCountedOnce(t *testing.T) {
	t.Parallel()
	state := filepath.Join(t.TempDir(), "schedule.json")
	last := time.Date(2026, 11, 27, 3, 0, 0, 0, time.Local)
	if err := os.WriteFile(state, []byte(`{"last_run":{"snapshot":"`+last.UTC().Format(time.RFC3339)+`"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func(now time.Time) string {
		logs := &testutil.SyncBuffer{}
		_, stop := startDaemon(t, Options{Log: slog.New(slog.NewTextHandler(logs, nil)), Hangup: make(chan os.Signal),
			Now: func() time.Time { return now }, Load: snapshotEvery(state, "0 3 * * *", 0)})
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		return logs.String()
	}
	for _, tc := range []struct {
		name   string
		now    time.Time
		missed int
	}{
		{"first start after the missed run", time.Date(2026, 11, 28, 9, 0, 0, 0, time.Local), 1},
		{"restart the same day", time.Date(2026, 11, 28, 10, 0, 0, 0, time.Local), 0},
		{"restart again", time.Date(2026, 11, 28, 11, 0, 0, 0, time.Local), 0},
		{"start after the next day's run was missed too", time.Date(2026, 11, 29, 12, 0, 0, 0, time.Local), 1},
	} {
		log := start(tc.now)
		if n := strings.Count(log, "missed run: the daemon was not running"); n != tc.missed {
			t.Fatalf("%s: %d missed runs logged, want %d:\n%s", tc.name, n, tc.missed, log)
		}
	}
}
