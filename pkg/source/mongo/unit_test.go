package mongo

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/firetech/fireops/pkg/exitcode"
)

// TestDecide: the consistency decision for the hello answers recorded in
// testdata/hello (see its README for the sources).
func TestDecide(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file, consistency, topology, reason string
	}{
		{"standalone-7.0.json", PerCollection, "standalone", "single-node replica set"},
		{"ferretdb-1.24.json", PerCollection, "standalone", "single-node replica set"},
		{"replset-primary-7.0.json", PointInTime, "replica set rs0 (primary)", ""},
		{"replset-secondary-6.0.json", PointInTime, "replica set rs0 (secondary)", ""},
		{"mongos-8.0.json", PointInTime, "sharded cluster (mongos)", ""},
		{"replset-primary-4.4.json", PerCollection, "replica set rs0 (primary)", "MongoDB 5.0"},
		{"replset-arbiter-7.0.json", PerCollection, "replica set rs0 (arbiter)", "cannot serve reads"},
		{"ismaster-replset-4.0.json", PerCollection, "replica set rs0 (primary)", "wire version 7"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(filepath.Join("testdata", "hello", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			var raw bson.Raw
			if err := bson.UnmarshalExtJSON(data, false, &raw); err != nil {
				t.Fatal(err)
			}
			d, err := Decide(raw)
			if err != nil {
				t.Fatal(err)
			}
			if d.Consistency != tc.consistency || d.Topology != tc.topology {
				t.Errorf("got %q on %q, want %q on %q", d.Consistency, d.Topology, tc.consistency, tc.topology)
			}
			if (tc.reason == "") != (d.Reason == "") || !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("reason %q, want one containing %q", d.Reason, tc.reason)
			}
		})
	}
	if _, err := Decide(bson.Raw{1, 2}); err == nil {
		t.Error("a broken answer was accepted")
	}
}

// Server answers from the MongoDB manual's examples (listCollections,
// listIndexes, db.createCollection, createIndexes pages), for what
// FerretDB does not implement.
const (
	specValidator = `{"name": "contacts", "type": "collection", "options": {"validator": {"$jsonSchema": {"bsonType": "object", "required": ["phone"], "properties": {"phone": {"bsonType": "string", "description": "must be a string"}}}}, "validationLevel": "moderate", "validationAction": "warn", "collation": {"locale": "fr", "strength": {"$numberInt": "1"}}}, "info": {"readOnly": false, "uuid": {"$binary": {"base64": "3b9Zx5xAQ9+zHsTjZlsFMw==", "subType": "04"}}}, "idIndex": {"v": {"$numberInt": "2"}, "key": {"_id": {"$numberInt": "1"}}, "name": "_id_"}}`
	specView      = `{"name": "managementFeedback", "type": "view", "options": {"viewOn": "survey", "pipeline": [{"$project": {"management": "$feedback.management", "department": {"$numberInt": "1"}}}]}, "info": {"readOnly": true}}`
	specCapped    = `{"name": "log", "type": "collection", "options": {"capped": true, "size": {"$numberLong": "5242880"}, "max": {"$numberLong": "5000"}, "autoIndexId": true}, "info": {"readOnly": false}}`
	specTimeser   = `{"name": "weather", "type": "timeseries", "options": {"timeseries": {"timeField": "timestamp", "metaField": "metadata", "granularity": "hours", "bucketMaxSpanSeconds": {"$numberInt": "2592000"}}, "expireAfterSeconds": {"$numberLong": "86400"}}, "info": {"readOnly": false}}`
	specClustered = `{"name": "orders", "type": "collection", "options": {"clusteredIndex": {"v": {"$numberInt": "2"}, "key": {"_id": {"$numberInt": "1"}}, "name": "_id_", "unique": true}}, "info": {"readOnly": false}}`

	idxID        = `{"v": {"$numberInt": "2"}, "key": {"_id": {"$numberInt": "1"}}, "name": "_id_", "ns": "test.contacts"}`
	idxTTL       = `{"v": {"$numberInt": "2"}, "key": {"lastModifiedDate": {"$numberInt": "1"}}, "name": "lastModifiedDate_1", "expireAfterSeconds": {"$numberInt": "3600"}}`
	idxPartial   = `{"v": {"$numberInt": "2"}, "key": {"cuisine": {"$numberInt": "1"}, "name": {"$numberInt": "1"}}, "name": "cuisine_1_name_1", "partialFilterExpression": {"rating": {"$gt": {"$numberInt": "5"}}}}`
	idxCollation = `{"v": {"$numberInt": "2"}, "key": {"category": {"$numberInt": "1"}}, "name": "category_fr", "collation": {"locale": "fr", "caseLevel": false, "caseFirst": "off", "strength": {"$numberInt": "1"}, "numericOrdering": false, "alternate": "non-ignorable", "maxVariable": "punct", "normalization": false, "backwards": false, "version": "57.1"}}`
	idxText      = `{"v": {"$numberInt": "2"}, "key": {"_fts": "text", "_ftsx": {"$numberInt": "1"}}, "name": "comments_text", "weights": {"comments": {"$numberInt": "1"}, "title": {"$numberInt": "10"}}, "default_language": "english", "language_override": "language", "textIndexVersion": {"$numberInt": "3"}}`
	idxSparse    = `{"v": {"$numberInt": "2"}, "key": {"email": {"$numberInt": "1"}}, "name": "email_1", "unique": true, "sparse": true}`
	idxHashed    = `{"v": {"$numberInt": "2"}, "key": {"user": "hashed"}, "name": "user_hashed"}`
	idxGeo       = `{"v": {"$numberInt": "2"}, "key": {"loc": "2dsphere"}, "name": "loc_2dsphere", "2dsphereIndexVersion": {"$numberInt": "3"}}`
	idxClustered = `{"v": {"$numberInt": "2"}, "key": {"_id": {"$numberInt": "1"}}, "name": "_id_", "unique": true, "clustered": true}`
)

func raw(t testing.TB, ext string) bson.Raw {
	t.Helper()
	var r bson.Raw
	if err := bson.UnmarshalExtJSON([]byte(ext), true, &r); err != nil {
		t.Fatalf("%s: %v", ext, err)
	}
	return r
}

func ext(t testing.TB, v any) string {
	t.Helper()
	b, err := bson.MarshalExtJSON(v, true, false)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMetadata: metadata.json keeps every option and index field through
// encoding, and gives restore the create command and index specs.
func TestMetadata(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		spec    string
		indexes []string
		typ     string
		create  string   // the create command for the name "x"
		specs   []string // createIndexes specs
	}{
		{
			name: "validator and collation", spec: specValidator,
			indexes: []string{idxID, idxTTL, idxPartial, idxCollation, idxText, idxSparse, idxHashed, idxGeo},
			typ:     TypeCollection,
			create:  `{"create":"x","validator":{"$jsonSchema":{"bsonType":"object","required":["phone"],"properties":{"phone":{"bsonType":"string","description":"must be a string"}}}},"validationLevel":"moderate","validationAction":"warn","collation":{"locale":"fr","strength":{"$numberInt":"1"}}}`,
			specs: []string{
				`{"key":{"lastModifiedDate":{"$numberInt":"1"}},"name":"lastModifiedDate_1","expireAfterSeconds":{"$numberInt":"3600"}}`,
				`{"key":{"cuisine":{"$numberInt":"1"},"name":{"$numberInt":"1"}},"name":"cuisine_1_name_1","partialFilterExpression":{"rating":{"$gt":{"$numberInt":"5"}}}}`,
				`{"key":{"category":{"$numberInt":"1"}},"name":"category_fr","collation":{"locale":"fr","caseLevel":false,"caseFirst":"off","strength":{"$numberInt":"1"},"numericOrdering":false,"alternate":"non-ignorable","maxVariable":"punct","normalization":false,"backwards":false,"version":"57.1"}}`,
				`{"key":{"_fts":"text","_ftsx":{"$numberInt":"1"}},"name":"comments_text","weights":{"comments":{"$numberInt":"1"},"title":{"$numberInt":"10"}},"default_language":"english","language_override":"language","textIndexVersion":{"$numberInt":"3"}}`,
				`{"key":{"email":{"$numberInt":"1"}},"name":"email_1","unique":true,"sparse":true}`,
				`{"key":{"user":"hashed"},"name":"user_hashed"}`,
				`{"key":{"loc":"2dsphere"},"name":"loc_2dsphere","2dsphereIndexVersion":{"$numberInt":"3"}}`,
			},
		},
		{
			name: "view", spec: specView, typ: TypeView,
			create: `{"create":"x","viewOn":"survey","pipeline":[{"$project":{"management":"$feedback.management","department":{"$numberInt":"1"}}}]}`,
		},
		{
			name: "capped", spec: specCapped, indexes: []string{idxID}, typ: TypeCollection,
			create: `{"create":"x","capped":true,"size":{"$numberLong":"5242880"},"max":{"$numberLong":"5000"}}`,
		},
		{
			name: "time series", spec: specTimeser, typ: TypeTimeseries,
			create: `{"create":"x","timeseries":{"timeField":"timestamp","metaField":"metadata","granularity":"hours","bucketMaxSpanSeconds":{"$numberInt":"2592000"}},"expireAfterSeconds":{"$numberLong":"86400"}}`,
		},
		{
			name: "clustered", spec: specClustered, indexes: []string{idxClustered, idxSparse}, typ: TypeCollection,
			create: `{"create":"x","clusteredIndex":{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_","unique":true}}`,
			specs:  []string{`{"key":{"email":{"$numberInt":"1"}},"name":"email_1","unique":true,"sparse":true}`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var idx []bson.Raw
			for _, i := range tc.indexes {
				idx = append(idx, raw(t, i))
			}
			m, _, err := metadataFromSpec(raw(t, tc.spec), idx)
			if err != nil {
				t.Fatal(err)
			}
			data, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			// mongodump's field names, canonical Extended JSON.
			for _, k := range []string{`"options":`, `"indexes":`, `"collectionName":`, `"type":"` + tc.typ + `"`} {
				if !bytes.Contains(data, []byte(k)) {
					t.Errorf("metadata.json lacks %s: %s", k, data)
				}
			}
			back, err := ParseMetadata(data)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back.Options, m.Options) || back.Type != tc.typ || back.CollectionName != m.CollectionName || back.UUID != m.UUID {
				t.Errorf("options or names changed through metadata.json:\n%s\n%s", ext(t, back.Options), ext(t, m.Options))
			}
			if len(back.Indexes) != len(idx) {
				t.Fatalf("%d indexes back, want %d", len(back.Indexes), len(idx))
			}
			for i := range idx {
				if !bytes.Equal(back.Indexes[i], idx[i]) {
					t.Errorf("index %d changed:\n%s\n%s", i, ext(t, back.Indexes[i]), ext(t, idx[i]))
				}
			}
			cmd, err := back.CreateCommand("x", "")
			if err != nil {
				t.Fatal(err)
			}
			if got := ext(t, cmd); got != tc.create {
				t.Errorf("create:\n got %s\nwant %s", got, tc.create)
			}
			specs, err := back.IndexSpecs()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range specs {
				got = append(got, ext(t, s))
			}
			if !slices.Equal(got, tc.specs) {
				t.Errorf("index specs:\n got %q\nwant %q", got, tc.specs)
			}
		})
	}
}

func TestMetadataUUIDAndView(t *testing.T) {
	t.Parallel()
	m, _, err := metadataFromSpec(raw(t, specValidator), nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.UUID != "ddbf59c79c4043dfb31ec4e3665b0533" {
		t.Errorf("uuid %q", m.UUID)
	}
	v, _, err := metadataFromSpec(raw(t, specView), nil)
	if err != nil {
		t.Fatal(err)
	}
	if v.ViewOn() != "survey" {
		t.Errorf("viewOn %q", v.ViewOn())
	}
	// A restore-test renames collections into its scratch database: the
	// view must read the renamed collection.
	o := RestoreOptions{Scratch: "fireops-verify-x"}
	_, on := o.Target("shop", v.ViewOn())
	cmd, err := v.CreateCommand("shop:managementFeedback", on)
	if err != nil {
		t.Fatal(err)
	}
	if got := ext(t, cmd); !strings.Contains(got, `"viewOn":"shop:survey"`) {
		t.Errorf("scratch view: %s", got)
	}
	if _, err := (&Metadata{Type: TypeView, CollectionName: "v", Options: emptyDoc}).CreateCommand("v", ""); err == nil {
		t.Error("a view without viewOn was accepted")
	}
	if _, err := ParseMetadata([]byte(`{"options": {}, "indexes": []}`)); err == nil {
		t.Error("metadata without a collection name was accepted")
	}
	if _, err := (&Metadata{CollectionName: "c", Options: emptyDoc, Indexes: []bson.Raw{raw(t, `{"v": 2}`)}}).IndexSpecs(); err == nil {
		t.Error("an index without key and name was accepted")
	}
}

func TestTargetAndTimeseries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		o            RestoreOptions
		wantDB, want string
	}{
		{RestoreOptions{}, "metrics", "runs"},
		{RestoreOptions{ToDB: "restored_"}, "restored_metrics", "runs"},
		{RestoreOptions{Scratch: "fireops-verify-20260301T120000Z-abcdef"}, "fireops-verify-20260301T120000Z-abcdef", "metrics:runs"},
	} {
		db, coll := tc.o.Target("metrics", "runs")
		if db != tc.wantDB || coll != tc.want {
			t.Errorf("%+v: %s.%s", tc.o, db, coll)
		}
	}
	if ScratchDB("20260301T120000Z-abcdef") != "fireops-verify-20260301T120000Z-abcdef" || checkDBName(ScratchDB("20260301T120000Z-abcdef")) != nil {
		t.Error("scratch database name")
	}
}

func TestEscapeName(t *testing.T) {
	t.Parallel()
	for _, n := range []string{"runs", "a/b", "100%", "%2F", "x.metadata", "..", "a%2Fb/c"} {
		e := escapeName(n)
		if strings.Contains(e, "/") || unescapeName(e) != n {
			t.Errorf("%q -> %q -> %q", n, e, unescapeName(e))
		}
	}
	meta, data := entryNames("db", "../x")
	if meta != "db/..%2Fx.metadata.json" || data != "db/..%2Fx.bson" {
		t.Errorf("entry names %q %q", meta, data)
	}
}

func TestDocSum(t *testing.T) {
	t.Parallel()
	docs := [][]byte{[]byte("a"), []byte("b"), []byte("c"), bytes.Repeat([]byte{0xff}, 100)}
	var a, b, c docSum
	for _, d := range docs {
		a.add(d)
	}
	for i := len(docs) - 1; i >= 0; i-- {
		b.add(docs[i])
	}
	for _, d := range docs[:3] {
		c.add(d)
	}
	c.add([]byte("d"))
	if a.String() != b.String() || a.n != 4 {
		t.Errorf("order changes the sum: %s %s", a.String(), b.String())
	}
	if a.String() == c.String() {
		t.Error("a changed document keeps the sum")
	}
	var e docSum
	if e.String() != strings.Repeat("0", 64) {
		t.Error("empty sum")
	}
}

// TestSpool: past its memory limit the spool writes an unlinked,
// encrypted file and gives the bytes back in order.
func TestSpool(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sp := newSpool(dir, 1000)
	defer sp.Close()
	for round := 0; round < 2; round++ {
		var want bytes.Buffer
		secret := []byte("plaintext-marker-")
		for i := 0; i < 5000; i++ {
			chunk := append(slices.Clone(secret), fmt.Sprint(i)...)
			want.Write(chunk)
			if _, err := sp.Write(chunk); err != nil {
				t.Fatal(err)
			}
		}
		if sp.f == nil {
			t.Fatal("no spill past the limit")
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("the spool file is visible: %v", ents)
		}
		if err := sp.bw.Flush(); err != nil {
			t.Fatal(err)
		}
		onDisk, err := os.ReadFile(fmt.Sprintf("/proc/self/fd/%d", sp.f.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		if len(onDisk) == 0 || bytes.Contains(onDisk, secret) {
			t.Fatalf("the spool file holds plaintext (%d bytes)", len(onDisk))
		}
		var got bytes.Buffer
		n, err := sp.WriteTo(&got)
		if err != nil || n != int64(want.Len()) || sp.Size() != n || !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("round %d: %d bytes back (%v), want %d", round, n, err, want.Len())
		}
		sp.Reset()
	}
	small := newSpool(dir, 1<<20)
	small.Write([]byte("abc"))
	var got bytes.Buffer
	small.WriteTo(&got)
	if got.String() != "abc" || small.f != nil {
		t.Error("small spool")
	}
}

func TestReadURIFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	secret := "mongodb://backup:s3cr%40t@db:27017/?authSource=admin"
	ok := write("ok", "\n "+secret+"\n", 0o600)
	if uri, err := ReadURIFile(ok); err != nil || uri != secret {
		t.Fatalf("%q %v", uri, err)
	}
	for _, tc := range []struct {
		path, want string
	}{
		{write("open", secret, 0o644), "readable by group or others"},
		{write("empty", "\n", 0o600), "empty"},
		{write("http", "http://x", 0o600), "mongodb://"},
		{write("two", secret+"\n"+secret, 0o600), "several lines"},
		{filepath.Join(dir, "none"), "does not exist"},
	} {
		_, err := ReadURIFile(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || exitcode.Code(err) != exitcode.Usage {
			t.Errorf("%s: %v, want a usage error with %q", tc.path, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "s3cr") || strings.Contains(err.Error(), "backup:")) {
			t.Errorf("%s: the error quotes the URI: %v", tc.path, err)
		}
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	uri := "mongodb://backup:p%40ss-w0rd@db1:27017,db2:27017/?replicaSet=rs0"
	base := errors.New("dial " + uri + " failed for backup:p%40ss-w0rd and p@ss-w0rd")
	err := redact(base, uri)
	for _, s := range []string{"p%40ss-w0rd", "p@ss-w0rd", uri} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("%q left in %q", s, err)
		}
	}
	if !errors.Is(err, base) {
		t.Error("redact loses the cause")
	}
	if redact(nil, uri) != nil {
		t.Error("nil")
	}
	plain := errors.New("nothing secret")
	if redact(plain, uri) != plain {
		t.Error("a clean error was wrapped")
	}
}

// TestRedactQuerySecrets: the driver's parse errors quote option values;
// those of sensitive options (a TLS key password) are hidden too, also
// when the URI cannot be parsed at all.
func TestRedactQuerySecrets(t *testing.T) {
	t.Parallel()
	uri := "mongodb://backup:s3cret@127.0.0.1:1/?tls=true&tlsCertificateKeyFile=/etc/k.pem&tlsCertificateKeyFilePassword=K3yPa55%word"
	src, err := New(uri, nil, WithServerSelectionTimeout(300*time.Millisecond))
	if err == nil {
		_, err = src.WriteTar(context.Background(), io.Discard)
	}
	if err == nil {
		t.Fatal("a URI that cannot be parsed was used")
	}
	for _, s := range []string{"K3yPa55", "s3cret"} {
		if strings.Contains(err.Error(), s) || strings.Contains(exitcode.Hint(err), s) {
			t.Errorf("%q shows in %v", s, err)
		}
	}
	escaped := "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:tok%2Fen123"
	for _, s := range []string{"AWS_SESSION_TOKEN:tok%2Fen123", "AWS_SESSION_TOKEN:tok/en123"} {
		if err := redact(errors.New("bad value "+s), escaped); strings.Contains(err.Error(), "tok") {
			t.Errorf("%q left in %q", s, err)
		}
	}
}

// TestDumpSkipsFireopsOwn: a whole-server dump leaves out fireops' scratch
// databases and staging collections, and keeps everything else, the
// collections a failed swap set aside included.
func TestDumpSkipsFireopsOwn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		db   string
		want bool
	}{
		{"metrics", true}, {"admin", false}, {"local", false}, {"config", false},
		{ScratchDB("20260301T120000Z-abc"), false}, {"fireops-verified", true},
	} {
		if got := dumpedDatabase(tc.db); got != tc.want {
			t.Errorf("dumpedDatabase(%q) = %v", tc.db, got)
		}
	}
	for _, tc := range []struct {
		coll string
		want bool
	}{
		{"runs", true}, {"system.views", false}, {StagingPrefix + "run1-0", false},
		{ReplacedPrefix + "run1-0", true}, {"", false},
	} {
		if got := dumpedCollection(tc.coll); got != tc.want {
			t.Errorf("dumpedCollection(%q) = %v", tc.coll, got)
		}
	}
}

func TestContentsAndSelection(t *testing.T) {
	t.Parallel()
	details := map[string]string{
		"server_version": "7.0.12", "consistency": PointInTime,
		"count:metrics.runs": "10", "bytes:metrics.runs": "1234", "docsum:metrics.runs": "ab",
		"count:metrics.a.b": "0", "bytes:metrics.a.b": "0",
		"view:metrics.best": "runs",
		"count:results.exp": "3",
	}
	c, err := Contents(details)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range c {
		names = append(names, n.String())
	}
	if !slices.Equal(names, []string{"metrics.a.b", "metrics.best", "metrics.runs", "results.exp"}) {
		t.Fatalf("namespaces %v", names)
	}
	if c[2].Documents != 10 || c[2].Bytes != 1234 || c[2].DocSum != "ab" || !c[1].View || c[1].ViewOn != "runs" || c[0].Coll != "a.b" {
		t.Errorf("contents %+v", c)
	}
	if _, err := Contents(map[string]string{"count:nodot": "1"}); err == nil {
		t.Error("a bad namespace was accepted")
	}
	if _, err := Contents(map[string]string{"count:a.b": "x"}); err == nil {
		t.Error("a bad count was accepted")
	}

	sel, err := ParseSelection([]string{"metrics.runs", "results.*"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := sel.Filter(c)
	if err != nil || len(got) != 2 || got[0].String() != "metrics.runs" || got[1].String() != "results.exp" {
		t.Errorf("filter: %v %v", got, err)
	}
	if _, err := (Selection{"metrics.nope"}).Filter(c); err == nil || exitcode.Code(err) != exitcode.Usage || !strings.Contains(exitcode.Hint(err), "metrics.runs") {
		t.Errorf("a pattern selecting nothing: %v", err)
	}
	for _, bad := range []string{"metrics", ".runs", "metrics.", "a b.c"} {
		if _, err := ParseSelection([]string{bad}); err == nil {
			t.Errorf("--ns %q accepted", bad)
		}
	}
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// TestStageRefusesEntries: entries that are not <db>/<coll>.bson or
// .metadata.json, or come out of order, fail the restore before anything
// is written (no server is contacted: nothing gets that far).
func TestStageRefusesEntries(t *testing.T) {
	t.Parallel()
	meta := `{"options": {}, "indexes": [], "collectionName": "runs", "type": "collection"}`
	tests := []struct {
		name    string
		entries []tarEntry
		want    string
	}{
		{"dotdot", []tarEntry{{name: "../x.bson", body: ""}}, "unsafe"},
		{"absolute", []tarEntry{{name: "/db/x.bson"}}, "unsafe"},
		{"nested", []tarEntry{{name: "db/sub/x.bson"}}, "unexpected archive entry"},
		{"other file", []tarEntry{{name: "db/notes.txt"}}, "unexpected archive entry"},
		{"bad database", []tarEntry{{name: "a.b/x.bson"}}, "unexpected archive entry"},
		{"nested folder", []tarEntry{{name: "db/sub/", dir: true}}, "unexpected archive entry"},
		{"symlink", []tarEntry{{name: "db/x.bson", link: "/etc/passwd"}}, "unexpected archive entry"},
		{"bson first", []tarEntry{{name: "db/runs.bson"}}, "without its metadata.json"},
		{"bad metadata", []tarEntry{{name: "db/runs.metadata.json", body: "{"}}, "metadata.json"},
		{"other name", []tarEntry{{name: "db/x.metadata.json", body: meta}}, `names collection "runs"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := NewRestorer("mongodb://127.0.0.1:1/", RestoreOptions{}, WithServerSelectionTimeout(100*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Stage(context.Background(), bytes.NewReader(makeTar(t, tc.entries)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

type tarEntry struct {
	name, body, link string
	dir              bool
}

func makeTar(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o600, Size: int64(len(e.body)), Typeflag: tar.TypeReg}
		switch {
		case e.dir:
			h.Typeflag, h.Mode = tar.TypeDir, 0o700
		case e.link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.link, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// TestScratchName: a restore-test's collection names stay within the
// namespace limit, are the same for the same collection, differ for
// different ones, and keep "<db>:<coll>" whenever it fits.
func TestScratchName(t *testing.T) {
	t.Parallel()
	scratch := ScratchDB("20260301T120000Z-abcdef")
	long := strings.Repeat("m", 230)
	for _, tc := range []struct{ db, coll, want string }{
		{"metrics", "runs", "metrics:runs"},
		{"metrics", long, ""},
		{"metrics", long + "x", ""},
		{"metrics", strings.Repeat("é", 120), ""},
	} {
		got := scratchName(scratch, tc.db, tc.coll)
		if tc.want != "" && got != tc.want {
			t.Errorf("scratchName(%s.%s) = %q, want %q", tc.db, tc.coll, got, tc.want)
		}
		if n := len(scratch) + 1 + len(got); n > maxScratchNS || !utf8.ValidString(got) || !strings.HasPrefix(got, tc.db+":") {
			t.Errorf("scratchName(%s.%.20s...) = %q: %d bytes of namespace", tc.db, tc.coll, got, n)
		}
		if again := scratchName(scratch, tc.db, tc.coll); again != got {
			t.Errorf("not the same name twice: %q, %q", got, again)
		}
	}
	if scratchName(scratch, "metrics", long) == scratchName(scratch, "metrics", long+"x") {
		t.Error("two long names map to the same scratch name")
	}
}
