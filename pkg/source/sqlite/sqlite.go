// Package sqlite is the "sqlite" source kind: a consistent copy of a live
// SQLite database (the hub's) as a one-entry tar stream, and the restorer
// that puts such a copy back in place atomically.
//
// # Backup
//
// The copy is made by SQLite itself with `VACUUM INTO` (through the pure
// Go driver modernc.org/sqlite), never by copying the file: VACUUM INTO
// reads the database inside one read transaction, so the copy is a
// consistent state even while writers are active, and it includes what is
// still in a WAL file. The source is opened read-write but never created
// (mode=rw), like any client of the database: a read-only connection to a
// WAL database creates -wal and -shm files it then cannot remove, while a
// read-write one that is the last to close checkpoints and removes them,
// leaving the folder as it found it; it also rolls back a hot journal left
// by a crashed writer. (SQLite gives sidecar files it creates as root the
// database file's owner.) A busy timeout makes the copy wait for a writer
// holding a lock briefly (rollback-journal mode; in WAL mode readers and
// writers do not block each other).
//
// The copy lives in a private temp folder (0700, under [WithTempDir], by
// default os.TempDir) that is always removed, on error and cancellation
// too. Its name carries the run's tag (pkg/leftover), so that the copy a
// killed run left (SIGKILL, power loss) is removed by the next copy into
// the same folder, and by [CleanLeftovers] (fireops rotate). `PRAGMA integrity_check` on the copy must return exactly "ok", or
// the part fails. The tar holds one entry, "<name>.sqlite", with the
// source file's mode, owner and modification time and the copy's bytes.
//
// # Restore
//
// [Restorer] stages the entry in a temp file (0600) in the target's folder,
// checks it with integrity_check, and Commit renames it over the target,
// which is atomic. Before the rename it retires the old database's
// sidecar files: a -wal left from the old database would otherwise be
// replayed into the new one and corrupt it. Stop the hub before a
// restore: Commit refuses when it can tell that another process still
// has the old database open (WAL mode), but cannot tell in
// rollback-journal mode.
package sqlite

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/leftover"
	"github.com/firetech/fireops/pkg/source"
	"github.com/firetech/fireops/pkg/tarsafe"
)

// Kind is the part kind of this package's sources.
const Kind = "sqlite"

// DefaultBusyTimeout is how long opening and copying wait for a lock held
// by a writer.
const DefaultBusyTimeout = 30 * time.Second

// copyBufferSize is the one buffer file contents are copied through.
const copyBufferSize = 256 << 10

// ErrIntegrity is wrapped by the error for a copy whose integrity_check
// is not "ok".
var ErrIntegrity = errors.New("integrity_check failed")

// Option tunes a Source or a Restorer.
type Option func(*options)

type options struct {
	tempDir string
	busy    time.Duration
}

// WithTempDir sets the folder in which the Source makes its private temp
// folder for the copy (default os.TempDir()). Pick one on a disk with room
// for the database, not a small tmpfs.
func WithTempDir(dir string) Option { return func(o *options) { o.tempDir = dir } }

// WithBusyTimeout sets how long to wait for a database lock (default
// DefaultBusyTimeout).
func WithBusyTimeout(d time.Duration) Option { return func(o *options) { o.busy = d } }

func newOptions(opts []Option) options {
	o := options{busy: DefaultBusyTimeout}
	for _, f := range opts {
		f(&o)
	}
	if o.tempDir == "" {
		o.tempDir = os.TempDir()
	}
	return o
}

// copyPrefix starts the name of the private folder of a copy.
const copyPrefix = "fireops-sqlite-"

// CleanLeftovers removes the copies that killed runs left in dir (the
// folder given to WithTempDir: state_dir for fireops), logging each, and
// never one a live run is making (see pkg/leftover).
func CleanLeftovers(dir string, log *slog.Logger) ([]string, error) {
	return leftover.Clean(dir, copyPrefix, log)
}

// Source makes the consistent copy of one database.
type Source struct {
	name string
	path string
	opts options
	prep *prepared // the copy Fingerprint made, until WriteTar or Close
	log  *slog.Logger
}

// SetLogger sets the logger that reports leftovers removed (nil: none).
func (s *Source) SetLogger(log *slog.Logger) { s.log = log }

var _ source.Source = (*Source)(nil)

// New checks cfg and returns its Source. cfg.Path must be set (a database
// in a volume is resolved to its host path by the caller); the name must
// be usable as a file name.
func New(cfg config.SQLiteSource, opts ...Option) (*Source, error) {
	if err := checkName(cfg.Name); err != nil {
		return nil, err
	}
	if cfg.Path == "" {
		return nil, fmt.Errorf("sqlite:%s: no host path for the database", cfg.Name)
	}
	p, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("sqlite:%s: %s: %w", cfg.Name, cfg.Path, err)
	}
	return &Source{name: cfg.Name, path: p, opts: newOptions(opts)}, nil
}

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("sqlite: invalid source name %q", name)
	}
	return nil
}

// Kind returns "sqlite".
func (s *Source) Kind() string { return Kind }

// Name returns the config's name of the source.
func (s *Source) Name() string { return s.name }

// Path returns the database file's host path.
func (s *Source) Path() string { return s.path }

// EntryName returns the name of the archive's single entry.
func (s *Source) EntryName() string { return s.name + ".sqlite" }

// prepared is a consistent, checked copy waiting to be archived.
type prepared struct {
	dir  string      // private temp folder holding the copy
	copy string      // the copy's path
	hdr  *tar.Header // the archive entry's header
	st   source.Stats
}

// prepare makes the consistent copy with VACUUM INTO in a private temp
// folder and checks it with integrity_check. The caller removes p.dir.
func (s *Source) prepare(ctx context.Context) (*prepared, error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		return nil, fmt.Errorf("sqlite:%s: %w", s.name, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("sqlite:%s: %s is not a regular file", s.name, s.path)
	}
	// A copy a killed run left holds the database in plaintext: it goes
	// first (a failure to remove it does not stop this copy).
	if _, err := CleanLeftovers(s.opts.tempDir, s.log); err != nil && s.log != nil {
		s.log.Warn("leftover copies not removed", "source", source.ID(s), "err", err)
	}
	tmp, err := os.MkdirTemp(s.opts.tempDir, leftover.Pattern(copyPrefix))
	if err != nil {
		return nil, fmt.Errorf("sqlite:%s: temp folder for the copy: %w", s.name, err)
	}
	p := &prepared{dir: tmp, copy: filepath.Join(tmp, "copy.sqlite")}
	err = func() error {
		mode, err := vacuumInto(ctx, s.path, p.copy, s.opts.busy)
		if err != nil {
			return fmt.Errorf("sqlite:%s: copy %s: %w", s.name, s.path, err)
		}
		st, err := inspect(ctx, p.copy)
		if err != nil {
			return fmt.Errorf("sqlite:%s: copy of %s: %w", s.name, s.path, err)
		}
		st.Details["source_path"] = s.path
		st.Details["journal_mode"] = mode
		p.st = st
		cfi, err := os.Stat(p.copy)
		if err != nil {
			return fmt.Errorf("sqlite:%s: %w", s.name, err)
		}
		hdr, err := tar.FileInfoHeader(fi, "") // the source file's mode, owner, mtime
		if err != nil {
			return fmt.Errorf("sqlite:%s: %s: %w", s.name, s.path, err)
		}
		hdr.Name = s.EntryName()
		hdr.Size = cfi.Size()
		hdr.Format = tar.FormatPAX
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		p.hdr = hdr
		return nil
	}()
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return p, nil
}

// Fingerprint makes the consistent copy (kept for WriteTar) and returns
// the SHA-256 of its archive entry's header fields and content. VACUUM
// INTO writes the same bytes for the same content, so an unchanged
// database gives the same fingerprint and its part is reused; file times
// alone would say little (WAL checkpoints rewrite the file). Call Close
// when WriteTar is not called.
func (s *Source) Fingerprint(ctx context.Context) (string, error) {
	s.Close()
	p, err := s.prepare(ctx)
	if err != nil {
		return "", err
	}
	s.prep = p
	f, err := os.Open(p.copy)
	if err != nil {
		s.Close()
		return "", fmt.Errorf("sqlite:%s: %w", s.name, err)
	}
	defer f.Close()
	h := sha256.New()
	fmt.Fprintf(h, "fireops sqlite fingerprint v1\x00%q %o %d %d %d %d\x00",
		p.hdr.Name, p.hdr.Mode, p.hdr.Uid, p.hdr.Gid, p.hdr.ModTime.UnixNano(), p.hdr.Size)
	if _, err := io.CopyBuffer(h, tarsafe.ContextReader(ctx, f), make([]byte, copyBufferSize)); err != nil {
		s.Close()
		return "", fmt.Errorf("sqlite:%s: hash the copy: %w", s.name, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// Close removes a copy that Fingerprint made and WriteTar did not use.
func (s *Source) Close() error {
	if s.prep != nil {
		err := os.RemoveAll(s.prep.dir)
		s.prep = nil
		return err
	}
	return nil
}

// WriteTar writes the consistent copy (the one Fingerprint made, or a new
// one) as the archive's one entry, then removes it. Stats: Entries 1,
// Documents the total row count of the ordinary tables, Details
// integrity_check, page_count, page_size, bytes, tables, rows.<table>,
// journal_mode (of the source; the copy keeps it) and source_path.
func (s *Source) WriteTar(ctx context.Context, w io.Writer) (source.Stats, error) {
	p := s.prep
	if p == nil {
		var err error
		if p, err = s.prepare(ctx); err != nil {
			return source.Stats{}, err
		}
		s.prep = p
	}
	defer s.Close()
	st, hdr := p.st, p.hdr
	f, err := os.Open(p.copy)
	if err != nil {
		return st, fmt.Errorf("sqlite:%s: %w", s.name, err)
	}
	defer f.Close()
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(hdr); err != nil {
		return st, fmt.Errorf("sqlite:%s: %w", s.name, err)
	}
	n, err := io.CopyBuffer(tw, tarsafe.ContextReader(ctx, f), make([]byte, copyBufferSize))
	if err != nil {
		return st, fmt.Errorf("sqlite:%s: write copy of %s: %w", s.name, s.path, err)
	}
	if n != hdr.Size {
		return st, fmt.Errorf("sqlite:%s: copy of %s: read %d of %d bytes", s.name, s.path, n, hdr.Size)
	}
	if err := tw.Close(); err != nil {
		return st, fmt.Errorf("sqlite:%s: finish archive: %w", s.name, err)
	}
	st.Entries = 1
	return st, nil
}

// dsn builds a file: URI for path with the given query.
func dsn(path string, query url.Values) string {
	return (&url.URL{Scheme: "file", Path: path, RawQuery: query.Encode()}).String()
}

func open(path string, query url.Values) (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn(path, query))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// vacuumInto writes a consistent copy of src to dst and returns src's
// journal mode. VACUUM INTO writes a rollback-journal database; when src
// is in WAL mode the copy is switched to WAL too (a header change), so a
// restore gives the database back as it was.
func vacuumInto(ctx context.Context, src, dst string, busy time.Duration) (string, error) {
	db, err := open(src, url.Values{
		"mode":    {"rw"},
		"_pragma": {fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds())},
	})
	if err != nil {
		return "", err
	}
	defer db.Close()
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return "", err
	}
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", dst); err != nil {
		return "", err
	}
	if err := db.Close(); err != nil {
		return "", err
	}
	if mode != "wal" {
		return mode, nil
	}
	c, err := open(dst, url.Values{"mode": {"rw"}})
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, "PRAGMA journal_mode = WAL"); err != nil {
		return "", fmt.Errorf("set the copy to WAL mode: %w", err)
	}
	return mode, c.Close()
}

// inspect runs integrity_check on the database file at path (opened
// immutable: nothing is written next to it) and returns its stats with
// Documents and Details filled. A result other than "ok" is an error
// wrapping ErrIntegrity.
func inspect(ctx context.Context, path string) (source.Stats, error) {
	db, err := open(path, url.Values{"mode": {"ro"}, "immutable": {"1"}})
	if err != nil {
		return source.Stats{}, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return source.Stats{}, fmt.Errorf("%w: %w", ErrIntegrity, err)
	}
	var msgs []string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			rows.Close()
			return source.Stats{}, fmt.Errorf("%w: %w", ErrIntegrity, err)
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return source.Stats{}, fmt.Errorf("%w: %w", ErrIntegrity, err)
	}
	rows.Close()
	if len(msgs) != 1 || msgs[0] != "ok" {
		if len(msgs) > 5 {
			msgs = append(msgs[:5], fmt.Sprintf("(%d more)", len(msgs)-5))
		}
		return source.Stats{}, fmt.Errorf("%w: %s", ErrIntegrity, strings.ReplaceAll(strings.Join(msgs, "; "), "\n", "; "))
	}
	st := source.Stats{Details: map[string]string{"integrity_check": "ok"}}
	var pageCount, pageSize int64
	if err := db.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pageCount); err != nil {
		return st, err
	}
	if err := db.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		return st, err
	}
	st.Details["page_count"] = strconv.FormatInt(pageCount, 10)
	st.Details["page_size"] = strconv.FormatInt(pageSize, 10)
	st.Details["bytes"] = strconv.FormatInt(pageCount*pageSize, 10)

	// Row counts of the ordinary tables (virtual tables may need modules).
	trows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_schema
		WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\'
		AND sql NOT LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name`)
	if err != nil {
		return st, err
	}
	var tables []string
	for trows.Next() {
		var n string
		if err := trows.Scan(&n); err != nil {
			trows.Close()
			return st, err
		}
		tables = append(tables, n)
	}
	if err := trows.Err(); err != nil {
		return st, err
	}
	trows.Close()
	for _, t := range tables {
		var n int64
		q := `SELECT count(*) FROM "` + strings.ReplaceAll(t, `"`, `""`) + `"`
		if err := db.QueryRowContext(ctx, q).Scan(&n); err != nil {
			return st, fmt.Errorf("count rows of %s: %w", t, err)
		}
		st.Documents += n
		st.Details["rows."+t] = strconv.FormatInt(n, 10)
	}
	st.Details["tables"] = strconv.Itoa(len(tables))
	return st, db.Close()
}
