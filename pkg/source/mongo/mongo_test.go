package mongo

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/firetech/fireops/internal/mongotest"
	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/source"
)

// dump runs the source and returns the payload.
func dump(t testing.TB, s *Source) ([]byte, source.Stats) {
	t.Helper()
	var buf bytes.Buffer
	st, err := s.WriteTar(context.Background(), &buf)
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	return buf.Bytes(), st
}

// seededSmall returns the test server's URI and a test database seeded
// with mongotest.Small (a fresh one, dropped when the test ends), and a
// client connected to it (see testenv.RequireMongo).
func seededSmall(t testing.TB) (uri, db string, c *mongo.Client) {
	t.Helper()
	uri, db = testenv.RequireMongo(t)
	c = mongotest.Connect(t, uri)
	mongotest.Seed(t, c, db, "", mongotest.Small)
	return uri, db, c
}

// dumpDB dumps db with the default options and returns the payload and
// the contents a restore of it expects.
func dumpDB(t testing.TB, uri, db string) ([]byte, []Namespace) {
	t.Helper()
	src, err := New(uri, []string{db})
	if err != nil {
		t.Fatal(err)
	}
	payload, st := dump(t, src)
	contents, err := Contents(st.Details)
	if err != nil {
		t.Fatalf("contents: %v", err)
	}
	return payload, contents
}

// restore stages and commits a payload.
func restore(t testing.TB, uri string, payload []byte, o RestoreOptions) (source.Stats, error) {
	t.Helper()
	r, err := NewRestorer(uri, o, WithBatch(500, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.Stage(context.Background(), bytes.NewReader(payload))
	if err != nil {
		return source.Stats{}, err
	}
	if err := s.Commit(context.Background()); err != nil {
		s.Abort()
		return s.Stats(), err
	}
	return s.Stats(), nil
}

// tarEntries lists a payload's entries, and the sorted-document hash of
// each .bson entry (as mongotest.SortedHash computes it on the server).
func tarEntries(t testing.TB, payload []byte) ([]string, map[string]string) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(payload))
	var names []string
	hashes := map[string]string{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names, hashes
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		if !strings.HasSuffix(hdr.Name, ".bson") {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		var docs [][]byte
		for len(data) > 0 {
			size := int(uint32(data[0]) | uint32(data[1])<<8 | uint32(data[2])<<16 | uint32(data[3])<<24)
			if err := bson.Raw(data[:size]).Validate(); err != nil {
				t.Fatalf("%s: document %d: %v", hdr.Name, len(docs), err)
			}
			docs = append(docs, data[:size])
			data = data[size:]
		}
		slices.SortFunc(docs, bytes.Compare)
		h := sha256.New()
		for _, d := range docs {
			h.Write(d)
		}
		hashes[hdr.Name] = hex.EncodeToString(h.Sum(nil))
	}
}

func stagingLeft(t testing.TB, c *mongo.Client, dbs ...string) []string {
	t.Helper()
	var left []string
	for _, db := range dbs {
		names, err := c.Database(db).ListCollectionNames(context.Background(), bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if strings.HasPrefix(n, StagingPrefix) {
				left = append(left, db+"."+n)
			}
		}
	}
	return left
}

// TestRoundTrip dumps about 20,000 documents of every BSON type FerretDB
// handles, a document of nearly 16 MiB, a capped collection and several
// kinds of index across two databases, restores them into other
// databases, and compares the raw documents byte for byte, the indexes
// and the collection options.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	uri, db1 := testenv.RequireMongo(t)
	c := mongotest.Connect(t, uri)
	db2 := "t_" + randomHex(8)
	mongotest.DropLater(t, c, db2)
	mongotest.Seed(t, c, db1, db2, mongotest.Full)

	src, err := New(uri, []string{db2, db1}, WithSpoolMemory(1<<20), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	payload, st := dump(t, src)

	// Layout, counts and the index's facts.
	names, hashes := tarEntries(t, payload)
	want1 := []string{db1 + "/",
		db1 + "/blobs.metadata.json", db1 + "/blobs.bson", db1 + "/empty.metadata.json", db1 + "/empty.bson",
		db1 + "/events.metadata.json", db1 + "/events.bson", db1 + "/runs.metadata.json", db1 + "/runs.bson"}
	want2 := []string{db2 + "/", db2 + "/results.metadata.json", db2 + "/results.bson"}
	want := append(want1, want2...) // databases in name order
	if db2 < db1 {
		want = append(want2, want1...)
	}
	if !slices.Equal(names, want) {
		t.Fatalf("entries:\n got %q\nwant %q", names, want)
	}
	if st.Entries != int64(len(want)) || st.Documents != int64(4000+4000+12000+4) {
		t.Errorf("stats: %d entries, %d documents", st.Entries, st.Documents)
	}
	d := st.Details
	if d["consistency"] != PerCollection || d["topology"] != "standalone" || d["server_version"] == "" || d["cluster_time"] != "" {
		t.Errorf("details: %v", d)
	}
	for ns, n := range map[string]string{db1 + ".runs": "4000", db1 + ".events": "4000", db1 + ".blobs": "4", db1 + ".empty": "0", db2 + ".results": "12000"} {
		if d["count:"+ns] != n || d["docsum:"+ns] == "" || d["bytes:"+ns] == "" {
			t.Errorf("%s: count %q (want %s), docsum %q, bytes %q", ns, d["count:"+ns], n, d["docsum:"+ns], d["bytes:"+ns])
		}
	}
	// The dump's documents are the server's bytes.
	orig := map[string]map[string]string{}
	for _, db := range []string{db1, db2} {
		orig[db] = mongotest.SortedHash(t, c, db)
		for coll, v := range orig[db] {
			_, got, _ := strings.Cut(v, ":")
			if hashes[db+"/"+coll+".bson"] != got {
				t.Errorf("%s.%s: the dump's documents differ from the server's", db, coll)
			}
		}
	}

	prefix := "r" + randomHex(3) + "_"
	mongotest.DropLater(t, c, prefix+db1)
	mongotest.DropLater(t, c, prefix+db2)
	contents, err := Contents(st.Details)
	if err != nil {
		t.Fatal(err)
	}
	o := RestoreOptions{ToDB: prefix, Expect: contents}
	if _, err := Plan(context.Background(), uri, contents, o); err != nil {
		t.Fatal(err)
	}
	rst, err := restore(t, uri, payload, o)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if rst.Entries != st.Entries || rst.Documents != st.Documents {
		t.Errorf("restore stats %+v, dump %+v", rst, st)
	}
	for _, db := range []string{db1, db2} {
		if a, b := orig[db], mongotest.SortedHash(t, c, prefix+db); !maps.Equal(a, b) {
			t.Errorf("%s: documents differ after the restore:\n%v\n%v", db, a, b)
		}
		if a, b := mongotest.Indexes(t, c, db), mongotest.Indexes(t, c, prefix+db); !maps.EqualFunc(a, b, slices.Equal) {
			t.Errorf("%s: indexes differ:\n%v\n%v", db, a, b)
		}
		if a, b := mongotest.Options(t, c, db), mongotest.Options(t, c, prefix+db); !maps.Equal(a, b) {
			t.Errorf("%s: collection options differ:\n%v\n%v", db, a, b)
		}
	}
	if !strings.Contains(mongotest.Options(t, c, prefix+db1)["events"], `"capped":true`) {
		t.Errorf("events is not capped after the restore: %v", mongotest.Options(t, c, prefix+db1))
	}
	if left := stagingLeft(t, c, prefix+db1, prefix+db2); len(left) > 0 {
		t.Errorf("staging collections left: %v", left)
	}
}

// TestRestoreSafety: selective restore, the refusal to replace a
// collection with documents, --drop, and that a failed restore leaves
// the live collections as they were.
func TestRestoreSafety(t *testing.T) {
	t.Parallel()
	uri, db, c := seededSmall(t)
	payload, contents := dumpDB(t, uri, db)
	ctx := context.Background()
	orig := mongotest.SortedHash(t, c, db)

	// Into the live database without --drop: refused before anything.
	_, err := Plan(ctx, uri, contents, RestoreOptions{Expect: contents})
	if !errors.Is(err, ErrNotEmpty) || exitcode.Code(err) != exitcode.Usage || !strings.Contains(exitcode.Hint(err), "--drop") {
		t.Fatalf("plan over live data: %v", err)
	}
	for _, ns := range []string{db + ".runs", db + ".events", db + ".blobs"} {
		if !strings.Contains(err.Error(), ns) {
			t.Errorf("the refusal does not name %s: %v", ns, err)
		}
	}
	if strings.Contains(err.Error(), db+".empty") {
		t.Errorf("an empty collection was refused: %v", err)
	}

	// Selective: one collection next to the live one.
	prefix := "s" + randomHex(3) + "_"
	mongotest.DropLater(t, c, prefix+db)
	sel := RestoreOptions{Select: Selection{db + ".runs"}, ToDB: prefix, Expect: contents}
	planned, err := Plan(ctx, uri, contents, sel)
	if err != nil || len(planned) != 1 || planned[0].TargetDB != prefix+db || planned[0].TargetColl != "runs" || planned[0].Exists {
		t.Fatalf("plan: %+v %v", planned, err)
	}
	if _, err := restore(t, uri, payload, sel); err != nil {
		t.Fatal(err)
	}
	got := mongotest.SortedHash(t, c, prefix+db)
	if len(got) != 1 || got["runs"] != orig["runs"] {
		t.Errorf("selective restore gave %v, want runs = %s only", got, orig["runs"])
	}

	// An existing empty target is replaced without --drop.
	must(t, c.Database(prefix+db).CreateCollection(ctx, "events"))
	sel2 := RestoreOptions{Select: Selection{db + ".events"}, ToDB: prefix, Expect: contents}
	if _, err := restore(t, uri, payload, sel2); err != nil {
		t.Fatalf("into an empty collection: %v", err)
	}
	if h := mongotest.SortedHash(t, c, prefix+db)["events"]; h != orig["events"] {
		t.Errorf("events: %s, want %s", h, orig["events"])
	}

	// A target that gains documents between the plan and the commit is
	// refused at commit; the staging collection goes, the target stays.
	r, err := NewRestorer(uri, RestoreOptions{Select: Selection{db + ".blobs"}, ToDB: prefix, Expect: contents})
	if err != nil {
		t.Fatal(err)
	}
	stg, err := r.Stage(ctx, bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Database(prefix+db).Collection("blobs").InsertOne(ctx, bson.D{{Key: "_id", Value: "late"}})
	must(t, err)
	if err := stg.Commit(ctx); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("commit over a collection that gained documents: %v", err)
	}
	must(t, stg.Abort())
	if n, _ := c.Database(prefix+db).Collection("blobs").CountDocuments(ctx, bson.D{}); n != 1 {
		t.Errorf("blobs has %d documents, want the 1 inserted", n)
	}
	if left := stagingLeft(t, c, prefix+db); len(left) > 0 {
		t.Errorf("staging collections left: %v", left)
	}

	// --drop replaces a changed live collection, and only the selected one.
	runs := c.Database(db).Collection("runs")
	_, err = runs.DeleteMany(ctx, bson.D{{Key: "done", Value: true}})
	must(t, err)
	_, err = runs.InsertOne(ctx, bson.D{{Key: "_id", Value: "stray"}})
	must(t, err)
	_, err = c.Database(db).Collection("events").InsertOne(ctx, bson.D{{Key: "_id", Value: int64(-1)}})
	must(t, err)
	changedEvents := mongotest.SortedHash(t, c, db)["events"]
	drop := RestoreOptions{Select: Selection{db + ".runs"}, Drop: true, Expect: contents}
	if _, err := Plan(ctx, uri, contents, drop); err != nil {
		t.Fatal(err)
	}
	if _, err := restore(t, uri, payload, drop); err != nil {
		t.Fatalf("restore --drop: %v", err)
	}
	now := mongotest.SortedHash(t, c, db)
	if now["runs"] != orig["runs"] || now["events"] != changedEvents {
		t.Errorf("after --drop of runs: %v, want runs %s and events untouched %s", now, orig["runs"], changedEvents)
	}
	if a, b := mongotest.Indexes(t, c, db)["runs"], mongotest.Indexes(t, c, prefix+db)["runs"]; !slices.Equal(a, b) {
		t.Errorf("indexes of the replaced runs: %v, want %v", a, b)
	}

	// A payload cut in the middle of runs.bson fails the restore: the live
	// collections stay as they were, no staging collection is left.
	before := mongotest.SortedHash(t, c, db)
	cut := payload[:bytes.Index(payload, []byte("runs.bson"))+1024+300]
	if _, err := restore(t, uri, cut, RestoreOptions{Drop: true, Expect: contents}); err == nil {
		t.Fatal("a truncated payload was restored")
	}
	if after := mongotest.SortedHash(t, c, db); !maps.Equal(before, after) {
		t.Errorf("a failed restore changed the live collections:\n%v\n%v", before, after)
	}
	// The same cut next to the live data: the database the failed
	// restore created is gone again (FerretDB keeps an empty one listed).
	fresh := "x" + randomHex(3) + "_"
	mongotest.DropLater(t, c, fresh+db)
	if _, err := restore(t, uri, cut, RestoreOptions{ToDB: fresh, Expect: contents}); err == nil {
		t.Fatal("a truncated payload was restored next to the live data")
	}
	if dbs := mongotest.Databases(t, c, fresh); len(dbs) > 0 {
		t.Errorf("a failed restore --to-db left %v", dbs)
	}
	// So does a count that differs from the index.
	bad := slices.Clone(contents)
	for i := range bad {
		bad[i].Documents++
	}
	if _, err := restore(t, uri, payload, RestoreOptions{Drop: true, Expect: bad}); !errors.Is(err, ErrIntegrity) || exitcode.Code(err) != exitcode.CheckFailed {
		t.Fatalf("restore with wrong counts: %v", err)
	}
	if after := mongotest.SortedHash(t, c, db); !maps.Equal(before, after) {
		t.Errorf("a failed restore changed the live collections")
	}
	if left := stagingLeft(t, c, db); len(left) > 0 {
		t.Errorf("staging collections left: %v", left)
	}

	// restore-test's scratch database: every collection under "<db>:<coll>",
	// read back and compared.
	scratch := ScratchDB("20260301T120000Z-" + randomHex(3))
	mongotest.DropLater(t, c, scratch)
	if _, err := restore(t, uri, payload, RestoreOptions{Scratch: scratch, Expect: contents, VerifySums: true}); err != nil {
		t.Fatalf("scratch restore: %v", err)
	}
	sh := mongotest.SortedHash(t, c, scratch)
	for coll, h := range orig {
		if sh[db+":"+coll] != h {
			t.Errorf("scratch %s.%s: %s, want %s", db, coll, sh[db+":"+coll], h)
		}
	}
	must(t, DropDatabase(ctx, uri, scratch))
	if dbs := mongotest.Databases(t, c, scratch); len(dbs) > 0 {
		t.Errorf("scratch database left: %v", dbs)
	}
}

// TestSnapshotSessionPath runs the point-in-time code path (one snapshot
// session for every read) against the test server by pretending it is a
// replica set: FerretDB accepts the session and the snapshot read concern
// but pins nothing and names no snapshot time, so the dump must say
// per-collection, not claim a point in time it did not get.
func TestSnapshotSessionPath(t *testing.T) {
	t.Parallel()
	uri, db, c := seededSmall(t)
	src, err := New(uri, []string{db})
	if err != nil {
		t.Fatal(err)
	}
	src.decide = func(bson.Raw) (Decision, error) {
		return Decision{Consistency: PointInTime, Topology: "replica set rs0 (primary)"}, nil
	}
	payload, st := dump(t, src)
	if st.Details["consistency"] != PerCollection || st.Details["consistency_note"] == "" || st.Details["cluster_time"] != "" {
		t.Errorf("details: %v", st.Details)
	}
	_, hashes := tarEntries(t, payload)
	for coll, h := range mongotest.SortedHash(t, c, db) {
		if _, want, _ := strings.Cut(h, ":"); hashes[db+"/"+coll+".bson"] != want {
			t.Errorf("%s: the dump differs from the server", coll)
		}
	}
}

// TestServerStoppedMidDump: the connection breaks while a collection is
// read (a proxy that cuts every connection after a number of bytes, then
// refuses new ones, like a stopped server): a clear error, never a short
// payload that looks complete.
func TestServerStoppedMidDump(t *testing.T) {
	t.Parallel()
	uri, db := testenv.RequireMongo(t)
	c := mongotest.Connect(t, uri)
	mongotest.Seed(t, c, db, "", mongotest.Dataset{Runs: 3000, Events: 20})
	p := mongotest.StartProxy(t, mongotest.Target(uri))
	src, err := New(p.URI(uri), []string{db}, WithServerSelectionTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	p.CutAfter(150_000, true)
	var buf bytes.Buffer
	_, err = src.WriteTar(context.Background(), &buf)
	if err == nil {
		t.Fatal("the dump succeeded through a cut connection")
	}
	if !p.Cut() {
		t.Fatalf("the proxy did not cut (the dump failed for another reason): %v", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "mongo: read "+db+".runs: lost the connection to the server") || strings.Contains(msg, p.Addr()+"/") {
		t.Errorf("error: %v", err)
	}
	if exitcode.Hint(err) == "" {
		t.Errorf("no hint: %v", err)
	}
}

// TestAuthenticationFailure: the test server, FerretDB v1 with SQLite,
// does not check passwords (with PLAIN any password passes), but it
// answers SCRAM, the driver's default mechanism, with AuthenticationFailed
// (code 18), the answer MongoDB gives to a wrong password. The error names
// authentication and quotes neither the URI nor the password.
func TestAuthenticationFailure(t *testing.T) {
	t.Parallel()
	uri, db := testenv.RequireMongo(t)
	const pw = "Wr0ng-Pa55word"
	bad := strings.Replace(uri, "mongodb://", "mongodb://backup:"+pw+"@", 1)
	src, err := New(bad, []string{db}, WithServerSelectionTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.WriteTar(context.Background(), io.Discard)
	check := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: accepted a wrong password", what)
		}
		msg := err.Error()
		if !strings.Contains(msg, "authentication failed") || strings.Contains(msg, pw) || strings.Contains(msg, "backup:") || strings.Contains(msg, bad) {
			t.Errorf("%s: %q", what, msg)
		}
		if !strings.Contains(exitcode.Hint(err), "password") {
			t.Errorf("%s: hint %q", what, exitcode.Hint(err))
		}
	}
	check("dump", err)
	_, err = Plan(context.Background(), bad, []Namespace{{DB: db, Coll: "x"}}, RestoreOptions{})
	check("plan", err)
}

// TestServerDown: nothing listens at the URI's address. The error names
// the address and the last dial error in one short line, not the driver's
// topology description, and never the password.
func TestServerDown(t *testing.T) {
	t.Parallel()
	src, err := New("mongodb://user:hidden-pw@127.0.0.1:1/", nil, WithServerSelectionTimeout(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.WriteTar(context.Background(), io.Discard)
	if err == nil {
		t.Fatal("connected to 127.0.0.1:1")
	}
	const want = "mongo: connect: cannot reach MongoDB at 127.0.0.1:1: dial tcp 127.0.0.1:1: connect: connection refused"
	if err.Error() != want {
		t.Errorf("err = %q\nwant %q", err, want)
	}
	if exitcode.Code(err) != exitcode.Failure || !strings.Contains(exitcode.Hint(err), "MongoDB runs and listens at 127.0.0.1:1") {
		t.Errorf("code %d hint %q", exitcode.Code(err), exitcode.Hint(err))
	}
	for _, bad := range []string{"hidden-pw", "topology", "Servers:"} {
		if strings.Contains(err.Error()+exitcode.Hint(err), bad) {
			t.Errorf("the error says %q: %v", bad, err)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestRenameAsideInterrupted: on a server without dropTarget (FerretDB)
// a --drop restore renames the live collection aside before it renames
// the staging collection into place. Between the two renames the live
// documents must be under a name the docs do not call safe to drop, and
// an interrupt (SIGINT cancels the context) arriving there must not leave
// the target missing.
func TestRenameAsideInterrupted(t *testing.T) {
	t.Parallel()
	uri, db := testenv.RequireMongo(t)
	c := mongotest.Connect(t, uri)
	ctx := context.Background()
	live := c.Database(db).Collection("live")
	for i := range 50 {
		_, err := live.InsertOne(ctx, bson.D{{Key: "_id", Value: int64(i)}})
		must(t, err)
	}
	payload, contents := dumpDB(t, uri, db)
	_, err := live.InsertOne(ctx, bson.D{{Key: "_id", Value: "stray"}})
	must(t, err)

	r, err := NewRestorer(uri, RestoreOptions{Select: Selection{db + ".live"}, Drop: true, Expect: contents})
	if err != nil {
		t.Fatal(err)
	}
	stg, err := r.Stage(ctx, bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	s := stg.(*staged)

	// Swap in a client that cancels the commit's context as soon as the
	// live collection has been renamed aside, and records where the live
	// documents are at that moment.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var asideReq int64 = -1
	var safeNames []string // collections not named StagingPrefix* then
	mon := &event.CommandMonitor{
		Started: func(_ context.Context, e *event.CommandStartedEvent) {
			if e.CommandName == "renameCollection" && e.Command.Lookup("renameCollection").StringValue() == db+".live" {
				asideReq = e.RequestID
			}
		},
		Succeeded: func(_ context.Context, e *event.CommandSucceededEvent) {
			if e.RequestID != asideReq {
				return
			}
			names, err := c.Database(db).ListCollectionNames(context.Background(), bson.D{})
			if err != nil {
				t.Error(err)
			}
			for _, n := range names {
				if !strings.HasPrefix(n, StagingPrefix) {
					safeNames = append(safeNames, n)
				}
			}
			cancel()
		},
	}
	mc, err := mongo.Connect(options.Client().ApplyURI(uri).SetMonitor(mon))
	must(t, err)
	s.c.Disconnect(ctx)
	s.c = mc

	err = stg.Commit(cctx)
	if err != nil {
		stg.Abort()
	}
	if asideReq < 0 {
		testenv.Unavailable(t, "a server without renameCollection dropTarget (FerretDB)", errors.New("the server renamed with dropTarget; no rename aside to interrupt"))
	}
	if len(safeNames) == 0 {
		t.Errorf("between the two renames the live documents were only in %s* collections, which docs/mongo.md calls safe to drop", StagingPrefix)
	}
	n, cerr := live.CountDocuments(ctx, bson.D{})
	must(t, cerr)
	if n != 50 && n != 51 {
		t.Errorf("after an interrupted commit (%v) %s.live holds %d documents, want the snapshot's 50 or the live 51", err, db, n)
	}
}

// TestViewRefusedLeavesLive: views are not staged, so a --drop restore
// tries each view under a staging name before it replaces anything. A
// server that refuses the view (FerretDB has no views) fails the restore
// with the live collections and the live namespace of the view as they
// were; a server that takes it gets the view. Which of the two the
// server is, is asked first, by creating a view outside the restore.
func TestViewRefusedLeavesLive(t *testing.T) {
	t.Parallel()
	uri, db := testenv.RequireMongo(t)
	c := mongotest.Connect(t, uri)
	ctx := context.Background()
	probeDB := db + "_views"
	mongotest.DropLater(t, c, probeDB)
	viewsErr := c.Database(probeDB).CreateView(ctx, "probe", "runs", mongo.Pipeline{})
	runs, best := c.Database(db).Collection("runs"), c.Database(db).Collection("best")
	_, err := runs.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	must(t, err)
	payload, contents := dumpDB(t, uri, db)
	_, err = runs.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}})
	must(t, err)
	_, err = best.InsertOne(ctx, bson.D{{Key: "_id", Value: "live"}})
	must(t, err)
	// The snapshot also has a view "best" on runs.
	meta := `{"options":{"viewOn":"runs","pipeline":[{"$match":{"done":true}}]},"indexes":[],"collectionName":"best","type":"view"}`
	payload = append(payload[:len(payload)-1024], makeTar(t, []tarEntry{{name: db + "/best.metadata.json", body: meta}})...)
	contents = append(contents, Namespace{DB: db, Coll: "best", View: true, ViewOn: "runs"})
	o := RestoreOptions{Drop: true, Expect: contents}
	if _, err := Plan(ctx, uri, contents, o); err != nil {
		t.Fatal(err)
	}
	_, err = restore(t, uri, payload, o)
	nRuns, _ := runs.CountDocuments(ctx, bson.D{})
	nBest, _ := best.CountDocuments(ctx, bson.D{})
	if viewsErr == nil {
		if err != nil {
			t.Fatalf("the server has views, but the restore of one failed: %v", err)
		}
		if nRuns != 1 {
			t.Errorf("runs holds %d documents after the restore, want the snapshot's 1", nRuns)
		}
		return
	}
	t.Logf("the server has no views: %v", viewsErr)
	if err == nil {
		t.Fatalf("the server refuses views (%v), but the restore of one succeeded (runs %d, best %d)", viewsErr, nRuns, nBest)
	}
	if msg := err.Error(); !strings.Contains(msg, "create view "+db+".best") || !strings.Contains(msg, "nothing was replaced") {
		t.Errorf("the restore failed with %q, want the refused view named and nothing replaced", msg)
	}
	if nRuns != 2 || nBest != 1 {
		t.Fatalf("a refused view left runs with %d documents (want 2) and best with %d (want 1)", nRuns, nBest)
	}
	names, err := c.Database(db).ListCollectionNames(ctx, bson.D{})
	must(t, err)
	for _, n := range names {
		if strings.HasPrefix(n, StagingPrefix) {
			t.Errorf("staging collection %s left behind", n)
		}
	}
}

// TestRestoreTestLongCollectionName: a collection whose name fits at the
// source restores into the scratch database (whose namespaces are
// longer), so a good snapshot passes restore-test.
func TestRestoreTestLongCollectionName(t *testing.T) {
	t.Parallel()
	uri, db := testenv.RequireMongo(t)
	c := mongotest.Connect(t, uri)
	_, err := c.Database(db).Collection(strings.Repeat("m", 230)).InsertOne(context.Background(), bson.D{{Key: "_id", Value: 1}})
	must(t, err)
	payload, contents := dumpDB(t, uri, db)
	scratch := ScratchDB("20260301T120000Z-" + randomHex(3))
	mongotest.DropLater(t, c, scratch)
	if _, err := restore(t, uri, payload, RestoreOptions{Scratch: scratch, Expect: contents, VerifySums: true}); err != nil {
		t.Fatalf("restore-test of a good snapshot: %v", err)
	}
}

// TestPlanRefusesTooLongTarget: a --to-db prefix that makes a collection's
// namespace longer than the server takes is refused by Plan, before
// anything is downloaded or replaced.
func TestPlanRefusesTooLongTarget(t *testing.T) {
	t.Parallel()
	uri, db := testenv.RequireMongo(t)
	contents := []Namespace{{DB: db, Coll: "runs"}, {DB: db, Coll: strings.Repeat("c", 230)}}
	_, err := Plan(context.Background(), uri, contents, RestoreOptions{ToDB: "restored_copy_", Expect: contents})
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "bytes long") || !strings.Contains(exitcode.Hint(err), "--to-db") {
		t.Fatalf("Plan with a too long target: code %d, %v (hint %q)", exitcode.Code(err), err, exitcode.Hint(err))
	}
}
