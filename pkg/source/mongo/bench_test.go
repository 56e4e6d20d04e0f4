package mongo

import (
	"bytes"
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/firetech/fireops/internal/mongotest"
	"github.com/firetech/fireops/internal/testenv"
)

// BenchmarkDumpRestore measures, in the same run and on the same
// collections (about 1 MB in 4,000 documents: the test server, FerretDB,
// reads about 1 MB/s), a plain read of every document through a driver
// cursor, the dump (WriteTar to io.Discard: cursor, spool, tar) and the
// restore of that dump into a new database (Stage and Commit: inserts,
// indexes, counts, renames). It reports MB/s and documents/s of each, and
// dump/raw and restore/raw, the throughput ratios to the plain read.
func BenchmarkDumpRestore(b *testing.B) {
	uri, db := testenv.RequireMongo(b)
	c := mongotest.Connect(b, uri)
	mongotest.Seed(b, c, db, "", mongotest.Dataset{Runs: 2000, Events: 2000})
	ctx := context.Background()
	src, err := New(uri, []string{db}, WithTempDir(b.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	names, err := c.Database(db).ListCollectionNames(ctx, bson.D{})
	if err != nil {
		b.Fatal(err)
	}

	var raw, dump, rest time.Duration
	var docs, size int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Raw: every document through a cursor, nothing else.
		begin := time.Now()
		docs, size = 0, 0
		for _, n := range names {
			cur, err := c.Database(db).Collection(n).Find(ctx, bson.D{})
			if err != nil {
				b.Fatal(err)
			}
			for cur.Next(ctx) {
				docs++
				size += int64(len(cur.Current))
			}
			if err := cur.Err(); err != nil {
				b.Fatal(err)
			}
			cur.Close(ctx)
		}
		raw += time.Since(begin)

		begin = time.Now()
		var payload bytes.Buffer
		st, err := src.WriteTar(ctx, &payload)
		if err != nil {
			b.Fatal(err)
		}
		dump += time.Since(begin)
		if st.Documents != docs {
			b.Fatalf("dumped %d documents, the cursor read %d", st.Documents, docs)
		}

		b.StopTimer()
		contents, err := Contents(st.Details)
		if err != nil {
			b.Fatal(err)
		}
		prefix := "b" + randomHex(3) + "_"
		r, err := NewRestorer(uri, RestoreOptions{ToDB: prefix, Expect: contents})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		begin = time.Now()
		s, err := r.Stage(ctx, bytes.NewReader(payload.Bytes()))
		if err == nil {
			err = s.Commit(ctx)
		}
		rest += time.Since(begin)
		b.StopTimer()
		c.Database(prefix + db).Drop(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	n := float64(b.N)
	mb, d := float64(size)/1e6, float64(docs)
	report := func(name string, t time.Duration) float64 {
		per := t.Seconds() / n
		b.ReportMetric(mb/per, name+"-MB/s")
		b.ReportMetric(d/per, name+"-docs/s")
		return per
	}
	rawPer := report("raw", raw)
	b.ReportMetric(rawPer/report("dump", dump), "dump/raw")
	b.ReportMetric(rawPer/report("restore", rest), "restore/raw")
}
