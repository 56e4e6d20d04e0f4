package snapshot

import (
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"
)

func testID(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// TestKnownLog: records survive a reopen, the newest record of an id
// wins, ids that share their first 8 bytes are told apart, a torn last
// record (a crash mid-write) is dropped, and an object counts as known
// only while the listing holds it with its recorded size.
func TestKnownLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k, existed, err := openKnown(dir, "gpu01", "d0", "space")
	if err != nil || existed {
		t.Fatalf("open: %v, existed %v", err, existed)
	}
	k.present = newObjectSet()
	a, b := testID("a"), testID("b")
	twin := a
	twin[31] ^= 1 // same first 8 bytes as a
	for i, c := range []struct {
		id  [32]byte
		obj knownObject
	}{
		{a, knownObject{stored: 100, sha: testID("sha a")}},
		{b, knownObject{stored: 200, sha: testID("sha b")}},
		{twin, knownObject{stored: 300, sha: testID("sha twin")}},
		{a, knownObject{stored: 100, sha: testID("sha a again")}},
	} {
		if err := k.add(c.id, c.obj); err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
	}
	check := func(k *Known) {
		t.Helper()
		for _, c := range []struct {
			id   [32]byte
			sha  [32]byte
			size int64
		}{{a, testID("sha a again"), 100}, {b, testID("sha b"), 200}, {twin, testID("sha twin"), 300}} {
			o, ok := k.find(c.id)
			if !ok || o.sha != c.sha || o.stored != c.size {
				t.Fatalf("find %x: %+v %v", c.id[:4], o, ok)
			}
		}
		if _, ok := k.find(testID("c")); ok {
			t.Fatal("an unknown id was found")
		}
	}
	check(k)
	if err := k.sync(); err != nil {
		t.Fatal(err)
	}
	k.close()
	// A torn record at the end.
	f, _ := os.OpenFile(knownPath(dir, "gpu01", "d0", "space"), os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte("torn"))
	f.Close()
	k, existed, err = openKnown(dir, "gpu01", "d0", "space")
	if err != nil || !existed {
		t.Fatalf("reopen: %v, existed %v", err, existed)
	}
	defer k.close()
	check(k)
	if fi, _ := os.Stat(k.path); fi.Size()%knownRecord != 0 {
		t.Fatalf("torn record kept: %d bytes", fi.Size())
	}
	// Known only while listed with the recorded size.
	k.present = newObjectSet()
	if _, ok := k.lookup(b); ok {
		t.Fatal("an object the destination lacks was looked up as known")
	}
	k.present.add(b, 199)
	if _, ok := k.lookup(b); ok {
		t.Fatal("an object of another size was looked up as known")
	}
	k.present = newObjectSet()
	k.present.add(b, 200)
	if o, ok := k.lookup(b); !ok || o.stored != 200 {
		t.Fatal("a listed object was not known")
	}
	// Another destination or space has its own log.
	o, _, err := openKnown(dir, "gpu01", "d1", "space")
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	if _, ok := o.find(b); ok {
		t.Fatal("another destination's log holds b")
	}
}

func TestObjectSetAmbiguousPrefix(t *testing.T) {
	t.Parallel()
	s := newObjectSet()
	a := testID("a")
	twin := a
	twin[31] ^= 1
	s.add(a, 10)
	if !s.has(a, 10) || s.has(a, 11) {
		t.Fatal("has")
	}
	s.add(twin, 20)
	if s.has(a, 10) || s.has(twin, 20) {
		t.Fatal("two objects of one prefix and different sizes must both read as absent")
	}
}

// TestDamagedPieceIsUploadedAgain: a piece found damaged by verify is
// forgotten, and the next snapshot uploads it again instead of
// referencing the damaged copy (a damaged object must not spoil every
// later snapshot), also for a part whose source did not change.
func TestDamagedPieceIsUploadedAgain(t *testing.T) {
	t.Parallel()
	e, st, first := reusingEnv(t)
	ctx := context.Background()
	piece := snapPieces(t, e, st, first.ID)[0]
	flipMiddleByte(t, piece, 1)
	m := e.open(t, st, first.ID)
	herr := CheckHashes(ctx, st, m, nil)
	ids := DamagedObjects(herr)
	if len(ids) != 1 || !strings.Contains(piece, ids[0]) {
		t.Fatalf("damaged objects %v from %v", ids, herr)
	}
	// Without forgetting, the next snapshot would reference it again.
	if err := ForgetObjects(e.opts.StateDir, "gpu01", "d0", ids); err != nil {
		t.Fatal(err)
	}
	second := e.create(t, testSources())
	e.restoreAll(t, st, second.ID) // CheckHashes included
	if _, err := os.Stat(damagedPath(e.opts.StateDir, "gpu01", "d0")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the damaged list outlived the upload that repaired it: %v", err)
	}
	// The first snapshot referenced the damaged copy: still damaged, and
	// not silently "repaired" into a hash it does not record.
	if err := CheckHashes(ctx, st, m, nil); err == nil {
		t.Fatal("the first snapshot verifies after its piece was replaced by another encryption")
	}
}

// TestDestinationRefilledFromAnotherRun: a destination is emptied and
// refilled with the objects of another destination written by an earlier
// run (same pieces, other encryptions, same sizes): the last manifest this
// host wrote there is gone, so the known-objects log is checked against
// the piece lists now there, and the next snapshot records the hashes the
// stored bytes have.
func TestDestinationRefilledFromAnotherRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	ctx := context.Background()
	d0, d1 := e.stores[0], e.stores[1]
	// d1's snapshot is older than the one this host last wrote to d0, so
	// only the changed last manifest can tell that d0 is not what it was.
	at := func(sec int) func() time.Time {
		return func() time.Time { return time.Date(2026, 12, 1, 3, 0, sec, 0, time.UTC) }
	}
	e.opts.Now = at(0)
	if _, err := Create(ctx, e.opts, []Store{d1}, testSources()); err != nil {
		t.Fatal(err)
	}
	e.opts.Now = at(10)
	if _, err := Create(ctx, e.opts, []Store{d0}, testSources()); err != nil {
		t.Fatal(err)
	}
	e.opts.Now = at(20)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.RemoveAll(d0.root))
	must(os.CopyFS(d0.root, os.DirFS(d1.root)))
	res, err := Create(ctx, e.opts, []Store{d0}, testSources())
	if err != nil {
		t.Fatal(err)
	}
	e.restoreAll(t, d0, res.ID) // CheckHashes included
}
