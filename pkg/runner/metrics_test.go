package runner

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/backup"
	"github.com/firetech/fireops/pkg/metrics"
	"github.com/firetech/fireops/pkg/restore"
	"github.com/firetech/fireops/pkg/snapshot"
)

// sampleJobs returns the metrics of one run of every job, successes and
// failures, the way the commands record them.
func sampleJobs() []metrics.JobMetrics {
	now := time.Date(2026, 11, 28, 3, 0, 0, 0, time.UTC)
	res := &snapshot.Result{ID: "20261128T030000Z-abcdef", Parts: []snapshot.Part{
		{ID: "files:stack", Size: 100, Stored: 80},
		{ID: "sqlite:hub", Size: 50, Stored: 40, Reused: true},
	}, Destinations: []snapshot.DestResult{{Name: "local", Uploaded: 120}, {Name: "yandex", Err: errors.New("down"), Error: "down"}}}
	rot := &backup.RotateResult{Destinations: []backup.RotateDest{
		{Destination: "local", Kept: 3, Removed: 2, IncompleteRemoved: 1, Objects: backup.Sweep{Removed: 4, FreedBytes: 4096, Young: 1}},
		{Destination: "yandex", Error: "timeout", Objects: backup.Sweep{Skipped: "a manifest could not be read"}},
	}}
	partial := &snapshot.Result{ID: res.ID, Parts: res.Parts[:1], Destinations: res.Destinations[:1],
		FailedParts: []snapshot.FailedPart{{ID: "volume:jupyterhub-user-ada", Reason: "file name too long"}}}
	return []metrics.JobMetrics{
		metrics.SnapshotMetrics(now, time.Minute, res, errors.New("yandex down"), []string{"local", "yandex", "nas"}),
		metrics.SnapshotMetrics(now, time.Minute, partial, fmt.Errorf("snapshot %s: %w", res.ID, &snapshot.PartsError{Failed: partial.FailedParts, Held: 1}), []string{"local"}),
		metrics.SnapshotMetrics(now, time.Minute, &snapshot.Result{Parts: res.Parts, Destinations: res.Destinations[:1]}, nil, []string{"local"}),
		metrics.SnapshotOnlyMetrics(now, time.Minute, &snapshot.Result{Parts: res.Parts[:1], Destinations: res.Destinations[:1]}, nil, []string{"local"}),
		verifyMetrics(backup.LevelQuick, now, time.Second, []backup.VerifyResult{{Destination: "local", OK: true, Bytes: 10}}, nil),
		verifyMetrics(backup.LevelFull, now, time.Second, []backup.VerifyResult{{Destination: "local", OK: false, Bytes: 10}}, errors.New("bad")),
		verifyMetrics(backup.LevelRestoreTest, now, time.Second, []backup.VerifyResult{{Destination: "local", OK: true, Bytes: 10}}, nil),
		rotateMetrics(now, time.Second, rot, errors.New("yandex: timeout"), []string{"local", "yandex"}),
		rotateMetrics(now, time.Second, &backup.RotateResult{Destinations: rot.Destinations[:1]}, nil, []string{"local"}),
		restoreMetrics(now, time.Second, &restore.Result{Parts: []restore.PlannedPart{{Part: "files:stack", Status: "restored"}, {Part: "mongo", Status: "failed"}}}, errors.New("mongo: damaged")),
		restoreMetrics(now, time.Second, &restore.Result{Parts: []restore.PlannedPart{{Part: "files:stack", Status: "restored"}}}, nil),
	}
}

// TestMetricsTextfiles writes every job's textfiles, lints each with
// `promtool check metrics`, has the real node-exporter read them all
// together (the same family in several files must merge), and checks that
// docs/metrics.md lists every family.
func TestMetricsTextfiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	names := map[string]bool{}
	for _, m := range sampleJobs() {
		testutil.Must(t, m.Write(dir))
		for _, f := range append(m.Run, m.Success...) {
			names[f.Name] = true
		}
	}
	docs, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
	testutil.Must(t, err)
	for n := range names {
		// The --only families are documented as one, with the full runs'.
		doc := n
		if rest, ok := strings.CutPrefix(n, "fireops_snapshot_only_"); ok && strings.Contains(string(docs), "`fireops_snapshot_only_*`") {
			doc = "fireops_snapshot_" + rest
		}
		if !strings.Contains(string(docs), "`"+doc+"`") {
			t.Errorf("docs/metrics.md does not list %s", n)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.prom"))
	if len(files) != 14 {
		t.Fatalf("want 14 textfiles, got %v", files)
	}
	if promtool := testenv.RequireTool(t, "promtool"); promtool != "" {
		for _, f := range files {
			if out, err := testenv.CheckMetrics(promtool, f); err != nil {
				t.Errorf("promtool check metrics %s: %v\n%s", filepath.Base(f), err, out)
			}
		}
	}
	page := testenv.NodeExporterTextfiles(t, dir)
	if page == "" {
		return
	}
	if !strings.Contains(page, "node_textfile_scrape_error 0") {
		t.Fatalf("node-exporter could not read the textfiles:\n%s", page)
	}
	for _, want := range []string{
		`fireops_verify_last_run_success{level="full"} 0`,
		`fireops_verify_last_run_success{level="quick"} 1`,
		`fireops_verify_last_run_success{level="restore-test"} 1`,
		`fireops_restore_test_success_timestamp_seconds 1.7`,
		`fireops_snapshot_destination_success{destination="local"} 1`,
		`fireops_rotate_freed_bytes{destination="local"} 4096`,
		`fireops_rotate_sweep_skipped{destination="local"} 0`,
		`fireops_snapshot_part_reused{part="sqlite:hub"} 1`,
		`fireops_snapshot_part_last_run_success{part="sqlite:hub"} 1`,
		`fireops_snapshot_only_last_run_success 1`,
		`fireops_snapshot_only_part_last_run_success{part="files:stack"} 1`,
		`fireops_rotate_last_sweep_timestamp_seconds{destination="local"} 1.7`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("node-exporter does not serve %s", want)
		}
	}
	for n := range names {
		if !strings.Contains(page, "# TYPE "+n+" gauge") {
			t.Errorf("node-exporter lacks family %s", n)
		}
	}
	if t.Failed() {
		t.Log(page)
	}
}

// TestSnapshotPartMetrics: every part of the last run has a
// part_last_run_success sample: 1 stored, 0 failed, also when every part
// failed and there is no result; a partial run is not a success.
func TestSnapshotPartMetrics(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 3, 0, 0, 0, time.UTC)
	parts := func(m metrics.JobMetrics) string {
		var got []string
		for _, f := range m.Run {
			if f.Name == "fireops_snapshot_part_last_run_success" {
				for _, s := range f.Samples {
					got = append(got, fmt.Sprintf("%s=%v", s.Labels[0].Value, s.Value))
				}
			}
		}
		return strings.Join(got, " ")
	}
	failed := []snapshot.FailedPart{{ID: "volume:jupyterhub-user-ada", Reason: "file name too long"}, {ID: "mongo:mongodb", Reason: "connection refused"}}
	ok := []snapshot.Part{{ID: "sqlite:hub"}, {ID: "files:stack"}}
	tests := []struct {
		name   string
		res    *snapshot.Result
		err    error
		want   string
		runsOK bool
	}{
		{"success", &snapshot.Result{Parts: ok}, nil, "files:stack=1 sqlite:hub=1", true},
		{"partial", &snapshot.Result{Parts: ok, FailedParts: failed},
			fmt.Errorf("snapshot x: %w", &snapshot.PartsError{Failed: failed, Held: 2}),
			"files:stack=1 mongo:mongodb=0 sqlite:hub=1 volume:jupyterhub-user-ada=0", false},
		{"every part failed", nil, fmt.Errorf("snapshot x: %w", &snapshot.PartsError{Failed: failed}),
			"mongo:mongodb=0 volume:jupyterhub-user-ada=0", false},
		{"destination down", nil, errors.New("every destination failed"), "", false},
	}
	for _, tc := range tests {
		m := metrics.SnapshotMetrics(now, time.Minute, tc.res, tc.err, []string{"local"})
		if got := parts(m); got != tc.want {
			t.Errorf("%s: part_last_run_success %q, want %q", tc.name, got, tc.want)
		}
		if (m.Success != nil) != tc.runsOK {
			t.Errorf("%s: success metrics written: %v", tc.name, m.Success != nil)
		}
	}
}

// TestSnapshotMetricsDestinations: every configured destination gets a
// sample, 0 where the last run did not complete a snapshot.
func TestSnapshotMetricsDestinations(t *testing.T) {
	t.Parallel()
	m := sampleJobs()[0]
	var got []string
	for _, f := range m.Run {
		if f.Name == "fireops_snapshot_destination_success" {
			for _, s := range f.Samples {
				got = append(got, fmt.Sprintf("%s=%v", s.Labels[0].Value, s.Value))
			}
		}
	}
	if strings.Join(got, " ") != "local=1 nas=0 yandex=0" {
		t.Fatalf("destination_success: %v", got)
	}
	if m.Success != nil {
		t.Fatal("a failed run wrote success metrics")
	}
}

// readTextfiles returns the textfiles in dir by name.
func readTextfiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.prom"))
	testutil.Must(t, err)
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		testutil.Must(t, err)
		out[filepath.Base(f)] = string(b)
	}
	return out
}

// TestSnapshotOnlyMetrics: a snapshot --only run that succeeds after a
// failed full run leaves the full run's textfiles as they were (the
// alerts read those) and publishes its own families, fireops_snapshot_only_*.
func TestSnapshotOnlyMetrics(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Date(2026, 11, 28, 3, 0, 0, 0, time.UTC)
	failed := []snapshot.FailedPart{{ID: "mongo:mongodb", Reason: "connection refused"}}
	full := metrics.SnapshotMetrics(now, time.Minute, &snapshot.Result{Parts: []snapshot.Part{{ID: "files:stack"}}, FailedParts: failed,
		Destinations: []snapshot.DestResult{{Name: "local"}}}, fmt.Errorf("snapshot x: %w", &snapshot.PartsError{Failed: failed, Held: 1}), []string{"local"})
	testutil.Must(t, full.Write(dir))
	before := readTextfiles(t, dir)
	only := metrics.SnapshotOnlyMetrics(now.Add(time.Hour), time.Second, &snapshot.Result{Parts: []snapshot.Part{{ID: "mongo:mongodb", Size: 7}},
		Destinations: []snapshot.DestResult{{Name: "local"}}}, nil, []string{"local"})
	testutil.Must(t, only.Write(dir))
	after := readTextfiles(t, dir)
	if after[metrics.SnapshotRunFile] != before[metrics.SnapshotRunFile] || !strings.Contains(after[metrics.SnapshotRunFile], "fireops_snapshot_last_run_success 0\n") ||
		!strings.Contains(after[metrics.SnapshotRunFile], `fireops_snapshot_part_last_run_success{part="mongo:mongodb"} 0`) {
		t.Errorf("the --only run changed the full run's file or it lost the failure:\n%s", after[metrics.SnapshotRunFile])
	}
	if _, ok := after[metrics.SnapshotSuccessFile]; ok {
		t.Errorf("the --only run wrote the full runs' success file %s", metrics.SnapshotSuccessFile)
	}
	if len(after) != 3 {
		t.Errorf("textfiles %v, want %s, %s and %s", slices.Sorted(maps.Keys(after)), metrics.SnapshotRunFile, metrics.SnapshotOnlyRunFile, metrics.SnapshotOnlySuccessFile)
	}
	for _, want := range []string{"fireops_snapshot_only_last_run_success 1\n", `fireops_snapshot_only_part_last_run_success{part="mongo:mongodb"} 1`,
		"# HELP fireops_snapshot_only_last_run_success snapshot --only runs: 1 if"} {
		if !strings.Contains(after[metrics.SnapshotOnlyRunFile], want) {
			t.Errorf("%s lacks %q:\n%s", metrics.SnapshotOnlyRunFile, want, after[metrics.SnapshotOnlyRunFile])
		}
	}
	if !strings.Contains(after[metrics.SnapshotOnlySuccessFile], "fireops_snapshot_only_last_success_timestamp_seconds 1.7") {
		t.Errorf("%s:\n%s", metrics.SnapshotOnlySuccessFile, after[metrics.SnapshotOnlySuccessFile])
	}
	for _, f := range append(only.Run, only.Success...) {
		if !strings.HasPrefix(f.Name, "fireops_snapshot_only_") {
			t.Errorf("--only family %s", f.Name)
		}
	}
}

// TestRotateSweepMetrics: a destination whose sweep ran gets its sweep
// file; a later run that skips the sweep there (or fails there) leaves the
// file, so the time of the last sweep survives.
func TestRotateSweepMetrics(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	t0 := time.Unix(1_800_000_000, 0)
	res := &backup.RotateResult{Destinations: []backup.RotateDest{{Destination: "local"}, {Destination: "nas", Objects: backup.Sweep{Skipped: "the objects lock is held"}}}}
	testutil.Must(t, rotateMetrics(t0, time.Second, res, nil, []string{"local", "nas"}).Write(dir))
	got := readTextfiles(t, dir)
	if !strings.Contains(got[metrics.RotateSweepFile("local")], `fireops_rotate_last_sweep_timestamp_seconds{destination="local"} 1.8e+09`) {
		t.Fatalf("%s:\n%s", metrics.RotateSweepFile("local"), got[metrics.RotateSweepFile("local")])
	}
	if _, ok := got[metrics.RotateSweepFile("nas")]; ok {
		t.Fatal("a skipped sweep wrote the sweep file")
	}
	// A day later: the sweep is skipped on local, nas fails.
	res = &backup.RotateResult{Destinations: []backup.RotateDest{{Destination: "local", Objects: backup.Sweep{Skipped: "the objects lock is held"}}, {Destination: "nas", Error: "timeout"}}}
	m := rotateMetrics(t0.Add(24*time.Hour), time.Second, res, errors.New("nas: timeout"), []string{"local", "nas"})
	if len(m.Extra) != 0 {
		t.Fatalf("sweep files for a run that swept nothing: %v", m.Extra)
	}
	testutil.Must(t, m.Write(dir))
	after := readTextfiles(t, dir)
	if after[metrics.RotateSweepFile("local")] != got[metrics.RotateSweepFile("local")] {
		t.Fatalf("a skipped sweep changed the last sweep:\n%s", after[metrics.RotateSweepFile("local")])
	}
	if !strings.Contains(after[metrics.RotateRunFile], `fireops_rotate_sweep_skipped{destination="local"} 1`) {
		t.Fatalf("%s:\n%s", metrics.RotateRunFile, after[metrics.RotateRunFile])
	}
}
