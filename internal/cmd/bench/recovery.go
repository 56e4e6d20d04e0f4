package main

// The recovery-time benchmark (-recovery): a whole "server" made of the
// dataset (a files part), a SQLite database, a MongoDB database in FerretDB
// and a few Docker volumes is snapshotted to an in-process WebDAV server,
// destroyed, and restored with `fireops restore latest --all`. It reports
// both times side by side. It needs Docker (volumes filled through their
// mountpoints, so as root) and the MongoDB server of scripts/test-deps.sh.

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	mopts "go.mongodb.org/mongo-driver/v2/mongo/options"
	"golang.org/x/net/webdav"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/firetech/fireops/internal/testenv"
)

// Sizes of the recovery benchmark's server, besides the dataset.
const (
	recoveryVolumes   = 3
	recoverySQLRows   = 20000 // about 4 MiB
	recoveryMongoDocs = 4000  // about 2 MiB: FerretDB writes about 1 MB/s
)

// recoveryResult is what the recovery benchmark measured.
type recoveryResult struct {
	snapshot, restore sample
	parts             int
	size, stored      int64 // the parts' sizes, plain and as stored
	dest              int64 // bytes on the WebDAV destination
	checks            []string
}

// recoveryServer is the server the recovery benchmark snapshots, destroys
// and restores.
type recoveryServer struct {
	prefix  string
	sqlite  string
	mongoDB string
	volumes []string
	volSize map[string][2]int64 // bytes, files before

	mc *mongo.Client
}

// davServer serves dir over WebDAV on 127.0.0.1 until close is called.
func davServer(dir string) (url string, closeFn func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("WebDAV server: %w", err)
	}
	srv := &http.Server{
		Handler:           &webdav.Handler{FileSystem: webdav.Dir(dir), LockSystem: webdav.NewMemLS()},
		ReadHeaderTimeout: time.Minute,
	}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// recovery runs the whole-server snapshot and restore once.
func (b *bench) recovery() (res *recoveryResult, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("-recovery fills Docker volumes through their mountpoints: run it as root")
	}
	uri := testenv.Env(testenv.EnvMongoURI) // also sets DOCKER_HOST for docker from .cache/testenv.sh
	if uri == "" {
		return nil, errors.New("-recovery needs MongoDB: run scripts/test-deps.sh (it writes .cache/testenv.sh) or set FIREOPS_TEST_MONGO_URI")
	}
	if _, err := output(b.ctx, nil, "docker", "version", "--format", "{{.Server.Version}}"); err != nil {
		return nil, fmt.Errorf("-recovery needs Docker: %w", err)
	}
	suffix := make([]byte, 4)
	rand.Read(suffix)
	s := &recoveryServer{prefix: "fireops-bench-" + hex.EncodeToString(suffix), volSize: map[string][2]int64{}}
	s.mongoDB = strings.ReplaceAll(s.prefix, "-", "_")
	s.sqlite = filepath.Join(b.work, "hub", "hub.sqlite")
	defer func() {
		if cerr := s.cleanup(b); cerr != nil && err == nil {
			err = cerr
		}
	}()

	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if s.mc, err = mongo.Connect(mopts.Client().ApplyURI(uri)); err != nil {
		return nil, fmt.Errorf("connecting to MongoDB: %w", err)
	}
	if err := s.mc.Ping(ctx, nil); err != nil {
		return nil, fmt.Errorf("MongoDB at %s does not answer: %w", uri, err)
	}

	b.logf("recovery: building the server (prefix %s)", s.prefix)
	if err := s.build(b); err != nil {
		return nil, err
	}
	dav := filepath.Join(b.work, "dav")
	if err := os.Mkdir(dav, 0o700); err != nil {
		return nil, err
	}
	url, stopDav, err := davServer(dav)
	if err != nil {
		return nil, err
	}
	defer stopDav()
	cfg, err := s.config(b, fmt.Sprintf(":webdav,url='%s',vendor=rclone:fireops", url))
	if err != nil {
		return nil, err
	}

	res = &recoveryResult{}
	b.logf("recovery: snapshot of the whole server to WebDAV")
	var snap *snapResult
	if res.snapshot, snap, err = b.fireopsSnapshot(cfg); err != nil {
		return nil, err
	}
	if snap != nil {
		res.parts = len(snap.Parts)
		for _, p := range snap.Parts {
			res.size += p.Size
			res.stored += p.Stored
		}
	}
	if res.dest, _, err = treeSize(dav); err != nil {
		return nil, err
	}
	res.snapshot.out = res.dest
	b.record("whole-server snapshot", toolFireops, res.snapshot)

	b.logf("recovery: destroying the server")
	if err := s.destroy(b); err != nil {
		return nil, err
	}
	b.logf("recovery: restore latest --all")
	res.restore, err = b.measure(command{argv: []string{b.opt.fireops, "--config", cfg, "restore", "latest", "--all", "--yes", "--force", "-q"}})
	if err != nil {
		return nil, err
	}
	res.restore.out = res.size
	b.record("whole-server restore", toolFireops, res.restore)
	if res.checks, err = s.check(b); err != nil {
		return nil, err
	}
	return res, nil
}

// build writes the SQLite database, the MongoDB database and the volumes.
func (s *recoveryServer) build(b *bench) error {
	if err := os.MkdirAll(filepath.Dir(s.sqlite), 0o700); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", s.sqlite)
	if err != nil {
		return fmt.Errorf("SQLite %s: %w", s.sqlite, err)
	}
	defer db.Close()
	err = func() error {
		if _, err := db.ExecContext(b.ctx, "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, state BLOB)"); err != nil {
			return err
		}
		tx, err := db.BeginTx(b.ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		blob := make([]byte, 160)
		for i := range recoverySQLRows {
			rand.Read(blob)
			if _, err := tx.ExecContext(b.ctx, "INSERT INTO users(name, state) VALUES (?, ?)", fmt.Sprintf("user-%06d", i), blob); err != nil {
				return err
			}
		}
		return tx.Commit()
	}()
	if err != nil {
		return fmt.Errorf("writing SQLite %s: %w", s.sqlite, err)
	}

	coll := s.mc.Database(s.mongoDB).Collection("runs")
	docs := make([]any, 0, 500)
	for i := range recoveryMongoDocs {
		docs = append(docs, bson.D{
			{Key: "_id", Value: i}, {Key: "user", Value: fmt.Sprintf("user-%04d", i%97)},
			{Key: "loss", Value: 1 / float64(i+1)}, {Key: "notes", Value: strings.Repeat("lr=3e-4 batch=64 ", 25)},
			{Key: "at", Value: time.Unix(1.7e9+int64(i)*60, 0).UTC()},
		})
		if len(docs) == cap(docs) || i == recoveryMongoDocs-1 {
			if _, err := coll.InsertMany(b.ctx, docs); err != nil {
				return fmt.Errorf("writing MongoDB %s: %w", s.mongoDB, err)
			}
			docs = docs[:0]
		}
	}

	per := max(b.opt.size/16, 4*mib)
	for i := range recoveryVolumes {
		v := fmt.Sprintf("%s-vol-%d", s.prefix, i+1)
		if _, err := output(b.ctx, nil, "docker", "volume", "create", v); err != nil {
			return err
		}
		s.volumes = append(s.volumes, v)
		mp, err := volumeMountpoint(b.ctx, v)
		if err != nil {
			return err
		}
		st, err := generateDataset(b.ctx, filepath.Join(mp, "work"), per, b.opt.seed+10+uint64(i), runtime.NumCPU())
		if err != nil {
			return fmt.Errorf("filling volume %s: %w", v, err)
		}
		s.volSize[v] = [2]int64{st.bytes, int64(st.files)}
	}
	return nil
}

func volumeMountpoint(ctx context.Context, v string) (string, error) {
	out, err := output(ctx, nil, "docker", "volume", "inspect", "--format", "{{.Mountpoint}}", v)
	return strings.TrimSpace(out), err
}

// config writes the server's fireops config with dest as its destination.
func (s *recoveryServer) config(b *bench, dest string) (string, error) {
	q := func(v string) string { j, _ := json.Marshal(v); return string(j) }
	uriFile := filepath.Join(b.keysDir, "mongo-uri")
	if err := os.WriteFile(uriFile, []byte(testenv.Env(testenv.EnvMongoURI)+"\n"), 0o600); err != nil {
		return "", err
	}
	var sb strings.Builder
	sb.WriteString(b.cfgHead)
	fmt.Fprintf(&sb, "destinations:\n  - name: webdav\n    remote: %s\n\n", q(dest))
	fmt.Fprintf(&sb, "state_dir: %s\n\nsources:\n", q(filepath.Join(b.work, "state-recovery")))
	fmt.Fprintf(&sb, "  files:\n    - name: ml\n      paths: [%s]\n", q(b.data))
	fmt.Fprintf(&sb, "  sqlite:\n    - name: hub\n      path: %s\n", q(s.sqlite))
	fmt.Fprintf(&sb, "  volumes:\n    include: [%s]\n", q(s.prefix+"-vol-*"))
	fmt.Fprintf(&sb, "  mongo:\n    uri_file: %s\n    databases: [%s]\n", q(uriFile), q(s.mongoDB))
	p := filepath.Join(b.keysDir, "fireops-recovery.yaml")
	return p, os.WriteFile(p, []byte(sb.String()), 0o600)
}

// destroy removes every part of the server: the volumes, the MongoDB
// database, the dataset and the SQLite file.
func (s *recoveryServer) destroy(b *bench) error {
	for _, v := range s.volumes {
		if _, err := output(b.ctx, nil, "docker", "volume", "rm", v); err != nil {
			return err
		}
	}
	if err := s.mc.Database(s.mongoDB).Drop(b.ctx); err != nil {
		return fmt.Errorf("dropping MongoDB %s: %w", s.mongoDB, err)
	}
	for _, p := range []string{b.data, s.sqlite} {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}

// check compares what the restore put back with what the server held.
func (s *recoveryServer) check(b *bench) ([]string, error) {
	var out []string
	n, files, err := treeSize(b.data)
	if err != nil {
		return nil, fmt.Errorf("files part not restored: %w", err)
	}
	if n != b.stats.bytes || files != b.stats.files {
		return nil, fmt.Errorf("files: restored %d files, %s; the dataset has %d files, %s", files, fmtBytes(n), b.stats.files, fmtBytes(b.stats.bytes))
	}
	out = append(out, fmt.Sprintf("files: %d files, %s", files, fmtBytes(n)))

	db, err := sql.Open("sqlite", "file:"+s.sqlite+"?mode=ro")
	if err != nil {
		return nil, err
	}
	var rows int
	err = db.QueryRowContext(b.ctx, "SELECT count(*) FROM users").Scan(&rows)
	db.Close()
	if err != nil || rows != recoverySQLRows {
		return nil, fmt.Errorf("sqlite: %d rows restored (%v), want %d", rows, err, recoverySQLRows)
	}
	out = append(out, fmt.Sprintf("sqlite: %d rows", rows))

	docs, err := s.mc.Database(s.mongoDB).Collection("runs").CountDocuments(b.ctx, bson.D{})
	if err != nil || docs != recoveryMongoDocs {
		return nil, fmt.Errorf("mongo: %d documents restored (%v), want %d", docs, err, recoveryMongoDocs)
	}
	out = append(out, fmt.Sprintf("mongo: %d documents", docs))

	for _, v := range s.volumes {
		mp, err := volumeMountpoint(b.ctx, v)
		if err != nil {
			return nil, fmt.Errorf("volume %s not restored: %w", v, err)
		}
		n, files, err := treeSize(mp)
		if err != nil {
			return nil, err
		}
		if want := s.volSize[v]; n != want[0] || int64(files) != want[1] {
			return nil, fmt.Errorf("volume %s: restored %d files, %s; it had %d files, %s", v, files, fmtBytes(n), want[1], fmtBytes(want[0]))
		}
		out = append(out, fmt.Sprintf("volume %s: %d files, %s", v, files, fmtBytes(n)))
	}
	return out, nil
}

// cleanup removes the volumes and the MongoDB database, whatever happened.
func (s *recoveryServer) cleanup(b *bench) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(b.ctx), time.Minute)
	defer cancel()
	var errs []error
	for _, v := range s.volumes {
		if _, err := output(ctx, nil, "docker", "volume", "rm", "-f", v); err != nil {
			errs = append(errs, err)
		}
	}
	if s.mc != nil {
		if err := s.mc.Database(s.mongoDB).Drop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("dropping MongoDB %s: %w", s.mongoDB, err))
		}
		s.mc.Disconnect(ctx)
	}
	return errors.Join(errs...)
}

// reportRecovery prints the recovery benchmark's table.
func (b *bench) reportRecovery(w io.Writer, r *recoveryResult) {
	fmt.Fprintf(w, "\n### Whole-server recovery (-recovery)\n\n")
	fmt.Fprintf(w, "- server: the dataset (files part), a SQLite database (%d rows), a MongoDB database in FerretDB (%d documents), %d Docker volumes; %d parts\n",
		recoverySQLRows, recoveryMongoDocs, recoveryVolumes, r.parts)
	fmt.Fprintf(w, "- `fireops snapshot` to a fresh WebDAV destination (in-process server on 127.0.0.1, rclone webdav backend); everything destroyed; `fireops restore latest --all --yes --force`\n")
	fmt.Fprintf(w, "- checked after the restore: %s\n\n", strings.Join(r.checks, "; "))
	fmt.Fprintf(w, "| snapshot | restore | restore/snapshot | data | stored | on WebDAV |\n")
	fmt.Fprintf(w, "|---:|---:|---:|---:|---:|---:|\n")
	ratio := 0.0
	if r.snapshot.wall > 0 {
		ratio = r.restore.wall.Seconds() / r.snapshot.wall.Seconds()
	}
	fmt.Fprintf(w, "| %s | %s | %.2fx | %s | %s | %s |\n", fmtDur(r.snapshot.wall), fmtDur(r.restore.wall), ratio, fmtBytes(r.size), fmtBytes(r.stored), fmtBytes(r.dest))
}
