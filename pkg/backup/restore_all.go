package backup

// Whole-server restore: `fireops restore ID|latest --all` (issue 10).
//
// # Order and independence
//
// Parts are restored in the order of the kinds list (files, volume,
// sqlite, mongo): the config files first, then the Docker volumes, then
// the hub's SQLite database (which may live in a volume restored just
// before), then MongoDB. Every part is restored on its own through its
// kind's staging (design.md §7): a part that fails leaves its target as
// it was, is reported with its error, and the remaining parts are still
// restored. The result names every part with its status; the error, when
// any part failed, names the parts that were not restored.
//
// # Files parts in place
//
// A files part is put back over the paths its config source names (the
// config this host has now: put the config back first). Each must be a
// path the snapshot archived (the files source records them in the part's
// details, files.DetailRoots) or lie inside one: a folder above an
// archived path is in the archive too, but only with the folders down to
// that path, and putting it back would take everything else in it away.
// A part that records no paths (an older fireops wrote it) is refused:
// restore it with --to DIR. In one pass over
// the part's stream the whole archive is extracted into a private staging
// folder (mode 0700, ".fireops-staging-<run tag>-*"; the staging and undo
// folders a killed restore left next to the paths are removed first, see
// pkg/leftover) created in the parent folder of the part's first path, so
// that it is on the same filesystem as the targets in the usual layout
// and a move is a rename. Only when the whole
// stream has been read, its hash checked and its entry count matched
// (snapshot.RestorePart) does Commit move each configured path into
// place: an existing file or folder is first renamed to PATH.fireops-old
// (PATH.fireops-old-<UTC time> when that name is taken), then the staged
// copy is renamed to PATH. With force the old copy is removed instead of
// kept. Folders above a path that are missing are created and, at the
// end, given the owner, mode and modification time the archive has for
// them. A target on another filesystem than the staging folder is copied
// next to the target first (through a second staging folder there) and
// then renamed, so no target is ever half written. When moving one path
// fails, the paths already moved are put back as they were. Abort, and
// Commit when it is done, remove the staging folder; Abort also the
// folders it created above the paths.
//
// # The stack
//
// With StopStack the running containers of the Compose project (label
// com.docker.compose.project = stack.name; a stack deployed by `fireops
// deploy` carries the same label) are stopped through the Engine API after
// the plan is confirmed and before the first part, and started again when
// the restore ends, also when parts failed. Volumes used only by those
// containers are therefore not refused as "in use" by the plan. When a
// mongo part is restored, the containers of the Compose service MongoDB
// runs as (label com.docker.compose.service = "mongodb", the service of
// deploy's compose.yaml) are left running: the mongo part is restored
// through that server. The result names both lists.

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
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"filippo.io/age"
	"github.com/docker/docker/client"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/engine"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/leftover"
	"github.com/firetech/fireops/pkg/snapshot"
	"github.com/firetech/fireops/pkg/source"
	"github.com/firetech/fireops/pkg/source/files"
	"github.com/firetech/fireops/pkg/stack"
	"github.com/firetech/fireops/pkg/tarsafe"
)

// Statuses of a part in a restore result.
const (
	StatusPlanned      = "planned"
	StatusRestored     = "restored"
	StatusFailed       = "failed"
	StatusRefused      = "refused"
	StatusNotAttempted = "not attempted"
)

// StackAction says what restore --all --stop-stack did to the stack.
type StackAction struct {
	// Project is the Compose project (stack.name).
	Project string `json:"project"`
	// Containers are the running containers of the project, stopped
	// before the restore.
	Containers []string `json:"containers"`
	// Running are the running containers of the project left running,
	// and RunningWhy says why (the MongoDB the mongo part is restored
	// through).
	Running    []string `json:"running,omitempty"`
	RunningWhy string   `json:"running_why,omitempty"`
	// Started are the containers started again after the restore.
	Started []string `json:"started,omitempty"`
	// Error says what failed while stopping or starting them.
	Error string `json:"error,omitempty"`
}

// kindRank is a part's kind's position in the kinds list (the safe
// order of a whole-server restore).
func kindRank(p snapshot.Part) int {
	for i, k := range kinds {
		if k.name() == p.Kind {
			return i
		}
	}
	return len(kinds)
}

// restoreAll restores parts in place, every one on its own (see the top
// of this file), each from its own snapshot (restore_latest.go: with
// latest, the newest holding it). The manifests and indexes were checked
// by Restore; each part's objects are checked when it is restored
// (partSource).
func restoreAll(ctx context.Context, cfg *config.Config, o RestoreOptions, sel []partFrom, ids []age.Identity, note string) (*RestoreResult, error) {
	if o.To != "" {
		return nil, exitcode.Usagef("leave out --to: --all puts every part back where it was; restore single parts elsewhere with --part and --to",
			"--all and --to exclude each other")
	}
	if o.Force {
		o.Mongo.Drop = true // --all --force replaces everything
	}
	sel = slices.Clone(sel)
	sort.SliceStable(sel, func(i, j int) bool { return kindRank(sel[i].part) < kindRank(sel[j].part) })
	parts := make([]snapshot.Part, len(sel))
	for i, pf := range sel {
		parts[i] = pf.part
	}

	res := newRestoreResult(sel, note)
	var eng *client.Client
	if o.StopStack {
		var err error
		eng, err = engine.Open()
		if err != nil {
			return nil, err
		}
		defer eng.Close()
		keep := stack.KeepRunning(parts)
		names, _, running, err := stack.Containers(ctx, eng, cfg.Stack.Name, keep)
		if err != nil {
			return nil, exitcode.New(exitcode.Failure, err, engine.Hint+"; without a stack to stop, leave out --stop-stack")
		}
		res.Stack = &StackAction{Project: cfg.Stack.Name, Containers: names, Running: running}
		if len(running) > 0 {
			res.Stack.RunningWhy = "the mongo part is restored through MongoDB (compose service " + keep + ")"
		}
		o.stopping = names
	}

	targets := make([]string, len(parts))
	var refused []string
	for i, p := range parts {
		pp := PlannedPart{Part: p.ID, Snapshot: sel[i].snapshotID(), Size: p.Size, Status: StatusPlanned}
		t, err := planInPlace(ctx, cfg, p, o, len(parts))
		if err != nil {
			pp.Status, pp.Error = StatusRefused, partReason(p.ID, err)
			refused = append(refused, p.ID)
		}
		targets[i], pp.Target = t, t
		res.Parts = append(res.Parts, pp)
	}
	if len(refused) > 0 {
		return res, exitcode.Usagef("fix what the plan names (--force replaces existing targets), or leave those parts out with --part",
			"%s --all: nothing was written: %d part(s) cannot be restored as planned: %s", restoreWhat(res), len(refused), strings.Join(refused, ", "))
	}
	if o.DryRun {
		return res, nil
	}
	if o.Confirm != nil {
		if err := o.Confirm(res); err != nil {
			return res, err
		}
	}

	if res.Stack != nil && len(res.Stack.Containers) > 0 {
		_, ids, _, err := stack.Containers(ctx, eng, cfg.Stack.Name, stack.KeepRunning(parts))
		if err == nil {
			err = stack.Stop(ctx, eng, ids, o.Log)
		}
		// Start again whatever was stopped, also when a part (or the stop
		// itself) failed.
		defer func() {
			started, serr := stack.Start(context.WithoutCancel(ctx), eng, res.Stack.Containers, o.Log)
			res.Stack.Started = started
			if serr != nil {
				res.Stack.Error = serr.Error()
			}
		}()
		if err != nil {
			res.Stack.Error = err.Error()
			for i := range res.Parts {
				res.Parts[i].Status = StatusNotAttempted
			}
			return res, exitcode.New(exitcode.Failure, fmt.Errorf("%s --all: stopping the stack %s: %w; nothing was restored", restoreWhat(res), cfg.Stack.Name, err),
				"stop the containers by hand (docker stop), then run the restore again")
		}
	}

	var failed []string
	integrity := false
	for i, p := range parts {
		if err := ctx.Err(); err != nil {
			for j := i; j < len(parts); j++ {
				res.Parts[j].Status = StatusNotAttempted
				failed = append(failed, parts[j].ID)
			}
			break
		}
		k, _ := kindOf(p)
		pd, err := sel[i].src.restore(ctx, cfg, p, ids, o.Log, func() (source.Restorer, error) {
			if p.Kind == files.Kind {
				return newInPlaceRestorer(cfg, p, o.Force)
			}
			return k.restorer(ctx, cfg, p, targets[i], o)
		})
		if err != nil {
			res.Parts[i].Status, res.Parts[i].Error = StatusFailed, partReason(p.ID, err)
			failed = append(failed, p.ID)
			integrity = integrity || errors.Is(err, snapshot.ErrIntegrity)
			if o.Log != nil {
				o.Log.Error("part not restored; its target was left as it was", "part", p.ID, "err", err)
			}
			continue
		}
		partRestored(res, i, pd, o.Log)
	}
	settleDestination(res)
	if len(failed) > 0 {
		return res, partsFailed(restoreWhat(res)+" --all", res, failed, len(parts), integrity)
	}
	return res, nil
}

// planInPlace plans one part of a whole-server restore.
func planInPlace(ctx context.Context, cfg *config.Config, p snapshot.Part, o RestoreOptions, n int) (string, error) {
	k, err := kindOf(p)
	if err != nil {
		return "", err
	}
	if p.Kind != files.Kind {
		return k.plan(ctx, cfg, p, o, n)
	}
	paths, err := inPlacePaths(cfg, p)
	if err != nil {
		return "", err
	}
	var existing int
	for _, path := range paths {
		if _, err := os.Lstat(path); err == nil {
			existing++
		}
	}
	t := strings.Join(paths, ", ")
	switch {
	case existing > 0 && o.Force:
		t += fmt.Sprintf(" (replacing %d existing)", existing)
	case existing > 0:
		t += fmt.Sprintf(" (%d existing kept as *.fireops-old)", existing)
	}
	return t, nil
}

// inPlacePaths returns the paths of the config's files source of a part:
// cleaned, sorted, without paths inside others (as the archive has them).
func inPlacePaths(cfg *config.Config, p snapshot.Part) ([]string, error) {
	for _, f := range cfg.Sources.Files {
		if f.Name != p.Name {
			continue
		}
		var roots []string
		for _, path := range f.Paths {
			path = filepath.Clean(path)
			if !filepath.IsAbs(path) || path == "/" {
				return nil, exitcode.Usagef("restore it into a folder with --part "+p.ID+" --to DIR",
					"part %s: path %q cannot be restored in place", p.ID, path)
			}
			roots = append(roots, path)
		}
		sort.Strings(roots)
		kept := roots[:0]
		for _, r := range roots {
			if len(kept) > 0 && (r == kept[len(kept)-1] || strings.HasPrefix(r, kept[len(kept)-1]+"/")) {
				continue
			}
			kept = append(kept, r)
		}
		if len(kept) == 0 {
			break
		}
		return kept, archivedPaths(p, kept)
	}
	return nil, exitcode.Usagef("put the config back first (it names the paths), or restore the part into a folder with --part "+p.ID+" --to DIR",
		"part %s: the config has no files source %q: its original paths are unknown", p.ID, p.Name)
}

// archivedPaths refuses a configured path that the part did not archive
// as such: only a path the files source was configured with when the
// snapshot was taken (a recorded root), or one inside it, holds
// everything that was there. A folder above a root is in the archive too,
// but holding only the folders down to the root: put back in place, it
// would take everything else in it away (into .fireops-old, or deleted
// with --force). A part without recorded roots (written before fireops
// recorded them) cannot tell the two apart, so it is refused whole.
func archivedPaths(p snapshot.Part, paths []string) error {
	hint := "restore the part into a folder with --part " + p.ID + " --to DIR and copy back what you need, or leave it out of --all with --part"
	roots, ok, err := files.RecordedRoots(p.Details)
	if err != nil {
		return fmt.Errorf("part %s: %w", p.ID, err)
	}
	if !ok {
		return exitcode.Usagef(hint,
			"part %s does not record which paths it archived (written by an older fireops): it cannot be put back in place safely, as a configured folder may hold only the folders above what was archived",
			p.ID)
	}
	for _, path := range paths {
		if slices.ContainsFunc(roots, func(r string) bool { return path == r || strings.HasPrefix(path, r+"/") }) {
			continue
		}
		if slices.ContainsFunc(roots, func(r string) bool { return strings.HasPrefix(r, path+"/") }) {
			return exitcode.Usagef(hint+"; or set the source's paths in the config to the archived ones",
				"part %s: the config's path %s is above the paths the snapshot archived (%s): putting it back in place would remove everything else in it",
				p.ID, path, strings.Join(roots, ", "))
		}
		return exitcode.Usagef(hint+"; or set the source's paths in the config to the archived ones",
			"part %s: the config's path %s is not among the paths the snapshot archived (%s)", p.ID, path, strings.Join(roots, ", "))
	}
	return nil
}

// inPlaceRestorer puts a files part back over its configured paths (see
// the top of this file).
type inPlaceRestorer struct {
	paths []string
	force bool
	log   *slog.Logger
}

// The prefixes of the folders an in-place restore makes next to its
// paths; each name then carries the run's tag (pkg/leftover), so the next
// restore removes what a killed one left.
const (
	stagingPrefix = ".fireops-staging-"
	undoPrefix    = ".fireops-undo-"
)

// SetLogger sets the logger that reports leftovers removed (nil: none).
func (r *inPlaceRestorer) SetLogger(log *slog.Logger) { r.log = log }

// cleanLeftovers removes, next to every path, the staging and undo
// folders that killed restores left (they may hold restored plaintext).
func (r *inPlaceRestorer) cleanLeftovers() {
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

func newInPlaceRestorer(cfg *config.Config, p snapshot.Part, force bool) (*inPlaceRestorer, error) {
	paths, err := inPlacePaths(cfg, p)
	if err != nil {
		return nil, err
	}
	return &inPlaceRestorer{paths: paths, force: force}, nil
}

// Stage extracts the whole archive into a private staging folder next to
// the first path.
func (r *inPlaceRestorer) Stage(ctx context.Context, tr io.Reader) (source.Staged, error) {
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
	r       *inPlaceRestorer
	staging string
	x       tarsafe.Stats
	done    bool
	// created are the folders above the paths that this restore created
	// (they were missing), in the order created, with their staged
	// copies' metadata: Commit gives them the archive's owner, mode and
	// time; Abort removes them.
	created []folderMeta
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
// gets the usual 0755.
func applyMeta(created []folderMeta) error {
	var errs []error
	for i := len(created) - 1; i >= 0; i-- {
		m := created[i]
		if m.fi == nil {
			if err := os.Chmod(m.path, 0o755); err != nil {
				errs = append(errs, fmt.Errorf("files: %w", err))
			}
			continue
		}
		if st, ok := m.fi.Sys().(*syscall.Stat_t); ok {
			if err := os.Lchown(m.path, int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EINVAL) {
				errs = append(errs, fmt.Errorf("files: %w", err))
			}
		}
		if err := os.Chmod(m.path, m.fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			errs = append(errs, fmt.Errorf("files: %w", err))
		}
		if err := os.Chtimes(m.path, time.Time{}, m.fi.ModTime()); err != nil {
			errs = append(errs, fmt.Errorf("files: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (s *inPlaceStaged) Stats() source.Stats {
	return source.Stats{Entries: s.x.Entries, Details: map[string]string{"setid_dropped": strconv.FormatInt(s.x.SetIDDropped, 10)}}
}

// moved is one path put in place, and how to undo it.
type moved struct {
	path, old string
}

// Commit moves every configured path into place, keeping (or, with
// force, removing) what was there. A failure puts back what was moved.
func (s *inPlaceStaged) Commit(ctx context.Context) error {
	if s.done {
		return errors.New("files: restore already committed or aborted")
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	var done []moved
	undo := func(cause error) error {
		var errs []error
		for i := len(done) - 1; i >= 0; i-- {
			mv := done[i]
			// Take the restored copy back into a folder next to it: the
			// path may be on another filesystem than the staging folder.
			aside, err := os.MkdirTemp(filepath.Dir(mv.path), leftover.Pattern(undoPrefix))
			if err != nil {
				errs = append(errs, fmt.Errorf("take back %s: %w", mv.path, err))
				continue
			}
			if err := os.Rename(mv.path, filepath.Join(aside, "restored")); err != nil {
				os.Remove(aside)
				errs = append(errs, fmt.Errorf("take back %s: %w", mv.path, err))
				continue
			}
			if mv.old != "" {
				if err := os.Rename(mv.old, mv.path); err != nil {
					errs = append(errs, fmt.Errorf("put back %s from %s (the restored copy is in %s): %w", mv.path, mv.old, aside, err))
					continue
				}
			}
			if err := os.RemoveAll(aside); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", aside, err))
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%w; undoing the paths already restored failed: %w", cause, errors.Join(errs...))
		}
		return cause
	}
	// The staged files reach the disk before any rename makes them live,
	// as files.Restorer does (one syncfs instead of an fsync per file).
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
		staged, err = sameFilesystem(ctx, staged, path)
		if err != nil {
			return undo(err)
		}
		if err := tarsafe.SyncFS(staged); err != nil { // a copy made on path's filesystem
			return undo(fmt.Errorf("files: %w", err))
		}
		mv := moved{path: path}
		if _, err := os.Lstat(path); err == nil {
			mv.old = path + ".fireops-old"
			if _, err := os.Lstat(mv.old); err == nil {
				mv.old = path + ".fireops-old-" + stamp
			}
			// A rename replaces a file there: never reuse a taken name.
			for n := 2; ; n++ {
				if _, err := os.Lstat(mv.old); err != nil {
					break
				}
				mv.old = fmt.Sprintf("%s.fireops-old-%s-%d", path, stamp, n)
			}
			if err := os.Rename(path, mv.old); err != nil {
				return undo(fmt.Errorf("files: move %s aside: %w", path, err))
			}
		}
		if err := os.Rename(staged, path); err != nil {
			err = fmt.Errorf("files: move the restored %s into place: %w", path, err)
			if mv.old != "" {
				if berr := os.Rename(mv.old, path); berr != nil {
					err = fmt.Errorf("%w; putting the old copy back failed, it is at %s: %w", err, mv.old, berr)
				}
			}
			return undo(err)
		}
		done = append(done, mv)
	}
	// Make the renames durable: fsync every parent folder changed.
	for _, mv := range done {
		if d, err := os.Open(filepath.Dir(mv.path)); err == nil {
			d.Sync()
			d.Close()
		}
	}
	s.done = true
	var errs []error
	for _, mv := range done {
		if s.r.force && mv.old != "" {
			if err := os.RemoveAll(mv.old); err != nil {
				errs = append(errs, fmt.Errorf("files: restored %s, but removing the old copy %s failed: %w", mv.path, mv.old, err))
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
// filesystem) and returns the copy.
func sameFilesystem(ctx context.Context, staged, path string) (string, error) {
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
	src, err := files.New(config.FileSource{Name: "copy", Paths: []string{staged}})
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
	// The copy is renamed away by Commit; its folder is removed here when
	// empty, or with the staging folder's cleanup otherwise.
	final := filepath.Join(filepath.Dir(path), filepath.Base(dir)+"-"+filepath.Base(path))
	if err := os.Rename(filepath.Join(dir, "copy"), final); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("files: %w", err)
	}
	os.Remove(dir)
	return final, nil
}

// Abort removes the staging folder; the targets are untouched.
func (s *inPlaceStaged) Abort() error {
	if s.done {
		return nil
	}
	s.done = true
	err := os.RemoveAll(s.staging)
	removeCreated(s.createdPaths())
	if err != nil {
		return fmt.Errorf("files: remove the staging folder %s: %w", s.staging, err)
	}
	return nil
}
