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
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/leftover"
	"github.com/firetech/fireops/pkg/source"
	"github.com/firetech/fireops/pkg/swap"
	"github.com/firetech/fireops/pkg/tarsafe"
)

// InPlace puts a files part back over the absolute paths it archived
// (restore --all): the caller (pkg/partkind) checks that each path is one
// the part archived, or lies inside one, and passes them cleaned, sorted
// and without paths inside others, as the archive has them.
//
// Stage extracts the whole archive in one pass into a private staging
// folder (mode 0700, ".fireops-staging-<run tag>-*") created in the
// parent folder of the first path, so that it is on the same filesystem
// as the targets in the usual layout and a move is a rename; the staging
// and undo folders that killed restores left next to the paths are
// removed first (pkg/leftover). Only when the caller has checked the
// whole stream does Commit move each path into place with pkg/swap: an
// existing file or folder is renamed to PATH.fireops-old
// (PATH.fireops-old-<UTC time> when that name is taken), then the staged
// copy to PATH. With force the old copy is removed instead of kept. A
// path the archive does not have (it did not exist then) is left alone.
// Folders above a path that are missing are created and, at the end,
// given the owner, mode and modification time the archive has for them.
// A target on another filesystem than the staging folder is copied next
// to the target first (through a second staging folder there) and then
// renamed, so no target is ever half written. When moving one path
// fails, the paths already moved are put back as they were. Abort, and
// Commit when it is done, remove the staging folder; Abort also the
// folders it created above the paths.
type InPlace struct {
	paths []string
	force bool
	log   *slog.Logger
}

var _ source.Restorer = (*InPlace)(nil)

// undoPrefix starts the name of the folders older fireops versions took
// a restored copy back into when they undid an in-place restore; Stage
// still removes those a killed run left (they may hold plaintext).
const undoPrefix = ".fireops-undo-"

// NewInPlace returns an InPlace restorer over paths (see InPlace); with
// force the replaced copies are removed instead of kept.
func NewInPlace(paths []string, force bool) *InPlace {
	return &InPlace{paths: slices.Clone(paths), force: force}
}

// SetLogger sets the logger that reports leftovers removed (nil: none).
func (r *InPlace) SetLogger(log *slog.Logger) { r.log = log }

// cleanLeftovers removes, next to every path, the staging and undo
// folders that killed restores left (they may hold restored plaintext).
func (r *InPlace) cleanLeftovers() {
	seen := map[string]bool{}
	for _, p := range r.paths {
		dir := filepath.Dir(p)
		if seen[dir] {
			continue
		}
		seen[dir] = true
		for _, prefix := range []string{stagingPrefix, undoPrefix} {
			if _, err := leftover.Clean(dir, prefix, r.log); err != nil && r.log != nil {
				r.log.Warn("leftover staging folders not removed", "folder", dir, "err", err)
			}
		}
	}
}

// Stage extracts the whole archive into a private staging folder next to
// the first path.
func (r *InPlace) Stage(ctx context.Context, tr io.Reader) (source.Staged, error) {
	if len(r.paths) == 0 {
		return nil, errors.New("files: restore in place: no paths")
	}
	parent := filepath.Dir(r.paths[0])
	r.cleanLeftovers()
	created, err := mkdirMissing(parent)
	if err != nil {
		return nil, err
	}
	staging, err := os.MkdirTemp(parent, leftover.Pattern(stagingPrefix))
	if err != nil {
		removeCreated(created)
		return nil, fmt.Errorf("files: create a staging folder in %s: %w", parent, err)
	}
	xs, err := tarsafe.Extract(ctx, tr, staging, tarsafe.Options{})
	if err != nil {
		os.RemoveAll(staging)
		removeCreated(created)
		return nil, fmt.Errorf("files: restore %s: %w", strings.Join(r.paths, ", "), err)
	}
	s := &inPlaceStaged{r: r, staging: staging, x: xs}
	s.addCreated(created)
	return s, nil
}

type inPlaceStaged struct {
	r       *InPlace
	staging string
	x       tarsafe.Stats
	done    bool
	// created are the folders above the paths that this restore created
	// (they were missing), in the order created, with their staged
	// copies' metadata: Commit gives them the archive's owner, mode and
	// time; Abort removes them.
	created []folderMeta
	// copies are the staged copies made next to a target on another
	// filesystem (sameFilesystem); Abort removes those a failed Commit
	// put back.
	copies []string
}

// mkdirMissing creates dir and the folders above it that are missing
// (private, until Commit gives them the archive's metadata) and returns
// those it created, outermost first.
func mkdirMissing(dir string) ([]string, error) {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		_, err := os.Lstat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("files: %w", err)
		}
		missing = append(missing, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	slices.Reverse(missing)
	for i, d := range missing {
		if err := os.Mkdir(d, 0o700); err != nil {
			removeCreated(missing[:i])
			return nil, fmt.Errorf("files: create %s: %w", d, err)
		}
	}
	return missing, nil
}

// removeCreated removes folders created by mkdirMissing, innermost first,
// where they are still empty.
func removeCreated(created []string) {
	for i := len(created) - 1; i >= 0; i-- {
		os.Remove(created[i])
	}
}

// folderMeta is a folder this restore created and its staged copy's
// metadata (nil when the archive does not have it).
type folderMeta struct {
	path string
	fi   fs.FileInfo
}

// addCreated records folders mkdirMissing created, with the metadata of
// their staged copies read now: before anything is moved out of those
// copies, which changes their times.
func (s *inPlaceStaged) addCreated(created []string) {
	for _, d := range created {
		fi, err := os.Lstat(filepath.Join(s.staging, strings.TrimPrefix(d, "/")))
		if err != nil || !fi.IsDir() {
			fi = nil
		}
		s.created = append(s.created, folderMeta{path: d, fi: fi})
	}
}

func (s *inPlaceStaged) createdPaths() []string {
	out := make([]string, len(s.created))
	for i, m := range s.created {
		out[i] = m.path
	}
	return out
}

// applyMeta gives the created folders the owner, mode and modification
// time of their staged copies, innermost first (as tarsafe.Extract does:
// an owner that cannot be set is left); one the archive does not have
// gets the usual 0755. Each folder gets what can be set
// (tarsafe.MetaOptions.KeepGoing), and every failure is returned.
func applyMeta(created []folderMeta) error {
	var errs []error
	for i := len(created) - 1; i >= 0; i-- {
		m := created[i]
		meta := tarsafe.Meta{Mode: 0o755, UID: -1, GID: -1}
		o := tarsafe.MetaOptions{Times: tarsafe.TimesNone, KeepGoing: true}
		if m.fi != nil {
			meta, _ = tarsafe.MetaOf(m.fi)
			o.Times = tarsafe.TimesMtime
		}
		if err := tarsafe.ApplyMeta(unix.AT_FDCWD, m.path, meta, o); err != nil {
			errs = append(errs, fmt.Errorf("files: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Stats reports the entries read and, in Details, the files whose
// setuid, setgid or sticky bit was not restored.
func (s *inPlaceStaged) Stats() source.Stats {
	return source.Stats{Entries: s.x.Entries, Details: map[string]string{"setid_dropped": strconv.FormatInt(s.x.SetIDDropped, 10)}}
}

// Commit moves every path into place, keeping (or, with force, removing)
// what was there. A failure puts back what was moved.
func (s *inPlaceStaged) Commit(ctx context.Context) error {
	if s.done {
		return errors.New("files: restore already committed or aborted")
	}
	sw := swap.New(swap.Options{})
	undo := func(cause error) error {
		if err := sw.Undo(); err != nil {
			return fmt.Errorf("%w; undoing the paths already restored failed: %w", cause, err)
		}
		return cause
	}
	// The staged files reach the disk before any rename makes them live,
	// as Restorer does (one syncfs instead of an fsync per file).
	if err := tarsafe.SyncFS(s.staging); err != nil {
		return fmt.Errorf("files: %w", err)
	}
	for _, path := range s.r.paths {
		if err := ctx.Err(); err != nil {
			return undo(err)
		}
		staged := filepath.Join(s.staging, strings.TrimPrefix(path, "/"))
		if _, err := os.Lstat(staged); errors.Is(err, fs.ErrNotExist) {
			continue // not in the snapshot (the path did not exist then)
		} else if err != nil {
			return undo(fmt.Errorf("files: %w", err))
		}
		created, err := mkdirMissing(filepath.Dir(path))
		if err != nil {
			return undo(err)
		}
		s.addCreated(created)
		staged, err = s.sameFilesystem(ctx, staged, path)
		if err != nil {
			return undo(err)
		}
		if err := tarsafe.SyncFS(staged); err != nil { // a copy made on path's filesystem
			return undo(fmt.Errorf("files: %w", err))
		}
		if err := sw.Put(staged, path); err != nil {
			return undo(fmt.Errorf("files: %w", err))
		}
	}
	s.done = true
	var errs []error
	// Make the renames durable: fsync every folder they changed.
	if err := sw.Sync(); err != nil {
		errs = append(errs, fmt.Errorf("files: %w", err))
	}
	for _, a := range sw.Asides() {
		if s.r.force {
			if err := os.RemoveAll(a.Old); err != nil {
				errs = append(errs, fmt.Errorf("files: restored %s, but removing the old copy %s failed: %w", a.Live, a.Old, err))
			}
		}
	}
	if err := os.RemoveAll(s.staging); err != nil {
		errs = append(errs, fmt.Errorf("files: remove the staging folder %s: %w", s.staging, err))
	}
	// Last: every move and removal above changed their times.
	if err := applyMeta(s.created); err != nil {
		errs = append(errs, fmt.Errorf("restored, but the folders created above the paths did not get the archive's owner, mode or time: %w", err))
	}
	return errors.Join(errs...)
}

// sameFilesystem returns staged itself when it can be renamed to path;
// otherwise it copies it into a staging folder next to path (on path's
// filesystem), records the copy for Abort and returns it.
func (s *inPlaceStaged) sameFilesystem(ctx context.Context, staged, path string) (string, error) {
	var a, b syscall.Stat_t
	if err := syscall.Lstat(staged, &a); err != nil {
		return "", fmt.Errorf("files: %s: %w", staged, err)
	}
	if err := syscall.Stat(filepath.Dir(path), &b); err != nil {
		return "", fmt.Errorf("files: %s: %w", filepath.Dir(path), err)
	}
	if a.Dev == b.Dev {
		return staged, nil
	}
	// Another filesystem: archive the staged path and extract it next to
	// the target (the files source keeps modes, owners, times and links).
	src, err := New(config.FileSource{Name: "copy", Paths: []string{staged}})
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), leftover.Pattern(stagingPrefix))
	if err != nil {
		return "", fmt.Errorf("files: create a staging folder next to %s: %w", path, err)
	}
	prefix := strings.TrimPrefix(staged, "/")
	pr, pw := io.Pipe()
	go func() {
		_, err := src.WriteTar(ctx, pw)
		pw.CloseWithError(err)
	}()
	_, err = tarsafe.Extract(ctx, pr, dir, tarsafe.Options{Map: func(name string) (string, bool) {
		if name == prefix {
			return "copy", true
		}
		rest, ok := strings.CutPrefix(name, prefix+"/")
		if !ok {
			return "", false // the folders above
		}
		return "copy/" + rest, true
	}})
	pr.CloseWithError(err)
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("files: copy %s to the filesystem of %s: %w", staged, path, err)
	}
	// The copy is renamed away by Commit (and back by its undo); its
	// folder is removed here when empty, or with the staging folder's
	// cleanup otherwise.
	final := filepath.Join(filepath.Dir(path), filepath.Base(dir)+"-"+filepath.Base(path))
	if err := os.Rename(filepath.Join(dir, "copy"), final); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("files: %w", err)
	}
	os.Remove(dir)
	s.copies = append(s.copies, final)
	return final, nil
}

// Abort removes the staging folder and the copies made next to targets
// on other filesystems; the targets are untouched.
func (s *inPlaceStaged) Abort() error {
	if s.done {
		return nil
	}
	s.done = true
	err := os.RemoveAll(s.staging)
	for _, c := range s.copies {
		os.RemoveAll(c)
	}
	removeCreated(s.createdPaths())
	if err != nil {
		return fmt.Errorf("files: remove the staging folder %s: %w", s.staging, err)
	}
	return nil
}
