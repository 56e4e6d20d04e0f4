// Package mongotest helps the tests of the mongo part against the test
// server (FerretDB, see internal/testenv): a dataset of the BSON types
// FerretDB handles, independent comparisons of collections (a hash of
// the sorted raw documents, index specs, collection options), and a TCP
// proxy that cuts the driver's connections at a chosen point, which
// stands in for a server that stops in the middle of a dump or restore.
package mongotest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Connect returns a client for uri, disconnected when the test ends.
func Connect(t testing.TB, uri string) *mongo.Client {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(uri).SetServerSelectionTimeout(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(context.Background()) })
	return c
}

// DropLater drops database db when the test ends.
func DropLater(t testing.TB, c *mongo.Client, db string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Database(db).Drop(ctx); err != nil {
			t.Logf("mongotest: drop %s: %v", db, err)
		}
	})
}

// Dataset sizes of Seed.
type Dataset struct {
	// Runs, Events and Results are document counts of the collections
	// runs, events (capped) and results.
	Runs, Events, Results int
	// Big adds to the collection blobs one document of nearly 16 MiB.
	Big bool
}

// Full is the dataset of the main round trip: about 20,000 documents,
// most of them small (FerretDB reads about 1 MB/s).
var Full = Dataset{Runs: 4000, Events: 4000, Results: 12000, Big: true}

// Small is a dataset for tests that need a few documents per collection.
var Small = Dataset{Runs: 200, Events: 50, Results: 100}

// Seed fills db1 (runs, events, blobs, empty) and, when db2 is not "",
// db2 (results) with documents of the BSON types FerretDB handles:
// ObjectId, nested documents and arrays, dates, binary, int32, int64,
// double, bool, null, Timestamp, regex, and strings; and with indexes
// (single, compound, unique, multikey) and a capped collection.
func Seed(t testing.TB, c *mongo.Client, db1, db2 string, d Dataset) {
	t.Helper()
	if err := SeedErr(c, db1, db2, d); err != nil {
		t.Fatal(err)
	}
}

// SeedErr is Seed for callers without a testing.TB (testscript commands).
func SeedErr(c *mongo.Client, db1, db2 string, d Dataset) error {
	ctx := context.Background()
	d1 := c.Database(db1)
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	algos := []string{"ppo", "sac", "dqn", "a2c"}
	insert := func(coll *mongo.Collection, n int, doc func(i int) bson.D) error {
		batch := make([]any, 0, 1000)
		for i := 0; i < n; i++ {
			batch = append(batch, doc(i))
			if len(batch) == cap(batch) || i == n-1 {
				if _, err := coll.InsertMany(ctx, batch); err != nil {
					return fmt.Errorf("seed %s: %w", coll.Name(), err)
				}
				batch = batch[:0]
			}
		}
		return nil
	}
	runs := d1.Collection("runs")
	err := insert(runs, d.Runs, func(i int) bson.D {
		oid := bson.NewObjectIDFromTimestamp(base.Add(time.Duration(i) * time.Second))
		return bson.D{
			{Key: "_id", Value: oid},
			{Key: "episode", Value: int32(i)},
			{Key: "steps", Value: int64(i) * 1_000_003},
			{Key: "reward", Value: float64(i%97) / 7},
			{Key: "algo", Value: algos[i%len(algos)]},
			{Key: "done", Value: i%3 == 0},
			{Key: "note", Value: nil},
			{Key: "at", Value: bson.NewDateTimeFromTime(base.Add(time.Duration(i) * time.Minute))},
			{Key: "hyper", Value: bson.D{{Key: "lr", Value: 0.0003}, {Key: "gamma", Value: 0.99},
				{Key: "layers", Value: bson.A{int32(64), int32(64)}}, {Key: "env", Value: bson.D{{Key: "name", Value: "CartPole-v1"}, {Key: "seed", Value: int64(i)}}}}},
			{Key: "tags", Value: bson.A{"gpu", algos[(i+1)%len(algos)], int32(i % 5)}},
			{Key: "digest", Value: bson.Binary{Subtype: 0, Data: []byte{byte(i), byte(i >> 8), 0xff, 0}}},
			{Key: "uuid", Value: bson.Binary{Subtype: 4, Data: bytes.Repeat([]byte{byte(i)}, 16)}},
			{Key: "ts", Value: bson.Timestamp{T: uint32(1_700_000_000 + i), I: uint32(i % 7)}},
			{Key: "match", Value: bson.Regex{Pattern: fmt.Sprintf("^run-%d", i%10), Options: "i"}},
		}
	})
	if err != nil {
		return err
	}
	_, err = runs.Indexes().CreateMany(ctx, []mongo.IndexModel{
		{Keys: bson.D{{Key: "episode", Value: 1}}, Options: options.Index().SetUnique(true).SetName("episode_unique")},
		{Keys: bson.D{{Key: "algo", Value: 1}, {Key: "reward", Value: -1}}},
		{Keys: bson.D{{Key: "tags", Value: 1}}},
	})
	if err != nil {
		return err
	}
	if err := d1.CreateCollection(ctx, "events", options.CreateCollection().SetCapped(true).SetSizeInBytes(8<<20).SetMaxDocuments(int64(d.Events)+1000)); err != nil {
		return err
	}
	err = insert(d1.Collection("events"), d.Events, func(i int) bson.D {
		return bson.D{{Key: "_id", Value: int64(i)}, {Key: "kind", Value: []string{"start", "step", "stop"}[i%3]},
			{Key: "loss", Value: 1 / float64(i+1)}}
	})
	if err != nil {
		return err
	}
	blobs := d1.Collection("blobs")
	err = insert(blobs, 3, func(i int) bson.D {
		return bson.D{{Key: "_id", Value: fmt.Sprintf("small-%d", i)}, {Key: "data", Value: bson.Binary{Data: bytes.Repeat([]byte("policy"), 100*(i+1))}}}
	})
	if err != nil {
		return err
	}
	if d.Big {
		data := make([]byte, 16<<20-4<<10)
		for i := range data {
			data[i] = byte(i*131 + i>>9)
		}
		if _, err := blobs.InsertOne(ctx, bson.D{{Key: "_id", Value: "checkpoint"}, {Key: "data", Value: bson.Binary{Data: data}}}); err != nil {
			return err
		}
	}
	if err := d1.CreateCollection(ctx, "empty"); err != nil {
		return err
	}
	if _, err := d1.Collection("empty").Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "k", Value: 1}}}); err != nil {
		return err
	}
	if db2 == "" {
		return nil
	}
	results := c.Database(db2).Collection("results")
	err = insert(results, d.Results, func(i int) bson.D {
		doc := bson.D{{Key: "_id", Value: fmt.Sprintf("exp-%05d", i)}, {Key: "name", Value: fmt.Sprintf("sweep-%d", i%50)},
			{Key: "score", Value: float64(i) * 1.5}}
		if i%10 == 0 {
			doc = append(doc, bson.E{Key: "best", Value: bson.A{bson.D{{Key: "lr", Value: 0.001}}, int64(i)}})
		}
		return doc
	})
	if err != nil {
		return err
	}
	_, err = results.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "name", Value: 1}}})
	return err
}

// SortedHash returns, per collection of db, the number of documents and
// the SHA-256 of their raw bytes, sorted ("N:hex"): equal values mean
// byte-identical documents.
func SortedHash(t testing.TB, c *mongo.Client, db string) map[string]string {
	t.Helper()
	m, err := SortedHashes(c, db)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// SortedHashes is SortedHash for use outside the test's goroutine.
func SortedHashes(c *mongo.Client, db string) (map[string]string, error) {
	ctx := context.Background()
	names, err := c.Database(db).ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, n := range names {
		cur, err := c.Database(db).Collection(n).Find(ctx, bson.D{})
		if err != nil {
			return nil, err
		}
		var docs [][]byte
		for cur.Next(ctx) {
			docs = append(docs, slices.Clone(cur.Current))
		}
		err = cur.Err()
		cur.Close(ctx)
		if err != nil {
			return nil, err
		}
		slices.SortFunc(docs, bytes.Compare)
		h := sha256.New()
		for _, d := range docs {
			h.Write(d)
		}
		out[n] = fmt.Sprintf("%d:%s", len(docs), hex.EncodeToString(h.Sum(nil)))
	}
	return out, nil
}

// Indexes returns, per collection of db, its index specs without "v"
// and "ns", sorted by name, as Extended JSON.
func Indexes(t testing.TB, c *mongo.Client, db string) map[string][]string {
	t.Helper()
	ctx := context.Background()
	names, err := c.Database(db).ListCollectionNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, n := range names {
		cur, err := c.Database(db).Collection(n).Indexes().List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var specs []string
		for cur.Next(ctx) {
			var d bson.D
			if err := bson.Unmarshal(cur.Current, &d); err != nil {
				t.Fatal(err)
			}
			d = slices.DeleteFunc(d, func(e bson.E) bool { return e.Key == "v" || e.Key == "ns" })
			j, err := bson.MarshalExtJSON(d, true, false)
			if err != nil {
				t.Fatal(err)
			}
			specs = append(specs, string(j))
		}
		err = cur.Err()
		cur.Close(ctx)
		if err != nil {
			t.Fatalf("listing the indexes of %s.%s: %v", db, n, err)
		}
		slices.Sort(specs)
		out[n] = specs
	}
	return out
}

// Options returns, per collection of db, its options as Extended JSON.
func Options(t testing.TB, c *mongo.Client, db string) map[string]string {
	t.Helper()
	specs, err := c.Database(db).ListCollectionSpecifications(context.Background(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range specs {
		j, err := bson.MarshalExtJSON(s.Options, true, false)
		if err != nil {
			t.Fatal(err)
		}
		out[s.Name] = s.Type + " " + string(j)
	}
	return out
}

// Databases returns the names of the server's databases that start with
// prefix.
func Databases(t testing.TB, c *mongo.Client, prefix string) []string {
	t.Helper()
	names, err := c.ListDatabaseNames(context.Background(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(names, func(n string) bool { return !strings.HasPrefix(n, prefix) })
}

// Proxy relays TCP connections to a server and can cut them: it stands
// in for a server that stops, deterministically (after a number of bytes
// relayed), without stopping the shared test server.
type Proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	// budget is the number of bytes still relayed before every
	// connection is cut; negative: no limit.
	budget  atomic.Int64
	refuse  atomic.Bool // when cut, also stop accepting
	cut     atomic.Bool
	stopped chan struct{}
}

// StartProxy starts a proxy to target (host:port) on a loopback port;
// it stops when the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := NewProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// NewProxy starts a proxy to target; the caller closes it.
func NewProxy(target string) (*Proxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{l: l, target: target, stopped: make(chan struct{})}
	p.budget.Store(-1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// URI returns uri with its host:port replaced by the proxy's, and a
// direct connection (the driver must not find the real server).
func (p *Proxy) URI(uri string) string {
	rest, ok := strings.CutPrefix(uri, "mongodb://")
	if !ok {
		panic("mongotest: not a mongodb:// URI")
	}
	userinfo := ""
	if at := strings.LastIndex(strings.SplitN(rest, "/", 2)[0], "@"); at >= 0 {
		userinfo, rest = rest[:at+1], rest[at+1:]
	}
	path := ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		path = rest[i:]
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return "mongodb://" + userinfo + p.Addr() + path + sep + "directConnection=true"
}

// Target returns host:port of a mongodb:// URI with one host.
func Target(uri string) string {
	rest := strings.TrimPrefix(uri, "mongodb://")
	rest = strings.SplitN(strings.SplitN(rest, "/", 2)[0], "?", 2)[0]
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = rest[at+1:]
	}
	return rest
}

// CutAfter cuts every connection once n more bytes have been relayed (in
// either direction); with refuse, the proxy then stops accepting, like a
// stopped server, and otherwise accepts new connections, like a network
// that dropped the old ones.
func (p *Proxy) CutAfter(n int64, refuse bool) {
	p.refuse.Store(refuse)
	p.cut.Store(false)
	p.budget.Store(n)
}

// Cut reports whether the proxy has cut its connections.
func (p *Proxy) Cut() bool { return p.cut.Load() }

func (p *Proxy) accept() {
	defer close(p.stopped)
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		if p.cut.Load() && p.refuse.Load() {
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

// pipe copies src to dst, spending the budget.
func (p *Proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 16<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			data := buf[:n]
			if b := p.budget.Load(); b >= 0 {
				left := p.budget.Add(-int64(n))
				if left < 0 {
					keep := max(0, int64(n)+left)
					dst.Write(data[:keep])
					p.cutAll()
					return
				}
			}
			if _, err := dst.Write(data); err != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}

func (p *Proxy) cutAll() {
	p.cut.Store(true)
	p.budget.Store(-1)
	if p.refuse.Load() {
		p.l.Close()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // a reset, like a killed server
		}
		c.Close()
	}
	p.conns = nil
}

// Close stops the proxy and closes its connections.
func (p *Proxy) Close() {
	p.l.Close()
	<-p.stopped
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
}
