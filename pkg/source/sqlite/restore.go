package sqlite

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"syscall"

	"github.com/firetech/fireops/pkg/leftover"
	"github.com/firetech/fireops/pkg/source"
	"github.com/firetech/fireops/pkg/tarsafe"
)

// ErrInUse is wrapped by Commit's error when another process still has the
// old database open.
var ErrInUse = errors.New("database is in use")

// sidecars are the files SQLite keeps next to a database.
var sidecars = []string{"-wal", "-shm", "-journal"}

// Restorer puts a sqlite part back as the database file target.
//
// Stage reads the part's single tar entry into a temp file
// ".<target name>.fireops-restore-<run tag>-*" (0600) in target's folder
// (created if missing) and runs integrity_check on it; the live database
// is not touched. It first removes the temp files that killed restores of
// the same target left there (pkg/leftover), logging each. Commit gives the file the archived mode and owner (owner only
// as root), fsyncs it, retires the old database's -wal, -shm and -journal
// files, renames the file over target and fsyncs the folder.
//
// Retiring the sidecars: when the old database is in WAL mode, Commit
// opens it and runs `PRAGMA wal_checkpoint(TRUNCATE)`, so the old
// database stays whole if the rename then fails; when its -wal is still
// there after Commit closed it, another process holds the database open
// and Commit fails with ErrInUse before changing anything. The remaining
// sidecar files are then removed. A hot -journal of a rollback-mode
// database is rolled back by that open.
type Restorer struct {
	target string
	opts   options
	log    *slog.Logger
}

// SetLogger sets the logger that reports leftovers removed (nil: none).
func (r *Restorer) SetLogger(log *slog.Logger) { r.log = log }

var _ source.Restorer = (*Restorer)(nil)

// NewRestorer returns a Restorer for the database file target. Of the
// options only WithBusyTimeout applies.
func NewRestorer(target string, opts ...Option) (*Restorer, error) {
	abs, err := filepath.Abs(target)
	if err != nil {
		return nil, fmt.Errorf("sqlite: restore target %s: %w", target, err)
	}
	return &Restorer{target: abs, opts: newOptions(opts)}, nil
}

// Stage stages and checks the database; on error nothing is left behind.
func (r *Restorer) Stage(ctx context.Context, in io.Reader) (source.Staged, error) {
	if fi, err := os.Stat(r.target); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("sqlite: restore target %s is not a regular file", r.target)
	}
	dir := filepath.Dir(r.target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("sqlite: create %s: %w", dir, err)
	}
	prefix := "." + filepath.Base(r.target) + ".fireops-restore-"
	if _, err := leftover.Clean(dir, prefix, r.log); err != nil && r.log != nil {
		r.log.Warn("leftover staging files not removed", "target", r.target, "err", err)
	}
	f, err := os.CreateTemp(dir, leftover.Pattern(prefix))
	if err != nil {
		return nil, fmt.Errorf("sqlite: staging file in %s: %w", dir, err)
	}
	s := &staged{r: r, tmp: f.Name()}
	fail := func(err error) (source.Staged, error) {
		f.Close()
		os.Remove(s.tmp)
		return nil, fmt.Errorf("sqlite: restore %s: %w", r.target, err)
	}

	tr := tar.NewReader(tarsafe.ContextReader(ctx, in))
	hdr, err := tr.Next()
	if err == io.EOF {
		return fail(errors.New("the archive is empty"))
	}
	if err != nil {
		return fail(fmt.Errorf("read archive: %w", err))
	}
	if _, err := tarsafe.CleanName(hdr.Name); err != nil {
		return fail(err)
	}
	if hdr.Typeflag != tar.TypeReg { // tar.Reader turns the legacy TypeRegA into TypeReg or TypeDir
		return fail(fmt.Errorf("entry %q is not a regular file", hdr.Name))
	}
	buf := make([]byte, copyBufferSize)
	if _, err := io.CopyBuffer(struct{ io.Writer }{f}, tr, buf); err != nil {
		return fail(fmt.Errorf("copy entry %q to %s: %w", hdr.Name, s.tmp, err))
	}
	if err := f.Close(); err != nil {
		return fail(fmt.Errorf("write %s: %w", s.tmp, err))
	}
	if next, err := tr.Next(); err == nil {
		return fail(fmt.Errorf("unexpected second entry %q: a sqlite part holds one file", next.Name))
	} else if err != io.EOF {
		return fail(fmt.Errorf("read archive: %w", err))
	}
	if _, err := io.CopyBuffer(io.Discard, in, buf); err != nil {
		return fail(fmt.Errorf("read archive: %w", err))
	}
	st, err := inspect(ctx, s.tmp)
	if err != nil {
		return fail(fmt.Errorf("staged copy of %q: %w", hdr.Name, err))
	}
	st.Entries = 1
	s.st, s.hdr = st, hdr
	return s, nil
}

type staged struct {
	r    *Restorer
	tmp  string
	hdr  *tar.Header
	st   source.Stats
	done bool
}

// Stats reports the staged database's facts (Entries 1, Documents, and
// integrity_check, page_count, page_size, bytes, tables, rows.<table>).
func (s *staged) Stats() source.Stats { return s.st }

// Commit replaces the target (see Restorer).
func (s *staged) Commit(ctx context.Context) error {
	if s.done {
		return errors.New("sqlite: restore already committed or aborted")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	target := s.r.target
	f, err := os.OpenFile(s.tmp, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("sqlite: staged file: %w", err)
	}
	defer f.Close()
	if err := f.Chown(s.hdr.Uid, s.hdr.Gid); err != nil && !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("sqlite: chown %s: %w", s.tmp, err)
	}
	if err := f.Chmod(s.hdr.FileInfo().Mode().Perm()); err != nil {
		return fmt.Errorf("sqlite: chmod %s: %w", s.tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sqlite: sync %s: %w", s.tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sqlite: close %s: %w", s.tmp, err)
	}
	if !s.hdr.ModTime.IsZero() {
		if err := os.Chtimes(s.tmp, s.hdr.ModTime, s.hdr.ModTime); err != nil {
			return fmt.Errorf("sqlite: set times of %s: %w", s.tmp, err)
		}
	}
	if err := s.retireOld(ctx); err != nil {
		return err
	}
	if err := os.Rename(s.tmp, target); err != nil {
		return fmt.Errorf("sqlite: move %s to %s: %w", s.tmp, target, err)
	}
	s.done = true
	d, err := os.Open(filepath.Dir(target))
	if err != nil {
		return fmt.Errorf("sqlite: sync %s: %w", filepath.Dir(target), err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sqlite: sync %s: %w", filepath.Dir(target), err)
	}
	return nil
}

// retireOld checkpoints the old database, checks that no one else has it
// open, and removes its sidecar files.
func (s *staged) retireOld(ctx context.Context) error {
	target := s.r.target
	if _, err := os.Stat(target); err == nil {
		if err := checkpoint(ctx, target, s.r.opts); err != nil {
			return err
		}
	}
	for _, suf := range sidecars {
		if err := os.Remove(target + suf); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sqlite: remove %s of the old database: %w", target+suf, err)
		}
	}
	return nil
}

// checkpoint folds the old database's WAL into it and reports ErrInUse
// when its -wal outlives our connection (someone else has it open). An old
// database SQLite cannot open (corrupt, not a database) is left as it is:
// it is being replaced.
func checkpoint(ctx context.Context, target string, o options) error {
	db, err := open(target, url.Values{
		"mode":    {"rw"},
		"_pragma": {fmt.Sprintf("busy_timeout(%d)", o.busy.Milliseconds())},
	})
	if err != nil {
		return nil
	}
	defer db.Close()
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		if isBusy(err) {
			// Locked by a writer past the busy timeout: in use, and its
			// -journal must not be removed under it.
			return fmt.Errorf("sqlite: %s: %w (locked by another program: %v); stop the hub before restoring", target, ErrInUse, err)
		}
		return nil // unreadable old database
	}
	if mode != "wal" {
		return db.Close()
	}
	var busy, logFrames, done int
	if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &done); err != nil {
		return fmt.Errorf("sqlite: checkpoint the old database %s: %w", target, err)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("sqlite: close the old database %s: %w", target, err)
	}
	if busy != 0 {
		return fmt.Errorf("sqlite: %s: %w (a checkpoint was blocked); stop the hub before restoring", target, ErrInUse)
	}
	if _, err := os.Stat(target + "-wal"); err == nil {
		return fmt.Errorf("sqlite: %s: %w (its -wal stays open after fireops closed it); stop the hub before restoring", target, ErrInUse)
	}
	return nil
}

// isBusy reports whether err is SQLite's SQLITE_BUSY or SQLITE_LOCKED
// (extended codes included).
func isBusy(err error) bool {
	var coded interface{ Code() int }
	if errors.As(err, &coded) {
		switch coded.Code() & 0xff {
		case 5, 6: // SQLITE_BUSY, SQLITE_LOCKED
			return true
		}
	}
	return false
}

// Abort removes the staged file; after Commit it does nothing.
func (s *staged) Abort() error {
	if s.done {
		return nil
	}
	s.done = true
	if err := os.Remove(s.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sqlite: remove staged file %s: %w", s.tmp, err)
	}
	return nil
}
