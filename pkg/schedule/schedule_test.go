package schedule

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/metrics"
)

// syncBuf is a log sink safe for concurrent writes.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
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
	logs := &syncBuf{}
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
	ctx, stop := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Load: load, Log: log, Hangup: hup, Results: results, Version: "test",
			StopTimeout: time.Minute, Ready: func(a string) { addr <- a }})
	}()
	url := "http://" + <-addr + "/metrics"
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
	stop()
	if err := <-done; err != nil {
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
	if err := <-done; err == nil || !strings.Contains(err.Error(), "did not stop within") {
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
	logs := &syncBuf{}
	ctx, stop := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Log: slog.New(slog.NewTextHandler(logs, nil)), Hangup: make(chan os.Signal),
			Ready: func(a string) { ready <- a },
			Load: func() (*Config, error) {
				return &Config{StateFile: state, Jitter: time.Millisecond, Jobs: []Job{
					{Name: "snapshot", Spec: "0 3 * * *", Run: func(context.Context) error { return nil }}}}, nil
			}})
	}()
	<-ready
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "missed run: the daemon was not running when it was due") || !strings.Contains(logs.String(), "last_run="+last) {
		t.Fatalf("log:\n%s", logs.String())
	}
}
