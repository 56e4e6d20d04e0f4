package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/firetech/fireops/pkg/backup"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/lock"
	"github.com/firetech/fireops/pkg/metrics"
	"github.com/firetech/fireops/pkg/restore"
)

// testConfig returns the default config with its state and textfile
// folders in a temporary folder.
func testConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg := config.Default()
	dir := t.TempDir()
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Metrics.TextfileDir = filepath.Join(dir, "prom")
	if err := os.Mkdir(cfg.Metrics.TextfileDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// recorded returns what a job recorded: the textfiles and the published
// metrics.
func recorded(t *testing.T, cfg *config.Config, published []metrics.JobMetrics) []string {
	t.Helper()
	es, err := os.ReadDir(cfg.Metrics.TextfileDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, "textfile "+e.Name())
	}
	for _, m := range published {
		out = append(out, "published "+m.Job)
	}
	return out
}

// TestBusyRecordsNothing: a job whose lock another run holds did not run:
// it ends with exit code 4 naming the holder and records no metrics.
func TestBusyRecordsNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		job string
		run func(context.Context, *Runner, *config.Config) error
	}{
		{"snapshot", func(ctx context.Context, r *Runner, cfg *config.Config) error {
			_, err := r.Snapshot(ctx, cfg, backup.SnapshotOptions{})
			return err
		}},
		{"verify", func(ctx context.Context, r *Runner, cfg *config.Config) error {
			_, err := r.Verify(ctx, cfg, backup.VerifyOptions{})
			return err
		}},
		{"rotate", func(ctx context.Context, r *Runner, cfg *config.Config) error {
			_, err := r.Rotate(ctx, cfg, backup.RotateOptions{})
			return err
		}},
		{"restore", func(ctx context.Context, r *Runner, cfg *config.Config) error {
			_, err := r.Restore(ctx, cfg, restore.Options{})
			return err
		}},
	} {
		t.Run(tc.job, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			cfg := testConfig(t)
			held, err := lock.Acquire(ctx, lock.Dir(cfg.StateDir), tc.job, lock.Options{Command: "the test's holder"})
			if err != nil {
				t.Fatal(err)
			}
			defer held.Release()
			var published []metrics.JobMetrics
			r := &Runner{LockWait: 10 * time.Millisecond, Publish: func(m metrics.JobMetrics) { published = append(published, m) }}
			err = tc.run(ctx, r, cfg)
			var busy *lock.BusyError
			if exitcode.Code(err) != exitcode.LockBusy || !errors.As(err, &busy) || busy.Name != tc.job {
				t.Fatalf("%s with its lock held: %v (exit %d), want exit %d naming the %s lock", tc.job, err, exitcode.Code(err), exitcode.LockBusy, tc.job)
			}
			if got := recorded(t, cfg, published); len(got) > 0 {
				t.Errorf("a run that never got its lock recorded %v", got)
			}
		})
	}
}

// TestUsageRecordsNothing: a run stopped by a usage error (a malformed
// snapshot id) checked nothing and records nothing.
func TestUsageRecordsNothing(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	var published []metrics.JobMetrics
	r := &Runner{Publish: func(m metrics.JobMetrics) { published = append(published, m) }}
	_, err := r.Verify(context.Background(), cfg, backup.VerifyOptions{Snapshot: "2026bogus"})
	if exitcode.Code(err) != exitcode.Usage {
		t.Fatalf("verify 2026bogus: %v (exit %d), want exit %d", err, exitcode.Code(err), exitcode.Usage)
	}
	if got := recorded(t, cfg, published); len(got) > 0 {
		t.Errorf("a usage error recorded %v", got)
	}
}

// TestRan: which ends of a job record its metrics.
func TestRan(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, tc := range []struct {
		name  string
		begin time.Time
		err   error
		want  bool
	}{
		{"success", now, nil, true},
		{"failure", now, errors.New("upload failed"), true},
		{"check failed", now, exitcode.New(exitcode.CheckFailed, errors.New("damaged"), ""), true},
		{"usage error", now, exitcode.Usagef("fix it", "bad id"), false},
		{"never got its lock", time.Time{}, exitcode.New(exitcode.LockBusy, errors.New("busy"), ""), false},
	} {
		if got := ran(tc.begin, tc.err); got != tc.want {
			t.Errorf("%s: ran = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestInterruptedVerifyNoVerdict: a verify stopped before it found
// anything records nothing (FireopsVerifyFailed would say a snapshot may
// be damaged); one that found damage before the stop, or ended on its own,
// records its result.
func TestInterruptedVerifyNoVerdict(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	stoppedClean := backup.VerifyInterrupted(ctx, []backup.VerifyResult{{OK: true}}, fmt.Errorf("read piece: %w", context.Canceled))
	damaged := exitcode.New(exitcode.CheckFailed, errors.New("verify: 1 snapshot(s) failed"), "")
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"passed", nil, true},
		{"found damage", damaged, true},
		{"found a rollback, then stopped", backup.VerifyInterrupted(ctx, []backup.VerifyResult{{OK: false, Rollback: "a part's newest snapshot is gone"}}, damaged), true},
		{"stopped before any finding", stoppedClean, false},
	} {
		if got := verdict(tc.err); got != tc.want {
			t.Errorf("%s (%v): verdict %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
