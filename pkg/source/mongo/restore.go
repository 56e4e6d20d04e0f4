package mongo

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/firetech/fireops/internal/textcut"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/leftover"
	"github.com/firetech/fireops/pkg/source"
	"github.com/firetech/fireops/pkg/tarsafe"
)

// ErrIntegrity is wrapped by the errors for a restored collection whose
// documents do not match what the index records (count or docsum).
var ErrIntegrity = errors.New("mongo: restored documents differ from the snapshot")

// integrityf returns an ErrIntegrity error with exit code 3 (a check
// failed).
func integrityf(format string, args ...any) error {
	return exitcode.New(exitcode.CheckFailed, fmt.Errorf("%w: %s", ErrIntegrity, fmt.Sprintf(format, args...)),
		"the restored documents are not what the snapshot holds; the live collections were left as they were")
}

// ErrNotEmpty is wrapped by the error for a target collection (or view)
// that exists with documents and may not be replaced (no Drop).
var ErrNotEmpty = errors.New("target exists and is not empty")

// StagingPrefix starts the name of every staging collection: then the
// run's tag (pkg/leftover), the host's id ([leftover.Host]), a random part
// and the collection's number. A restore that was killed leaves
// collections named so behind; the next restore into the same database
// drops them (see Restorer).
const StagingPrefix = "fireops-staging-"

// ReplacedPrefix starts the name a live collection is renamed to while a
// staging collection takes its place on a server without dropTarget (the
// rest as StagingPrefix's); a restore killed between the two renames
// leaves the old documents under this name (rename it back; it is not
// safe to drop: the next restore into the database says so in a warning).
const ReplacedPrefix = "fireops-replaced-"

// maxDocSize bounds one document of a .bson entry: MongoDB's 16 MiB plus
// the headroom the server itself allows for internal fields.
const maxDocSize = 16<<20 + 16<<10

// maxMetadataSize bounds one metadata.json entry.
const maxMetadataSize = 16 << 20

// RestoreOptions say what a Restorer restores where.
type RestoreOptions struct {
	// Select limits the restore to some namespaces; empty: all.
	Select Selection
	// ToDB is prepended to every target database name ("" keeps them).
	ToDB string
	// Scratch, when set, puts every collection into this one database,
	// named "<db>:<coll>" there (verify --level restore-test; ":" cannot
	// occur in a database name, so the names cannot collide).
	Scratch string
	// Drop replaces collections that exist with documents (and views);
	// without it the restore refuses them.
	Drop bool
	// Expect is the part's contents from the index: each restored
	// collection's count (and docsum) must match.
	Expect []Namespace
	// VerifySums reads every restored collection back from the server and
	// compares the docsum of what it returns with Expect's.
	VerifySums bool
}

// Target returns where db.coll goes.
func (o RestoreOptions) Target(db, coll string) (string, string) {
	if o.Scratch != "" {
		return o.Scratch, scratchName(o.Scratch, db, coll)
	}
	return o.ToDB + db, coll
}

// maxNamespace is MongoDB's limit on "<db>.<collection>" (bytes).
const maxNamespace = 255

// maxScratchNS bounds a scratch namespace ("<scratch db>.<db>:<coll>"):
// MongoDB allows 255 bytes; the rest is margin.
const maxScratchNS = 235

// scratchName is the name of db.coll in the scratch database: "<db>:<coll>"
// when that fits, else cut short and ended with a hash of the whole name,
// so that a collection whose name fits at the source does not fail the
// restore-test (the same name every time: views map their source with it).
func scratchName(scratch, db, coll string) string {
	name := db + ":" + coll
	if len(scratch)+1+len(name) <= maxScratchNS {
		return name
	}
	sum := sha256.Sum256([]byte(db + "." + coll))
	tail := "~" + hex.EncodeToString(sum[:8])
	keep := max(0, maxScratchNS-len(scratch)-1-len(tail))
	return textcut.Prefix(name, keep) + tail
}

// Planned is a namespace of a restore plan.
type Planned struct {
	Namespace
	TargetDB   string `json:"target_db"`
	TargetColl string `json:"target_collection"`
	// Exists says the target exists now (empty, or replaced with Drop).
	Exists bool `json:"exists"`
}

// Plan lists what a restore with o writes, from the part's contents, and
// checks the targets on the server at uri before anything is downloaded:
// a target collection with documents, or a target view, is refused
// without Drop (ErrNotEmpty, exit code 2); so is any existing target of a
// time series collection, which cannot be renamed into place.
func Plan(ctx context.Context, uri string, contents []Namespace, o RestoreOptions, opts ...Option) ([]Planned, error) {
	sel, err := o.Select.Filter(contents)
	if err != nil {
		return nil, err
	}
	if len(sel) == 0 {
		return nil, nil
	}
	c, err := connect(ctx, uri, newOptions(opts))
	if err != nil {
		return nil, err
	}
	defer c.Disconnect(context.WithoutCancel(ctx))
	var out []Planned
	var refused []string
	for _, n := range sel {
		tdb, tcoll := o.Target(n.DB, n.Coll)
		if err := checkDBName(tdb); err != nil {
			return nil, exitcode.Usagef("choose a shorter --to-db prefix of letters, digits, _ and -", "%s: target database: %v", n, err)
		}
		// A longer target database can push a collection's namespace past
		// what the server takes; say so now, not at the rename after the
		// download (when other collections may be replaced already).
		if ns := len(tdb) + 1 + len(tcoll); ns > maxNamespace {
			return nil, exitcode.Usagef("choose a shorter --to-db prefix, or restore this collection without one",
				"%s: target %s.%s is %d bytes long; the server takes at most %d", n, tdb, tcoll, ns, maxNamespace)
		}
		p := Planned{Namespace: n, TargetDB: tdb, TargetColl: tcoll}
		t, err := inspectTarget(ctx, c.Database(tdb), tcoll)
		if err != nil {
			return nil, explain(err, uri, "inspect "+tdb+"."+tcoll)
		}
		p.Exists = t.exists
		if t.exists && (t.nonEmpty || t.view || n.View) && !o.Drop {
			refused = append(refused, tdb+"."+tcoll)
		}
		out = append(out, p)
	}
	if len(refused) > 0 {
		hint := "add --drop to replace them, or restore next to them with --to-db PREFIX"
		return nil, exitcode.New(exitcode.Usage, fmt.Errorf("mongo: %w: %s", ErrNotEmpty, strings.Join(refused, ", ")), hint)
	}
	return out, nil
}

// target describes what is at a target name now.
type target struct {
	exists, view, timeseries, nonEmpty bool
}

func inspectTarget(ctx context.Context, db *mongo.Database, name string) (target, error) {
	specs, err := db.ListCollectionSpecifications(ctx, bson.D{{Key: "name", Value: name}})
	if err != nil {
		return target{}, err
	}
	if len(specs) == 0 {
		return target{}, nil
	}
	t := target{exists: true, view: specs[0].Type == TypeView, timeseries: specs[0].Type == TypeTimeseries}
	if t.view {
		return t, nil
	}
	err = db.Collection(name).FindOne(ctx, bson.D{}, options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}})).Err()
	switch {
	case err == nil:
		t.nonEmpty = true
	case !errors.Is(err, mongo.ErrNoDocuments):
		return t, err
	}
	return t, nil
}

// Restorer loads a mongo part's tar stream into a server through staging
// collections.
//
// Stage reads the stream in order. For each selected collection it
// creates a staging collection "fireops-staging-<run>-<n>" in the target
// database with the recorded options, inserts the documents in unordered
// batches (bounded: WithBatch) that bypass document validation, builds
// the recorded indexes, and checks that the server holds as many
// documents as the stream had and the index records (and, with
// VerifySums, that reading them back gives the recorded docsum). The live
// collections are not touched. Commit checks again that no target gained
// documents meanwhile (without Drop), then renames each staging
// collection over its target (renameCollection with dropTarget; where the
// server lacks dropTarget, the old target is renamed aside, the staging
// collection into place, and the old one dropped) and creates the views.
// Abort drops the staging collections.
//
// Before it creates anything in a database, Stage drops the staging
// collections (and trial views) that restores killed before their end
// (SIGKILL, a power loss) left there: those whose name carries the tag of
// a run of this host that is not alive, never one of a live run or of
// another host, logging each. A staging name without a tag (an older
// fireops) and a collection moved aside (ReplacedPrefix) by a killed run
// are named in a warning and kept.
//
// A time series collection cannot be renamed: it is loaded directly under
// its target name, which Plan requires to be free, and dropped by Abort.
type Restorer struct {
	uri  string
	o    RestoreOptions
	opts settings
}

var _ source.Restorer = (*Restorer)(nil)

// NewRestorer returns a Restorer into the server at uri.
func NewRestorer(uri string, o RestoreOptions, opts ...Option) (*Restorer, error) {
	if err := checkURI(uri); err != nil {
		return nil, fmt.Errorf("mongo: the URI %v", err)
	}
	return &Restorer{uri: uri, o: o, opts: newOptions(opts)}, nil
}

// stagedColl is one collection loaded under a staging name.
type stagedColl struct {
	ns          Namespace
	meta        *Metadata
	db          string
	staging     string
	target      string
	direct      bool // loaded under its target name (time series)
	done        bool
	docs, bytes int64
}

type stagedView struct {
	ns     Namespace
	meta   *Metadata
	db     string
	target string
	viewOn string
}

type staged struct {
	r       *Restorer
	c       *mongo.Client
	run     string          // tag, host and random part of the staging names
	cleaned map[string]bool // databases whose leftovers were looked for
	// fresh holds the databases that had no collection before this run
	// created one: Abort drops them again when it leaves them empty (a
	// server such as FerretDB keeps an empty database listed).
	fresh  map[string]bool
	colls  []*stagedColl
	views  []stagedView
	st     source.Stats
	closed bool
}

// Stage loads the stream into staging collections (see Restorer). On
// error, what it created is dropped.
func (r *Restorer) Stage(ctx context.Context, in io.Reader) (source.Staged, error) {
	c, err := connect(ctx, r.uri, r.opts)
	if err != nil {
		return nil, err
	}
	var rb [4]byte
	rand.Read(rb[:])
	s := &staged{r: r, c: c, run: leftover.Tag() + "-" + leftover.Host() + "-" + hex.EncodeToString(rb[:]),
		cleaned: map[string]bool{}, fresh: map[string]bool{}, st: source.Stats{Details: map[string]string{}}}
	fail := func(err error) (source.Staged, error) {
		s.Abort()
		return nil, err
	}
	expect := map[string]Namespace{}
	for _, n := range r.o.Expect {
		expect[n.String()] = n
	}
	metas := map[string]*Metadata{}
	seen := map[string]bool{}
	tr := tar.NewReader(tarsafe.ContextReader(ctx, in))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail(fmt.Errorf("mongo: read archive: %w", err))
		}
		s.st.Entries++
		name, err := tarsafe.CleanName(hdr.Name)
		if err != nil {
			return fail(fmt.Errorf("mongo: %w", err))
		}
		db, file, nested := strings.Cut(name, "/")
		if hdr.Typeflag == tar.TypeDir && !nested && checkDBName(db) == nil {
			continue // a database's folder
		}
		if !nested || strings.Contains(file, "/") || hdr.Typeflag != tar.TypeReg || checkDBName(db) != nil {
			return fail(fmt.Errorf("mongo: unexpected archive entry %q: not <db>/<collection>.bson or .metadata.json", hdr.Name))
		}
		switch {
		case strings.HasSuffix(file, ".metadata.json"):
			coll := unescapeName(strings.TrimSuffix(file, ".metadata.json"))
			if hdr.Size > maxMetadataSize {
				return fail(fmt.Errorf("mongo: %s: metadata.json of %d bytes is too large", hdr.Name, hdr.Size))
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				return fail(fmt.Errorf("mongo: read %s: %w", hdr.Name, err))
			}
			m, err := ParseMetadata(data)
			if err != nil {
				return fail(fmt.Errorf("mongo: %s: %w", hdr.Name, err))
			}
			if m.CollectionName != coll {
				return fail(fmt.Errorf("mongo: %s names collection %q", hdr.Name, m.CollectionName))
			}
			ns := Namespace{DB: db, Coll: coll}
			metas[ns.String()] = m
			if m.Type == TypeView && r.o.Select.Match(db, coll) {
				seen[ns.String()] = true
				tdb, tcoll := r.o.Target(db, coll)
				viewOn := m.ViewOn()
				if r.o.Scratch != "" && viewOn != "" {
					_, viewOn = r.o.Target(db, viewOn)
				}
				ns.View, ns.ViewOn = true, m.ViewOn()
				s.views = append(s.views, stagedView{ns: ns, meta: m, db: tdb, target: tcoll, viewOn: viewOn})
			}
		case strings.HasSuffix(file, ".bson"):
			coll := unescapeName(strings.TrimSuffix(file, ".bson"))
			ns := Namespace{DB: db, Coll: coll}
			m := metas[ns.String()]
			if m == nil {
				return fail(fmt.Errorf("mongo: %s comes without its metadata.json before it", hdr.Name))
			}
			if !r.o.Select.Match(db, coll) {
				continue
			}
			seen[ns.String()] = true
			sc, err := s.load(ctx, ns, m, tr)
			if err != nil {
				return fail(err)
			}
			if want, ok := expect[ns.String()]; ok {
				if err := s.check(ctx, sc, want); err != nil {
					return fail(err)
				}
			}
			s.st.Documents += sc.docs
			s.st.Details["count:"+ns.String()] = strconv.FormatInt(sc.docs, 10)
			r.opts.log.Info("mongo: collection staged", "ns", ns.String(), "target", sc.db+"."+sc.target, "documents", sc.docs, "bytes", sc.bytes)
		default:
			return fail(fmt.Errorf("mongo: unexpected archive entry %q", hdr.Name))
		}
	}
	if _, err := io.Copy(io.Discard, in); err != nil {
		return fail(fmt.Errorf("mongo: read archive: %w", err))
	}
	for _, n := range r.o.Expect {
		if r.o.Select.Match(n.DB, n.Coll) && !seen[n.String()] {
			return fail(integrityf("%s is in the index but not in the payload", n))
		}
	}
	return s, nil
}

// load creates the staging collection of one namespace, inserts the .bson
// entry's documents and builds the indexes.
func (s *staged) load(ctx context.Context, ns Namespace, m *Metadata, in io.Reader) (*stagedColl, error) {
	o := s.r.o
	tdb, tcoll := o.Target(ns.DB, ns.Coll)
	sc := &stagedColl{ns: ns, meta: m, db: tdb, target: tcoll,
		staging: fmt.Sprintf("%s%s-%d", StagingPrefix, s.run, len(s.colls))}
	if m.Type == TypeTimeseries {
		sc.staging, sc.direct = tcoll, true
	}
	s.cleanLeftovers(ctx, tdb)
	db := s.c.Database(tdb)
	cmd, err := m.CreateCommand(sc.staging, "")
	if err != nil {
		return nil, fmt.Errorf("mongo: %s: %w", ns, err)
	}
	if err := db.RunCommand(ctx, cmd).Err(); err != nil {
		if sc.direct && serverCode(err) == codeNamespaceExists {
			return nil, exitcode.New(exitcode.Usage, fmt.Errorf("mongo: %s: %w: time series collection %s.%s exists", ns, ErrNotEmpty, tdb, tcoll),
				"drop it first, or restore next to it with --to-db PREFIX: a time series collection cannot be renamed into place")
		}
		return nil, explain(err, s.r.uri, "create "+tdb+"."+sc.staging+" for "+ns.String())
	}
	s.colls = append(s.colls, sc)
	coll := db.Collection(sc.staging)

	var sum docSum
	br := bufio.NewReaderSize(in, 1<<20)
	batchDocs, batchBytes := s.r.opts.batchDocs, s.r.opts.batchBytes
	// Documents are read into arena; the batch's documents point into it.
	// When a document does not fit, a new arena is started (the batch
	// keeps the old one alive until the flush), so memory stays below
	// about twice batchBytes plus one document.
	arena := make([]byte, 0, min(batchBytes, 1<<20))
	batch := make([]any, 0, batchDocs)
	pending := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := coll.InsertMany(ctx, batch, options.InsertMany().SetOrdered(false).SetBypassDocumentValidation(true))
		if err != nil {
			return explain(firstWriteError(err), s.r.uri, "insert into "+tdb+"."+sc.staging+" for "+ns.String())
		}
		clear(batch)
		batch, arena, pending = batch[:0], arena[:0], 0
		return nil
	}
	for {
		var lb [4]byte
		if _, err := io.ReadFull(br, lb[:]); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("mongo: %s: truncated document after %d documents: %w", ns, sum.n, err)
		}
		size := int(int32(binary.LittleEndian.Uint32(lb[:])))
		if size < 5 || size > maxDocSize {
			return nil, fmt.Errorf("mongo: %s: document %d has an invalid length %d", ns, sum.n+1, size)
		}
		if len(batch) > 0 && pending+size > batchBytes {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		if cap(arena)-len(arena) < size {
			arena = make([]byte, 0, max(size, min(batchBytes, 2*cap(arena))))
		}
		start := len(arena)
		arena = append(arena, lb[:]...)
		arena = arena[:start+size]
		if _, err := io.ReadFull(br, arena[start+4:]); err != nil {
			return nil, fmt.Errorf("mongo: %s: truncated document %d: %w", ns, sum.n+1, err)
		}
		doc := arena[start : start+size : start+size]
		if doc[size-1] != 0 {
			return nil, fmt.Errorf("mongo: %s: document %d is not valid BSON", ns, sum.n+1)
		}
		sum.add(doc)
		sc.bytes += int64(size)
		pending += size
		batch = append(batch, bson.Raw(doc))
		if len(batch) >= batchDocs || pending >= batchBytes {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	sc.docs = sum.n
	specs, err := m.IndexSpecs()
	if err != nil {
		return nil, fmt.Errorf("mongo: %s: %w", ns, err)
	}
	if len(specs) > 0 {
		idx := bson.A{}
		for _, sp := range specs {
			idx = append(idx, sp)
		}
		if err := db.RunCommand(ctx, bson.D{{Key: "createIndexes", Value: sc.staging}, {Key: "indexes", Value: idx}}).Err(); err != nil {
			return nil, explain(err, s.r.uri, "create the indexes of "+ns.String())
		}
	}
	n, err := coll.CountDocuments(ctx, bson.D{})
	if err != nil {
		return nil, explain(err, s.r.uri, "count "+tdb+"."+sc.staging)
	}
	if n != sum.n {
		return nil, integrityf("%s: the server holds %d documents after inserting %d", ns, n, sum.n)
	}
	sc.ns.Documents, sc.ns.Bytes, sc.ns.DocSum = sum.n, sc.bytes, sum.String()
	return sc, nil
}

// cleanLeftovers drops, once per database, the staging collections and
// trial views that killed restores of this host left in db (see
// Restorer). It never fails the restore: what it cannot list or drop is
// named in a warning.
func (s *staged) cleanLeftovers(ctx context.Context, db string) {
	if s.cleaned[db] {
		return
	}
	s.cleaned[db] = true
	log := s.r.opts.log
	names, err := s.c.Database(db).ListCollectionNames(ctx, bson.D{})
	if err != nil {
		log.Warn("mongo: staging collections that interrupted restores left were not looked for", "db", db,
			"err", explain(err, s.r.uri, "list the collections of "+db))
		return
	}
	if len(names) == 0 {
		s.fresh[db] = true
	}
	for _, name := range names {
		prefix := StagingPrefix
		if strings.HasPrefix(name, ReplacedPrefix) {
			prefix = ReplacedPrefix
		} else if !strings.HasPrefix(name, StagingPrefix) {
			continue
		}
		o, ok := leftover.OwnerOf(name, prefix)
		switch {
		case !ok && prefix == ReplacedPrefix:
			log.Warn("mongo: left by an older fireops's restore that was killed half way: it holds the live documents of a collection; rename it back", "collection", db+"."+name)
			continue
		case !ok:
			log.Warn("mongo: left by an older fireops: drop it when no restore runs", "collection", db+"."+name)
			continue
		case o.Alive || !strings.HasPrefix(o.Rest, leftover.Host()+"-"):
			continue // a live run's, or another host's
		case prefix == ReplacedPrefix:
			log.Warn("mongo: a restore killed half way left the live documents of a collection under this name: rename it back to the collection it replaced (drop the restored one first)",
				"collection", db+"."+name, "pid", o.PID)
			continue
		}
		if err := s.c.Database(db).Collection(name).Drop(ctx); err != nil {
			log.Warn("mongo: a staging collection that an interrupted restore left could not be dropped; drop it by hand",
				"collection", db+"."+name, "err", explain(err, s.r.uri, "drop "+db+"."+name))
			continue
		}
		log.Warn("removed what an interrupted fireops run left behind", "collection", db+"."+name, "pid", o.PID)
	}
}

// check compares a staged collection with the index.
func (s *staged) check(ctx context.Context, sc *stagedColl, want Namespace) error {
	if sc.ns.Documents != want.Documents {
		return integrityf("%s: %d documents restored, the index records %d", sc.ns, sc.ns.Documents, want.Documents)
	}
	if want.DocSum != "" && sc.ns.DocSum != want.DocSum {
		return integrityf("%s: the documents' docsum differs from the index", sc.ns)
	}
	if !s.r.o.VerifySums || want.DocSum == "" {
		return nil
	}
	var sum docSum
	err := readCollection(ctx, s.c.Database(sc.db).Collection(sc.staging), nil, nil, io.Discard, &sum) // docsum: any order
	if err != nil {
		return explain(err, s.r.uri, "read back "+sc.db+"."+sc.staging)
	}
	if sum.n != want.Documents || sum.String() != want.DocSum {
		return integrityf("%s: reading the restored collection back gives %d documents with another docsum than the snapshot's",
			sc.ns, sum.n)
	}
	return nil
}

// firstWriteError reduces a bulk write exception to its first write error.
func firstWriteError(err error) error {
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) && len(bwe.WriteErrors) > 0 {
		we := bwe.WriteErrors[0]
		return fmt.Errorf("%d of the batch's documents failed, the first: (code %d) %s", len(bwe.WriteErrors), we.Code, oneLine(we.Message))
	}
	return err
}

// Stats reports Entries (every tar entry read), Documents (restored) and
// "count:<db>.<coll>" per restored collection.
func (s *staged) Stats() source.Stats { return s.st }

// Commit renames the staging collections over their targets and creates
// the views (see Restorer).
func (s *staged) Commit(ctx context.Context) error {
	if s.closed {
		return errors.New("mongo: restore already committed or aborted")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	uri := s.r.uri
	// Check every target before replacing any.
	exists := make([]bool, len(s.colls))
	for i, sc := range s.colls {
		if sc.direct {
			continue
		}
		t, err := inspectTarget(ctx, s.c.Database(sc.db), sc.target)
		if err != nil {
			return explain(err, uri, "inspect "+sc.db+"."+sc.target)
		}
		if t.timeseries || (t.exists && (t.nonEmpty || t.view) && !s.r.o.Drop) {
			return exitcode.New(exitcode.Usage, fmt.Errorf("mongo: %w: %s.%s (it changed since the restore was planned)", ErrNotEmpty, sc.db, sc.target),
				"add --drop to replace it, or restore next to it with --to-db PREFIX")
		}
		exists[i] = t.exists
	}
	for _, v := range s.views {
		t, err := inspectTarget(ctx, s.c.Database(v.db), v.target)
		if err != nil {
			return explain(err, uri, "inspect "+v.db+"."+v.target)
		}
		if t.exists && !s.r.o.Drop {
			return exitcode.New(exitcode.Usage, fmt.Errorf("mongo: %w: %s.%s", ErrNotEmpty, v.db, v.target),
				"add --drop to replace it, or restore next to it with --to-db PREFIX")
		}
	}
	// Views are not staged: try each under a staging name first, so that
	// a view the server refuses (a pipeline it does not know, a server
	// without views) fails the restore before anything is replaced or
	// dropped, not after.
	for i, v := range s.views {
		s.cleanLeftovers(ctx, v.db)
		trial := StagingPrefix + s.run + "-v" + strconv.Itoa(i)
		cmd, err := v.meta.CreateCommand(trial, v.viewOn)
		if err != nil {
			return err
		}
		db := s.c.Database(v.db)
		if err := db.RunCommand(ctx, cmd).Err(); err != nil {
			return explain(err, uri, "create view "+v.db+"."+v.target+" (tried under a staging name; nothing was replaced)")
		}
		if err := db.Collection(trial).Drop(ctx); err != nil {
			return explain(err, uri, "drop the trial view "+v.db+"."+trial)
		}
	}
	var replaced []string
	for i, sc := range s.colls {
		if !sc.direct {
			if err := s.rename(ctx, sc, exists[i]); err != nil {
				if len(replaced) > 0 {
					err = fmt.Errorf("%w (already replaced: %s)", err, strings.Join(replaced, ", "))
				}
				return err
			}
		}
		sc.done = true
		replaced = append(replaced, sc.db+"."+sc.target)
	}
	alreadyReplaced := func(err error) error {
		if len(replaced) > 0 {
			err = fmt.Errorf("%w (already replaced: %s)", err, strings.Join(replaced, ", "))
		}
		return err
	}
	for _, v := range s.views {
		db := s.c.Database(v.db)
		if s.r.o.Drop {
			if err := db.Collection(v.target).Drop(ctx); err != nil {
				return alreadyReplaced(explain(err, uri, "drop view "+v.db+"."+v.target))
			}
		}
		cmd, err := v.meta.CreateCommand(v.target, v.viewOn)
		if err != nil {
			return alreadyReplaced(err)
		}
		if err := db.RunCommand(ctx, cmd).Err(); err != nil {
			return alreadyReplaced(explain(err, uri, "create view "+v.db+"."+v.target))
		}
		replaced = append(replaced, v.db+"."+v.target)
	}
	s.close(ctx)
	return nil
}

// rename moves a staging collection over its target.
func (s *staged) rename(ctx context.Context, sc *stagedColl, exists bool) error {
	admin := s.c.Database("admin")
	from, to := sc.db+"."+sc.staging, sc.db+"."+sc.target
	cmd := bson.D{{Key: "renameCollection", Value: from}, {Key: "to", Value: to}}
	if exists {
		cmd = append(cmd, bson.E{Key: "dropTarget", Value: true})
	}
	err := admin.RunCommand(ctx, cmd).Err()
	if err == nil || !exists || serverCode(err) != codeNotImplemented {
		return explain(err, s.r.uri, "rename "+from+" to "+to)
	}
	// No dropTarget (FerretDB): move the old collection aside first, and
	// back if the staging collection cannot take its place. The aside
	// name is not a StagingPrefix one: until the swap is done it holds the
	// live documents. Once the old collection is aside, an interrupt must
	// not stop the swap half way (the target would be missing), so the
	// rest runs on a context that is not cancelled with ctx.
	aside := sc.db + "." + ReplacedPrefix + s.run + "-" + strconv.Itoa(indexOf(s.colls, sc))
	if err := admin.RunCommand(ctx, bson.D{{Key: "renameCollection", Value: to}, {Key: "to", Value: aside}}).Err(); err != nil {
		return explain(err, s.r.uri, "rename "+to+" aside")
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.r.opts.selection+30*time.Second)
	defer cancel()
	if err := admin.RunCommand(ctx, bson.D{{Key: "renameCollection", Value: from}, {Key: "to", Value: to}}).Err(); err != nil {
		if berr := admin.RunCommand(ctx, bson.D{{Key: "renameCollection", Value: aside}, {Key: "to", Value: to}}).Err(); berr != nil {
			return fmt.Errorf("%w; putting the old collection back failed too, it is %s now: %w",
				explain(err, s.r.uri, "rename "+from+" to "+to), aside, explain(berr, s.r.uri, "rename back"))
		}
		return explain(err, s.r.uri, "rename "+from+" to "+to)
	}
	_, asideColl, _ := strings.Cut(aside, ".")
	if err := s.c.Database(sc.db).Collection(asideColl).Drop(ctx); err != nil {
		s.r.opts.log.Warn("mongo: the replaced collection could not be dropped; drop it by hand", "collection", aside, "err", explain(err, s.r.uri, "drop"))
	}
	return nil
}

func indexOf(cs []*stagedColl, c *stagedColl) int {
	for i, x := range cs {
		if x == c {
			return i
		}
	}
	return -1
}

// Abort drops the staging collections (and a time series collection
// loaded under its target name); after Commit it does nothing.
func (s *staged) Abort() error {
	if s.closed {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.r.opts.selection+30*time.Second)
	defer cancel()
	var errs []error
	for _, sc := range s.colls {
		if sc.done {
			continue
		}
		if err := s.c.Database(sc.db).Collection(sc.staging).Drop(ctx); err != nil {
			errs = append(errs, explain(err, s.r.uri, "drop "+sc.db+"."+sc.staging))
		}
	}
	for _, db := range slices.Sorted(maps.Keys(s.fresh)) {
		s.dropIfEmpty(ctx, db)
	}
	s.close(ctx)
	return errors.Join(errs...)
}

// dropIfEmpty drops database db, which this run created, when it holds
// no collection any more, so that a failed restore leaves no empty
// database behind on servers that keep one listed. What it cannot check
// or drop is only logged: the database is empty either way.
func (s *staged) dropIfEmpty(ctx context.Context, db string) {
	names, err := s.c.Database(db).ListCollectionNames(ctx, bson.D{})
	if err == nil && len(names) == 0 {
		err = s.c.Database(db).Drop(ctx)
	}
	if err != nil {
		s.r.opts.log.Warn("mongo: an empty database a failed restore created could not be dropped", "db", db,
			"err", explain(err, s.r.uri, "drop database "+db))
	}
}

func (s *staged) close(ctx context.Context) {
	if !s.closed {
		s.closed = true
		s.c.Disconnect(context.WithoutCancel(ctx))
	}
}

// ScratchPrefix starts the name of every scratch database of verify
// --level restore-test.
const ScratchPrefix = "fireops-verify-"

// ScratchDB returns the scratch database name for a snapshot id.
func ScratchDB(snapshot string) string { return ScratchPrefix + snapshot }

// DropDatabase drops a database of the server at uri (a scratch
// database after a restore-test).
func DropDatabase(ctx context.Context, uri, name string, opts ...Option) error {
	c, err := connect(ctx, uri, newOptions(opts))
	if err != nil {
		return err
	}
	defer c.Disconnect(context.WithoutCancel(ctx))
	return explain(c.Database(name).Drop(ctx), uri, "drop database "+name)
}
