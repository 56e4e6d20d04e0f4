package schedule

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/exitcode"
)

// TestBusyIsNotAFailure: a run that found its lock busy did not run. It
// is counted as lock_busy, and the task's last_run gauges stay as the last
// run that did run left them: last_run_success does not drop to 0, so no
// alert fires for a run that never started (issue 15).
func TestBusyIsNotAFailure(t *testing.T) {
	t.Parallel()
	logs := &testutil.SyncBuffer{}
	var calls atomic.Int32
	firstRead := make(chan struct{})
	load := func() (*Config, error) {
		return &Config{Listen: "127.0.0.1:0", Jobs: []Job{{Name: "rotate", Spec: "@every 1s", Run: func(ctx context.Context) error {
			if calls.Add(1) == 1 {
				return nil
			}
			select { // the test reads the gauges the good run left first
			case <-firstRead:
			case <-ctx.Done():
				return ctx.Err()
			}
			return exitcode.New(exitcode.LockBusy, errors.New("another rotate run holds the lock"), "")
		}}}}, nil
	}
	addr, stop := startDaemon(t, Options{Load: load, Log: slog.New(slog.NewTextHandler(logs, nil)), Hangup: make(chan os.Signal),
		StopTimeout: time.Minute})
	url := "http://" + addr + "/metrics"
	gauges := regexp.MustCompile(`(?m)^fireops_schedule_last_(run|success)_\w+\{task="rotate"\} .*$`)
	waitFor(t, "the good run", func() bool {
		return regexp.MustCompile(`fireops_schedule_runs_total\{result="success",task="rotate"\} 1`).MatchString(get(t, url))
	})
	good := gauges.FindAllString(get(t, url), -1)
	close(firstRead)
	if len(good) != 4 {
		t.Fatalf("last_run gauges after the good run: %q", good)
	}
	waitFor(t, "two busy runs", func() bool {
		return regexp.MustCompile(`fireops_schedule_runs_total\{result="lock_busy",task="rotate"\} [2-9]`).MatchString(get(t, url))
	})
	page := get(t, url)
	if busy := gauges.FindAllString(page, -1); !slices.Equal(busy, good) {
		t.Errorf("busy runs changed the last_run gauges:\n%q\nafter the good run:\n%q", busy, good)
	}
	if !regexp.MustCompile(`(?m)^fireops_schedule_last_run_success\{task="rotate"\} 1$`).MatchString(page) {
		t.Errorf("last_run_success is not 1 after busy runs:\n%s", page)
	}
	if !regexp.MustCompile(`level=WARN msg="job skipped: another run holds its lock" task=rotate`).MatchString(logs.String()) {
		t.Errorf("log:\n%s", logs.String())
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
