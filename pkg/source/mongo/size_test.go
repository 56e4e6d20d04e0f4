package mongo

import (
	"context"
	"io"
	"testing"

	"github.com/firetech/fireops/internal/mongotest"
	"github.com/firetech/fireops/internal/testenv"
)

// TestSize: the estimate a progress display gets from dbStats is of the
// order of the dump: not 0, and within a factor of 8 of it (MongoDB's
// dataSize is the documents' BSON, what the dump holds; the FerretDB of
// the tests reports its SQLite pages, about 4 times that).
func TestSize(t *testing.T) {
	t.Parallel()
	uri, db := testenv.RequireMongo(t)
	c := mongotest.Connect(t, uri)
	mongotest.Seed(t, c, db, "", mongotest.Dataset{Runs: 3000, Events: 300})
	s, err := New(uri, []string{db})
	must(t, err)
	ctx := context.Background()
	size, err := s.Size(ctx)
	must(t, err)
	n := &countWriter{}
	if _, err := s.WriteTar(ctx, io.Writer(n)); err != nil {
		t.Fatal(err)
	}
	if size <= 0 || size > 8*n.n || size < n.n/8 {
		t.Fatalf("Size %d for a dump of %d bytes", size, n.n)
	}
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
