package files

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/firetech/fireops/pkg/leftover"
	"github.com/firetech/fireops/pkg/source"
	"github.com/firetech/fireops/pkg/swap"
	"github.com/firetech/fireops/pkg/tarsafe"
)

// ErrNotEmpty is wrapped by the error for a restore into a non-empty
// folder without force.
var ErrNotEmpty = errors.New("target folder is not empty")

// Restorer writes a files part (or any tar stream) into a folder through
// a staging folder next to it.
//
// Stage creates the staging folder in dir's parent (created if missing),
// named ".fireops-staging-<run tag>-*", mode 0700, so that it is on the
// same filesystem and Commit is a rename; it extracts with
// [tarsafe.Extract]. The staging folders that killed restores left in
// that parent are removed first, each logged (pkg/leftover). The staging
// folder stays 0700 until Commit gives it the archive's root metadata.
// A dir that exists and is not empty is refused, before anything is
// extracted, unless force is set; the check is repeated by Commit.
//
// Commit with force over an existing dir swaps the staging folder in with
// pkg/swap: dir is renamed aside to "<dir>.fireops-old" (or
// "<dir>.fireops-old-<UTC time>" when that is taken), the staging folder
// to dir, and then the old copy is removed. If the second rename fails
// the old copy is renamed back; if fireops dies between the two renames,
// the old copy is still whole under its .fireops-old name. Before the
// renames Commit flushes the filesystem (syncfs), after them the folders
// they changed.
type Restorer struct {
	dir    string
	force  bool
	prefix string
	log    *slog.Logger
}

// stagingPrefix starts the name of a staging folder.
const stagingPrefix = ".fireops-staging-"

// SetLogger sets the logger that reports leftovers removed (nil: none).
func (r *Restorer) SetLogger(log *slog.Logger) { r.log = log }

var _ source.Restorer = (*Restorer)(nil)

// RestoreOption tunes a Restorer.
type RestoreOption func(*Restorer)

// Subtree restores only the entries under the archive folder prefix (for
// example "opt/firetech/config"), with prefix removed from their names, so
// that a configured path can be restored into a folder of its own.
func Subtree(prefix string) RestoreOption {
	return func(r *Restorer) { r.prefix = strings.Trim(filepath.ToSlash(prefix), "/") }
}

// NewRestorer returns a Restorer writing into dir (made absolute). Without
// force, a dir that exists and is not empty is refused.
func NewRestorer(dir string, force bool, opts ...RestoreOption) (*Restorer, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("files: restore target %s: %w", dir, err)
	}
	if abs == "/" {
		return nil, errors.New("files: restore target / cannot be replaced; restore into a folder (--to)")
	}
	r := &Restorer{dir: abs, force: force}
	for _, o := range opts {
		o(r)
	}
	return r, nil
}

// checkTarget returns whether dir exists, and an error if it is not a
// folder, or is not empty and force is off.
func (r *Restorer) checkTarget() (exists bool, err error) {
	fi, err := os.Lstat(r.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("files: restore target: %w", err)
	}
	if !fi.IsDir() {
		return true, fmt.Errorf("files: restore target %s exists and is not a folder", r.dir)
	}
	if r.force {
		return true, nil
	}
	d, err := os.Open(r.dir)
	if err != nil {
		return true, fmt.Errorf("files: restore target: %w", err)
	}
	defer d.Close()
	if _, err := d.Readdirnames(1); err == io.EOF {
		return true, nil
	} else if err != nil {
		return true, fmt.Errorf("files: restore target %s: %w", r.dir, err)
	}
	return true, fmt.Errorf("files: restore target %s: %w (use --force to replace it)", r.dir, ErrNotEmpty)
}

// Stage extracts the tar stream r into a new staging folder. On error the
// staging folder is removed and the target is untouched.
func (r *Restorer) Stage(ctx context.Context, tr io.Reader) (source.Staged, error) {
	if _, err := r.checkTarget(); err != nil {
		return nil, err
	}
	parent := filepath.Dir(r.dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("files: create %s: %w", parent, err)
	}
	if _, err := leftover.Clean(parent, stagingPrefix, r.log); err != nil && r.log != nil {
		r.log.Warn("leftover staging folders not removed", "target", r.dir, "err", err)
	}
	staging, err := os.MkdirTemp(parent, leftover.Pattern(stagingPrefix))
	if err != nil {
		return nil, fmt.Errorf("files: create staging folder in %s: %w", parent, err)
	}
	opts := tarsafe.Options{}
	if r.prefix != "" {
		prefix := r.prefix
		opts.Map = func(name string) (string, bool) {
			if name == prefix {
				return ".", true
			}
			rest, ok := strings.CutPrefix(name, prefix+"/")
			return rest, ok
		}
	}
	xs, err := tarsafe.Extract(ctx, tr, staging, opts)
	if err != nil {
		os.RemoveAll(staging)
		return nil, fmt.Errorf("files: restore into %s: %w", r.dir, err)
	}
	return &staged{r: r, staging: staging, x: xs}, nil
}

type staged struct {
	r       *Restorer
	staging string
	x       tarsafe.Stats
	done    bool
}

// Stats reports the entries read, and in Details the counts by type, with
// the same keys as Source.WriteTar's.
func (s *staged) Stats() source.Stats {
	return source.Stats{
		Entries: s.x.Entries,
		Details: map[string]string{
			"files":     strconv.FormatInt(s.x.Files, 10),
			"dirs":      strconv.FormatInt(s.x.Dirs, 10),
			"symlinks":  strconv.FormatInt(s.x.Symlinks, 10),
			"hardlinks": strconv.FormatInt(s.x.Links, 10),
			"bytes":     strconv.FormatInt(s.x.Bytes, 10),
			"skipped":   strconv.FormatInt(s.x.Skipped, 10),
			// Files whose setuid, setgid or sticky bit was not restored
			// (tarsafe never applies them).
			"setid_dropped": strconv.FormatInt(s.x.SetIDDropped, 10),
		},
	}
}

// Commit moves the staged folder into place (see Restorer).
func (s *staged) Commit(ctx context.Context) error {
	if s.done {
		return errors.New("files: restore already committed or aborted")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := s.r.dir
	exists, err := s.r.checkTarget()
	if err != nil {
		return err
	}
	// The staging folder is 0700 until now: give it the archive's root
	// metadata, or, when the archive has none, the replaced folder's (or
	// 0755).
	if err := tarsafe.ApplyRoot(s.staging, s.x); err != nil {
		return fmt.Errorf("files: %w", err)
	}
	if !s.x.Root {
		// The replaced folder's owner and mode (no setuid), not its
		// times; its ids are this host's, so only EPERM is left.
		m := tarsafe.Meta{Mode: 0o755, UID: -1, GID: -1}
		if fi, err := os.Stat(dir); err == nil && exists {
			m, _ = tarsafe.MetaOf(fi)
			m.Mode &^= fs.ModeSetuid
		}
		o := tarsafe.MetaOptions{Times: tarsafe.TimesNone, IgnoreChown: []error{syscall.EPERM}}
		if err := tarsafe.ApplyMeta(unix.AT_FDCWD, s.staging, m, o); err != nil {
			return fmt.Errorf("files: %w", err)
		}
	}
	if err := tarsafe.SyncFS(s.staging); err != nil {
		return fmt.Errorf("files: %w", err)
	}
	sw := swap.New(swap.Options{})
	if err := sw.Put(s.staging, dir); err != nil {
		if uerr := sw.Undo(); uerr != nil {
			return fmt.Errorf("files: %w; and putting back the old copy failed: %w", err, uerr)
		}
		return fmt.Errorf("files: %w", err)
	}
	s.done = true
	if err := sw.Sync(); err != nil {
		return fmt.Errorf("files: %w", err)
	}
	for _, a := range sw.Asides() {
		if err := os.RemoveAll(a.Old); err != nil {
			return fmt.Errorf("files: restored %s, but removing the old copy %s failed: %w", dir, a.Old, err)
		}
	}
	return nil
}

// Abort removes the staging folder; after Commit it does nothing.
func (s *staged) Abort() error {
	if s.done {
		return nil
	}
	s.done = true
	if err := os.RemoveAll(s.staging); err != nil {
		return fmt.Errorf("files: remove staging folder %s: %w", s.staging, err)
	}
	return nil
}
