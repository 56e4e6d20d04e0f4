package backup

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/restore"
)

// TestReviewProviderPerPartRollback: the host writes S1 and S2 (full), then
// S3 holding only some parts (snapshot --only, or a nightly run in which
// one part failed). The provider deletes S2, or spoils its signature so
// that it is refused: the parts S3 does not hold would come from S1.
// restore latest must say so (naming S2), and verify latest fail (exit 3).
func TestReviewProviderPerPartRollback(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"only", "failed", "refused"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			f, root := localFixture(t, "b")
			ctx := context.Background()
			take := hourly(t)
			x := withX(t, f)
			take(f.cfg, 0) // S1
			testutil.Must(t, os.WriteFile(filepath.Join(f.data, "notes.txt"), []byte("only in s2\n"), 0o644))
			sqlite3(t, x, "INSERT INTO runs VALUES (2);")
			s2 := take(f.cfg, 1)
			part := "files:stack"
			if how == "only" || how == "refused" {
				take(f.cfg, 2, "sqlite:hub")
			} else { // sqlite:x fails in the next nightly run: a partial snapshot
				testutil.Must(t, os.WriteFile(x, []byte("not a database any more\n"), 0o600))
				take(f.cfg, 2)
				part = "sqlite:x"
			}
			if how == "refused" { // the provider spoils S2's signature
				testutil.Must(t, os.WriteFile(filepath.Join(root, "gpu01", "snapshots", s2, "manifest.sig"), make([]byte, 64), 0o600))
			} else { // the provider deletes S2
				testutil.Must(t, os.RemoveAll(filepath.Join(root, "gpu01", "snapshots", s2)))
			}
			var buf bytes.Buffer
			res, err := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: "latest", To: t.TempDir(), DryRun: true, Log: slog.New(slog.NewTextHandler(&buf, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(buf.String(), s2) && !strings.Contains(res.Note, s2) {
				t.Errorf("restore latest plans %s from an older snapshot than %s without a word (log %q, note %q)", part, s2, buf.String(), res.Note)
			}
			if _, err = Verify(ctx, f.cfg, VerifyOptions{Snapshot: "latest"}); exitcode.Code(err) != exitcode.CheckFailed {
				t.Errorf("verify latest after %s was deleted: %v, want exit 3", s2, err)
			}
		})
	}
}

// withSQLite returns a copy of c with the SQLite source name at path
// added (c stays as it was).
func withSQLite(c *config.Config, name, path string) config.Config {
	cfg := *c
	cfg.Sources.SQLite = append(slices.Clone(cfg.Sources.SQLite), config.SQLiteSource{Name: name, Path: path})
	return cfg
}

// withBrokenSQLite returns a copy of f's config with the SQLite source
// "broken" added, whose file (data/broken.sqlite) holds text, not a
// database: a snapshot of it fails that part.
func withBrokenSQLite(t *testing.T, f *fixture, text string) config.Config {
	t.Helper()
	notDB := filepath.Join(f.dir, "data", "broken.sqlite")
	testutil.Must(t, os.WriteFile(notDB, []byte(text), 0o600))
	return withSQLite(f.cfg, "broken", notDB)
}

// runsDB creates the SQLite database path with a table runs of one row.
func runsDB(t *testing.T, path string) {
	t.Helper()
	sqlite3(t, path, "CREATE TABLE runs(n INTEGER); INSERT INTO runs VALUES (1);")
}

// withX adds the SQLite source "x" to f's config (a new config: the
// fixture's stays as it was) and returns its path.
func withX(t *testing.T, f *fixture) string {
	t.Helper()
	x := filepath.Join(f.dir, "data", "x.sqlite")
	runsDB(t, x)
	cfg := withSQLite(f.cfg, "x", x)
	f.cfg = &cfg
	return x
}

// hourly returns take, which snapshots c (only its parts only, when
// given) h hours after a start ten hours ago and returns the id.
func hourly(t *testing.T) func(c *config.Config, h int, only ...string) string {
	t0 := time.Now().UTC().Add(-10 * time.Hour).Truncate(time.Second)
	return func(c *config.Config, h int, only ...string) string {
		t.Helper()
		return snapshotAt(t, c, t0.Add(time.Duration(h)*time.Hour), only...)
	}
}

// withoutX takes the source "x" out of f's config again (its part is
// retired by the next full run).
func withoutX(f *fixture) {
	cfg := *f.cfg
	cfg.Sources.SQLite = slices.DeleteFunc(slices.Clone(cfg.Sources.SQLite), func(s config.SQLiteSource) bool { return s.Name == "x" })
	f.cfg = &cfg
}

// snapshotAt takes a snapshot started at at and returns its id.
func snapshotAt(t *testing.T, c *config.Config, at time.Time, only ...string) string {
	t.Helper()
	res, err := Snapshot(context.Background(), c, SnapshotOptions{Only: only, Now: func() time.Time { return at }})
	if res == nil {
		t.Fatal(err)
	}
	return res.ID
}

// noRollback checks that restore latest and verify latest see no
// rollback.
func noRollback(t *testing.T, f *fixture) {
	t.Helper()
	ctx := context.Background()
	var buf bytes.Buffer
	res, err := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: "latest", To: t.TempDir(), DryRun: true, Log: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "level=WARN") || strings.Contains(res.Note, "rollback") {
		t.Errorf("restore latest warns of a rollback: log %q, note %q", buf.String(), res.Note)
	}
	if _, err := Verify(ctx, f.cfg, VerifyOptions{Snapshot: "latest"}); err != nil {
		t.Errorf("verify latest: %v, want exit 0", err)
	}
}

// TestPartRollbackNoFalseAlarm: what the host itself did is never taken
// for a rollback: rotate removing the snapshots of a retired part (one
// that only an --only run held last, too), and a state_dir restored from
// an older backup whose record names snapshots rotate removed since.
func TestPartRollbackNoFalseAlarm(t *testing.T) {
	t.Parallel()
	t.Run("rotate", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, "{name: local, remote: "+filepath.Join(t.TempDir(), "b")+"}")
		f.cfg.Retention = config.Retention{KeepLast: 1, IncompleteGrace: config.Duration(time.Hour)}
		t0 := time.Now().UTC().Add(-10 * time.Hour).Truncate(time.Second)
		x := withX(t, f)
		snapshotAt(t, f.cfg, t0)
		sqlite3(t, x, "INSERT INTO runs VALUES (2);")
		snapshotAt(t, f.cfg, t0.Add(time.Hour), "sqlite:x")
		withoutX(f) // x is gone from the server: the next full run retires it
		snapshotAt(t, f.cfg, t0.Add(2*time.Hour))
		noRollback(t, f)
		res, err := Rotate(context.Background(), f.cfg, RotateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if n := res.Destinations[0].Removed; n != 2 {
			t.Fatalf("rotate removed %d snapshots, want the 2 older ones: %+v", n, res.Destinations[0].Snapshots)
		}
		noRollback(t, f)
	})
	t.Run("older state_dir", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, "{name: local, remote: "+filepath.Join(t.TempDir(), "b")+"}")
		f.cfg.Retention = config.Retention{KeepLast: 1, IncompleteGrace: config.Duration(time.Hour)}
		t0 := time.Now().UTC().Add(-10 * time.Hour).Truncate(time.Second)
		withX(t, f)
		snapshotAt(t, f.cfg, t0)
		recs, _ := filepath.Glob(filepath.Join(f.cfg.StateDir, "known", "*.parts"))
		if len(recs) != 1 {
			t.Fatalf("per-part records in state_dir: %v, want 1", recs)
		}
		old, err := os.ReadFile(recs[0])
		testutil.Must(t, err)
		withoutX(f)
		snapshotAt(t, f.cfg, t0.Add(time.Hour))
		if _, err := Rotate(context.Background(), f.cfg, RotateOptions{}); err != nil {
			t.Fatal(err)
		}
		// state_dir comes back from a backup taken before: its record
		// names the removed snapshot for every part, x's included.
		testutil.Must(t, os.WriteFile(recs[0], old, 0o600))
		noRollback(t, f)
	})
}

// TestPartRollbackOtherDestination: a part's newest snapshot gone from one
// destination but still on another is restored from the other (no word in
// the plan's note), while verify latest fails for the destination that
// lost it.
func TestPartRollbackOtherDestination(t *testing.T) {
	t.Parallel()
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	f := newFixture(t, "{name: local, remote: "+a+"}", "{name: second, remote: "+b+"}")
	ctx := context.Background()
	t0 := time.Now().UTC().Add(-10 * time.Hour).Truncate(time.Second)
	snapshotAt(t, f.cfg, t0)
	testutil.Must(t, os.WriteFile(filepath.Join(f.data, "notes.txt"), []byte("only in s2\n"), 0o644))
	s2 := snapshotAt(t, f.cfg, t0.Add(time.Hour))
	snapshotAt(t, f.cfg, t0.Add(2*time.Hour), "sqlite:hub")
	testutil.Must(t, os.RemoveAll(filepath.Join(a, "gpu01", "snapshots", s2)))
	var buf bytes.Buffer
	res, err := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: "latest", To: t.TempDir(), DryRun: true, Log: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Parts {
		if p.Part == "files:stack" && p.Snapshot != s2 {
			t.Errorf("files:stack planned from %s, want %s from the destination that still has it", p.Snapshot, s2)
		}
	}
	if strings.Contains(res.Note, "rollback") || !strings.Contains(buf.String(), s2) {
		t.Errorf("note %q (want no rollback: another destination has it), log %q (want a warning naming %s)", res.Note, buf.String(), s2)
	}
	_, err = Verify(ctx, f.cfg, VerifyOptions{Snapshot: "latest"})
	if exitcode.Code(err) != exitcode.CheckFailed || !strings.Contains(err.Error(), s2+", the newest this host wrote to local") || strings.Contains(err.Error(), "to second") {
		t.Errorf("verify latest: %v, want exit 3 naming %s on local only", err, s2)
	}
}

// TestRestoreLatestRefusedBetween: without the host's record (a new host
// after a disaster), a refused snapshot older than the newest but newer
// than the snapshot a part is restored from is still named by restore
// latest: it may be that part's newest.
func TestRestoreLatestRefusedBetween(t *testing.T) {
	t.Parallel()
	f, root := localFixture(t, "b")
	t0 := time.Now().UTC().Add(-10 * time.Hour).Truncate(time.Second)
	s1 := snapshotAt(t, f.cfg, t0)
	s2 := snapshotAt(t, f.cfg, t0.Add(time.Hour))
	snapshotAt(t, f.cfg, t0.Add(2*time.Hour), "sqlite:hub")
	testutil.Must(t, os.WriteFile(filepath.Join(root, "gpu01", "snapshots", s2, "manifest.sig"), make([]byte, 64), 0o600))
	testutil.Must(t, os.RemoveAll(filepath.Join(f.cfg.StateDir, "known")))
	var buf bytes.Buffer
	res, err := restore.Restore(context.Background(), f.cfg, restore.Options{Snapshot: "latest", To: t.TempDir(), DryRun: true, Log: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Note, s1) || !strings.Contains(buf.String(), "refused") || !strings.Contains(buf.String(), s2) {
		t.Errorf("restore latest plans files:stack from %s with no word of the refused %s (log %q, note %q)", s1, s2, buf.String(), res.Note)
	}
}
