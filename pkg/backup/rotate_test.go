package backup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/davtest"
	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/retention"
	"github.com/firetech/fireops/pkg/snapshot"
)

// tree lists every file under dir with its size and mtime, to tell that a
// dry run changed nothing.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, _ := d.Info()
		out = append(out, fmt.Sprintf("%s %d %d", p, fi.Size(), fi.ModTime().UnixNano()))
		return nil
	})
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// ageFiles sets the mtime of every file and folder under dir (the
// objects, a snapshot folder) to when: uploads "made" then.
func ageFiles(t *testing.T, dir string, when time.Time) {
	t.Helper()
	testutil.Must(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, when, when)
	}))
}

// manifestObjects returns the ids of every object (format v2: the piece
// lists and the pieces they name, each once) that the manifest of
// snapshot id under the host folder references.
func manifestObjects(t *testing.T, host, id string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(host, "snapshots", id, "manifest.json"))
	testutil.Must(t, err)
	var m snapshot.Manifest
	testutil.Must(t, json.Unmarshal(b, &m))
	if m.Version != snapshot.FormatVersion || len(m.Lists) == 0 {
		t.Fatalf("manifest of %s: version %d with %d piece lists", id, m.Version, len(m.Lists))
	}
	var ids []string
	for _, l := range m.Lists {
		ids = append(ids, l.ID)
		b, err := os.ReadFile(objectPath(host, l.ID))
		testutil.Must(t, err)
		var pl snapshot.PieceList
		testutil.Must(t, json.Unmarshal(b, &pl))
		for _, p := range pl.Pieces {
			ids = append(ids, p.ID)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// objectPath is the file of a v2 object under the host folder.
func objectPath(host, id string) string {
	return filepath.Join(host, "objects", id[:2], id)
}

// objectsOf returns the objects any of the snapshots references.
func objectsOf(t *testing.T, host string, ids ...string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, id := range ids {
		for _, o := range manifestObjects(t, host, id) {
			out[o] = true
		}
	}
	return out
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	testutil.Must(t, err)
	return fi.Size()
}

// randomObjectID returns a random v2 object id (64 hex digits).
func randomObjectID(t *testing.T) string {
	t.Helper()
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

func decisions(d RotateDest) map[string]retention.Decision {
	m := map[string]retention.Decision{}
	for _, s := range d.Snapshots {
		m[s.ID] = s
	}
	return m
}

// TestRotateEndToEnd takes five snapshots "on five days" (a fake clock),
// each with a changed database (new pieces and a new piece list) and the
// same files (a piece list and pieces shared by all), plus a killed run's
// leftovers (a started file and an uploaded piece no manifest names), and
// rotates with keep_last 2: a dry run first, then for real; on WebDAV also
// while a snapshot is being written. What only the removed snapshots
// referenced is swept, what a kept one shares survives, and every kept
// snapshot still verifies after each rotate.
func TestRotateEndToEnd(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"local", "webdav"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var dav *davtest.Server
			var root string // the folder that backs the destination
			var dest string
			if kind == "local" {
				root = filepath.Join(t.TempDir(), "backups")
				dest = "{name: local, remote: " + root + "}"
			} else {
				dav = davtest.Start(t)
				root = filepath.Join(dav.Dir, "fireops")
				dest = fmt.Sprintf("{name: dav, remote: \"%s\"}", dav.Remote("fireops"))
			}
			f := newFixture(t, dest)
			f.cfg.Retention = config.Retention{KeepLast: 2, IncompleteGrace: config.Duration(24 * time.Hour)}
			ctx := context.Background()
			now := time.Now().UTC()
			host := filepath.Join(root, "gpu01")

			var ids []string
			var first *snapshot.Result
			for i := 5; i >= 1; i-- {
				sqlite3(t, f.db, fmt.Sprintf("INSERT INTO users(name) VALUES ('user%d');", i))
				at := now.Add(-time.Duration(i) * 24 * time.Hour)
				res, err := Snapshot(ctx, f.cfg, SnapshotOptions{Now: func() time.Time { return at }})
				if err != nil {
					t.Fatal(err)
				}
				if first == nil {
					first = res
				}
				ids = append(ids, res.ID)
			}
			// The files part is shared by all: its piece list and pieces.
			last := objectsOf(t, host, ids[4])
			var shared []string
			for _, o := range manifestObjects(t, host, ids[0]) {
				if last[o] {
					shared = append(shared, o)
				}
			}
			filesObjs := []string{partList(first, "files:stack")}
			for _, p := range readPieceList(t, root, filesObjs[0]).Pieces {
				filesObjs = append(filesObjs, p.ID)
			}
			slices.Sort(filesObjs)
			if filesObjs = slices.Compact(filesObjs); !slices.Equal(shared, filesObjs) {
				t.Fatalf("want the files part's objects %v shared by the first and the last snapshot, got %v", filesObjs, shared)
			}
			kept := objectsOf(t, host, ids[3:]...)
			var gone []string // objects only the removed snapshots reference
			var goneBytes int64
			for o := range objectsOf(t, host, ids[:3]...) {
				if !kept[o] {
					gone = append(gone, o)
					goneBytes += fileSize(t, objectPath(host, o))
				}
			}
			if len(gone) == 0 {
				t.Fatal("the removed snapshots reference nothing of their own")
			}
			// Everything uploaded so far was uploaded "a month ago".
			ageFiles(t, filepath.Join(host, "objects"), now.Add(-30*24*time.Hour))

			// A run killed three days ago: a started file and a piece it
			// uploaded (a failed run leaves its pieces for the next run),
			// which no manifest names.
			killed := snapshot.NewSnapshotID(now.Add(-3 * 24 * time.Hour))
			orphan := randomObjectID(t)
			testutil.Must(t, os.MkdirAll(filepath.Join(host, "snapshots", killed), 0o755))
			testutil.Must(t, os.WriteFile(filepath.Join(host, "snapshots", killed, "started"), []byte(now.Add(-3*24*time.Hour).Format(time.RFC3339Nano)+"\n"), 0o644))
			testutil.Must(t, os.MkdirAll(filepath.Dir(objectPath(host, orphan)), 0o755))
			testutil.Must(t, os.WriteFile(objectPath(host, orphan), make([]byte, 1000), 0o644))
			ageFiles(t, filepath.Join(host, "snapshots", killed), now.Add(-3*24*time.Hour))
			ageFiles(t, objectPath(host, orphan), now.Add(-3*24*time.Hour))
			goneBytes += 1000

			// Dry run: the plan, and nothing touched.
			before := tree(t, root)
			dry, err := Rotate(ctx, f.cfg, RotateOptions{DryRun: true})
			if err != nil {
				t.Fatal(err)
			}
			if after := tree(t, root); after != before {
				t.Fatalf("dry run changed the destination:\n%s\n---\n%s", before, after)
			}
			d := dry.Destinations[0]
			dec := decisions(d)
			for i, id := range ids {
				want := i >= 3
				if dec[id].Keep != want || dec[id].State != retention.Complete {
					t.Fatalf("dry run: %s keep=%v, want %v: %+v", id, dec[id].Keep, want, dec[id])
				}
			}
			if dec[ids[4]].Reasons[0] != "keep_last" || dec[ids[0]].Reasons[0] != retention.ReasonNoRule {
				t.Fatalf("reasons: %+v", d.Snapshots)
			}
			if k := dec[killed]; k.Keep || k.State != retention.Incomplete {
				t.Fatalf("killed run: %+v", k)
			}
			if d.Kept != 2 || d.Removed != 3 || d.IncompleteRemoved != 1 || d.Objects.Removed != len(gone)+1 || d.Objects.FreedBytes != goneBytes {
				t.Fatalf("dry run totals: %+v (want %d objects, %d bytes)", d, len(gone)+1, goneBytes)
			}

			// A snapshot being written while rotate runs.
			var inflight chan error
			var inflightObj string
			if kind == "webdav" {
				sqlite3(t, f.db, "INSERT INTO users(name) VALUES ('late');")
				dav.HoldPutsAfter(2) // the started file and the database's piece; its piece list waits
				base := dav.Puts()
				inflight = make(chan error, 1)
				go func() {
					_, err := Snapshot(ctx, f.cfg, SnapshotOptions{})
					inflight <- err
				}()
				deadline := time.Now().Add(time.Minute)
				for dav.Puts() < base+3 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if dav.Puts() < base+3 {
					dav.Release()
					t.Fatal("the concurrent snapshot never reached the held upload")
				}

				// Same host, same state dir: the snapshot holds the objects
				// lock, so rotate removes nothing and sweeps nothing (the
				// next rotate does).
				res, err := Rotate(ctx, f.cfg, RotateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				r := res.Destinations[0]
				if r.Objects.Skipped == "" || r.Objects.Removed != 0 || r.Removed != 0 || r.IncompleteRemoved != 0 {
					t.Fatalf("rotate during a snapshot: %+v", r)
				}
				for _, id := range ids[:3] {
					if _, err := os.Stat(filepath.Join(host, "snapshots", id, "manifest.json")); err != nil {
						t.Fatalf("snapshot %s removed while a snapshot runs: %v", id, err)
					}
				}
				for _, o := range append(gone, orphan) {
					if _, err := os.Stat(objectPath(host, o)); err != nil {
						t.Fatalf("object %s swept while a snapshot runs: %v", o, err)
					}
				}
				// Which object is the one being written?
				var young []string
				testutil.Must(t, filepath.WalkDir(filepath.Join(host, "objects"), func(p string, d fs.DirEntry, err error) error {
					if err != nil || d.IsDir() {
						return err
					}
					fi, err := d.Info()
					if err == nil && fi.ModTime().After(now.Add(-time.Hour)) {
						young = append(young, d.Name())
					}
					return err
				}))
				if len(young) != 1 {
					t.Fatalf("want one object of the running snapshot on the destination, got %v", young)
				}
				inflightObj = young[0]
				// Another state dir (no shared lock): the grace period alone
				// protects the upload in progress.
				other := *f.cfg
				other.StateDir = t.TempDir()
				res, err = Rotate(ctx, &other, RotateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				r = res.Destinations[0]
				if r.Objects.Skipped != "" || r.Objects.Young != 1 || r.Objects.Removed != len(gone)+1 || r.Objects.FreedBytes != goneBytes || r.Removed != 3 || r.IncompleteRemoved != 1 {
					t.Fatalf("rotate with the grace period only: %+v", r)
				}
				inprog := 0
				for _, s := range r.Snapshots {
					if s.State == retention.Incomplete && s.ID != killed {
						inprog++
						if !s.Keep || s.Reasons[0] != retention.ReasonIncompleteInGrace {
							t.Fatalf("the running snapshot's folder: %+v", s)
						}
					}
				}
				if inprog != 1 {
					t.Fatalf("want the running snapshot as the one incomplete folder: %+v", r.Snapshots)
				}
			} else {
				res, err := Rotate(ctx, f.cfg, RotateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				r := res.Destinations[0]
				if r.Removed != 3 || r.IncompleteRemoved != 1 || r.Objects.Removed != len(gone)+1 || r.Objects.FreedBytes != goneBytes || r.Objects.Young != 0 {
					t.Fatalf("rotate: %+v", r)
				}
			}
			for _, o := range append(gone, orphan) {
				if _, err := os.Stat(objectPath(host, o)); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("object %s of a removed snapshot or the killed run survived: %v", o, err)
				}
			}
			for o := range kept {
				if _, err := os.Stat(objectPath(host, o)); err != nil {
					t.Fatalf("object %s of a kept snapshot was swept: %v", o, err)
				}
			}
			if _, err := os.Stat(filepath.Join(host, "snapshots", killed)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("the killed run's folder survived: %v", err)
			}
			if inflight != nil {
				dav.Release()
				if err := <-inflight; err != nil {
					t.Fatalf("the snapshot written during rotate: %v", err)
				}
				if _, err := os.Stat(objectPath(host, inflightObj)); err != nil {
					t.Fatalf("the running snapshot's object was swept: %v", err)
				}
			}

			// Every kept snapshot still verifies full, the one written
			// during rotate included.
			vr, err := Verify(ctx, f.cfg, VerifyOptions{All: true, Level: LevelFull})
			if err != nil {
				t.Fatalf("verify full after rotate: %v %+v", err, vr)
			}
			want := 2
			if inflight != nil {
				want = 3
			}
			if len(vr) != want {
				t.Fatalf("verified %d snapshots, want %d: %+v", len(vr), want, vr)
			}
			// Rotating again removes what the new snapshot pushed out of
			// keep_last, then nothing more; what the remaining snapshots
			// share (the files part) survives, and they still verify.
			for _, extra := range []int{want - 2, 0} {
				again, err := Rotate(ctx, f.cfg, RotateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if r := again.Destinations[0]; r.Removed != extra || r.IncompleteRemoved != 0 || r.Kept != 2 {
					t.Fatalf("rotate again: %+v, want %d removed", r, extra)
				}
				for _, o := range filesObjs {
					if _, err := os.Stat(objectPath(host, o)); err != nil {
						t.Fatalf("object %s of the files part, shared by the remaining snapshots, was swept: %v", o, err)
					}
				}
				vr, err := Verify(ctx, f.cfg, VerifyOptions{All: true, Level: LevelHashes})
				if err != nil || len(vr) != 2 {
					t.Fatalf("verify hashes after rotating again: %v %+v", err, vr)
				}
			}
		})
	}
}

// TestRotateRefusals: an empty policy and a zero grace are usage errors,
// and nothing is touched.
func TestRotateRefusals(t *testing.T) {
	t.Parallel()
	f, root := localFixture(t, "backups")
	ctx := context.Background()
	if _, err := Snapshot(ctx, f.cfg, SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	before := tree(t, root)
	cfg := *f.cfg
	cfg.Retention = config.Retention{IncompleteGrace: config.Duration(time.Hour)}
	_, err := Rotate(ctx, &cfg, RotateOptions{})
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "empty") || !strings.Contains(exitcode.Hint(err), "keep_") {
		t.Fatalf("empty policy: %v", err)
	}
	cfg.Retention = config.Retention{KeepLast: 1}
	if _, err := Rotate(ctx, &cfg, RotateOptions{}); exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "incomplete_grace") {
		t.Fatalf("zero grace: %v", err)
	}
	// A destination's own policy overrides the global one; its grace
	// falls back to the global grace.
	cfg.Retention = config.Retention{KeepLast: 1, IncompleteGrace: config.Duration(time.Hour)}
	cfg.Destinations = slices.Clone(cfg.Destinations)
	cfg.Destinations[0].Retention = &config.Retention{}
	_, err = Rotate(ctx, &cfg, RotateOptions{})
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "destinations[0].retention") {
		t.Fatalf("empty override: %v", err)
	}
	cfg.Destinations[0].Retention = &config.Retention{KeepDaily: 3}
	p, grace := PolicyFor(&cfg, "local")
	if p.KeepDaily != 3 || p.KeepLast != 0 || grace != time.Hour {
		t.Fatalf("override: %+v %s", p, grace)
	}
	if after := tree(t, root); after != before {
		t.Fatal("a refused rotate changed the destination")
	}
}

// TestRotateDamagedManifest: a snapshot whose manifest was altered is never
// removed by the policy, and its objects are never swept.
func TestRotateDamagedManifest(t *testing.T) {
	t.Parallel()
	f, root := localFixture(t, "backups")
	f.cfg.Retention = config.Retention{KeepLast: 1, IncompleteGrace: config.Duration(time.Hour)}
	ctx := context.Background()
	now := time.Now()
	var ids []string
	for i := 3; i >= 1; i-- {
		sqlite3(t, f.db, fmt.Sprintf("INSERT INTO users(name) VALUES ('d%d');", i))
		at := now.Add(-time.Duration(i) * time.Hour)
		res, err := Snapshot(ctx, f.cfg, SnapshotOptions{Now: func() time.Time { return at }})
		testutil.Must(t, err)
		ids = append(ids, res.ID)
	}
	host := filepath.Join(root, "gpu01")
	ageFiles(t, filepath.Join(host, "objects"), now.Add(-48*time.Hour))
	// Alter the oldest snapshot's manifest: its signature no longer verifies.
	mp := filepath.Join(host, "snapshots", ids[0], "manifest.json")
	b, _ := os.ReadFile(mp)
	testutil.Must(t, os.WriteFile(mp, []byte(strings.Replace(string(b), `"stored"`, `"stored" `, 1)), 0o644))
	objs := manifestObjects(t, host, ids[0])
	res, err := Rotate(ctx, f.cfg, RotateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dec := decisions(res.Destinations[0])
	if d := dec[ids[0]]; !d.Keep || d.State != retention.Damaged {
		t.Fatalf("damaged snapshot: %+v", d)
	}
	if dec[ids[1]].Keep || !dec[ids[2]].Keep {
		t.Fatalf("plan: %+v", res.Destinations[0].Snapshots)
	}
	for _, o := range objs {
		if _, err := os.Stat(objectPath(host, o)); err != nil {
			t.Fatalf("object %s of the damaged snapshot was swept: %v", o, err)
		}
	}
	// A manifest that does not even decode stops the sweep.
	testutil.Must(t, os.WriteFile(mp, []byte("{not json"), 0o644))
	res, err = Rotate(ctx, f.cfg, RotateOptions{})
	if err == nil || !strings.Contains(err.Error(), "does not decode") || res.Destinations[0].Objects.Skipped == "" {
		t.Fatalf("undecodable manifest: %v %+v", err, res)
	}
}

// TestRotateOnlyRunsAMonth: a month of full snapshots at 03:00 and a
// `snapshot --only files:stack` at noon every day (the clock hook), rotated
// with the default policy: retention counts per part, so every full run
// the policy keeps without the noon runs (the daily, weekly and monthly
// copies of sqlite:hub, which only the full runs hold) is kept with them,
// and the noon runs are kept only as copies of files:stack. After the real
// rotate, the kept snapshots are there and verify.
func TestRotateOnlyRunsAMonth(t *testing.T) {
	t.Parallel()
	f, root := localFixture(t, "backups")
	f.cfg.Retention = config.Retention{KeepLast: 3, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 6, IncompleteGrace: config.Duration(24 * time.Hour)}
	ctx := context.Background()
	first := time.Date(2026, 11, 1, 3, 0, 0, 0, time.UTC)
	now := time.Date(2026, 11, 30, 18, 0, 0, 0, time.UTC)
	var fulls []retention.Snapshot
	full, noon := map[string]bool{}, map[string]bool{}
	for day := first; day.Before(now); day = day.AddDate(0, 0, 1) {
		sqlite3(t, f.db, fmt.Sprintf("INSERT INTO users(name) VALUES ('u%s');", day.Format("0102")))
		at := day
		res, err := Snapshot(ctx, f.cfg, SnapshotOptions{Now: func() time.Time { return at }})
		if err != nil {
			t.Fatal(err)
		}
		full[res.ID] = true
		fulls = append(fulls, retention.Snapshot{ID: res.ID, Time: at, State: retention.Complete})
		at12 := day.Add(9 * time.Hour)
		res, err = Snapshot(ctx, f.cfg, SnapshotOptions{Only: []string{"files:stack"}, Now: func() time.Time { return at12 }})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Parts) != 1 {
			t.Fatalf("--only run: %+v", res.Parts)
		}
		noon[res.ID] = true
	}
	// What the policy keeps of the full runs alone.
	p, grace := PolicyFor(f.cfg, "local")
	alone, err := retention.Plan(p, fulls, now, grace)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, d := range alone {
		if d.Keep {
			want[d.ID] = true
		}
	}
	if len(want) < 10 {
		t.Fatalf("the policy keeps %d full runs alone: %+v", len(want), alone)
	}

	dry, err := Rotate(ctx, f.cfg, RotateOptions{DryRun: true, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	d := dry.Destinations[0]
	if d.Parts != 2 || d.RetiredParts != 0 {
		t.Fatalf("parts: %d, %d retired", d.Parts, d.RetiredParts)
	}
	dec := decisions(d)
	keptNoon := 0
	for id, dc := range dec {
		switch {
		case full[id] && dc.Keep != want[id]:
			t.Errorf("full run %s: keep=%v (%v), without the --only runs %v", id, dc.Keep, dc.Reasons, want[id])
		case noon[id] && dc.Keep:
			keptNoon++
			if !dc.Only || dc.PartCount != 1 {
				t.Errorf("--only run %s: %+v", id, dc)
			}
		}
	}
	// The noon runs are the daily copies of files:stack (and its last 3).
	if keptNoon < 7 {
		t.Errorf("%d --only runs kept, want at least the 7 daily copies of files:stack", keptNoon)
	}

	res, err := Rotate(ctx, f.cfg, RotateOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Destinations[0]; r.Kept != len(want)+keptNoon {
		t.Fatalf("rotate kept %d, want %d full and %d --only runs", r.Kept, len(want), keptNoon)
	}
	for id := range want {
		if _, err := os.Stat(filepath.Join(root, "gpu01", "snapshots", id, "manifest.json")); err != nil {
			t.Errorf("full run %s: %v", id, err)
		}
	}
	vr, err := Verify(ctx, f.cfg, VerifyOptions{All: true, Level: LevelHashes})
	if err != nil || len(vr) != len(want)+keptNoon {
		t.Fatalf("verify after rotate: %v (%d results)", err, len(vr))
	}
}

// TestRotateSameSecond: snapshots started in the same second order by
// their start time, not by their random ids: keep_last 1 keeps the one
// that started last, also when its id is the lowest.
func TestRotateSameSecond(t *testing.T) {
	t.Parallel()
	f, _ := localFixture(t, "backups")
	f.cfg.Retention = config.Retention{KeepLast: 1, IncompleteGrace: config.Duration(time.Hour)}
	ctx := context.Background()
	second := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	var ids []string
	// Until the last one's id is below an earlier one's, so that ordering
	// by id would not keep it. (Comparing with the first id only failed
	// about one run in 40: when the first id was low, 39 tries could all
	// miss; the k-th snapshot is above all earlier ones one time in k.)
	highest := ""
	for k := 1; k <= 40 && (len(ids) < 2 || ids[len(ids)-1] > highest); k++ {
		if len(ids) > 0 {
			highest = max(highest, ids[len(ids)-1])
		}
		at := second.Add(time.Duration(k) * 10 * time.Millisecond)
		res, err := Snapshot(ctx, f.cfg, SnapshotOptions{Now: func() time.Time { return at }})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ID)
	}
	last := ids[len(ids)-1]
	if last > highest {
		t.Fatalf("40 snapshots, each with an id above all earlier ones: %v", ids)
	}
	dry, err := Rotate(ctx, f.cfg, RotateOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, dc := range dry.Destinations[0].Snapshots {
		if dc.Keep != (dc.ID == last) {
			t.Errorf("%s (started %s): keep=%v %v; the last started is %s", dc.ID, dc.Time.Format("15:04:05.000"), dc.Keep, dc.Reasons, last)
		}
	}
	ls, err := List(ctx, f.cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := snapshot.Latest(ls[0].Snapshots); !ok || l != last {
		t.Errorf("latest: %s, want %s", l, last)
	}
}
