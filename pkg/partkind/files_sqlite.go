package partkind

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/snapshot"
	"github.com/firetech/fireops/pkg/source"
	"github.com/firetech/fireops/pkg/source/files"
	"github.com/firetech/fireops/pkg/source/sqlite"
	"github.com/firetech/fireops/pkg/source/volume"
)

// filesKind handles files:<name> parts: host folders.
type filesKind struct{}

func (filesKind) name() string { return files.Kind }

func (filesKind) sources(_ context.Context, cfg *config.Config, r SourcesRequest) ([]source.Source, error) {
	var out []source.Source
	for i, f := range cfg.Sources.Files {
		if !wanted(r.Only, files.Kind, f.Name) {
			continue
		}
		src, err := files.New(f)
		if err != nil {
			return nil, exitcode.New(exitcode.Usage, fmt.Errorf("sources.files[%d]: %w", i, err), "fix the source in the config")
		}
		out = append(out, src)
	}
	return out, nil
}

// plan: a files part is restored under --to (its absolute paths are
// recreated there); with several parts under --to/files-<name>. In place
// (restore --all) it goes back over the paths its config source names.
func (filesKind) plan(ctx context.Context, cfg *config.Config, r Request) (Target, error) {
	p := r.Part
	if r.InPlace {
		t, err := planInPlace(cfg, r)
		return Target{Shown: t}, err
	}
	if r.To == "" {
		return Target{}, exitcode.Usagef("give --to DIR (the part's paths are recreated under DIR), or put them back over the originals with --all --part "+p.ID+" (old copies kept as *.fireops-old)",
			"part %s: no --to folder", p.ID)
	}
	return folderTarget(r)
}

// folderTarget is the folder --to names for a part restored into a
// folder: --to itself, or --to/KIND-NAME when several parts are restored
// together. A non-empty folder (or a file) is refused without --force.
func folderTarget(r Request) (Target, error) {
	to, err := filepath.Abs(r.To)
	if err != nil {
		return Target{}, fmt.Errorf("--to %s: %w", r.To, err)
	}
	if r.N > 1 {
		to = filepath.Join(to, r.Part.Kind+"-"+r.Part.Name)
	}
	return Target{Path: to}, checkFolderTarget(r.Part, to, r.Force)
}

func (filesKind) restorer(_ context.Context, cfg *config.Config, r Request, t Target) (source.Restorer, error) {
	if r.InPlace {
		return NewInPlaceRestorer(cfg, r.Part, r.Force)
	}
	return files.NewRestorer(t.Path, r.Force)
}

func (filesKind) scratch(_ context.Context, _ *config.Config, r ScratchRequest) (source.Restorer, func(), error) {
	rs, err := files.NewRestorer(filepath.Join(r.Dir, "target"), true)
	return rs, func() {}, err
}

// checkFolderTarget refuses a non-empty folder (or a file) as target
// without force.
func checkFolderTarget(p snapshot.Part, target string, force bool) error {
	st, err := os.Stat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("part %s: target %s: %w", p.ID, target, err)
	}
	if !st.IsDir() {
		return exitcode.Usagef("choose a folder with --to", "part %s: target %s is not a folder", p.ID, target)
	}
	if force {
		return nil
	}
	des, err := os.ReadDir(target)
	if err != nil {
		return fmt.Errorf("part %s: target %s: %w", p.ID, target, err)
	}
	if len(des) > 0 {
		return exitcode.Usagef("choose an empty folder with --to, or add --force to replace it", "part %s: target %s is not empty", p.ID, target)
	}
	return nil
}

// sqliteKind handles sqlite:<name> parts: consistent database copies.
type sqliteKind struct{}

func (sqliteKind) name() string { return sqlite.Kind }

func (sqliteKind) sources(ctx context.Context, cfg *config.Config, r SourcesRequest) ([]source.Source, error) {
	var out []source.Source
	for i, q := range cfg.Sources.SQLite {
		if !wanted(r.Only, sqlite.Kind, q.Name) {
			continue
		}
		if q.Path == "" { // {volume, file}: through the volume's folder
			p, err := sqliteInVolume(ctx, fmt.Sprintf("sources.sqlite[%d]", i), q.Volume, q.File)
			if err != nil {
				// The volume missing, the Engine down, not root: this
				// part fails, the others are snapshotted.
				out = append(out, failedSetup(sqlite.Kind, q.Name, err))
				continue
			}
			q.Path = p
		}
		src, err := sqlite.New(q, sqlite.WithTempDir(cfg.StateDir))
		if err != nil {
			return nil, exitcode.New(exitcode.Usage, fmt.Errorf("sources.sqlite[%d]: %w", i, err), "fix the source in the config")
		}
		out = append(out, src)
	}
	return out, nil
}

// plan: a sqlite part goes to its configured path (for a database inside
// a volume: the volume and file, resolved when it is restored, after the
// volume's own part), or --to FILE, or --to DIR/<name>.sqlite when --to is
// a folder or several parts are restored. An existing database is
// replaced only with --force.
func (sqliteKind) plan(ctx context.Context, cfg *config.Config, r Request) (Target, error) {
	p := r.Part
	var target string
	if r.To != "" {
		to, err := filepath.Abs(r.To)
		if err != nil {
			return Target{}, fmt.Errorf("--to %s: %w", r.To, err)
		}
		target = to
		if st, err := os.Stat(to); r.N > 1 || (err == nil && st.IsDir()) {
			target = filepath.Join(to, p.Name+".sqlite")
		}
	} else {
		i := slices.IndexFunc(cfg.Sources.SQLite, func(q config.SQLiteSource) bool { return q.Name == p.Name })
		if i < 0 || (cfg.Sources.SQLite[i].Path == "" && cfg.Sources.SQLite[i].Volume == "") {
			return Target{}, exitcode.Usagef("give --to FILE", "part %s: the config names no path for sqlite source %q", p.ID, p.Name)
		}
		if q := cfg.Sources.SQLite[i]; q.Volume != "" {
			return planSQLiteInVolume(ctx, fmt.Sprintf("sources.sqlite[%d]", i), r, q)
		}
		target = cfg.Sources.SQLite[i].Path
	}
	if _, err := os.Stat(target); err == nil && !r.Force {
		return Target{}, exitcode.Usagef("add --force to replace it (stop the program using it first), or choose another --to",
			"part %s: %s exists", p.ID, target)
	}
	return Target{Path: target}, nil
}

// planSQLiteInVolume plans the restore of a database inside a volume
// (source key, with {volume, file}).
func planSQLiteInVolume(ctx context.Context, key string, r Request, q config.SQLiteSource) (Target, error) {
	p := r.Part
	target := Target{Volume: q.Volume, File: q.File}
	path, err := sqliteInVolume(ctx, key, q.Volume, q.File)
	if errors.Is(err, errNoVolume) {
		return target, nil // the volume's part (or the restore) creates it
	}
	if err != nil {
		return Target{}, err
	}
	// A database in rollback-journal mode (the hub's default) that a
	// running container holds open cannot be detected by SQLite:
	// replacing it under the hub would lose the hub's later writes.
	// Refuse while containers use the volume, also with --force: stop
	// them (restore --all --stop-stack does).
	users, err := volumeUsers(ctx, q.Volume, r.Stopping)
	if err != nil {
		return Target{}, engineError("part "+p.ID, err)
	}
	if len(users) > 0 {
		return Target{}, exitcode.Usagef("stop the hub first (docker stop, or restore --all --stop-stack)",
			"part %s: the database's volume %s is in use by running containers: %s", p.ID, q.Volume, strings.Join(users, ", "))
	}
	if _, err := os.Stat(path); err == nil && !r.Force {
		return Target{}, exitcode.Usagef("add --force to replace it (stop the hub first), or choose another --to",
			"part %s: %s exists in volume %s", p.ID, q.File, q.Volume)
	}
	return target, nil
}

func (sqliteKind) restorer(ctx context.Context, _ *config.Config, r Request, t Target) (source.Restorer, error) {
	target := t.Path
	if t.Volume != "" {
		key := "part " + r.Part.ID
		path, err := sqliteInVolume(ctx, key, t.Volume, t.File)
		if errors.Is(err, errNoVolume) {
			return &newVolumeRestorer{key: key, vol: t.Volume, file: t.File}, nil
		}
		if err != nil {
			return nil, err
		}
		target = path
	}
	return sqlite.NewRestorer(target)
}

// newVolumeRestorer restores a database into a volume that does not exist
// yet: the volume is created when the part is staged (SQLite stages the
// copy next to the database, inside the volume) and removed again when
// the restore fails, so a failed restore leaves no empty volume behind.
type newVolumeRestorer struct {
	key, vol, file string
}

func (r *newVolumeRestorer) Stage(ctx context.Context, in io.Reader) (source.Staged, error) {
	c, err := volume.NewClient(nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	exists, err := c.Exists(ctx, r.vol)
	if err != nil {
		return nil, engineError(r.key, err)
	}
	s := &newVolumeStaged{vol: r.vol, created: !exists}
	if err := c.Ensure(ctx, r.vol); err != nil {
		return nil, engineError(r.key, err)
	}
	path, err := sqliteInVolume(ctx, r.key, r.vol, r.file)
	if err != nil {
		return nil, s.removeVolume(err)
	}
	rs, err := sqlite.NewRestorer(path)
	if err != nil {
		return nil, s.removeVolume(err)
	}
	if s.Staged, err = rs.Stage(ctx, in); err != nil {
		return nil, s.removeVolume(err)
	}
	return s, nil
}

// newVolumeStaged is the staged database of a newVolumeRestorer.
type newVolumeStaged struct {
	source.Staged
	vol       string
	created   bool // by this restore: Abort removes it
	committed bool
}

func (s *newVolumeStaged) Commit(ctx context.Context) error {
	if err := s.Staged.Commit(ctx); err != nil {
		return err
	}
	s.committed = true
	return nil
}

func (s *newVolumeStaged) Abort() error {
	err := s.Staged.Abort()
	if s.committed {
		return err
	}
	return s.removeVolume(err)
}

// removeVolume removes the volume when this restore created it (also
// after ctx was cancelled) and returns cause with what failed.
func (s *newVolumeStaged) removeVolume(cause error) error {
	if !s.created {
		return cause
	}
	s.created = false
	c, err := volume.NewClient(nil)
	if err == nil {
		defer c.Close()
		err = c.Remove(s.vol)
	}
	if err != nil {
		return errors.Join(cause, fmt.Errorf("remove the volume %s this restore created: %w", s.vol, err))
	}
	return cause
}

func (sqliteKind) scratch(_ context.Context, _ *config.Config, r ScratchRequest) (source.Restorer, func(), error) {
	rs, err := sqlite.NewRestorer(filepath.Join(r.Dir, r.Part.Name+".sqlite"))
	return rs, func() {}, err
}
