package snapshot

import (
	"context"
	"testing"

	"github.com/firetech/fireops/pkg/source"
)

// TestEqualDataIsStoredOnce: two parts holding the same large file (two
// users with a copy of one dataset) store its pieces once; a file moved
// to another folder of a part costs a few pieces, not the file; a
// snapshot of unchanged data read again uploads nothing but its lists.
func TestEqualDataIsStoredOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.opts.ChunkSize = 256 << 10 // pieces of 64 KiB on average, 256 KiB at most
	maxPiece := int64(e.opts.ChunkSize)
	ctx := context.Background()
	dataset := randomBytes(6<<20, 11)
	a := &memSource{kind: "volume", name: "ada", files: map[string][]byte{"data/set.bin": dataset, "notes.txt": []byte("ada's notes")}}
	b := &memSource{kind: "volume", name: "bob", files: map[string][]byte{"copy/of/set.bin": dataset, "todo.txt": []byte("bob's list")}}
	res, err := Create(ctx, e.opts, e.storeList(), []source.Source{a, b})
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := res.Parts[0], res.Parts[1]
	if pa.Uploaded < int64(len(dataset)) {
		t.Fatalf("the first part uploaded %d bytes, less than its data", pa.Uploaded)
	}
	// The second part shares every piece but the ones around its own tar
	// headers and small file.
	if pb.Uploaded > 4*maxPiece {
		t.Errorf("the second copy of a %d-byte file uploaded %d bytes", len(dataset), pb.Uploaded)
	}
	if got := res.Destinations[0].Stored; got > int64(len(dataset))+6*maxPiece {
		t.Errorf("two copies of %d bytes take %d stored bytes", len(dataset), got)
	}
	e.restoreAll(t, e.stores[0], res.ID)

	// Moved within a part: a few pieces.
	a.files = map[string][]byte{"archive/2026/set.bin": dataset, "notes.txt": []byte("ada's notes")}
	res, err = Create(ctx, e.opts, e.storeList(), []source.Source{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if up := res.Parts[0].Uploaded; up > 4*maxPiece {
		t.Errorf("a moved file uploaded %d of its %d bytes again", up, len(dataset))
	}
	if up := res.Parts[1].Uploaded; up != 0 {
		t.Errorf("an unchanged part read again uploaded %d bytes", up)
	}
	e.restoreAll(t, e.stores[0], res.ID)
}
