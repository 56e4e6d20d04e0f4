// Package mongo is the "mongo" source kind: a streaming dump of MongoDB
// databases through the MongoDB Go driver into a tar stream in mongodump's
// directory layout, and the restorer that loads such a stream back through
// staging collections.
//
// # Layout
//
// For each database (sorted) and each collection (sorted):
//
//	<db>/                        a folder entry
//	<db>/<coll>.metadata.json    options, indexes, uuid, name, type (see Metadata)
//	<db>/<coll>.bson             the documents, raw BSON, concatenated
//
// A view has only its metadata.json. Collection names are escaped like
// mongodump does ("/" and "%" percent-encoded). The documents are the
// cursor's bytes, never decoded and re-encoded, so `bsondump` and
// `mongorestore` read the extracted folder. The databases admin, local
// and config and the system.* collections are not dumped.
//
// # Same data, same bytes
//
// Snapshots store equal runs of bytes once, across nights, so unchanged
// data dumps to the same bytes: entries in name order, index specs in
// name order (see sortIndexes), headers without the clock (see header),
// and documents in _id order where there is an _id index and order is
// not the collection's meaning (see readOrder). A changed document
// changes the stream only around itself (and its collection's size in
// its header).
//
// A tar header carries the entry's size before its contents, so each
// collection is read whole before its entry is written: up to 16 MiB in
// memory, the rest in a temp file (see spool) that is unlinked at once and
// encrypted with a key only the process holds.
//
// # Consistency
//
// The server's hello answer decides (see Decide): on a replica set member
// or a mongos of MongoDB 5.0 or newer every collection is read in one
// snapshot session, at one cluster time, recorded in Stats.Details as
// "cluster_time" with consistency "point-in-time". A standalone server
// (and older servers) is read collection by collection ("per-collection")
// and a warning is logged. Collection and index definitions are read just
// before the documents.
//
// # Stats
//
// Stats.Details (the encrypted index) records server_version, topology,
// consistency (with consistency_note when a replica set answered snapshot
// reads without a snapshot time), cluster_time, and per namespace "count:<db>.<coll>",
// "bytes:<db>.<coll>" and "docsum:<db>.<coll>" (see docSum), and
// "view:<db>.<view>" (the collection it reads). Contents reads them back.
//
// # Secrets
//
// The URI is never logged, never part of an error or of the payload; the
// driver's errors pass through a redaction of the URI, its userinfo and
// its password.
package mongo

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/firetech/fireops/pkg/buildinfo"
	"github.com/firetech/fireops/pkg/source"
)

// Kind is the part kind of this package's source.
const Kind = "mongo"

// Name is the name of the one mongo part ("mongo:mongodb"), after the
// stack's MongoDB service.
const Name = "mongodb"

// skippedDatabases are never dumped unless listed explicitly.
var skippedDatabases = []string{"admin", "local", "config"}

// DefaultSpoolMemory is how much of one collection is held in memory
// before the rest goes to an encrypted temp file.
const DefaultSpoolMemory = 16 << 20

// Option tunes a Source or a Restorer.
type Option func(*settings)

type settings struct {
	log         *slog.Logger
	tempDir     string
	spoolMemory int
	selection   time.Duration
	batchDocs   int
	batchBytes  int
}

// WithLogger sets the logger for warnings and progress (default: none).
func WithLogger(l *slog.Logger) Option { return func(o *settings) { o.log = l } }

// WithTempDir sets where a collection larger than the spool memory is
// spooled, encrypted (default os.TempDir()).
func WithTempDir(dir string) Option { return func(o *settings) { o.tempDir = dir } }

// WithSpoolMemory sets how many bytes of a collection stay in memory.
func WithSpoolMemory(n int) Option { return func(o *settings) { o.spoolMemory = n } }

// WithServerSelectionTimeout sets how long the driver waits for a
// reachable server (default 30 s).
func WithServerSelectionTimeout(d time.Duration) Option {
	return func(o *settings) { o.selection = d }
}

// WithBatch sets the restore's insert batches: at most docs documents and
// about bytes bytes each (defaults 1000 and 8 MiB; one document larger
// than bytes is a batch of its own).
func WithBatch(docs, bytes int) Option {
	return func(o *settings) { o.batchDocs, o.batchBytes = docs, bytes }
}

func newOptions(opts []Option) settings {
	o := settings{spoolMemory: DefaultSpoolMemory, selection: 30 * time.Second, batchDocs: 1000, batchBytes: 8 << 20}
	for _, f := range opts {
		f(&o)
	}
	if o.tempDir == "" {
		o.tempDir = os.TempDir()
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	return o
}

// connect opens a client for uri; errors never quote it.
func connect(ctx context.Context, uri string, o settings) (*mongo.Client, error) {
	if err := checkURI(uri); err != nil {
		return nil, fmt.Errorf("mongo: the URI %v", err)
	}
	// Defaults first: what the URI sets (serverSelectionTimeoutMS,
	// appName, ...) wins.
	co := options.Client().SetAppName("fireops " + buildinfo.Get().Version).
		SetServerSelectionTimeout(o.selection).ApplyURI(uri)
	c, err := mongo.Connect(co)
	if err != nil {
		return nil, explain(err, uri, "connect")
	}
	return c, nil
}

// Source dumps the configured databases of one server.
type Source struct {
	uri       string
	databases []string
	opts      settings
	decide    func(bson.Raw) (Decision, error) // Decide; tests replace it
}

var _ source.Source = (*Source)(nil)

// New returns the Source for the server at uri; databases lists what to
// dump (empty: every database but admin, local and config). Nothing is
// contacted before WriteTar.
func New(uri string, databases []string, opts ...Option) (*Source, error) {
	if err := checkURI(uri); err != nil {
		return nil, fmt.Errorf("mongo: the URI %v", err)
	}
	for _, d := range databases {
		if err := checkDBName(d); err != nil {
			return nil, err
		}
	}
	return &Source{uri: uri, databases: slices.Clone(databases), opts: newOptions(opts), decide: Decide}, nil
}

// SetLogger sets the logger after construction (the backup jobs pass
// theirs to every source that has this method).
func (s *Source) SetLogger(l *slog.Logger) {
	if l != nil {
		s.opts.log = l
	}
}

// checkDBName refuses names MongoDB refuses, and names that would not
// make a safe folder name.
func checkDBName(d string) error {
	if d == "" || len(d) > 64 || strings.ContainsAny(d, "/\\. \"$*<>:|?\x00") {
		return fmt.Errorf("mongo: %q is not a valid database name", d)
	}
	return nil
}

// Kind returns "mongo".
func (s *Source) Kind() string { return Kind }

// Name returns "mongodb".
func (s *Source) Name() string { return Name }

// Fingerprint returns "": a database has no cheap fingerprint, so the
// part is dumped and uploaded every time.
func (s *Source) Fingerprint(context.Context) (string, error) { return "", nil }

// collection is one collection or view to dump.
type collection struct {
	db   string
	meta *Metadata
}

func (c collection) ns() string { return c.db + "." + c.meta.CollectionName }

// WriteTar dumps the databases into w (see the package doc). It fails,
// never returns a short stream, when anything cannot be read whole.
func (s *Source) WriteTar(ctx context.Context, w io.Writer) (source.Stats, error) {
	st := source.Stats{Details: map[string]string{}}
	c, err := connect(ctx, s.uri, s.opts)
	if err != nil {
		return st, err
	}
	defer c.Disconnect(context.WithoutCancel(ctx))
	hello, err := runHello(ctx, c)
	if err != nil {
		return st, explain(err, s.uri, "connect")
	}
	dec, err := s.decide(hello)
	if err != nil {
		return st, err
	}
	st.Details["topology"] = dec.Topology
	st.Details["consistency"] = dec.Consistency
	if v, err := serverVersion(ctx, c); err == nil {
		st.Details["server_version"] = v
	}
	log := s.opts.log
	if dec.Consistency == PerCollection {
		log.Warn("mongo: collections are read one by one, not at one point in time; see docs/mongo.md to switch to a replica set",
			"topology", dec.Topology, "reason", dec.Reason)
	}

	colls, err := s.list(ctx, c)
	if err != nil {
		return st, err
	}

	readCtx := ctx
	var sess *mongo.Session
	if dec.Consistency == PointInTime {
		sess, err = c.StartSession(options.Session().SetSnapshot(true))
		if err != nil {
			return st, explain(err, s.uri, "start a snapshot session")
		}
		defer sess.EndSession(context.WithoutCancel(ctx))
		readCtx = mongo.NewSessionContext(ctx, sess)
	}

	tw := tar.NewWriter(w)
	if _, err := CleanLeftovers(s.opts.tempDir, log); err != nil {
		log.Warn("mongo: leftover spool files not removed", "err", err)
	}
	sp := newSpool(s.opts.tempDir, s.opts.spoolMemory)
	defer sp.Close()
	dbDone := map[string]bool{}
	var docs int64
	read := 0
	for _, cl := range colls {
		if !dbDone[cl.db] {
			dbDone[cl.db] = true
			if err := tw.WriteHeader(header(cl.db+"/", 0, 0o700, tar.TypeDir)); err != nil {
				return st, fmt.Errorf("mongo: write archive: %w", err)
			}
			st.Entries++
		}
		metaName, bsonName := entryNames(cl.db, cl.meta.CollectionName)
		mj, err := json.Marshal(cl.meta)
		if err != nil {
			return st, fmt.Errorf("mongo: %s: encode metadata: %w", cl.ns(), err)
		}
		if err := tw.WriteHeader(header(metaName, int64(len(mj)), 0o600, tar.TypeReg)); err != nil {
			return st, fmt.Errorf("mongo: write archive: %w", err)
		}
		if _, err := tw.Write(mj); err != nil {
			return st, fmt.Errorf("mongo: write archive: %w", err)
		}
		st.Entries++
		if cl.meta.Type == TypeView {
			st.Details["view:"+cl.ns()] = cl.meta.ViewOn()
			continue
		}
		sp.Reset()
		var sum docSum
		sortKey, hint := readOrder(cl.meta)
		if err := readCollection(readCtx, c.Database(cl.db).Collection(cl.meta.CollectionName), sortKey, hint, sp, &sum); err != nil {
			return st, explain(err, s.uri, "read "+cl.ns())
		}
		read++
		if sess != nil && st.Details["cluster_time"] == "" {
			if t := sess.SnapshotTime(); t.T != 0 {
				st.Details["cluster_time"] = fmt.Sprintf("Timestamp(%d, %d)", t.T, t.I)
			}
		}
		if err := tw.WriteHeader(header(bsonName, sp.Size(), 0o600, tar.TypeReg)); err != nil {
			return st, fmt.Errorf("mongo: write archive: %w", err)
		}
		if _, err := sp.WriteTo(tw); err != nil {
			return st, fmt.Errorf("mongo: write %s: %w", cl.ns(), err)
		}
		st.Entries++
		docs += sum.n
		st.Details["count:"+cl.ns()] = strconv.FormatInt(sum.n, 10)
		st.Details["bytes:"+cl.ns()] = strconv.FormatInt(sp.Size(), 10)
		st.Details["docsum:"+cl.ns()] = sum.String()
		log.Debug("mongo: collection dumped", "ns", cl.ns(), "documents", sum.n, "bytes", sp.Size())
	}
	if err := tw.Close(); err != nil {
		return st, fmt.Errorf("mongo: write archive: %w", err)
	}
	if sess != nil && read > 0 && st.Details["cluster_time"] == "" {
		// The server took the snapshot session but named no snapshot
		// time: the reads were not pinned to one point in time.
		st.Details["consistency"] = PerCollection
		st.Details["consistency_note"] = "the server answered snapshot reads without a cluster time"
		log.Warn("mongo: the server returned no snapshot time; the dump is consistent per collection only", "topology", dec.Topology)
	}
	st.Documents = docs
	log.Info("mongo: dumped", "databases", len(dbDone), "namespaces", len(colls), "documents", docs,
		"consistency", st.Details["consistency"], "server_version", st.Details["server_version"])
	return st, nil
}

// entryTime is the modification time of every entry of the dump: a fixed
// time, the Unix epoch. Unchanged data must dump to the same bytes every
// night (snapshots store equal runs of bytes once), so no header may carry
// the time of the dump; MongoDB does not tell when a collection last
// changed, so there is no meaningful per-collection time to put instead.
// The snapshot's own time is in its manifest.
var entryTime = time.Unix(0, 0).UTC()

// header returns the tar header of one entry of the dump: nothing in it
// but the name, the size, the type and a fixed mode depends on the data
// or on the clock (no owner, no atime or ctime, entryTime).
func header(name string, size int64, mode int64, typ byte) *tar.Header {
	return &tar.Header{Typeflag: typ, Name: name, Size: size, Mode: mode, ModTime: entryTime, Format: tar.FormatPAX}
}

// readOrder returns the sort and hint of the find that reads a
// collection's documents, so that unchanged documents come out in the
// same order every night, and a changed one stays in its place.
//
// Natural order (no sort) is the order the storage engine happens to
// keep: on WiredTiger the order of record ids, which differs between the
// members of a replica set (a secondary applies inserts in parallel, an
// initial sync or a restore inserts anew), so it can change after a
// failover, a resync or a restore; through a mongos the shards' answers
// interleave as they arrive, and a chunk migration moves documents. The
// _id index gives one order on every member and after every such event:
// sort on _id, the _id index hinted, so the server walks it instead of sorting
// in memory (which fails past 100 MB). The cost is one index lookup per
// document; with ObjectId _ids the index order is about the insertion
// order, so the documents are still read nearly in storage order. It is
// not used (nil, nil: natural order) for:
//   - a capped collection: its insertion order is its meaning (what a
//     tailable cursor sees, what is evicted first), and restore inserts
//     in dump order; capped documents never move;
//   - a clustered collection: its natural order is already _id order;
//   - a time series collection: it has no _id index; its documents are
//     read from buckets in bucket order;
//   - a collection without an _id index (created with autoIndexId:
//     false by MongoDB before 4.0, say).
func readOrder(m *Metadata) (sort, hint any) {
	if m.Type != TypeCollection {
		return nil, nil
	}
	if capped, _ := m.Options.Lookup("capped").BooleanOK(); capped {
		return nil, nil
	}
	if _, err := m.Options.LookupErr("clusteredIndex"); err == nil {
		return nil, nil
	}
	for _, idx := range m.Indexes {
		if clustered, _ := idx.Lookup("clustered").BooleanOK(); clustered {
			return nil, nil
		}
	}
	for _, idx := range m.Indexes {
		if isIDIndex(idx) {
			return bson.D{{Key: "_id", Value: 1}}, "_id_"
		}
	}
	return nil, nil
}

// isIDIndex reports whether an index spec is the _id index: named "_id_"
// with key {_id: 1}. It is hinted by name: another index with the same
// key (and another collation) would make a hint by key ambiguous.
func isIDIndex(idx bson.Raw) bool {
	if name, _ := idx.Lookup("name").StringValueOK(); name != "_id_" {
		return false
	}
	key, ok := idx.Lookup("key").DocumentOK()
	if !ok {
		return false
	}
	elems, err := key.Elements()
	if err != nil || len(elems) != 1 || elems[0].Key() != "_id" {
		return false
	}
	switch v := elems[0].Value(); v.Type {
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble:
		n, _ := v.AsInt64OK()
		return n == 1
	}
	return false
}

// readCollection streams every document's raw bytes into w and sum, in
// the order readOrder gives (sort and hint nil: natural order).
func readCollection(ctx context.Context, coll *mongo.Collection, sort, hint any, w io.Writer, sum *docSum) error {
	fo := options.Find()
	if sort != nil {
		fo.SetSort(sort).SetHint(hint)
	}
	cur, err := coll.Find(ctx, bson.D{}, fo)
	if err != nil {
		return err
	}
	defer func() {
		// An exhausted cursor closes without a round trip; one left open
		// by an error is killed on the server, if it answers soon.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		cur.Close(cctx)
		cancel()
	}()
	for cur.Next(ctx) {
		doc := cur.Current
		if _, err := w.Write(doc); err != nil {
			return err
		}
		sum.add(doc)
	}
	return cur.Err()
}

// runHello asks the server its role; servers before 4.4.2 only know the
// legacy isMaster.
func runHello(ctx context.Context, c *mongo.Client) (bson.Raw, error) {
	admin := c.Database("admin")
	raw, err := admin.RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Raw()
	if err != nil && serverCode(err) == codeCommandNotFound {
		raw, err = admin.RunCommand(ctx, bson.D{{Key: "isMaster", Value: 1}}).Raw()
	}
	return raw, err
}

// serverVersion returns buildInfo's version.
func serverVersion(ctx context.Context, c *mongo.Client) (string, error) {
	var bi struct {
		Version string `bson:"version"`
	}
	if err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&bi); err != nil {
		return "", err
	}
	return bi.Version, nil
}

// dumpedDatabase reports whether a whole-server dump includes database d:
// not admin, local and config, nor fireops' own scratch databases (a
// restore-test running now, or left by a killed one).
func dumpedDatabase(d string) bool {
	return !slices.Contains(skippedDatabases, d) && !strings.HasPrefix(d, ScratchPrefix)
}

// dumpedCollection reports whether a dump includes the collection: not
// system.* nor the staging collections of a restore in progress (or
// killed); fireops-replaced-* are kept: they hold live data a failed swap
// set aside.
func dumpedCollection(name string) bool {
	return name != "" && !strings.HasPrefix(name, "system.") && !strings.HasPrefix(name, StagingPrefix)
}

// list returns the collections and views to dump, sorted by database and
// name, with their metadata (index specs sorted, see sortIndexes).
func (s *Source) list(ctx context.Context, c *mongo.Client) ([]collection, error) {
	dbs := s.databases
	if len(dbs) == 0 {
		all, err := c.ListDatabaseNames(ctx, bson.D{})
		if err != nil {
			return nil, explain(err, s.uri, "list databases")
		}
		for _, d := range all {
			if dumpedDatabase(d) {
				dbs = append(dbs, d)
			}
		}
	}
	dbs = slices.Clone(dbs)
	slices.Sort(dbs)
	dbs = slices.Compact(dbs)
	var out []collection
	for _, d := range dbs {
		if err := checkDBName(d); err != nil {
			return nil, err
		}
		db := c.Database(d)
		cur, err := db.ListCollections(ctx, bson.D{})
		if err != nil {
			return nil, explain(err, s.uri, "list the collections of "+d)
		}
		var specs []bson.Raw
		for cur.Next(ctx) {
			specs = append(specs, slices.Clone(cur.Current))
		}
		err = cur.Err()
		cur.Close(ctx)
		if err != nil {
			return nil, explain(err, s.uri, "list the collections of "+d)
		}
		var colls []collection
		for _, spec := range specs {
			name, _ := spec.Lookup("name").StringValueOK()
			typ, _ := spec.Lookup("type").StringValueOK()
			if !dumpedCollection(name) {
				continue
			}
			var idx []bson.Raw
			if typ != TypeView {
				if idx, err = listIndexes(ctx, db.Collection(name)); err != nil {
					return nil, explain(err, s.uri, "list the indexes of "+d+"."+name)
				}
			}
			sortIndexes(idx)
			m, _, err := metadataFromSpec(spec, idx)
			if err != nil {
				return nil, fmt.Errorf("mongo: %s.%s: %w", d, name, err)
			}
			colls = append(colls, collection{db: d, meta: m})
		}
		slices.SortFunc(colls, func(a, b collection) int { return strings.Compare(a.meta.CollectionName, b.meta.CollectionName) })
		out = append(out, colls...)
	}
	return out, nil
}

// sortIndexes puts index specs in one order whatever order the server
// lists them in: the _id index first, then by name (unique within a
// collection). MongoDB lists them in the order they were created, so an
// index dropped and created again would otherwise move in metadata.json;
// the specs themselves are kept as the server gave them (the order of a
// key's fields is the index).
func sortIndexes(idx []bson.Raw) {
	name := func(r bson.Raw) string { n, _ := r.Lookup("name").StringValueOK(); return n }
	slices.SortStableFunc(idx, func(a, b bson.Raw) int {
		na, nb := name(a), name(b)
		if (na == "_id_") != (nb == "_id_") {
			if na == "_id_" {
				return -1
			}
			return 1
		}
		return strings.Compare(na, nb)
	})
}

func listIndexes(ctx context.Context, coll *mongo.Collection) ([]bson.Raw, error) {
	cur, err := coll.Indexes().List(ctx)
	if err != nil {
		if serverCode(err) == codeNamespaceNotFound {
			return nil, nil // dropped since it was listed
		}
		return nil, err
	}
	defer cur.Close(ctx)
	var out []bson.Raw
	for cur.Next(ctx) {
		out = append(out, slices.Clone(cur.Current))
	}
	return out, cur.Err()
}

// entryNames returns the tar entry names of a namespace's files.
func entryNames(db, coll string) (meta, docs string) {
	base := db + "/" + escapeName(coll)
	return base + ".metadata.json", base + ".bson"
}
