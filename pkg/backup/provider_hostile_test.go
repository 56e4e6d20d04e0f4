package backup

// More findings of an adversarial review playing a hostile storage
// provider (see provider_review_test.go for the first ones).

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/destination"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/restore"
	"github.com/firetech/fireops/pkg/snapshot"
)

// TestProviderHolderUnlistedNewest: the attack: the newest snapshot
// holding a part, X, is on one destination only (the run that wrote it
// could not reach the second, or was limited with --dest); at prune time
// that provider refuses to list its snapshots. Holder.Find passed over
// the destination it could not list and verified the older snapshot on
// the second, so deploy prune --volumes would remove the live data
// against an archive that lacks what X holds, X never verified.
// Expected: the host's record names X, written to the unlisted
// destination and newer than any snapshot listed: the part is not held
// (a NotHeldError naming X and the destination; not a failed check: the
// destination could not be read).
func TestProviderHolderUnlistedNewest(t *testing.T) {
	t.Parallel()
	f, first, newest := unlistedNewest(t)
	nh := notHeld(t, f, "files:stack", newest.ID, first.ID, false, "with yandex, the only destination holding it, refusing its listing")
	if !strings.Contains(nh.Error(), "yandex") {
		t.Fatalf("Holder.Find with yandex unlisted: %v; want it to name yandex", nh)
	}
}

// notHeld asks a new Holder (level hashes) for part and ends the test
// unless it refuses with a NotHeldError naming newest, the newest
// snapshot holding the part (never older, which would license removing
// the live data): a failed check (exit 3) when checkFailed, else not.
// why says what the provider did, for the failure messages.
func notHeld(t *testing.T, f *fixture, part, newest, older string, checkFailed bool, why string) *NotHeldError {
	t.Helper()
	h, err := NewHolder(f.cfg, HolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.Find(context.Background(), part)
	if err == nil {
		t.Fatalf("Holder.Find(%s) %s: %+v, no error (the older %s would license removing the live data)", part, why, got, older)
	}
	var nh *NotHeldError
	if !errors.As(err, &nh) || nh.IsCheckFailed() != checkFailed || (exitcode.Code(err) == exitcode.CheckFailed) != checkFailed || !strings.Contains(err.Error(), newest) {
		t.Fatalf("Holder.Find(%s) %s: %v (code %d); want a NotHeldError naming %s, a failed check: %v", part, why, err, exitcode.Code(err), newest, checkFailed)
	}
	return nh
}

// TestProviderRestoreLatestUnlistedNewest: the attack of
// TestProviderHolderUnlistedNewest, met by restore latest: with yandex,
// the only destination holding the newest snapshot X, refusing to list
// its snapshots, restore latest planned the part from the older snapshot
// on the second destination and said nothing of X (no note, no warning):
// an older snapshot restored in silence. Expected: the plan's note says
// the part comes from a snapshot older than X, which this host wrote to
// yandex, and that yandex could not be listed.
func TestProviderRestoreLatestUnlistedNewest(t *testing.T) {
	t.Parallel()
	f, first, newest := unlistedNewest(t)
	ctx := context.Background()
	rr, err := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: "latest", Parts: []string{"sqlite:hub"}, To: filepath.Join(t.TempDir(), "hub.sqlite"), DryRun: true})
	if err != nil {
		t.Fatalf("restore latest --dry-run with yandex unlisted: %v", err)
	}
	if len(rr.Parts) != 1 || rr.Parts[0].Snapshot != first.ID {
		t.Fatalf("plan %+v; want sqlite:hub from %s, the newest listed", rr, first.ID)
	}
	if !strings.Contains(rr.Note, newest.ID) || !strings.Contains(rr.Note, "yandex") {
		t.Fatalf("restore latest planned sqlite:hub from the older %s while yandex, which holds the newer %s, refused its listing; note %q says nothing of it",
			first.ID, newest.ID, rr.Note)
	}
}

// TestProviderVerifyIDUnlisted: the attack: a snapshot X is on two
// destinations; the first refuses to list its snapshots. verify X took it
// for "not on this destination" (an info line), checked the second copy
// only and passed (exit 0): the refusing provider's copy, which restore X
// reads first, went unchecked without a word. Expected: a failed row for
// that destination and exit code 1 (it could not be read), as verify
// latest does; the second copy is still checked.
func TestProviderVerifyIDUnlisted(t *testing.T) {
	t.Parallel()
	f, hostile := refusingYandex(t, "/fireops/gpu01/snapshots")
	ctx := context.Background()
	x, err := Snapshot(ctx, f.cfg, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hostile.turn(true)
	res, err := Verify(ctx, f.cfg, VerifyOptions{Snapshot: x.ID})
	if exitcode.Code(err) != exitcode.Failure || !strings.Contains(err.Error(), "yandex") {
		t.Fatalf("verify %s with yandex refusing its listing: exit %d: %v; results %+v; want exit 1 naming yandex", x.ID, exitcode.Code(err), err, res)
	}
	checked := map[string]bool{}
	for _, r := range res {
		checked[r.Destination] = r.OK
	}
	if ok, seen := checked["yandex"]; !seen || ok || !checked["local"] {
		t.Fatalf("results %+v; want a failed row for yandex and local checked", res)
	}
	// An id on no destination that could be listed: restore fails (exit
	// 1, naming yandex) and says to check yandex, not to leave it out
	// with --dest OTHER (the other was read and does not hold it).
	_, err = restore.Restore(ctx, f.cfg, restore.Options{Snapshot: "20260101T000000Z-abcdef", Parts: []string{"sqlite:hub"}, To: filepath.Join(t.TempDir(), "hub.sqlite"), DryRun: true})
	if exitcode.Code(err) != exitcode.Failure || !strings.Contains(err.Error(), "not listed: yandex") || exitcode.Hint(err) != destination.OpenAllHint {
		t.Fatalf("restore of an id on no listed destination, yandex unlisted: exit %d: %v (hint %q); want exit 1 naming yandex, hint %q", exitcode.Code(err), err, exitcode.Hint(err), destination.OpenAllHint)
	}
}

// TestProviderEnlargedPieceList: the attack: the provider appends bytes
// to a part's piece list (an object whose size and SHA-256 the signed
// manifest gives). The read of it, bounded by that size, failed as "too
// large", which verify and restore took for a failure to read, not for
// altered data: verify's hint said the data read so far was intact, and
// restore latest failed with exit 1 (check the destination answers)
// instead of 3. Expected: an enlarged piece list is damage like a
// truncated one: exit 3, verify with the damaged hint; the next snapshot
// uploads it again and verify passes.
func TestProviderEnlargedPieceList(t *testing.T) {
	t.Parallel()
	f, root, x := localSnapshot(t)
	ctx := context.Background()
	p := filepath.Join(root, snapshot.PiecePath("gpu01", partList(x, "files:stack")))
	fh, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	testutil.Must(t, err)
	_, err = fh.Write([]byte("\n                \n"))
	testutil.Must(t, err)
	testutil.Must(t, fh.Close())

	_, err = Verify(ctx, f.cfg, VerifyOptions{Snapshot: "latest"})
	if exitcode.Code(err) != exitcode.CheckFailed || !strings.Contains(exitcode.Hint(err), "damaged or was altered") {
		t.Fatalf("verify latest with an enlarged piece list: exit %d: %v (hint %q); want a failed check with the damaged hint", exitcode.Code(err), err, exitcode.Hint(err))
	}
	_, err = restore.Restore(ctx, f.cfg, restore.Options{Snapshot: "latest", Parts: []string{"files:stack"}, To: filepath.Join(t.TempDir(), "stack")})
	if exitcode.Code(err) != exitcode.CheckFailed {
		t.Fatalf("restore latest of the part whose piece list was enlarged: exit %d: %v (hint %q); want a failed check", exitcode.Code(err), err, exitcode.Hint(err))
	}
	if _, err := Snapshot(ctx, f.cfg, SnapshotOptions{Now: func() time.Time { return time.Now().Add(time.Minute) }}); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ctx, f.cfg, VerifyOptions{Snapshot: "latest"}); err != nil {
		t.Fatalf("verify latest after the next snapshot (which uploads the damaged piece list again): %v", err)
	}
}

// TestProviderHugeManifest: the attack: the provider swaps a snapshot's
// manifest.json for a file larger than any manifest (a sparse 65 MiB).
// Its read, bounded, failed as "too large", taken for a failure to read:
// verify ID said the data read so far was intact and exited 3 only for
// the failed row, and restore ID exited 1 with the hint to check that the
// destination answers. Expected: the manifest is not the one signed:
// restore ID and verify ID are failed checks (exit 3) with the damaged
// hints.
func TestProviderHugeManifest(t *testing.T) {
	t.Parallel()
	f, root, x := localSnapshot(t)
	ctx := context.Background()
	testutil.Must(t, os.Truncate(filepath.Join(root, "gpu01", "snapshots", x.ID, "manifest.json"), 65<<20))
	_, err := restore.Restore(ctx, f.cfg, restore.Options{Snapshot: x.ID, Parts: []string{"sqlite:hub"}, To: filepath.Join(t.TempDir(), "hub.sqlite")})
	if exitcode.Code(err) != exitcode.CheckFailed || !strings.Contains(exitcode.Hint(err), "damaged or was altered") {
		t.Fatalf("restore %s with a 65 MiB manifest: exit %d: %v (hint %q); want a failed check with the damaged hint", x.ID, exitcode.Code(err), err, exitcode.Hint(err))
	}
	_, err = Verify(ctx, f.cfg, VerifyOptions{Snapshot: x.ID})
	if exitcode.Code(err) != exitcode.CheckFailed || !strings.Contains(exitcode.Hint(err), "damaged or was altered") {
		t.Fatalf("verify %s with a 65 MiB manifest: exit %d: %v (hint %q); want a failed check with the damaged hint", x.ID, exitcode.Code(err), err, exitcode.Hint(err))
	}
}

// unlistedNewest sets up the attack of TestProviderHolderUnlistedNewest: a
// snapshot (first) on both destinations, yandex (a WebDAV server) and
// local, then, after a day of work, the newest (on yandex only, a minute
// later); then yandex refuses to list its snapshots.
func unlistedNewest(t *testing.T) (f *fixture, first, newest *snapshot.Result) {
	t.Helper()
	f, hostile := refusingYandex(t, "/fireops/gpu01/snapshots")
	ctx := context.Background()
	first, err := Snapshot(ctx, f.cfg, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Must(t, os.WriteFile(filepath.Join(f.data, "work-since.txt"), []byte("a day of the user's work"), 0o644))
	newest, err = Snapshot(ctx, f.cfg, SnapshotOptions{Dests: []string{"yandex"}, Now: func() time.Time { return time.Now().Add(time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	hostile.turn(true)
	return f, first, newest
}
