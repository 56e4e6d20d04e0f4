package backup

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/restore"
)

// TestRestoreLatestPerPart: `latest` is, per part, the newest complete
// snapshot holding it. Over a full run, a `--only files:stack` run, a full
// run in which sqlite:extra failed (and sqlite:new, failing from its first
// run) and a `--only sqlite:hub` run (the clock hook), restore latest
// plans every part with its own snapshot: hub from the --only run, the
// stack files from the newest full run, extra (failed there) from the full
// run before, and the plan names new as in no snapshot. The real restore
// puts each part back from that snapshot. An explicit id restores its own
// parts only; after extra leaves the config, the next full run retires
// it from latest, and the note counts it.
func TestRestoreLatestPerPart(t *testing.T) {
	t.Parallel()
	f, _ := localFixture(t, "backups")
	ctx := context.Background()
	extra := filepath.Join(f.dir, "data", "extra.sqlite")
	runsDB(t, extra)
	broken := filepath.Join(f.dir, "data", "new.sqlite")
	testutil.Must(t, os.WriteFile(broken, []byte("not a database\n"), 0o600))
	cfg := withSQLite(f.cfg, "extra", extra)
	take := hourly(t)
	s1 := take(&cfg, 0)
	testutil.Must(t, os.WriteFile(filepath.Join(f.data, "notes.txt"), []byte("after the first run\n"), 0o644))
	s2 := take(&cfg, 1, "files:stack")
	// extra breaks, new is added broken: the full run holds the others.
	saved, err := os.ReadFile(extra)
	testutil.Must(t, err)
	testutil.Must(t, os.WriteFile(extra, []byte("not a database any more\n"), 0o600))
	withNew := cfg
	withNew.Sources.SQLite = append(slices.Clone(cfg.Sources.SQLite), config.SQLiteSource{Name: "new", Path: broken})
	s3 := take(&withNew, 2)
	sqlite3(t, f.db, "INSERT INTO users(name) VALUES ('late');")
	s4 := take(&withNew, 3, "sqlite:hub")
	testutil.Must(t, os.WriteFile(extra, saved, 0o600))

	want := map[string]string{"sqlite:hub": s4, "files:stack": s3, "sqlite:extra": s1}
	check := func(res *restore.Result, err error, want map[string]string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, p := range res.Parts {
			got[p.Part] = p.Snapshot
		}
		for p, id := range want {
			if got[p] != id {
				t.Errorf("part %s from %q, want %s (plan %+v)", p, got[p], id, res.Parts)
			}
		}
		if len(got) != len(want) {
			t.Errorf("plan %+v, want the parts %v", res.Parts, want)
		}
	}
	out := t.TempDir()
	res, err := restore.Restore(ctx, &withNew, restore.Options{Snapshot: "latest", To: out, DryRun: true})
	check(res, err, want)
	if res.Snapshot != s4 || !strings.Contains(res.Note, "4 snapshots read") || !strings.Contains(res.Note, "sqlite:new failed in "+s3+" and no older snapshot holds it") {
		t.Errorf("result %s, note %q", res.Snapshot, res.Note)
	}
	// --all plans the same parts (in place, --force: the targets exist).
	res, err = restore.Restore(ctx, &withNew, restore.Options{Snapshot: "latest", All: true, Force: true, DryRun: true})
	check(res, err, want)
	// One part: from the newest snapshot holding it.
	res, err = restore.Restore(ctx, &withNew, restore.Options{Snapshot: "latest", Parts: []string{"sqlite:extra"}, To: filepath.Join(out, "one.sqlite"), DryRun: true})
	check(res, err, map[string]string{"sqlite:extra": s1})

	// For real: each part as its snapshot has it.
	res, err = restore.Restore(ctx, &withNew, restore.Options{Snapshot: "latest", To: out})
	check(res, err, want)
	if got := sqlite3(t, filepath.Join(out, "extra.sqlite"), "SELECT count(*) FROM runs"); got != "1" {
		t.Errorf("sqlite:extra restored with %s rows", got)
	}
	if got := sqlite3(t, filepath.Join(out, "hub.sqlite"), "SELECT group_concat(name) FROM users"); got != "ada,bob,late" {
		t.Errorf("sqlite:hub restored as %q", got)
	}
	if b, err := os.ReadFile(filepath.Join(out, "files-stack", f.data, "notes.txt")); err != nil || string(b) != "after the first run\n" {
		t.Errorf("files:stack: %q %v", b, err)
	}

	// An id: its own parts only.
	res, err = restore.Restore(ctx, &withNew, restore.Options{Snapshot: s2, To: t.TempDir(), DryRun: true})
	check(res, err, map[string]string{"files:stack": s2})
	if res.Note != "" {
		t.Errorf("note of an id: %q", res.Note)
	}

	// extra leaves the config: the next full run no longer holds it.
	s5 := take(f.cfg, 4)
	res, err = restore.Restore(ctx, f.cfg, restore.Options{Snapshot: "latest", To: t.TempDir(), DryRun: true})
	check(res, err, map[string]string{"sqlite:hub": s5, "files:stack": s5})
	if !strings.Contains(res.Note, "1 part(s) that only snapshots older than "+s5+" hold are not restored") {
		t.Errorf("note %q", res.Note)
	}
}
