package partkind

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/snapshot"
	"github.com/firetech/fireops/pkg/source"
	"github.com/firetech/fireops/pkg/source/mongo"
)

// MongoRestoreOptions are restore's options for the mongo part.
type MongoRestoreOptions struct {
	// NS limits the restore to namespaces: "DB.COLL" or "DB.*"
	// (repeatable); empty restores every collection and view.
	NS []string
	// ToDB is a prefix given to every target database name (restore next
	// to the live data: --to-db restored_ puts metrics into
	// restored_metrics).
	ToDB string
	// ToURIFile names a secret file with the URI of another server to
	// restore into; default: the configured server.
	ToURIFile string
	// Drop replaces collections that exist with documents (through a
	// staging collection renamed over them); without it they are refused.
	Drop bool
}

// MongoVerifyOptions are verify's options for the mongo part.
type MongoVerifyOptions struct {
	// ScratchURIFile names a secret file with the URI of the server that
	// restore-test restores into; default: the configured server.
	ScratchURIFile string
}

// mongoKind handles the mongo:mongodb part: the databases of the
// configured MongoDB server.
type mongoKind struct{}

func (mongoKind) name() string { return mongo.Kind }

func (mongoKind) sources(_ context.Context, cfg *config.Config, r SourcesRequest) ([]source.Source, error) {
	m := cfg.Sources.Mongo
	if m == nil || !wanted(r.Only, mongo.Kind, mongo.Name) {
		return nil, nil
	}
	uri, err := configuredMongoURI(cfg)
	if err != nil {
		// The URI file missing (before the first deploy) or unreadable
		// fails the mongo part only.
		return []source.Source{failedSetup(mongo.Kind, mongo.Name, mongoURIError(cfg, err))}, nil
	}
	src, err := mongo.New(uri, m.Databases, mongo.WithTempDir(cfg.StateDir))
	if err != nil {
		return nil, exitcode.New(exitcode.Usage, fmt.Errorf("sources.mongo: %w", err), "fix sources.mongo in the config")
	}
	return []source.Source{src}, nil
}

// configuredMongoURI returns the configured server's URI: read from
// sources.mongo.uri_file, or, when the config names no file, from the
// environment variable FIREOPS_MONGO_URI.
func configuredMongoURI(cfg *config.Config) (string, error) {
	if m := cfg.Sources.Mongo; m != nil && m.URIFile != "" {
		return mongo.ReadURIFile(m.URIFile)
	}
	if uri := os.Getenv(mongo.EnvURI); uri != "" {
		return uri, nil
	}
	return "", exitcode.Usagef("set sources.mongo.uri_file (a 0600 file holding the mongodb:// URI) or "+mongo.EnvURI,
		"no MongoDB server configured")
}

// mongoURIError is the error of a snapshot whose configured MongoDB URI
// could not be read. A URI file that does not exist fails the mongo part
// (exit 1), wherever it is: a URI file that `fireops deploy` writes gets
// deploy's hint, any other says to write it.
func mongoURIError(cfg *config.Config, err error) error {
	err = fmt.Errorf("sources.mongo: %w", err)
	name := cfg.Sources.Mongo.URIFile
	if _, serr := os.Stat(name); name == "" || !errors.Is(serr, fs.ErrNotExist) {
		return err
	}
	if cfg.WrittenByDeploy(name) {
		return exitcode.New(exitcode.Failure, err,
			"run fireops deploy (it writes "+name+" with the stack's MongoDB URI), or point sources.mongo.uri_file at a file (chmod 600) holding the mongodb:// URI")
	}
	return exitcode.New(exitcode.Failure, err,
		"write the mongodb:// URI into "+name+" (chmod 600), or point sources.mongo.uri_file at the file that holds it (relative paths start at the config file's folder)")
}

// mongoTarget returns the URI to restore into and how to name it in
// output (never the URI itself). An error is a refusal (ErrRefused): the
// server to restore into is not known.
func mongoTarget(cfg *config.Config, uriFile string) (uri, where string, err error) {
	if uriFile != "" {
		uri, err = mongo.ReadURIFile(uriFile)
		return uri, "the server in " + uriFile, Refused(err)
	}
	uri, err = configuredMongoURI(cfg)
	if err != nil {
		err = Refused(exitcode.New(exitcode.Usage, err, "give --to-uri-file FILE, or configure sources.mongo"))
	}
	return uri, "the configured server", err
}

// mongoRestoreOptions turns restore's options into the restorer's.
func mongoRestoreOptions(p snapshot.Part, o MongoRestoreOptions) (mongo.RestoreOptions, []mongo.Namespace, error) {
	contents, err := mongo.Contents(p.Details)
	if err != nil {
		return mongo.RestoreOptions{}, nil, fmt.Errorf("part %s: %w", p.ID, err)
	}
	sel, err := mongo.ParseSelection(o.NS)
	if err != nil {
		return mongo.RestoreOptions{}, nil, Refused(err)
	}
	if o.ToDB != "" && strings.ContainsAny(o.ToDB, "/\\. \"$*<>:|?\x00") {
		return mongo.RestoreOptions{}, nil, Refused(exitcode.Usagef("use letters, digits, _ and -", "--to-db %q cannot start a database name", o.ToDB))
	}
	return mongo.RestoreOptions{Select: sel, ToDB: o.ToDB, Drop: o.Drop, Expect: contents}, contents, nil
}

// plan: a mongo part is restored into the configured server (or
// --to-uri-file), into the recorded databases or --to-db PREFIX+db,
// every collection or those of --ns. A target collection with documents
// (or a view) is refused without --drop, before anything is downloaded.
func (mongoKind) plan(ctx context.Context, cfg *config.Config, r Request) (Target, error) {
	ro, contents, err := mongoRestoreOptions(r.Part, r.Mongo)
	if err != nil {
		return Target{}, err
	}
	uri, where, err := mongoTarget(cfg, r.Mongo.ToURIFile)
	if err != nil {
		return Target{}, err
	}
	planned, err := mongo.Plan(ctx, uri, contents, ro)
	if err != nil {
		return Target{}, fmt.Errorf("part %s: %w", r.Part.ID, err)
	}
	if len(planned) == 0 {
		return Target{Shown: "nothing: the part holds no collections"}, nil
	}
	return Target{Shown: describeMongoPlan(planned, r.Mongo.Drop) + " on " + where}, nil
}

// describeMongoPlan summarizes the targets: "metrics.* (3), results.runs".
func describeMongoPlan(planned []mongo.Planned, drop bool) string {
	total := map[string]int{}
	for _, p := range planned {
		total[p.DB]++
	}
	byDB := map[string][]mongo.Planned{}
	var dbs []string
	for _, p := range planned {
		if _, ok := byDB[p.DB]; !ok {
			dbs = append(dbs, p.DB)
		}
		byDB[p.DB] = append(byDB[p.DB], p)
	}
	var parts []string
	replaced := 0
	for _, db := range dbs {
		ps := byDB[db]
		for _, p := range ps {
			if p.Exists {
				replaced++
			}
		}
		if len(ps) > 1 {
			parts = append(parts, fmt.Sprintf("%s.* (%d)", ps[0].TargetDB, len(ps)))
			continue
		}
		parts = append(parts, ps[0].TargetDB+"."+ps[0].TargetColl)
	}
	s := strings.Join(parts, ", ")
	if drop && replaced > 0 {
		s += fmt.Sprintf(", replacing %d existing", replaced)
	}
	return s
}

func (mongoKind) restorer(_ context.Context, cfg *config.Config, r Request, _ Target) (source.Restorer, error) {
	ro, _, err := mongoRestoreOptions(r.Part, r.Mongo)
	if err != nil {
		return nil, err
	}
	uri, _, err := mongoTarget(cfg, r.Mongo.ToURIFile)
	if err != nil {
		return nil, err
	}
	return mongo.NewRestorer(uri, ro, mongoLogger(r.Log)...)
}

// mongoLogger is the restorer option that logs to log, if any.
func mongoLogger(log *slog.Logger) []mongo.Option {
	if log == nil {
		return nil
	}
	return []mongo.Option{mongo.WithLogger(log)}
}

// scratch: restore-test restores every collection into one scratch
// database, fireops-verify-<snapshot id>, on the configured server or
// verify's --scratch-uri-file, compares each collection's count and
// docsum read back from the server with the index, and drops the
// database afterwards, also when the restore failed. A scratch database
// of the same snapshot left by a killed run is dropped first.
func (mongoKind) scratch(ctx context.Context, cfg *config.Config, r ScratchRequest) (source.Restorer, func(), error) {
	p := r.Part
	uri, _, err := mongoTarget(cfg, r.MongoURIFile)
	if err != nil {
		return nil, nil, fmt.Errorf("part %s: restore-test needs a MongoDB server (--scratch-uri-file): %w", p.ID, err)
	}
	contents, err := mongo.Contents(p.Details)
	if err != nil {
		return nil, nil, fmt.Errorf("part %s: %w", p.ID, err)
	}
	id := r.Snapshot
	if id == "" {
		id = time.Now().UTC().Format("20060102T150405Z") + "-scratch"
	}
	name := mongo.ScratchDB(id)
	if err := mongo.DropDatabase(ctx, uri, name); err != nil {
		return nil, nil, fmt.Errorf("part %s: %w", p.ID, err)
	}
	rs, err := mongo.NewRestorer(uri, mongo.RestoreOptions{Scratch: name, Expect: contents, VerifySums: true}, mongoLogger(r.Log)...)
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := mongo.DropDatabase(cctx, uri, name); err != nil && r.Log != nil {
			r.Log.Error("restore-test: the scratch database was not dropped; drop it by hand", "database", name, "err", err)
		}
	}
	return rs, cleanup, nil
}

// LoggerSetter is a source that logs (warnings such as mongo's
// per-collection consistency).
type LoggerSetter interface{ SetLogger(*slog.Logger) }

// SetLoggers gives the sources that log the job's logger.
func SetLoggers(srcs []source.Source, log *slog.Logger) {
	if log == nil {
		return
	}
	for _, s := range srcs {
		if l, ok := s.(LoggerSetter); ok {
			l.SetLogger(log)
		}
	}
}
