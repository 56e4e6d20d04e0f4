package mongo

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/firetech/fireops/internal/mongotest"
	"github.com/firetech/fireops/internal/testenv"
)

// window returns where a and b differ: the length of their common prefix
// and, after it, of their common suffix; the bytes in between are
// a[p:len(a)-s] and b[p:len(b)-s].
func window(a, b []byte) (p, s int) {
	for p < len(a) && p < len(b) && a[p] == b[p] {
		p++
	}
	for s < len(a)-p && s < len(b)-p && a[len(a)-1-s] == b[len(b)-1-s] {
		s++
	}
	return p, s
}

// TestDumpDeduplicates: two dumps of unchanged data are the same bytes
// (what the content-defined chunker needs to store them once), also
// across a second boundary and with collections spooled to the encrypted
// temp file; a changed document changes the stream only around itself
// (and, when its size changes, in its collection's tar header).
func TestDumpDeduplicates(t *testing.T) {
	t.Parallel()
	uri, db := testenv.RequireMongo(t)
	c := mongotest.Connect(t, uri)
	mongotest.Seed(t, c, db, "", mongotest.Dataset{Runs: 3000, Events: 300})
	ctx := context.Background()
	// A name past USTAR's 100 bytes and not ASCII: its entries carry PAX
	// records.
	long := "résultats-" + string(bytes.Repeat([]byte("x"), 120))
	_, err := c.Database(db).Collection(long).InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: "é"}})
	must(t, err)

	// Inserted out of _id order: dumped in _id order. A capped collection
	// keeps its insertion order (FerretDB's natural order is the
	// insertion order).
	ids := []int32{5, 3, 9, 1, 7}
	must(t, c.Database(db).CreateCollection(ctx, "capped_log", options.CreateCollection().SetCapped(true).SetSizeInBytes(1<<20)))
	for _, id := range ids {
		for _, coll := range []string{"shuffled", "capped_log"} {
			_, err := c.Database(db).Collection(coll).InsertOne(ctx, bson.D{{Key: "_id", Value: id}})
			must(t, err)
		}
	}

	src, err := New(uri, []string{db}, WithSpoolMemory(64<<10), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := dump(t, src)
	time.Sleep(1100 * time.Millisecond) // a clock in a header would show
	b, _ := dump(t, src)
	if !bytes.Equal(a, b) {
		p, s := window(a, b)
		t.Fatalf("two dumps of unchanged data differ: %d bytes (of %d) from offset %d (%q...)", len(a)-p-s, len(a), p, entryAt(a, p))
	}

	for coll, want := range map[string][]int32{"shuffled": {1, 3, 5, 7, 9}, "capped_log": ids} {
		if got := docIDs(t, a, db+"/"+coll+".bson"); !slices.Equal(got, want) {
			t.Errorf("%s dumped in the order %v, want %v", coll, got, want)
		}
	}

	// One document in the middle of runs (by _id) changes, keeping its
	// size: the streams differ inside that document only.
	runs := c.Database(db).Collection("runs")
	var mid bson.Raw
	must(t, runs.FindOne(ctx, bson.D{{Key: "episode", Value: int32(1500)}}).Decode(&mid))
	_, err = runs.UpdateOne(ctx, bson.D{{Key: "_id", Value: mid.Lookup("_id")}}, bson.D{{Key: "$set", Value: bson.D{{Key: "reward", Value: 1e9}}}})
	must(t, err)
	changed, _ := dump(t, src)
	if len(changed) != len(a) {
		t.Fatalf("a same-size update changed the stream's length: %d -> %d", len(a), len(changed))
	}
	p, s := window(a, changed)
	if w := len(a) - p - s; w == 0 || w > len(mid) {
		t.Errorf("a same-size update changed %d bytes (the document has %d)", w, len(mid))
	}
	if i := bytes.Index(a, mid); i < 0 || p < i || len(a)-s > i+len(mid) {
		t.Errorf("the changed bytes [%d, %d) are not inside the document at [%d, %d)", p, len(a)-s, i, i+len(mid))
	}

	// The document grows: runs.bson's header changes (its size), its
	// contents differ from the document on, and the rest is the same
	// bytes, moved (and padded to the next 512-byte block); every other
	// entry is the same bytes.
	_, err = runs.UpdateOne(ctx, bson.D{{Key: "_id", Value: mid.Lookup("_id")}}, bson.D{{Key: "$set", Value: bson.D{{Key: "note", Value: "re-run on the new GPU"}}}})
	must(t, err)
	grown, _ := dump(t, src)
	hdr := bytes.Index(a, []byte(db+"/runs.bson\x00"))
	if hdr < 0 || hdr%512 != 0 {
		t.Fatalf("runs.bson's header not found at a block boundary (%d)", hdr)
	}
	p, _ = window(changed, grown)
	if p < hdr || p >= hdr+512 {
		t.Errorf("the grown stream first differs at %d, outside runs.bson's header [%d, %d)", p, hdr, hdr+512)
	}
	before, after := entryBody(changed, hdr), entryBody(grown, hdr)
	if len(after) <= len(before) {
		t.Fatalf("runs.bson did not grow: %d -> %d bytes", len(before), len(after))
	}
	p, s = window(before, after)
	if w := len(after) - p - s; w > 2*len(mid) {
		t.Errorf("a grown document changed %d bytes of runs.bson (the document has %d)", w, len(mid))
	}
	// The document starts with its length and "\x07_id\x00", then the ObjectId.
	oid := mid.Lookup("_id").ObjectID()
	i := bytes.Index(before, oid[:]) - 9
	if i < 0 || p < i {
		t.Errorf("runs.bson differs at %d, before the document at %d", p, i)
	}
	t.Logf("runs.bson: %d bytes; the grown document at %d changed %d bytes from %d", len(after), i, len(after)-p-s, p)
	restA, restB := changed[hdr+512+(len(before)+511)/512*512:], grown[hdr+512+(len(after)+511)/512*512:]
	if !bytes.Equal(restA, restB) {
		t.Errorf("the entries after runs.bson changed")
	}
}

// docIDs returns the int32 _ids of the documents of entry name, in order.
func docIDs(t testing.TB, payload []byte, name string) []int32 {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(payload))
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if hdr.Name != name {
			continue
		}
		data, err := io.ReadAll(tr)
		must(t, err)
		var ids []int32
		for len(data) > 0 {
			doc := bson.Raw(data[:binary.LittleEndian.Uint32(data)])
			ids = append(ids, doc.Lookup("_id").Int32())
			data = data[len(doc):]
		}
		return ids
	}
}

// entryBody returns the contents of the tar entry whose header is at off.
func entryBody(payload []byte, off int) []byte {
	size := parseOctal(payload[off+124 : off+136])
	return payload[off+512 : off+512+size]
}

// entryAt returns the name of the tar entry whose header or contents
// hold offset off, for messages.
func entryAt(payload []byte, off int) string {
	name := ""
	for pos := 0; pos+512 <= len(payload); {
		h := payload[pos : pos+512]
		if h[0] == 0 {
			break
		}
		name = string(bytes.TrimRight(h[:100], "\x00"))
		size := parseOctal(h[124:136])
		next := pos + 512 + (size+511)/512*512
		if off < next {
			return name
		}
		pos = next
	}
	return name
}

func parseOctal(b []byte) int {
	n := 0
	for _, c := range bytes.TrimRight(bytes.TrimLeft(b, " "), " \x00") {
		n = n*8 + int(c-'0')
	}
	return n
}

// TestReadOrder: which collections are read in _id order (sorted, the
// _id index hinted) and which in natural order; most of these kinds do
// not exist on FerretDB.
func TestReadOrder(t *testing.T) {
	t.Parallel()
	idxIDLong := `{"v": 2, "key": {"_id": {"$numberLong": "1"}}, "name": "_id_"}`
	idxIDDouble := `{"v": 2, "key": {"_id": 1.0}, "name": "_id_"}`
	idxIDHashed := `{"v": 2, "key": {"_id": "hashed"}, "name": "_id_hashed"}`
	idxIDDesc := `{"v": 2, "key": {"_id": -1}, "name": "_id_-1"}`
	idxIDCompound := `{"v": 2, "key": {"_id": 1, "at": 1}, "name": "_id_1_at_1"}`
	idxIDOther := `{"v": 2, "key": {"_id": 1}, "name": "_id_en", "collation": {"locale": "en"}}`
	specPlain := `{"name": "runs", "type": "collection", "options": {}}`
	specOld := `{"name": "old", "type": "collection", "options": {"autoIndexId": false}}`
	for _, tc := range []struct {
		name    string
		spec    string
		indexes []string
		sorted  bool
	}{
		{"collection", specValidator, []string{idxTTL, idxID, idxSparse}, true},
		{"no type", `{"name": "runs", "options": {}}`, []string{idxID}, true},
		{"_id index with a long key", specPlain, []string{idxIDLong}, true},
		{"_id index with a double key", specPlain, []string{idxIDDouble}, true},
		{"capped", specCapped, []string{idxID}, false},
		{"time series", specTimeser, nil, false},
		{"clustered", specClustered, []string{idxClustered, idxSparse}, false},
		{"clustered index only", specPlain, []string{idxClustered}, false},
		{"view", specView, nil, false},
		{"no _id index", specOld, []string{idxSparse}, false},
		{"no index", specOld, nil, false},
		{"only other indexes on _id", specPlain, []string{idxIDHashed, idxIDDesc, idxIDCompound, idxIDOther}, false},
		{"_id index and another on _id", specPlain, []string{idxIDOther, idxID}, true},
	} {
		var idx []bson.Raw
		for _, i := range tc.indexes {
			idx = append(idx, raw(t, i))
		}
		m, _, err := metadataFromSpec(raw(t, tc.spec), idx)
		if err != nil {
			t.Fatal(err)
		}
		sort, hint := readOrder(m)
		if !tc.sorted {
			if sort != nil || hint != nil {
				t.Errorf("%s: sort %v, hint %v; want natural order", tc.name, sort, hint)
			}
			continue
		}
		want := ext(t, bson.D{{Key: "_id", Value: 1}})
		if sort == nil || ext(t, sort) != want || hint != "_id_" {
			t.Errorf("%s: sort %v, hint %v; want %s and the index _id_", tc.name, sort, hint, want)
		}
	}
}

// TestSortIndexes: index specs in one order whatever the server's, each
// spec's bytes as they were.
func TestSortIndexes(t *testing.T) {
	t.Parallel()
	in := []string{idxTTL, idxSparse, idxID, idxText, idxHashed, idxCollation}
	want := []string{idxID, idxCollation, idxText, idxSparse, idxTTL, idxHashed}
	var got, wantRaw []bson.Raw
	for i := range in {
		got = append(got, raw(t, in[i]))
		wantRaw = append(wantRaw, raw(t, want[i]))
	}
	for _, shuffle := range [][]int{{0, 1, 2, 3, 4, 5}, {5, 4, 3, 2, 1, 0}, {2, 0, 4, 1, 5, 3}} {
		idx := make([]bson.Raw, len(got))
		for i, j := range shuffle {
			idx[i] = got[j]
		}
		sortIndexes(idx)
		if !slices.EqualFunc(idx, wantRaw, func(a, b bson.Raw) bool { return bytes.Equal(a, b) }) {
			var names []string
			for _, r := range idx {
				names = append(names, r.Lookup("name").StringValue())
			}
			t.Errorf("order %v sorted to %v", shuffle, names)
		}
	}
}

// TestHeaderIsFixed: an entry's header depends on its name, size, mode
// and type only, not on the clock: no times but the fixed one, no owner,
// no PAX records for a short ASCII name.
func TestHeaderIsFixed(t *testing.T) {
	t.Parallel()
	write := func() []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		must(t, tw.WriteHeader(header("metrics/", 0, 0o700, tar.TypeDir)))
		must(t, tw.WriteHeader(header("metrics/runs.bson", 5, 0o600, tar.TypeReg)))
		_, err := tw.Write([]byte{5, 0, 0, 0, 0})
		must(t, err)
		must(t, tw.Close())
		return buf.Bytes()
	}
	a := write()
	tr := tar.NewReader(bytes.NewReader(a))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		if !h.ModTime.Equal(time.Unix(0, 0)) || !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() ||
			h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || len(h.PAXRecords) != 0 {
			t.Errorf("%s: %+v", h.Name, h)
		}
	}
}
