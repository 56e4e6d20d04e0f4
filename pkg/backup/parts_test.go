package backup

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/restore"
)

// TestOnePartMissingPiece: a piece of files:stack is deleted; sqlite:hub
// still restores on its own, a restore of all parts restores it and names
// files:stack (exit 3, a hint that does not steer to older data), and
// verify full names the damaged part.
func TestOnePartMissingPiece(t *testing.T) {
	t.Parallel()
	f, root, res := localSnapshot(t)
	ctx := context.Background()
	testutil.Must(t, os.Remove(piecePath(t, root, res, "files:stack", 0)))

	to := filepath.Join(t.TempDir(), "one")
	rr, err := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: "latest", Parts: []string{"sqlite:hub"}, To: filepath.Join(to, "hub.sqlite")})
	if err != nil || len(rr.Parts) != 1 || rr.Parts[0].Status != restore.StatusRestored {
		t.Fatalf("restore --part sqlite:hub: %v %+v", err, rr)
	}
	if got := sqlite3(t, filepath.Join(to, "hub.sqlite"), "SELECT group_concat(name) FROM users;"); got != "ada,bob" {
		t.Fatalf("restored database: %q", got)
	}

	to = filepath.Join(t.TempDir(), "all")
	rr, err = restore.Restore(ctx, f.cfg, restore.Options{Snapshot: res.ID, To: to})
	if exitcode.Code(err) != exitcode.CheckFailed || !strings.Contains(err.Error(), "1 of 2 parts NOT restored: files:stack") {
		t.Fatalf("restore all parts: code %d, %v", exitcode.Code(err), err)
	}
	hint := exitcode.Hint(err)
	if !strings.Contains(hint, "files:stack") || strings.Contains(hint, "sqlite:hub") || !strings.Contains(hint, "1 other part(s) restored") {
		t.Fatalf("hint %q", hint)
	}
	status := map[string]string{}
	for _, p := range rr.Parts {
		status[p.Part] = p.Status
	}
	if status["files:stack"] != restore.StatusFailed || status["sqlite:hub"] != restore.StatusRestored {
		t.Fatalf("statuses %v", status)
	}
	if got := sqlite3(t, filepath.Join(to, "hub.sqlite"), "SELECT group_concat(name) FROM users;"); got != "ada,bob" {
		t.Fatalf("restored database: %q", got)
	}
	if _, err := os.Stat(filepath.Join(to, "files-stack")); err == nil {
		t.Fatal("the damaged part was written")
	}

	for _, level := range []string{LevelFull, LevelRestoreTest} {
		vr, err := Verify(ctx, f.cfg, VerifyOptions{Level: level, ScratchDir: t.TempDir()})
		if exitcode.Code(err) != exitcode.CheckFailed || !strings.Contains(err.Error(), "part files:stack") || len(vr) != 1 {
			t.Fatalf("verify %s: code %d, %v", level, exitcode.Code(err), err)
		}
		if got := vr[0].FailedParts; len(got) != 1 || got[0] != "files:stack" || len(vr[0].PartIDs) != 2 {
			t.Fatalf("verify %s: failed parts %v of %v", level, got, vr[0].PartIDs)
		}
	}
	if _, err := Verify(ctx, f.cfg, VerifyOptions{Level: LevelQuick}); exitcode.Code(err) != exitcode.CheckFailed {
		t.Fatalf("verify quick: code %d, %v", exitcode.Code(err), err)
	}
}

// TestSnapshotIDPrefix: restore and verify take any unique prefix of an
// id; an ambiguous prefix and an unknown id are usage errors listing the
// matches or the closest ids.
func TestSnapshotIDPrefix(t *testing.T) {
	t.Parallel()
	f, root, res := localSnapshot(t)
	ctx := context.Background()
	// A second snapshot folder sharing the first 17 characters (the
	// same second): the prefix up to the dash is ambiguous.
	twin := res.ID[:17] + "000000"
	if twin == res.ID {
		twin = res.ID[:17] + "ffffff"
	}
	testutil.Must(t, os.MkdirAll(filepath.Join(root, "gpu01", "snapshots", twin), 0o700))

	short := res.ID[:19]
	rr, err := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: short, To: t.TempDir(), DryRun: true})
	if err != nil || rr.Snapshot != res.ID {
		t.Fatalf("restore by prefix %s: %v %+v", short, err, rr)
	}
	vr, err := Verify(ctx, f.cfg, VerifyOptions{Snapshot: short})
	if err != nil || len(vr) != 1 || vr[0].Snapshot != res.ID || !vr[0].OK {
		t.Fatalf("verify by prefix %s: %v %+v", short, err, vr)
	}

	amb := res.ID[:17]
	_, err = restore.Restore(ctx, f.cfg, restore.Options{Snapshot: amb, To: t.TempDir(), DryRun: true})
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "ambiguous") || !strings.Contains(err.Error(), res.ID) || !strings.Contains(err.Error(), twin) {
		t.Fatalf("restore ambiguous %s: code %d, %v", amb, exitcode.Code(err), err)
	}
	_, err = Verify(ctx, f.cfg, VerifyOptions{Snapshot: amb})
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "ambiguous") {
		t.Fatalf("verify ambiguous %s: code %d, %v", amb, exitcode.Code(err), err)
	}

	unknown := "20200101T000000Z-abcdef"
	for name, run := range map[string]func() error{
		"restore": func() error {
			_, err := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: unknown, To: t.TempDir()})
			return err
		},
		"verify": func() error {
			_, err := Verify(ctx, f.cfg, VerifyOptions{Snapshot: unknown, Level: LevelFull})
			return err
		},
	} {
		err := run()
		if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "no snapshot") || !strings.Contains(err.Error(), "closest") || !strings.Contains(err.Error(), res.ID) {
			t.Fatalf("%s unknown id: code %d, %v", name, exitcode.Code(err), err)
		}
	}
	for _, bad := range []string{"yesterday", "2026x", "", res.ID + "0"} {
		if bad == "" {
			continue // "" means latest for verify
		}
		_, err := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: bad, To: t.TempDir()})
		if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "not a snapshot id") {
			t.Fatalf("restore %q: code %d, %v", bad, exitcode.Code(err), err)
		}
	}
}

// TestClosestIDsByStartTime: snapshots taken in the same second are named
// newest first by when they started, not by their random id suffixes
// (an unknown id's error lists them: "closest, newest first").
func TestClosestIDsByStartTime(t *testing.T) {
	t.Parallel()
	f, root, _ := localSnapshot(t)
	// Three snapshot folders of one second (2030-01-01 00:00:00), whose
	// ids sort the other way round from their start times, one of the
	// second before and one ten hours later.
	for id, started := range map[string]string{
		"20300101T000000Z-aaaaaa": "2030-01-01T00:00:00.9Z",
		"20300101T000000Z-bbbbbb": "2030-01-01T00:00:00.5Z",
		"20300101T000000Z-cccccc": "2030-01-01T00:00:00.1Z",
		"20291231T235959Z-ffffff": "2029-12-31T23:59:59.9Z",
		"20300101T100000Z-eeeeee": "2030-01-01T10:00:00.5Z",
	} {
		dir := filepath.Join(root, "gpu01", "snapshots", id)
		testutil.Must(t, os.MkdirAll(dir, 0o700))
		testutil.Must(t, os.WriteFile(filepath.Join(dir, "started"), []byte(started+"\n"), 0o600))
	}
	for _, tc := range []struct{ id, want string }{
		{"20300101T000000Z-dddddd", "closest, newest first: 20300101T000000Z-aaaaaa, 20300101T000000Z-bbbbbb, 20300101T000000Z-cccccc"},
		{"20300101T000001Z-dddddd", "closest, newest first: 20300101T000000Z-aaaaaa, 20300101T000000Z-bbbbbb, 20300101T000000Z-cccccc"},
		// Two of the three shown are of a second that holds three.
		{"20300101T200000Z-dddddd", "closest, newest first: 20300101T100000Z-eeeeee, 20300101T000000Z-aaaaaa, 20300101T000000Z-bbbbbb"},
	} {
		_, err := restore.Restore(context.Background(), f.cfg, restore.Options{Snapshot: tc.id, To: t.TempDir(), DryRun: true})
		if exitcode.Code(err) != exitcode.Usage || !strings.HasSuffix(err.Error(), tc.want) {
			t.Errorf("restore %s: code %d, %v; want it to end %q", tc.id, exitcode.Code(err), err, tc.want)
		}
	}
}

// TestRestoreAllMissingPiece: restore --all with a piece of sqlite:hub
// deleted puts files:stack back in place and names sqlite:hub (exit 3);
// the live database is left as it was.
func TestRestoreAllMissingPiece(t *testing.T) {
	t.Parallel()
	f, root, res := localSnapshot(t)
	ctx := context.Background()
	testutil.Must(t, os.Remove(piecePath(t, root, res, "sqlite:hub", 0)))
	testutil.Must(t, os.WriteFile(filepath.Join(f.data, "policy.bin"), []byte("damaged"), 0o600))
	sqlite3(t, f.db, "INSERT INTO users(name) VALUES ('live');")

	rr, err := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: res.ID[:20], All: true, Force: true})
	if exitcode.Code(err) != exitcode.CheckFailed || !strings.Contains(err.Error(), "1 of 2 parts NOT restored: sqlite:hub") {
		t.Fatalf("restore --all: code %d, %v", exitcode.Code(err), err)
	}
	if st := statuses(rr); st["files:stack"] != restore.StatusRestored || st["sqlite:hub"] != restore.StatusFailed {
		t.Fatalf("statuses %v", st)
	}
	if b, _ := os.ReadFile(filepath.Join(f.data, "policy.bin")); string(b) == "damaged" {
		t.Fatal("files:stack was not restored")
	}
	if got := sqlite3(t, f.db, "SELECT group_concat(name) FROM users;"); got != "ada,bob,live" {
		t.Fatalf("the live database changed: %q", got)
	}
}
