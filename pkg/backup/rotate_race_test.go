package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/restore"
	"github.com/firetech/fireops/pkg/retention"
	"github.com/firetech/fireops/pkg/snapshot"
)

// onLog is a slog handler that calls fn (once) when a record with the
// message msg is logged: a hook into a run at a known point, in the run's
// own goroutine.
type onLog struct {
	msg  string
	once *sync.Once
	fn   func()
}

func (h onLog) Enabled(context.Context, slog.Level) bool { return true }
func (h onLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h onLog) WithGroup(string) slog.Handler            { return h }
func (h onLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(h.fn)
	}
	return nil
}

// rotateWhenLogged returns a logger that runs a rotate of f's config, in
// the logging goroutine, the first time msg is logged, and rotated, which
// returns that rotate's result and error; rotated ends the test when the
// rotate never ran.
func rotateWhenLogged(ctx context.Context, f *fixture, msg string) (log *slog.Logger, rotated func(*testing.T) (*RotateResult, error)) {
	var rres *RotateResult
	var rerr error
	hook := onLog{msg: msg, once: &sync.Once{}, fn: func() {
		rres, rerr = Rotate(ctx, f.cfg, RotateOptions{})
	}}
	return slog.New(hook), func(t *testing.T) (*RotateResult, error) {
		t.Helper()
		if rres == nil && rerr == nil {
			t.Fatal("the hook never ran rotate")
		}
		return rres, rerr
	}
}

// raceFixture takes three snapshots "on three days", each with its own
// data in both parts (a new file, a new row), with everything uploaded "a
// month ago" and keep_last 1: a rotate removes the two older snapshots and
// sweeps the objects only they reference.
func raceFixture(t *testing.T) (*fixture, string, []string) {
	t.Helper()
	f, root := localFixture(t, "backups")
	f.cfg.Retention = config.Retention{KeepLast: 1, IncompleteGrace: config.Duration(24 * time.Hour)}
	ctx := context.Background()
	now := time.Now().UTC()
	var ids []string
	for i := 3; i >= 1; i-- {
		testutil.Must(t, os.WriteFile(filepath.Join(f.data, fmt.Sprintf("day%d.bin", i)), randomData(200<<10+i), 0o600))
		sqlite3(t, f.db, fmt.Sprintf("INSERT INTO users(name) VALUES ('user%d');", i))
		at := now.Add(-time.Duration(i) * 24 * time.Hour)
		res, err := Snapshot(ctx, f.cfg, SnapshotOptions{Now: func() time.Time { return at }})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ID)
	}
	ageFiles(t, filepath.Join(root, "gpu01", "objects"), now.Add(-30*24*time.Hour))
	return f, root, ids
}

// checkLeft: a rotate that ran while another run held the objects lock
// removed nothing, said why (naming the run), and kept the snapshots the
// policy would remove with that reason.
func checkLeft(t *testing.T, res *RotateResult, err error, holder string, old []string) {
	t.Helper()
	if err != nil {
		t.Fatalf("rotate during the run: %v", err)
	}
	r := res.Destinations[0]
	if r.Removed != 0 || r.Objects.Removed != 0 || !strings.Contains(r.Objects.Skipped, holder) {
		t.Fatalf("rotate during the run removed %d snapshots, %d objects; skipped %q (want it to name %q)", r.Removed, r.Objects.Removed, r.Objects.Skipped, holder)
	}
	dec := decisions(r)
	for _, id := range old {
		if d := dec[id]; !d.Keep || d.State != retention.Complete || !strings.Contains(strings.Join(d.Reasons, ", "), "left while the objects lock is held") {
			t.Fatalf("snapshot %s during the run: %+v", id, d)
		}
	}
}

// TestVerifyRacingRotate: a rotate that runs while `verify --all --level
// full` is between two snapshots (the hook runs it in verify's goroutine,
// after the first snapshot is verified) removes nothing, so verify finds
// every snapshot it listed intact; the next rotate removes them.
func TestVerifyRacingRotate(t *testing.T) {
	t.Parallel()
	f, _, ids := raceFixture(t)
	ctx := context.Background()
	log, rotated := rotateWhenLogged(ctx, f, "verified")
	vr, err := Verify(ctx, f.cfg, VerifyOptions{All: true, Level: LevelFull, Log: log})
	if err != nil || len(vr) != 3 {
		t.Fatalf("verify --all --level full racing rotate: %v %+v", err, vr)
	}
	rres, rerr := rotated(t)
	checkLeft(t, rres, rerr, "fireops verify", ids[:2])
	res, err := Rotate(ctx, f.cfg, RotateOptions{})
	if err != nil || res.Destinations[0].Removed != 2 || res.Destinations[0].Objects.Removed == 0 {
		t.Fatalf("rotate after verify: %v %+v", err, res)
	}
}

// TestRestoreRacingRotate: a rotate that runs while an old snapshot is
// being restored (after its first part) removes nothing, so its second
// part restores too.
func TestRestoreRacingRotate(t *testing.T) {
	t.Parallel()
	f, _, ids := raceFixture(t)
	ctx := context.Background()
	log, rotated := rotateWhenLogged(ctx, f, "part restored")
	to := filepath.Join(t.TempDir(), "restored")
	rr, err := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: ids[0], To: to, Log: log})
	if err != nil {
		t.Fatalf("restore of %s racing rotate: %v %+v", ids[0], err, rr)
	}
	rres, rerr := rotated(t)
	checkLeft(t, rres, rerr, "fireops restore", ids[:2])
	if got := sqlite3(t, filepath.Join(to, "hub.sqlite"), "SELECT group_concat(name) FROM users;"); got != "ada,bob,user3" {
		t.Fatalf("restored database: %q", got)
	}
}

// killedStore is a destination on which a removal stops after a number of
// deletions, as when rotate is killed: every later Delete and Rmdir fails.
type killedStore struct {
	snapshot.Store
	deletes int // deletions that still go through
}

var errKilled = errors.New("rotate killed")

func (s *killedStore) Delete(ctx context.Context, p string) error {
	if s.deletes <= 0 {
		return errKilled
	}
	s.deletes--
	return s.Store.Delete(ctx, p)
}

func (s *killedStore) Rmdir(context.Context, string) error { return errKilled }

// TestRotateFinishesHalfRemoved: a removal that stopped half way (after
// n of its deletions; or, "emptied", after the folder's last file) leaves
// a folder whose time is now; the next rotate finishes it at once instead
// of waiting incomplete_grace, and sweeps what only it referenced.
func TestRotateFinishesHalfRemoved(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		deletes int  // deletions done before the removal stopped
		emptied bool // every file gone, the folder left
	}{
		{name: "before any deletion", deletes: 0},
		{name: "after the started file", deletes: 1},
		{name: "after the manifest", deletes: 2},
		{name: "after the signature", deletes: 3},
		{name: "before the folder", deletes: 100},
		{name: "every file gone", emptied: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, root := localFixture(t, "backups")
			f.cfg.Retention = config.Retention{KeepLast: 1, IncompleteGrace: config.Duration(24 * time.Hour)}
			ctx := context.Background()
			now := time.Now().UTC()
			var ids []string
			for i := 3; i >= 1; i -= 2 {
				testutil.Must(t, os.WriteFile(filepath.Join(f.data, fmt.Sprintf("day%d.bin", i)), randomData(200<<10+i), 0o600))
				at := now.Add(-time.Duration(i) * 24 * time.Hour)
				res, err := Snapshot(ctx, f.cfg, SnapshotOptions{Now: func() time.Time { return at }})
				testutil.Must(t, err)
				ids = append(ids, res.ID)
			}
			host := filepath.Join(root, "gpu01")
			ageFiles(t, filepath.Join(host, "objects"), now.Add(-30*24*time.Hour))
			only := manifestObjects(t, host, ids[0])
			kept := objectsOf(t, host, ids[1])
			old := filepath.Join(host, "snapshots", ids[0])
			if tc.emptied {
				entries, err := os.ReadDir(old)
				testutil.Must(t, err)
				for _, e := range entries {
					testutil.Must(t, os.Remove(filepath.Join(old, e.Name())))
				}
			} else {
				err := snapshot.RemoveSnapshot(ctx, &killedStore{Store: mustStore(t, f), deletes: tc.deletes}, "gpu01", ids[0])
				if !errors.Is(err, errKilled) {
					t.Fatalf("the killed removal: %v", err)
				}
			}
			if _, err := os.Stat(old); err != nil {
				t.Fatalf("the half-removed folder: %v", err)
			}
			res, err := Rotate(ctx, f.cfg, RotateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			r := res.Destinations[0]
			if d := decisions(r)[ids[0]]; d.Keep {
				t.Fatalf("the half-removed snapshot was kept: %+v", d)
			}
			if _, err := os.Stat(old); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("the half-removed folder survived the next rotate: %v", err)
			}
			for _, o := range only {
				if _, err := os.Stat(objectPath(host, o)); kept[o] == errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("object %s (kept snapshot's: %v): %v", o, kept[o], err)
				}
			}
		})
	}
}
