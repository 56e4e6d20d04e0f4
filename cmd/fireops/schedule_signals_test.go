package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/gpucheck"
	"github.com/firetech/fireops/pkg/gpucheck/gpuchecktest"
	"github.com/firetech/fireops/pkg/metrics"
	"github.com/firetech/fireops/pkg/schedule"
)

// idleConfig writes a config with keys from init, a local destination, no
// scheduled job and /metrics on a free port; it returns its path.
func idleConfig(t *testing.T) string {
	t.Helper()
	dir, cfg, raw := initHost(t)
	y := initForFiles(t, raw, "# state_dir: /var/lib/fireops", "state_dir: "+filepath.Join(dir, "state"))
	y += "\nschedule: {snapshot: \"\", rotate: \"\", verify: \"\", gpu_check: \"\"}\nmetrics: {listen: \"127.0.0.1:0\"}\n"
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestScheduleSecondDaemon: a second daemon exits 4 with a hint that fits
// a daemon and no "waited"; one that waits with --lock-wait survives a
// SIGHUP (systemctl reload) during its wait and starts once the first one
// stopped.
func TestScheduleSecondDaemon(t *testing.T) {
	t.Parallel()
	cfg := idleConfig(t)
	first := startDaemon(t, cfg)
	waitFor(t, "the first daemon", func() bool { return len(first.find("scheduler started")) > 0 })

	out, err := fireopsCmd(t, cfg, "schedule").CombinedOutput()
	if exitCode(err) != exitcode.LockBusy || strings.Contains(string(out), "waited") ||
		!strings.Contains(string(out), "fireops: hint: another fireops schedule daemon runs: stop it (systemctl stop fireops-schedule)") {
		t.Fatalf("second daemon: %v\n%s", err, out)
	}

	second := &daemon{cmd: fireopsCmd(t, cfg, "schedule", "--log-format", "json", "--lock-wait", "10m"), done: make(chan error, 1)}
	startLogged(t, second)
	waitFor(t, "the second daemon to wait for the lock", func() bool { return len(second.find("waiting for the schedule lock")) > 0 })
	if err := second.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := first.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-first.done; err != nil {
		t.Fatalf("first daemon: %v\n%s", err, first.log())
	}
	waitFor(t, "the second daemon to start", func() bool {
		select {
		case err := <-second.done:
			t.Fatalf("the waiting daemon exited on SIGHUP: %v\n%s", err, second.log())
		default:
		}
		return len(second.find("scheduler started")) > 0
	})
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-second.done; err != nil {
		t.Fatalf("second daemon: %v\n%s", err, second.log())
	}
}

// startLogged starts d.cmd and collects its JSON log lines; d.done gets
// its exit.
func startLogged(t *testing.T, d *daemon) {
	t.Helper()
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.cmd.Process.Kill() })
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				m = map[string]any{"msg": "(not json) " + sc.Text()}
			}
			d.mu.Lock()
			d.lines = append(d.lines, m)
			d.mu.Unlock()
		}
		d.done <- d.cmd.Wait()
	}()
}

// TestInterruptedExitCode: a failure after SIGTERM exits 130, except the
// daemon's jobs that outlasted --stop-timeout (exit 1, with its hint).
func TestInterruptedExitCode(t *testing.T) {
	t.Parallel()
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	timeout := exitcode.New(exitcode.Failure, &schedule.StopTimeoutError{Jobs: []string{"snapshot"}, Timeout: time.Minute}, "raise --stop-timeout")
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		code int
	}{
		{"failure after SIGTERM", stopped, errors.New("upload cancelled"), exitcode.Interrupted},
		{"failure without a signal", context.Background(), errors.New("upload failed"), exitcode.Failure},
		{"lock busy after SIGTERM", stopped, exitcode.New(exitcode.LockBusy, errors.New("busy"), ""), exitcode.LockBusy},
		{"jobs outlasted --stop-timeout", stopped, timeout, exitcode.Failure},
	} {
		if got := exitcode.Code(interrupted(tc.ctx, tc.err)); got != tc.code {
			t.Errorf("%s: exit code %d, want %d", tc.name, got, tc.code)
		}
	}
}

// TestGPUCheckPublishes: in the daemon (publish set) the gpu check's
// results reach /metrics, passing or failing, with no textfile folder.
func TestGPUCheckPublishes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		runtimes []string
		want     string
	}{
		{"passing", []string{"nvidia", "runc"}, `fireops_gpu_check_ok{check="container_runtime"} 1`},
		{"failing", []string{"runc"}, `fireops_gpu_check_ok{check="container_runtime"} 0`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			var got []metrics.JobMetrics
			a := &app{configPath: filepath.Join(t.TempDir(), "fireops.yaml"), stdout: &stdout, stderr: &stderr,
				log: slog.New(slog.NewTextHandler(&stderr, nil)), publish: func(m metrics.JobMetrics) { got = append(got, m) }}
			a.runGPUCheck(context.Background(), gpuCheckOptions{nvml: gpuchecktest.HealthyDGXA100(), engine: gpuEngine{runtimes: tc.runtimes}})
			if len(got) != 1 || got[0].RunFile != gpucheck.TextfileName {
				t.Fatalf("published %+v", got)
			}
			var page bytes.Buffer
			if err := metrics.Write(&page, got[0].Run); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(page.String(), tc.want) {
				t.Errorf("published families lack %s:\n%s", tc.want, page.String())
			}
		})
	}
}
