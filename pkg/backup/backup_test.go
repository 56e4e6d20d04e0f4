package backup

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/davtest"
	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/bootstrap"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/destination"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/metrics"
	"github.com/firetech/fireops/pkg/restore"
	"github.com/firetech/fireops/pkg/snapshot"
)

// fixture is a config with real keys, a files source and a SQLite source,
// and the data they cover.
type fixture struct {
	dir, data, db string
	init          *bootstrap.Result
	cfg           *config.Config
}

// newFixture writes keys with `init`, a small tree (with a symlink, an
// empty folder, modes and a hard link) and a SQLite database, and a config
// with the given destinations (YAML list items).
func newFixture(t *testing.T, dests ...string) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir()}
	res, err := bootstrap.Init(bootstrap.Options{Dir: filepath.Join(f.dir, "etc"), Host: "gpu01"})
	if err != nil {
		t.Fatal(err)
	}
	f.init = res
	f.data = filepath.Join(f.dir, "data", "firetech")
	testutil.Must(t, os.MkdirAll(filepath.Join(f.data, "runs", "ppo"), 0o750))
	testutil.Must(t, os.MkdirAll(filepath.Join(f.data, "empty"), 0o700))
	testutil.Must(t, os.WriteFile(filepath.Join(f.data, "runs", "ppo", "progress.csv"), []byte(strings.Repeat("1,0.5,200\n", 5000)), 0o640))
	testutil.Must(t, os.WriteFile(filepath.Join(f.data, "policy.bin"), randomData(3<<20), 0o600))
	testutil.Must(t, os.Symlink("runs/ppo", filepath.Join(f.data, "latest")))
	testutil.Must(t, os.Link(filepath.Join(f.data, "policy.bin"), filepath.Join(f.data, "policy.hardlink")))
	old := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	testutil.Must(t, os.Chtimes(filepath.Join(f.data, "runs", "ppo", "progress.csv"), old, old))
	f.db = filepath.Join(f.dir, "data", "hub.sqlite")
	sqlite3(t, f.db, "PRAGMA journal_mode=WAL; CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users(name) VALUES ('ada'), ('bob');")
	f.writeConfig(t, dests...)
	return f
}

func (f *fixture) writeConfig(t *testing.T, dests ...string) {
	t.Helper()
	f.cfg = loadConfigWith(t, f.dir, "fireops", f.init, dests, fmt.Sprintf(`compression: fastest
sources:
  files: [{name: stack, paths: [%s]}]
  sqlite: [{name: hub, path: %s}]
`, f.data, f.db))
}

func randomData(n int) []byte {
	b := make([]byte, n)
	var x uint64 = 88172645463325252
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// sqlite runs SQL through the sqlite3 command-line tool.
func sqlite3(t *testing.T, db, sql string) string {
	t.Helper()
	testenv.RequireTool(t, "sqlite3")
	out, err := exec.Command("sqlite3", db, sql).CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s: %v: %s", sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

// sameTree compares two folders: names, types, modes, sizes, contents,
// mtimes of files, symlink targets and hard-link identity.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	seen := 0
	inodes := map[uint64]string{}
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		q := filepath.Join(got, rel)
		wi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		gi, err := os.Lstat(q)
		if err != nil {
			return fmt.Errorf("missing after restore: %s", rel)
		}
		if wi.Mode() != gi.Mode() {
			return fmt.Errorf("%s: mode %v, want %v", rel, gi.Mode(), wi.Mode())
		}
		ws, gs := wi.Sys().(*syscall.Stat_t), gi.Sys().(*syscall.Stat_t)
		if ws.Uid != gs.Uid || ws.Gid != gs.Gid {
			return fmt.Errorf("%s: owner %d:%d, want %d:%d", rel, gs.Uid, gs.Gid, ws.Uid, ws.Gid)
		}
		switch {
		case wi.Mode().IsRegular():
			a, _ := os.ReadFile(p)
			b, _ := os.ReadFile(q)
			if string(a) != string(b) {
				return fmt.Errorf("%s: content differs", rel)
			}
			if !wi.ModTime().Equal(gi.ModTime()) {
				return fmt.Errorf("%s: mtime %v, want %v", rel, gi.ModTime(), wi.ModTime())
			}
			if ws.Nlink > 1 {
				if other, ok := inodes[ws.Ino]; ok {
					oi, _ := os.Lstat(filepath.Join(got, other))
					if !os.SameFile(oi, gi) {
						return fmt.Errorf("%s: hard link to %s lost", rel, other)
					}
				}
				inodes[ws.Ino] = rel
			}
		case wi.Mode()&fs.ModeSymlink != 0:
			a, _ := os.Readlink(p)
			b, _ := os.Readlink(q)
			if a != b {
				return fmt.Errorf("%s: symlink %q, want %q", rel, b, a)
			}
		}
		seen++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen < 5 {
		t.Fatalf("compared only %d entries", seen)
	}
}

func TestRoundTripLocalAndWebDAV(t *testing.T) {
	t.Parallel()
	dav := davtest.Start(t)
	f := newFixture(t, "{name: local, remote: "+filepath.Join(t.TempDir(), "backups")+"}",
		fmt.Sprintf("{name: yandex-standin, remote: \"%s\"}", dav.Remote("fireops")))
	ctx := context.Background()
	res, err := Snapshot(ctx, f.cfg, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Parts) != 2 || len(res.Destinations) != 2 {
		t.Fatalf("result %+v", res)
	}
	for _, dest := range []string{"local", "yandex-standin"} {
		to := filepath.Join(t.TempDir(), "restored")
		rr, err := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: "latest", Dest: dest, To: to})
		if err != nil {
			t.Fatalf("restore from %s: %v", dest, err)
		}
		if rr.Destination != dest || rr.Snapshot != res.ID {
			t.Fatalf("restored %s from %s", rr.Snapshot, rr.Destination)
		}
		sameTree(t, f.data, filepath.Join(to, "files-stack", f.data))
		if got := sqlite3(t, filepath.Join(to, "hub.sqlite"), "PRAGMA integrity_check; SELECT group_concat(name) FROM users;"); got != "ok\nada,bob" {
			t.Fatalf("restored database from %s: %q", dest, got)
		}
	}
	vr, err := Verify(ctx, f.cfg, VerifyOptions{Level: LevelRestoreTest})
	if err != nil || len(vr) != 2 {
		t.Fatalf("verify restore-test: %v %+v", err, vr)
	}
}

func TestRestoreWithoutFireops(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"age", "zstd", "tar"} {
		testenv.RequireTool(t, tool)
	}
	f, root := localFixture(t, "backups")
	res, err := Snapshot(context.Background(), f.cfg, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// 1. The index tells which piece list is which part.
	idxJSON, err := exec.Command("age", "-d", "-i", f.init.Identity, filepath.Join(root, "gpu01", "snapshots", res.ID, "index.age")).Output()
	if err != nil {
		t.Fatalf("age -d index.age: %v", err)
	}
	list := partList(res, "files:stack")
	if list == "" || !strings.Contains(string(idxJSON), `"list": "`+list+`"`) || !strings.Contains(string(idxJSON), `"id": "files:stack"`) {
		t.Fatalf("index does not name the part's piece list %q:\n%s", list, idxJSON)
	}
	// 2. The piece list is plaintext JSON, one piece a line, in order:
	// age -d each piece | zstd -d | tar -x, as docs/format.md says.
	readPieceList(t, root, list)
	out := t.TempDir()
	script := fmt.Sprintf(`cd %s && for id in $(grep -o '^\["[0-9a-f]*"' %s | tr -d '["'); do age -d -i %s objects/${id:0:2}/$id || exit 1; done | zstd -d | tar -xpf - -C %s`,
		filepath.Join(root, "gpu01"), filepath.Join("objects", list[:2], list), f.init.Identity, out)
	if b, err := exec.Command("bash", "-o", "pipefail", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, b)
	}
	sameTree(t, f.data, filepath.Join(out, f.data))
}

func TestTamperFailsWithCheckCode(t *testing.T) {
	t.Parallel()
	f, root, res := localSnapshot(t)
	ctx := context.Background()
	// Flip a byte of the first piece of files:stack.
	piece := piecePath(t, root, res, "files:stack", 0)
	pieceID := filepath.Base(piece)
	data, _ := os.ReadFile(piece)
	data[len(data)-10] ^= 0xff
	testutil.Must(t, os.WriteFile(piece, data, 0o600))

	_, err := Verify(ctx, f.cfg, VerifyOptions{Level: LevelFull})
	if exitcode.Code(err) != exitcode.CheckFailed || !strings.Contains(err.Error(), pieceID) || !strings.Contains(exitcode.Hint(err), "damaged") {
		t.Fatalf("verify full: code %d, err %v, hint %q", exitcode.Code(err), err, exitcode.Hint(err))
	}
	// Level hashes finds it too, without an identity.
	noKey := *f.cfg
	noKey.Keys.IdentityFile = "/nonexistent/identity.txt"
	_, err = Verify(ctx, &noKey, VerifyOptions{Level: LevelHashes})
	if exitcode.Code(err) != exitcode.CheckFailed || !strings.Contains(err.Error(), pieceID) || !strings.Contains(exitcode.Hint(err), "damaged") {
		t.Fatalf("verify hashes: code %d, err %v, hint %q", exitcode.Code(err), err, exitcode.Hint(err))
	}
	if _, err := Verify(ctx, f.cfg, VerifyOptions{Level: LevelQuick}); err != nil {
		t.Fatalf("verify quick sees sizes only and should pass: %v", err)
	}
	to := filepath.Join(t.TempDir(), "restored")
	_, err = restore.Restore(ctx, f.cfg, restore.Options{Snapshot: res.ID, To: to})
	if exitcode.Code(err) != exitcode.CheckFailed {
		t.Fatalf("restore: code %d, err %v", exitcode.Code(err), err)
	}
	if _, err := os.Stat(filepath.Join(to, "files-stack")); !errors.Is(err, fs.ErrNotExist) {
		if _, err2 := os.Stat(filepath.Join(to, "hub.sqlite")); !errors.Is(err2, fs.ErrNotExist) {
			t.Fatalf("restore wrote into the target: %v %v", err, err2)
		}
	}
	left, _ := os.ReadDir(to)
	for _, e := range left {
		if e.Name() == "files-stack" {
			t.Fatalf("tampered part was written: %v", left)
		}
		if strings.Contains(e.Name(), "staging") || strings.HasPrefix(e.Name(), ".") {
			t.Fatalf("staging left behind: %s", e.Name())
		}
	}
}

// partList returns the id of the piece list of part id in res.
func partList(res *snapshot.Result, id string) string {
	for _, p := range res.Parts {
		if p.ID == id {
			return p.List
		}
	}
	return ""
}

// readPieceList reads the piece list listID of host gpu01 on the
// destination whose folder is root.
func readPieceList(t *testing.T, root, listID string) *snapshot.PieceList {
	t.Helper()
	if listID == "" {
		t.Fatal("no piece list")
	}
	b, err := os.ReadFile(filepath.Join(root, snapshot.PiecePath("gpu01", listID)))
	testutil.Must(t, err)
	var l snapshot.PieceList
	testutil.Must(t, json.Unmarshal(b, &l))
	if len(l.Pieces) == 0 {
		t.Fatalf("piece list %s names no piece", listID)
	}
	return &l
}

// piecePath returns the file of piece n of part id of res on the
// destination whose folder is root.
func piecePath(t *testing.T, root string, res *snapshot.Result, id string, n int) string {
	t.Helper()
	l := readPieceList(t, root, partList(res, id))
	return filepath.Join(root, snapshot.PiecePath("gpu01", l.Pieces[n].ID))
}

// loadTestConfig writes DIR/etc/NAME.yaml: init's keys, one local
// destination DIR/backups, chunk size 1 MiB, state DIR/state, then rest
// (sources and the like), and loads it.
func loadTestConfig(t *testing.T, dir, name string, init *bootstrap.Result, rest string) *config.Config {
	t.Helper()
	return loadConfigWith(t, dir, name, init, []string{"{name: local, remote: " + filepath.Join(dir, "backups") + "}"}, rest)
}

// loadConfigWith is loadTestConfig with the given destinations (YAML flow
// mappings).
func loadConfigWith(t *testing.T, dir, name string, init *bootstrap.Result, dests []string, rest string) *config.Config {
	t.Helper()
	y := fmt.Sprintf(`host: gpu01
keys:
  recipients: [%s]
  identity_file: identity.txt
  signing_key_file: signing.key
  signing_public_key: %s
destinations:
  - %s
chunk_size: 1MiB
state_dir: %s
`, init.Recipient, init.SigningPublicKey, strings.Join(dests, "\n  - "), filepath.Join(dir, "state")) + rest
	p := filepath.Join(dir, "etc", name+".yaml")
	testutil.Must(t, os.WriteFile(p, []byte(y), 0o644))
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func mustStore(t *testing.T, f *fixture) snapshot.Store {
	t.Helper()
	ds, unopened, err := destination.Open(context.Background(), f.cfg, nil)
	if err != nil || len(unopened) > 0 {
		t.Fatal(err, unopened)
	}
	return ds[0].Store
}

func mustTrusted(t *testing.T, f *fixture) []ed25519.PublicKey {
	t.Helper()
	k, err := destination.TrustedKeys(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestReuseOnlyChangedPart(t *testing.T) {
	t.Parallel()
	f, _ := localFixture(t, "backups")
	ctx := context.Background()
	first, err := Snapshot(ctx, f.cfg, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	second, err := Snapshot(ctx, f.cfg, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range second.Parts {
		if !p.Reused {
			t.Fatalf("unchanged part %s uploaded again", p.ID)
		}
	}
	if second.Destinations[0].Uploaded > 64<<10 {
		t.Fatalf("nothing changed but %d bytes were uploaded", second.Destinations[0].Uploaded)
	}
	testutil.Must(t, os.WriteFile(filepath.Join(f.data, "runs", "ppo", "new.csv"), []byte("x\n"), 0o644))
	third, err := Snapshot(ctx, f.cfg, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p := third.Parts[0]; p.ID != "files:stack" || p.Reused || p.List == partList(first, "files:stack") {
		t.Fatalf("changed part not uploaded: %+v", p)
	}
	// Every snapshot restores on its own, the first one too.
	for _, id := range []string{first.ID, second.ID, third.ID} {
		if _, err := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: id, Parts: []string{"files"}, To: t.TempDir(), Force: true}); err != nil {
			t.Fatalf("restore %s: %v", id, err)
		}
	}
}

// TestRestoreLatestWarnsAboutRefusedNewer: a newest snapshot whose
// manifest does not verify is not restored, and restore latest says so
// while it restores the newest one that does.
func TestRestoreLatestWarnsAboutRefusedNewer(t *testing.T) {
	t.Parallel()
	f, root := localFixture(t, "b")
	ctx := context.Background()
	older, err := Snapshot(ctx, f.cfg, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	later := func() time.Time { return time.Now().Add(time.Hour) }
	newer, err := Snapshot(ctx, f.cfg, SnapshotOptions{Now: later})
	if err != nil {
		t.Fatal(err)
	}
	sig := filepath.Join(root, "gpu01", "snapshots", newer.ID, snapshot.SignatureFile)
	testutil.Must(t, os.WriteFile(sig, []byte("forged"), 0o600))
	var logs bytes.Buffer
	rr, err := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: "latest", Parts: []string{"files:stack"}, To: filepath.Join(t.TempDir(), "r"),
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil || rr.Snapshot != older.ID {
		t.Fatalf("restore latest: %v, %+v; want %s", err, rr, older.ID)
	}
	if !strings.Contains(logs.String(), "a newer snapshot was refused") || !strings.Contains(logs.String(), newer.ID) {
		t.Errorf("no warning about the refused %s:\n%s", newer.ID, logs.String())
	}
}

// TestRestoreTestOwnFailure: a restore-test that fails for a reason of its
// own (here its scratch folder cannot be made) still fails the check (exit
// 3) but does not call intact data damaged.
func TestRestoreTestOwnFailure(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "{name: local, remote: "+filepath.Join(t.TempDir(), "b")+"}")
	ctx := context.Background()
	if _, err := Snapshot(ctx, f.cfg, SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(t.TempDir(), "a-file")
	testutil.Must(t, os.WriteFile(notDir, []byte("x"), 0o600))
	_, err := Verify(ctx, f.cfg, VerifyOptions{Level: LevelRestoreTest, ScratchDir: notDir})
	if exitcode.Code(err) != exitcode.CheckFailed || strings.Contains(exitcode.Hint(err), "damaged") || !strings.Contains(exitcode.Hint(err), "could not be checked") {
		t.Fatalf("restore-test with an unusable scratch folder: code %d, err %v, hint %q", exitcode.Code(err), err, exitcode.Hint(err))
	}
}

func TestFlakyDestination(t *testing.T) {
	t.Parallel()
	dav := davtest.Start(t)
	dav.FailEvery(7)
	f := newFixture(t, fmt.Sprintf("{name: flaky, remote: \"%s\"}", dav.Remote("fireops")))
	ctx := context.Background()
	res, err := Snapshot(ctx, f.cfg, SnapshotOptions{})
	if err != nil {
		t.Fatalf("snapshot through a destination dropping every 7th request: %v", err)
	}
	dav.FailEvery(0)
	if dav.Drops() == 0 {
		t.Fatal("the flaky server dropped no connection: the test proves nothing")
	}
	t.Logf("%d connections dropped, snapshot completed through retries", dav.Drops())
	if len(res.Destinations) != 1 || res.Destinations[0].Retries == 0 {
		t.Errorf("the result does not count the retries: %+v", res.Destinations)
	}
	var buf strings.Builder
	testutil.Must(t, metrics.Write(&buf, metrics.SnapshotMetrics(time.Now(), time.Second, res, nil, []string{"flaky"}).Run))
	if page, want := buf.String(), fmt.Sprintf(`fireops_snapshot_destination_retries{destination="flaky"} %d`, res.Destinations[0].Retries); !strings.Contains(page, want) {
		t.Errorf("metrics lack %s:\n%s", want, page)
	}
	if _, err := Verify(ctx, f.cfg, VerifyOptions{Snapshot: res.ID, Level: LevelFull}); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotFailureHints: a source path that does not exist (the only
// part: a failing part among good ones is TestPartialSnapshot) and a
// destination that does not answer fail the run with a hint naming the
// fix, and leave no manifest.
func TestSnapshotFailureHints(t *testing.T) {
	t.Parallel()
	f, root := localFixture(t, "b")
	ctx := context.Background()
	cfg := *f.cfg
	cfg.Sources.Files = slices.Clone(cfg.Sources.Files)
	cfg.Sources.Files[0].Paths = []string{filepath.Join(f.dir, "no-such-folder")}
	_, err := Snapshot(ctx, &cfg, SnapshotOptions{Only: []string{"files"}})
	if exitcode.Code(err) != exitcode.Failure || !strings.Contains(err.Error(), "no-such-folder") || !strings.Contains(exitcode.Hint(err), "fix sources") {
		t.Fatalf("missing source path: code %d, err %v, hint %q", exitcode.Code(err), err, exitcode.Hint(err))
	}
	if ls, _ := filepath.Glob(filepath.Join(root, "gpu01", "snapshots", "*", "manifest.json")); len(ls) != 0 {
		t.Fatalf("a failed snapshot left manifests: %v", ls)
	}

	// (A server that does not answer is tried again for about half a
	// minute first: pkg/remote's TestOpenRetriesNetworkErrors.) The only
	// destination: the hint has no --dest OTHER to offer.
	bad := *f.cfg
	bad.Destinations = []config.Destination{{Name: "nas", Remote: f.db}}
	_, err = Snapshot(ctx, &bad, SnapshotOptions{})
	if exitcode.Code(err) != exitcode.Failure || !strings.Contains(err.Error(), `destination "nas": open: `) || strings.Count(err.Error(), "nas") != 1 || exitcode.Hint(err) != destination.OpenAllHint {
		t.Fatalf("unusable destination: code %d, err %v, hint %q", exitcode.Code(err), err, exitcode.Hint(err))
	}
}

// TestOneDestinationUnavailable: a destination that cannot be opened
// (here a remote that is a file, which fails at once; an unreachable
// server fails the same way after its retries) fails that destination
// only. The snapshot still lands on the other, which snapshots lists,
// verify checks, restore reads and rotate rotates; each names the broken
// one and exits 1 with a hint.
func TestOneDestinationUnavailable(t *testing.T) {
	t.Parallel()
	f, root := localFixture(t, "b")
	ctx := context.Background()
	cfg := *f.cfg
	cfg.Destinations = []config.Destination{{Name: "yandex", Remote: f.db}, f.cfg.Destinations[0]}
	cfg.Retention = config.Retention{KeepLast: 1, IncompleteGrace: config.Duration(time.Hour)}
	failsOnYandex := func(what string, err error) {
		t.Helper()
		if exitcode.Code(err) != exitcode.Failure || !strings.Contains(err.Error(), "yandex") || exitcode.Hint(err) == "" {
			t.Fatalf("%s: code %d, err %v, hint %q", what, exitcode.Code(err), err, exitcode.Hint(err))
		}
	}

	res, err := Snapshot(ctx, &cfg, SnapshotOptions{})
	failsOnYandex("snapshot", err)
	if res == nil || len(res.Destinations) != 2 || res.Destinations[0].Name != "yandex" || res.Destinations[0].Err == nil ||
		res.Destinations[1].Name != "local" || res.Destinations[1].Err != nil {
		t.Fatalf("snapshot result: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(root, "gpu01", "snapshots", res.ID, "manifest.json")); err != nil {
		t.Fatalf("the snapshot did not land on the working destination: %v", err)
	}
	var buf strings.Builder
	testutil.Must(t, metrics.Write(&buf, metrics.SnapshotMetrics(time.Now(), time.Second, res, err, []string{"yandex", "local"}).Run))
	for _, want := range []string{`fireops_snapshot_destination_success{destination="local"} 1`, `fireops_snapshot_destination_success{destination="yandex"} 0`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	ls, err := List(ctx, &cfg, nil)
	if err != nil || len(ls) != 2 || ls[0].Error == "" || ls[1].Error != "" || len(ls[1].Snapshots) != 1 {
		t.Fatalf("list: %v %+v", err, ls)
	}
	failsOnYandex("snapshots", ListError(ls))

	vr, err := Verify(ctx, &cfg, VerifyOptions{Level: LevelFull})
	failsOnYandex("verify", err)
	if len(vr) != 2 || vr[0].OK || vr[0].Destination != "yandex" || !vr[1].OK {
		t.Fatalf("verify results: %+v", vr)
	}

	to := filepath.Join(t.TempDir(), "restored")
	if _, err := restore.Restore(ctx, &cfg, restore.Options{Snapshot: "latest", Parts: []string{"files:stack"}, To: to}); err != nil {
		t.Fatalf("restore with one destination down: %v", err)
	}

	rr, err := Rotate(ctx, &cfg, RotateOptions{DryRun: true})
	if err == nil || !strings.Contains(err.Error(), "yandex") || len(rr.Destinations) != 2 || rr.Destinations[0].Error == "" || rr.Destinations[1].Error != "" {
		t.Fatalf("rotate: %v %+v", err, rr)
	}
}

// TestRestoreLatestAcrossDestinations: "latest" is the newest complete
// snapshot on any destination (the first one may have missed a run), and a
// damaged copy on one destination falls back to an intact copy of the SAME
// snapshot on another, never to an older snapshot.
func TestRestoreLatestAcrossDestinations(t *testing.T) {
	t.Parallel()
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	f := newFixture(t, "{name: first, remote: "+a+"}", "{name: second, remote: "+b+"}")
	ctx := context.Background()
	if _, err := Snapshot(ctx, f.cfg, SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Must(t, os.WriteFile(filepath.Join(f.data, "new.txt"), []byte("newer"), 0o600))
	newer, err := Snapshot(ctx, f.cfg, SnapshotOptions{Dests: []string{"second"}})
	if err != nil {
		t.Fatal(err)
	}
	rr, err := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: "latest", Parts: []string{"files:stack"}, To: filepath.Join(t.TempDir(), "r1")})
	if err != nil || rr.Snapshot != newer.ID || rr.Destination != "second" {
		t.Fatalf("restore latest: %v; got %+v, want %s from second", err, rr, newer.ID)
	}

	// Both have the newest; the first's copy lost a chunk: the second's.
	both, err := Snapshot(ctx, f.cfg, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := snapshot.Open(ctx, mustStore(t, f), "gpu01", both.ID, mustTrusted(t, f)...)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Lists {
		p := filepath.Join(a, snapshot.PiecePath("gpu01", readPieceList(t, a, l.ID).Pieces[0].ID))
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	rr, err = restore.Restore(ctx, f.cfg, restore.Options{Snapshot: "latest", Parts: []string{"files:stack"}, To: filepath.Join(t.TempDir(), "r2")})
	if err != nil || rr.Snapshot != both.ID || rr.Destination != "second" {
		t.Fatalf("restore latest with a damaged first copy: %v; got %+v, want %s from second", err, rr, both.ID)
	}
	// Only the damaged copy: an error, not the older snapshot.
	_, err = restore.Restore(ctx, f.cfg, restore.Options{Snapshot: "latest", Dest: "first", Parts: []string{"files:stack"}, To: filepath.Join(t.TempDir(), "r3")})
	if exitcode.Code(err) != exitcode.CheckFailed {
		t.Fatalf("restore of a damaged only copy: code %d, %v", exitcode.Code(err), err)
	}
}

func TestRestoreRefusals(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "{name: local, remote: "+filepath.Join(t.TempDir(), "b")+"}")
	ctx := context.Background()
	res, err := Snapshot(ctx, f.cfg, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	busy := t.TempDir()
	testutil.Must(t, os.WriteFile(filepath.Join(busy, "keep.txt"), []byte("mine"), 0o644))
	busyPart := t.TempDir() // several parts: files:stack goes to DIR/files-stack
	testutil.Must(t, os.MkdirAll(filepath.Join(busyPart, "files-stack"), 0o755))
	testutil.Must(t, os.WriteFile(filepath.Join(busyPart, "files-stack", "keep.txt"), []byte("mine"), 0o644))
	aFile := filepath.Join(t.TempDir(), "file")
	testutil.Must(t, os.WriteFile(aFile, nil, 0o644))
	noSQLite := *f.cfg
	noSQLite.Sources.SQLite = nil
	tests := []struct {
		name string
		o    restore.Options
		want string
		cfg  *config.Config // default f.cfg
	}{
		{"non-empty part folder", restore.Options{Snapshot: res.ID, To: busyPart}, "files-stack is not empty", nil},
		{"--to is a file", restore.Options{Snapshot: res.ID, Parts: []string{"files:stack"}, To: aFile}, "is not a folder", nil},
		{"sqlite source not in the config", restore.Options{Snapshot: res.ID, Parts: []string{"sqlite:hub"}}, "names no path", &noSQLite},
		{"non-empty folder", restore.Options{Snapshot: res.ID, Parts: []string{"files:stack"}, To: busy}, "not empty", nil},
		{"files without --to", restore.Options{Snapshot: res.ID, Parts: []string{"files:stack"}}, "no --to folder", nil},
		{"existing database", restore.Options{Snapshot: res.ID, Parts: []string{"sqlite:hub"}}, "exists", nil},
		{"unknown part", restore.Options{Snapshot: res.ID, Parts: []string{"mongo"}, To: t.TempDir()}, "no part", nil},
		{"bad id", restore.Options{Snapshot: "yesterday", To: t.TempDir()}, "not a snapshot id", nil},
		{"unknown destination", restore.Options{Snapshot: res.ID, Dest: "nas", To: t.TempDir()}, "unknown destination", nil},
		{"missing identity", restore.Options{Snapshot: res.ID, Identity: "/nonexistent/identity.txt", To: t.TempDir()}, "identity", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := f.cfg
			if tc.cfg != nil {
				cfg = tc.cfg
			}
			_, err := restore.Restore(ctx, cfg, tc.o)
			if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), tc.want) || exitcode.Hint(err) == "" {
				t.Fatalf("code %d, err %v, hint %q", exitcode.Code(err), err, exitcode.Hint(err))
			}
		})
	}
	if b, _ := os.ReadFile(filepath.Join(busy, "keep.txt")); string(b) != "mine" {
		t.Fatal("a refused restore changed the target")
	}
	// Dry run: a plan, nothing written.
	to := filepath.Join(t.TempDir(), "plan")
	rr, err := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: "latest", To: to, DryRun: true})
	if err != nil || len(rr.Parts) != 2 || rr.Parts[0].Status != restore.StatusPlanned {
		t.Fatalf("dry run: %v %+v", err, rr)
	}
	if _, err := os.Stat(to); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("dry run wrote the target")
	}
}

// localFixture returns a fixture whose one destination, local, is the
// folder name in a fresh temp folder, and that folder's path.
func localFixture(t *testing.T, name string) (*fixture, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), name)
	return newFixture(t, "{name: local, remote: "+root+"}"), root
}

// localSnapshot is a fixture with one local destination (its root
// folder) and a first snapshot taken there.
func localSnapshot(t *testing.T) (*fixture, string, *snapshot.Result) {
	t.Helper()
	f, root := localFixture(t, "backups")
	res, err := Snapshot(context.Background(), f.cfg, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return f, root, res
}
