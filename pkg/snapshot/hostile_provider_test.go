package snapshot

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/firetech/fireops/pkg/source"
)

// Review (hostile or merely unreliable storage provider).

// reviewFirstList returns the stored path of the piece list of the bigger
// part of snapshot id on st, its bytes and its reference.
func reviewFirstList(t *testing.T, e *env, st *dirStore, id string) (string, []byte, Ref) {
	t.Helper()
	m, err := Open(context.Background(), st, "gpu01", id, e.pub)
	if err != nil {
		t.Fatal(err)
	}
	// The list of the bigger part: it has several pieces.
	var best Ref
	for _, ref := range m.Lists {
		if ref.Size > best.Size {
			best = ref
		}
	}
	p := filepath.Join(st.root, PiecePath("gpu01", best.ID))
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, data, best
}

// reviewListOnTwo writes a snapshot to two destinations and returns the
// env, the snapshot's id, the stored path of its bigger piece list on the
// first destination, and that list's bytes on the first and the second.
func reviewListOnTwo(t *testing.T) (e *env, id, p0 string, data0, data1 []byte) {
	t.Helper()
	e = newEnv(t, 2)
	id = e.create(t, testSources()).ID
	p0, data0, _ = reviewFirstList(t, e, e.stores[0], id)
	_, data1, _ = reviewFirstList(t, e, e.stores[1], id)
	return e, id, p0, data0, data1
}

// reviewSweepADayLater sweeps st as a run a day from now would, with an
// hour's grace for objects not yet referenced.
func reviewSweepADayLater(ctx context.Context, st Store) (Sweep, error) {
	return SweepObjects(ctx, st, "gpu01", time.Now().Add(24*time.Hour), time.Hour, nil, false, nil)
}

// reviewOneDest returns an env with one destination, its store, the
// sources the tests snapshot again and again, and their first snapshot.
func reviewOneDest(t *testing.T) (*env, *dirStore, []source.Source, *Result) {
	t.Helper()
	e := newEnv(t, 1)
	srcs := testSources()
	return e, e.stores[0], srcs, e.create(t, srcs)
}

// A piece list that is (transiently) missing on one destination must not
// make the sweep delete the pieces a remaining snapshot references: the
// list is byte-identical on the other destination and can be copied back,
// but only while its pieces still exist. Today referenced() skips a list
// that reads as not found, so every piece it names is swept and the
// snapshot is lost for good on that destination.
func TestReviewSweepKeepsPiecesOfSnapshotWhoseListIsMissing(t *testing.T) {
	t.Parallel()
	e, id, p0, data0, data1 := reviewListOnTwo(t)
	ctx := context.Background()
	if !bytes.Equal(data0, data1) {
		t.Fatal("test premise: the list is not identical on both destinations")
	}
	if err := os.Remove(p0); err != nil {
		t.Fatal(err)
	}
	sw, err := reviewSweepADayLater(ctx, e.stores[0])
	if err == nil && sw.Removed > 0 {
		t.Errorf("sweep removed %d objects of a remaining (signed, complete) snapshot whose piece list was missing; want them kept (or the sweep skipped)", sw.Removed)
	}
	// The repair: copy the list back from the other destination.
	if err := os.WriteFile(p0, data1, 0o600); err != nil {
		t.Fatal(err)
	}
	m := e.open(t, e.stores[0], id)
	if err := CheckHashes(ctx, e.stores[0], m, nil); err != nil {
		t.Errorf("after the list was restored, the snapshot is still damaged (its pieces were swept): %v", err)
	}
}

// A piece list whose bytes no longer match the manifest's hash (swapped
// for another valid list by the provider, or overwritten) must not steer
// the sweep: the comment in referenced() says it "errs on the side of
// keeping", but it marks only what the wrong content names and deletes the
// real pieces of the remaining snapshot.
func TestReviewSweepKeepsPiecesWhenListHashIsOff(t *testing.T) {
	t.Parallel()
	e, id, p0, _, data1 := reviewListOnTwo(t)
	ctx := context.Background()
	// A well-formed, empty list in its place.
	forged, _ := encodeList(0, nil)
	if err := os.WriteFile(p0, forged, 0o600); err != nil {
		t.Fatal(err)
	}
	sw, err := reviewSweepADayLater(ctx, e.stores[0])
	if err == nil && sw.Removed > 0 {
		t.Errorf("sweep trusted a piece list that fails its signed hash and removed %d live objects; want the sweep skipped or the pieces kept", sw.Removed)
	}
	os.WriteFile(p0, data1, 0o600)
	m := e.open(t, e.stores[0], id)
	if err := CheckHashes(ctx, e.stores[0], m, nil); err != nil {
		t.Errorf("after the list was repaired, the snapshot is still damaged (its pieces were swept): %v", err)
	}
}

// The known-objects rebuild (state_dir restored from a backup / a second
// copy of state_dir: exactly the case rebuild exists for) keeps the stale
// SHA-256 of a piece that was lost and uploaded again since, because it
// skips every id already in the log. The re-encrypted piece has the same
// size, so lookup() accepts it and the writer references it with the old
// hash: the new snapshot is born damaged although every stored byte is
// intact.
func TestReviewRebuildKeepsStaleHashOfReuploadedPiece(t *testing.T) {
	t.Parallel()
	e, st, srcs, first := reviewOneDest(t)
	ctx := context.Background()
	// A copy of state_dir as it is now (a backup of the host's state).
	old := t.TempDir()
	if err := os.CopyFS(old, os.DirFS(e.opts.StateDir)); err != nil {
		t.Fatal(err)
	}
	// The destination loses one piece; the next run uploads it again.
	piece := snapPieces(t, e, st, first.ID)[0]
	info, err := os.Stat(piece)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(piece)
	os.Remove(piece)
	second := e.create(t, srcs)
	after, err := os.ReadFile(piece)
	if err != nil {
		t.Fatalf("the lost piece was not uploaded again: %v", err)
	}
	if int64(len(after)) != info.Size() || bytes.Equal(before, after) {
		t.Fatalf("test premise: re-upload should have the same size (%d vs %d) and other bytes", len(after), info.Size())
	}
	e.restoreAll(t, st, second.ID)
	// The host's state is restored from the copy; the destination holds a
	// newer snapshot (second), so the log is completed from its lists.
	e.opts.StateDir = old
	third := e.create(t, srcs)
	m := e.open(t, st, third.ID)
	if err := CheckHashes(ctx, st, m, nil); err != nil {
		t.Errorf("a snapshot written after the known-objects rebuild is damaged on arrival (stale piece hash from the old log): %v", err)
	}
}

// A piece the provider altered in place (same size: bit rot, or a hostile
// provider) is found by verify --level hashes, but the writer keeps
// referencing it: lookup() checks only the listed size, nothing ever
// forgets it, so every later snapshot that contains that piece is damaged
// on arrival and the destination never heals.
func TestReviewDamagedPieceIsReferencedByEveryLaterSnapshot(t *testing.T) {
	t.Parallel()
	e, st, srcs, first := reviewOneDest(t)
	ctx := context.Background()
	piece := snapPieces(t, e, st, first.ID)[0]
	flipMiddleByte(t, piece, 0xff)
	m1, _ := Open(ctx, st, "gpu01", first.ID, e.pub)
	herr := CheckHashes(ctx, st, m1, nil)
	if herr == nil {
		t.Fatal("test premise: verify hashes should find the altered piece")
	}
	// What verify does on this host with what it found (backup.Verify).
	if err := ForgetObjects(e.opts.StateDir, "gpu01", "d0", DamagedObjects(herr)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		next := e.create(t, srcs)
		m, _ := Open(ctx, st, "gpu01", next.ID, e.pub)
		if err := CheckHashes(ctx, st, m, nil); err != nil {
			t.Fatalf("a new snapshot references a piece already found damaged (no way to heal): %v", err)
		}
	}
}
