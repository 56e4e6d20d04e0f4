package backup

// Findings of an adversarial review playing a hostile storage provider:
// one that answers different requests differently, deletes or spoils
// snapshots, or refuses some reads. Each test is one attack and what
// fireops must do about it.

import (
	"context"
	"fmt"
	"io/fs"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/webdav"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/restore"
	"github.com/firetech/fireops/pkg/snapshot"
)

// twoFacedFS is a hostile provider's WebDAV folder: it counts the
// listings of one folder and, from listing hideFrom on, leaves the
// entry hide out of them (a snapshot folder shown to the first request
// and hidden from the next: different answers to different requests).
type twoFacedFS struct {
	webdav.Dir
	folder   string // the URL path listed, "/fireops/gpu01/snapshots"
	hideFrom int    // 1-based listing number from which hide is left out

	mu       sync.Mutex
	hide     string
	listings int
}

func (f *twoFacedFS) setHide(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hide, f.listings = name, 0
}

func (f *twoFacedFS) OpenFile(ctx context.Context, name string, flag int, perm os.FileMode) (webdav.File, error) {
	file, err := f.Dir.OpenFile(ctx, name, flag, perm)
	if err != nil || path.Clean(name) != f.folder {
		return file, err
	}
	return &twoFacedDir{File: file, fs: f}, nil
}

type twoFacedDir struct {
	webdav.File
	fs *twoFacedFS
}

func (d *twoFacedDir) Readdir(n int) ([]fs.FileInfo, error) {
	infos, err := d.File.Readdir(n)
	if err != nil {
		return infos, err
	}
	d.fs.mu.Lock()
	defer d.fs.mu.Unlock()
	if d.fs.hide == "" {
		return infos, nil
	}
	d.fs.listings++
	if d.fs.listings < d.fs.hideFrom {
		return infos, nil
	}
	out := infos[:0]
	for _, fi := range infos {
		if fi.Name() != d.fs.hide {
			out = append(out, fi)
		}
	}
	return out, nil
}

// TestProviderVerifyLatestFullListsTwice: the attack: verify latest
// --level full listed the destination once for its rollback finding and
// once more (restore.LatestParts) to plan the parts it checks; a provider
// that shows the newest snapshot X, whose index it spoiled, to the first
// listing and hides it from the second had verify check only the older
// snapshot and pass, while restore latest, shown X, fails on it. Expected:
// verify plans from the listing it judged (restore.LatestPartsOf), so it
// checks X and fails naming it.
func TestProviderVerifyLatestFullListsTwice(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hostile := &twoFacedFS{Dir: webdav.Dir(dir), folder: "/fireops/gpu01/snapshots", hideFrom: 2}
	h := &webdav.Handler{FileSystem: hostile, LockSystem: webdav.NewMemLS()}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	remote := fmt.Sprintf(":webdav,url='%s',vendor=rclone:fireops", ts.URL)
	f := newFixture(t, fmt.Sprintf("{name: yandex, remote: \"%s\"}", remote))
	ctx := context.Background()
	older, err := Snapshot(ctx, f.cfg, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Must(t, os.WriteFile(filepath.Join(f.data, "new.txt"), []byte("newer data"), 0o644))
	newest, err := Snapshot(ctx, f.cfg, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ctx, f.cfg, VerifyOptions{Snapshot: "latest", Level: LevelFull}); err != nil {
		t.Fatalf("before the provider turns: %v", err)
	}
	// The provider spoils the newest snapshot's index (its manifest,
	// signed, stays as it was).
	idx := filepath.Join(dir, "fireops", "gpu01", "snapshots", newest.ID, "index.age")
	data, err := os.ReadFile(idx)
	testutil.Must(t, err)
	data[len(data)/2] ^= 0xff
	testutil.Must(t, os.WriteFile(idx, data, 0o644))

	// Honest listings: verify finds the damage.
	if _, err := Verify(ctx, f.cfg, VerifyOptions{Snapshot: "latest", Level: LevelFull}); err == nil {
		t.Fatal("verify latest --level full passed with the newest snapshot's index spoiled")
	}

	// Two-faced listings: the newest snapshot is shown to verify's first
	// listing only.
	hostile.setHide(newest.ID)
	res, err := Verify(ctx, f.cfg, VerifyOptions{Snapshot: "latest", Level: LevelFull})
	checked := map[string]bool{}
	for _, r := range res {
		checked[r.Snapshot] = true
	}
	hostile.setHide("")
	// What restore latest takes now (the provider answers honestly).
	_, rerr := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: "latest", Parts: []string{"sqlite"}, To: filepath.Join(t.TempDir(), "hub.sqlite")})
	if err == nil {
		t.Fatalf("verify latest --level full passed (checked %v, older %s) without checking the newest snapshot %s that its own first listing showed; restore latest then: %v",
			providerKeys(checked), older.ID, newest.ID, rerr)
	}
	if !strings.Contains(err.Error(), newest.ID) {
		t.Fatalf("verify failed without naming the newest snapshot %s: %v", newest.ID, err)
	}
}

func providerKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// workSince adds a day of the user's work to f's data and returns the
// snapshot taken of it, a minute after now.
func workSince(t *testing.T, f *fixture) *snapshot.Result {
	t.Helper()
	testutil.Must(t, os.WriteFile(filepath.Join(f.data, "work-since.txt"), []byte("a day of the user's work"), 0o644))
	res, err := Snapshot(context.Background(), f.cfg, SnapshotOptions{Now: func() time.Time { return time.Now().Add(time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestProviderHolderIgnoresRollback: the attack: the provider deletes the
// newest snapshot holding a part (the one this host wrote last, with the
// part's latest data); Holder.Find took an older snapshot, which
// verifies, so deploy prune --volumes would remove the live volume against
// a stale archive. Expected: the host's record (snapshot.PartsWritten)
// shows the rollback, as verify latest reports it (exit 3), and Find
// refuses: a NotHeldError that is a failed check.
func TestProviderHolderIgnoresRollback(t *testing.T) {
	t.Parallel()
	f, root, first := localSnapshot(t)
	ctx := context.Background()
	second := workSince(t, f)
	testutil.Must(t, os.RemoveAll(filepath.Join(root, "gpu01", "snapshots", second.ID)))

	// verify latest sees the rollback.
	if _, err := Verify(ctx, f.cfg, VerifyOptions{Snapshot: "latest"}); exitcode.Code(err) != exitcode.CheckFailed || !strings.Contains(err.Error(), second.ID) {
		t.Fatalf("verify latest after the rollback: %v", err)
	}
	notHeld(t, f, "files:stack", second.ID, first.ID, true, "after the provider deleted the newest snapshot this host wrote holding it")
	// sqlite:hub, whose newest snapshot is gone as well, is refused too.
	notHeld(t, f, "sqlite:hub", second.ID, first.ID, true, "after the provider deleted the newest snapshot this host wrote holding it")
}

// TestProviderHolderNoOlderFallback: the attack: the provider spoils a
// piece of the newest snapshot holding a part; Holder.Find verified an
// older snapshot instead, and deploy prune --volumes would remove the live
// volume against an archive that lacks what was written since. Expected:
// only the newest snapshot holding the part counts; it fails its verify,
// so the part is not held (a failed check naming it), and the older one
// is never offered.
func TestProviderHolderNoOlderFallback(t *testing.T) {
	t.Parallel()
	f, root, first := localSnapshot(t)
	second := workSince(t, f)
	piece := piecePath(t, root, second, "files:stack", 0)
	if piece == piecePath(t, root, first, "files:stack", 0) {
		t.Fatal("the two snapshots share the piece: the test needs one of the newest alone")
	}
	data, err := os.ReadFile(piece)
	testutil.Must(t, err)
	data[len(data)-10] ^= 0xff
	testutil.Must(t, os.WriteFile(piece, data, 0o600))
	notHeld(t, f, "files:stack", second.ID, first.ID, true, "with the newest snapshot holding it damaged")
}

// TestProviderVerifyQuickLatestMissesOlderPart: the attack: a part
// failed in the newest full run X, so restore latest reads it from an older
// snapshot S, walking past a clean full run F that did not hold it; verify
// latest at levels quick and hashes (restore.LatestByTags) stopped at F
// and never checked S, so the provider removed a piece of S unseen:
// verify passed, restore latest failed. Expected: after a full run with
// failed parts the tag walk goes past clean full runs, checks S, and
// fails at both levels.
func TestProviderVerifyQuickLatestMissesOlderPart(t *testing.T) {
	t.Parallel()
	f, root, s := localSnapshot(t) // S: files:stack and sqlite:hub
	ctx := context.Background()
	// F: a clean full run while the database was out of the config.
	noDB := *f.cfg
	noDB.Sources.SQLite = nil
	if _, err := Snapshot(ctx, &noDB, SnapshotOptions{Now: func() time.Time { return time.Now().Add(time.Minute) }}); err != nil {
		t.Fatal(err)
	}
	// X: the database is back in the config, and its part fails.
	badDB := *f.cfg
	badDB.Sources.SQLite = slices.Clone(f.cfg.Sources.SQLite)
	badDB.Sources.SQLite[0].Path = filepath.Join(t.TempDir(), "gone.sqlite")
	x, _ := Snapshot(ctx, &badDB, SnapshotOptions{Now: func() time.Time { return time.Now().Add(2 * time.Minute) }})
	if x == nil || x.ID == "" {
		t.Fatal("no snapshot X")
	}
	plan, err := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: "latest", Parts: []string{"sqlite:hub"}, To: filepath.Join(t.TempDir(), "hub.sqlite"), DryRun: true})
	if err != nil || len(plan.Parts) != 1 || plan.Parts[0].Snapshot != s.ID {
		t.Fatalf("restore latest plan: %+v, %v; want sqlite:hub from %s", plan, err, s.ID)
	}
	if _, err := Verify(ctx, f.cfg, VerifyOptions{Snapshot: "latest", Level: LevelQuick}); err != nil {
		t.Fatalf("before the provider turns: %v", err)
	}
	testutil.Must(t, os.Remove(piecePath(t, root, s, "sqlite:hub", 0)))
	_, rerr := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: "latest", Parts: []string{"sqlite:hub"}, To: filepath.Join(t.TempDir(), "hub.sqlite")})
	if rerr == nil {
		t.Fatal("restore latest of sqlite:hub passed with its piece removed")
	}
	for _, level := range []string{LevelQuick, LevelHashes} {
		res, err := Verify(ctx, f.cfg, VerifyOptions{Snapshot: "latest", Level: level})
		if err == nil {
			var checked []string
			for _, r := range res {
				checked = append(checked, r.Snapshot)
			}
			t.Errorf("verify latest --level %s passed (checked %v) while restore latest reads sqlite:hub from %s, which it never checked: restore latest fails: %v", level, checked, s.ID, rerr)
		}
	}
}

// eachWipe runs check in a parallel subtest for each way a provider wipes
// a host's snapshots (wipeSnapshots), after the fixture's first snapshot x
// was written and wiped.
func eachWipe(t *testing.T, check func(t *testing.T, f *fixture, x *snapshot.Result)) {
	t.Helper()
	for _, what := range []string{"every folder", "every manifest"} {
		t.Run(what, func(t *testing.T) {
			t.Parallel()
			f, root, x := localSnapshot(t)
			wipeSnapshots(t, root, x.ID, what)
			check(t, f, x)
		})
	}
}

// wipeSnapshots does what a provider that wipes a host's snapshots on the
// destination at root does: removes "every folder" of gpu01's snapshots,
// or "every manifest" (that of id, the host's only snapshot).
func wipeSnapshots(t *testing.T, root, id, what string) {
	t.Helper()
	snaps := filepath.Join(root, "gpu01", "snapshots")
	if what == "every folder" {
		testutil.Must(t, os.RemoveAll(snaps))
		testutil.Must(t, os.MkdirAll(snaps, 0o700))
	} else {
		testutil.Must(t, os.Remove(filepath.Join(snaps, id, "manifest.json")))
	}
}

// TestProviderWipeIsNoRollback: the attack: the provider removes every
// snapshot of the host (or leaves their folders without manifests);
// verify latest called the destination empty (exit 1, "take a first
// snapshot") while it reports a rollback (exit 3) when only the newest is
// removed, and verify --all does. Expected: the host wrote snapshot X
// there (state_dir), so verify latest exits 3 naming X, with RollbackHint.
func TestProviderWipeIsNoRollback(t *testing.T) {
	t.Parallel()
	eachWipe(t, func(t *testing.T, f *fixture, x *snapshot.Result) {
		ctx := context.Background()
		_, errAll := Verify(ctx, f.cfg, VerifyOptions{All: true})
		_, err := Verify(ctx, f.cfg, VerifyOptions{Snapshot: "latest"})
		if exitcode.Code(err) != exitcode.CheckFailed || !strings.Contains(err.Error(), x.ID) {
			t.Fatalf("verify latest after the provider wiped the host's snapshots: exit %d: %v (hint %q); verify --all: exit %d: %v",
				exitcode.Code(err), err, exitcode.Hint(err), exitcode.Code(errAll), errAll)
		}
	})
}

// TestProviderWipeRestoreLatest: the attack of
// TestProviderWipeIsNoRollback, met by restore latest: it said the
// destination holds no snapshot (exit 1, take one). Expected: a failed
// check (exit 3) naming the snapshot this host wrote there, and with a
// second destination untouched, the restore from it.
func TestProviderWipeRestoreLatest(t *testing.T) {
	t.Parallel()
	eachWipe(t, func(t *testing.T, f *fixture, x *snapshot.Result) {
		ctx := context.Background()
		_, err := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: "latest", Parts: []string{"sqlite:hub"}, To: filepath.Join(t.TempDir(), "hub.sqlite")})
		if exitcode.Code(err) != exitcode.CheckFailed || !strings.Contains(err.Error(), x.ID) || strings.Contains(exitcode.Hint(err), "take one with") {
			t.Fatalf("restore latest after the provider wiped the host's snapshots: exit %d: %v (hint %q)", exitcode.Code(err), err, exitcode.Hint(err))
		}
	})
	t.Run("another destination intact", func(t *testing.T) {
		t.Parallel()
		wiped := t.TempDir()
		f := newFixture(t, "{name: local, remote: "+wiped+"}", "{name: second, remote: "+t.TempDir()+"}")
		ctx := context.Background()
		x, err := Snapshot(ctx, f.cfg, SnapshotOptions{})
		if err != nil {
			t.Fatal(err)
		}
		testutil.Must(t, os.RemoveAll(filepath.Join(wiped, "gpu01", "snapshots", x.ID)))
		rr, err := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: "latest", Parts: []string{"sqlite:hub"}, To: filepath.Join(t.TempDir(), "hub.sqlite")})
		if err != nil || len(rr.Parts) != 1 || rr.Parts[0].Status != restore.StatusRestored || rr.Destination != "second" {
			t.Fatalf("restore latest with local wiped and second intact: %+v, %v", rr, err)
		}
		// verify latest still reports the wiped destination.
		if _, err := Verify(ctx, f.cfg, VerifyOptions{Snapshot: "latest"}); exitcode.Code(err) != exitcode.CheckFailed || !strings.Contains(err.Error(), x.ID) {
			t.Fatalf("verify latest with local wiped: exit %d: %v", exitcode.Code(err), err)
		}
	})
}

// refusingFS is a provider that, once turned, refuses to list one folder
// (an error that is not about the data: a 403).
type refusingFS struct {
	webdav.Dir
	folder string
	mu     sync.Mutex
	on     bool
}

func (f *refusingFS) turn(on bool) { f.mu.Lock(); f.on = on; f.mu.Unlock() }

// refusingYandex is a fixture of two destinations: yandex, a WebDAV server
// over a refusingFS that refuses, once turned, to list folder, and local.
func refusingYandex(t *testing.T, folder string) (*fixture, *refusingFS) {
	t.Helper()
	hostile := &refusingFS{Dir: webdav.Dir(t.TempDir()), folder: folder}
	ts := httptest.NewServer(&webdav.Handler{FileSystem: hostile, LockSystem: webdav.NewMemLS()})
	t.Cleanup(ts.Close)
	remote := fmt.Sprintf(":webdav,url='%s',vendor=rclone:fireops", ts.URL)
	f := newFixture(t, fmt.Sprintf("{name: yandex, remote: \"%s\"}", remote), "{name: local, remote: "+filepath.Join(t.TempDir(), "b")+"}")
	return f, hostile
}

func (f *refusingFS) OpenFile(ctx context.Context, name string, flag int, perm os.FileMode) (webdav.File, error) {
	f.mu.Lock()
	on := f.on
	f.mu.Unlock()
	if on && path.Clean(name) == f.folder {
		return nil, os.ErrPermission
	}
	return f.Dir.OpenFile(ctx, name, flag, perm)
}

// TestProviderPartErrorStopsOtherCopies: the attack: the first
// destination's manifest and index are fine, but it refuses to list its
// objects (an error that is not about the data, a 403); restore gave up on
// the part ("not the data: another copy would not help") although the
// second destination holds the same snapshot intact. Expected: an error
// looking up the part or its objects on one destination moves on to the
// next, as a damaged copy does, and the part is restored from the second.
func TestProviderPartErrorStopsOtherCopies(t *testing.T) {
	t.Parallel()
	f, hostile := refusingYandex(t, "/fireops/gpu01/objects")
	ctx := context.Background()
	if _, err := Snapshot(ctx, f.cfg, SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	hostile.turn(true)
	begin := time.Now()
	rr, err := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: "latest", Parts: []string{"sqlite:hub"}, To: filepath.Join(t.TempDir(), "hub.sqlite")})
	if err != nil {
		t.Fatalf("restore latest with the first destination refusing to list its objects and the second intact (%v): %v", time.Since(begin).Round(time.Second), err)
	}
	if len(rr.Parts) != 1 || rr.Parts[0].Status != restore.StatusRestored {
		t.Fatalf("result %+v", rr)
	}
}
