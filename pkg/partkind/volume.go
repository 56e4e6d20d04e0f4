package partkind

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/engine"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/source"
	"github.com/firetech/fireops/pkg/source/files"
	"github.com/firetech/fireops/pkg/source/volume"
)

// volumeKind handles volume:<name> parts: Docker volumes found by
// sources.volumes' patterns (docs/volumes.md).
type volumeKind struct{}

// volumeTarget prefixes a restore target that is a Docker volume, in
// --to volume:NAME and in the plan.
const volumeTarget = "volume:"

// volumeNameRE is the Engine's rule for volume names.
var volumeNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

func (volumeKind) name() string { return volume.Kind }

// selectsKind reports whether only selects the kind or one of its parts.
func selectsKind(only []string, kind string) bool {
	if len(only) == 0 {
		return true
	}
	for _, o := range only {
		if o == kind || strings.HasPrefix(o, kind+":") {
			return true
		}
	}
	return false
}

// engineError gives a Docker Engine error its exit code and hint.
func engineError(key string, err error) error {
	return engine.Error(fmt.Errorf("%s: %w", key, err), "")
}

// readMode is sources.volumes.read, or auto.
func readMode(cfg *config.Config) string {
	if v := cfg.Sources.Volumes; v != nil && v.Read != "" {
		return v.Read
	}
	return volume.ReadAuto
}

// sources discovers the volumes (one part each). A volume holding an
// sqlite source's database leaves that database out (with its -wal,
// -journal and -shm): the sqlite part holds the consistent copy.
//
// When the volumes cannot be listed (the Docker Engine down or
// unreachable), which parts there are is unknown: the run gets one failed
// pseudo-part, volume:*, with the cause, and goes on with the other
// sources. No snapshot holds volume:*, so retention counts nothing for it
// (and the run, having a failed part, retires no volume's part), and
// restore latest takes the volumes from older snapshots, back to the
// newest full run holding any (pkg/restore, restore_latest.go).
func (volumeKind) sources(ctx context.Context, cfg *config.Config, r SourcesRequest) ([]source.Source, error) {
	v := cfg.Sources.Volumes
	if v == nil || !selectsKind(r.Only, volume.Kind) {
		return nil, nil
	}
	c, err := volume.NewClient(nil)
	if err != nil {
		return []source.Source{failedSetup(volume.Kind, EveryOfKind, exitcode.New(exitcode.Failure, fmt.Errorf("sources.volumes: %w", err),
			"check DOCKER_HOST (unset: the local Engine at /var/run/docker.sock)"))}, nil
	}
	defer c.Close()
	names, err := c.Discover(ctx, v.Include, v.Exclude)
	if err != nil {
		return []source.Source{failedSetup(volume.Kind, EveryOfKind, engineError("sources.volumes", err))}, nil
	}
	if r.AfterDiscovery != nil {
		r.AfterDiscovery(names)
	}
	var out []source.Source
	for _, n := range names {
		if !wanted(r.Only, volume.Kind, n) {
			continue
		}
		var exclude []string
		for _, q := range cfg.Sources.SQLite {
			if q.Volume == n {
				exclude = append(exclude, q.File)
			}
		}
		src, err := volume.NewSource(n, volume.Options{Read: v.Read, Pause: v.PauseContainers, Exclude: exclude})
		if err != nil {
			for _, s := range out {
				s.(*volume.Source).Close()
			}
			return nil, exitcode.New(exitcode.Usage, fmt.Errorf("sources.volumes: %w", err), "fix sources.volumes or the sqlite source in that volume")
		}
		if h := cfg.Hub; n == h.DBVolume && h.DBPath == "" && h.DBFile != "" && len(exclude) == 0 {
			src.Warn(fmt.Sprintf("volume %s holds the hub database %s (hub.db_volume, hub.db_file), and no sqlite source copies it consistently: "+
				"the volume part holds a raw copy of a live database; add {name: jupyterhub, volume: %s, file: %s} to sources.sqlite (docs/volumes.md)",
				n, h.DBFile, n, h.DBFile))
		}
		out = append(out, src)
	}
	return out, nil
}

// plan: a volume part goes back into its own volume, or --to volume:OTHER
// (one part), or --to DIR (DIR/volume-NAME with several parts). A volume
// with content is replaced only with --force, and so is one that running
// containers use (they are named).
func (volumeKind) plan(ctx context.Context, cfg *config.Config, r Request) (Target, error) {
	if name, ok := strings.CutPrefix(r.To, volumeTarget); ok {
		if r.N > 1 {
			return Target{}, exitcode.Usagef("restore one part with --part volume:NAME --to volume:OTHER, or give --to DIR",
				"part %s: --to volume:%s takes a single part, %d are being restored", r.Part.ID, name, r.N)
		}
		if !volumeNameRE.MatchString(name) {
			return Target{}, exitcode.Usagef("volume names are letters, digits, '_', '.' and '-'", "--to volume:%s: invalid volume name", name)
		}
		return planVolume(ctx, cfg, r, name)
	}
	if r.To != "" {
		return folderTarget(r)
	}
	return planVolume(ctx, cfg, r, r.Part.Name)
}

// volumeUsers returns the running containers that use a volume, less
// those restore --all --stop-stack is stopping.
func volumeUsers(ctx context.Context, name string, stopping []string) ([]string, error) {
	c, err := volume.NewClient(nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ti, err := c.Target(ctx, name)
	if err != nil {
		return nil, err
	}
	return notStopping(ti.Users, stopping), nil
}

// notStopping leaves out of a volume's users the containers restore --all
// --stop-stack is stopping.
func notStopping(users, stopping []string) []string {
	return slices.DeleteFunc(users, func(u string) bool { return slices.Contains(stopping, u) })
}

// planVolume checks a volume restore target.
func planVolume(ctx context.Context, cfg *config.Config, r Request, name string) (Target, error) {
	p := r.Part
	c, err := volume.NewClient(nil)
	if err != nil {
		return Target{}, err
	}
	defer c.Close()
	ti, err := c.Target(ctx, name)
	if err != nil {
		return Target{}, engineError("part "+p.ID, err)
	}
	ti.Users = notStopping(ti.Users, r.Stopping)
	if len(ti.Users) > 0 && !r.Force {
		return Target{}, exitcode.Usagef("stop them first (a user's server: stop it from the hub's admin page), or add --force",
			"part %s: volume %s is in use by running containers: %s", p.ID, name, strings.Join(ti.Users, ", "))
	}
	if readMode(cfg) == volume.ReadAPI && ti.Direct == nil {
		ti.Direct = errors.New("sources.volumes.read is api")
	}
	if ti.Exists && !ti.Empty {
		if !r.Force {
			return Target{}, exitcode.Usagef("add --force to replace its content, or restore into a new volume with --to volume:NEW",
				"part %s: volume %s is not empty", p.ID, name)
		}
		if ti.Direct != nil {
			return Target{}, exitcode.Usagef("run fireops as root on the Docker host, or restore into a new volume (--to volume:NEW) or a folder (--to DIR)",
				"part %s: volume %s has content that the Engine API cannot replace (%v)", p.ID, name, ti.Direct)
		}
	}
	if len(ti.Users) > 0 && r.DryRun && r.Log != nil { // a real restore says it when it starts
		r.Log.Warn("the volume is in use by running containers (--force)", "part", p.ID, "volume", name, "containers", strings.Join(ti.Users, ", "))
	}
	return Target{Volume: name}, nil
}

func (volumeKind) restorer(_ context.Context, cfg *config.Config, r Request, t Target) (source.Restorer, error) {
	if t.Volume == "" {
		return files.NewRestorer(t.Path, r.Force)
	}
	keep, err := volume.LeftOut(r.Part.Details)
	if err != nil {
		return nil, fmt.Errorf("part %s: %w", r.Part.ID, err)
	}
	return volume.NewRestorer(t.Volume, volume.RestoreOptions{Force: r.Force, Write: readMode(cfg), Keep: keep, Log: r.Log})
}

// scratch restores into a new scratch volume, removed by cleanup (also
// after a failed restore).
func (volumeKind) scratch(ctx context.Context, cfg *config.Config, r ScratchRequest) (source.Restorer, func(), error) {
	c, err := volume.NewClient(nil)
	if err != nil {
		return nil, nil, err
	}
	name, remove, err := c.NewScratchVolume(ctx, r.Snapshot)
	if err != nil {
		c.Close()
		return nil, nil, engineError("restore-test", err)
	}
	cleanup := func() {
		if err := remove(); err != nil && r.Log != nil {
			r.Log.Warn("restore-test: removing the scratch volume failed", "volume", name, "err", err)
		}
		c.Close()
	}
	rs, err := volume.NewRestorer(name, volume.RestoreOptions{Force: true, Write: readMode(cfg)})
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return rs, cleanup, nil
}

// errNoVolume is wrapped by sqliteInVolume's error for a missing volume.
var errNoVolume = errors.New("does not exist")

// sqliteInVolume returns the host path of an sqlite source's database
// inside a Docker volume. SQLite must open the file itself for a
// consistent copy, so fireops must reach the volume's folder: root on the
// Engine's host, a plain local volume. A missing volume is errNoVolume.
func sqliteInVolume(ctx context.Context, key, vol, file string) (string, error) {
	c, err := volume.NewClient(nil)
	if err != nil {
		return "", err
	}
	defer c.Close()
	p, err := c.HostPath(ctx, vol, file)
	switch {
	case errors.Is(err, volume.ErrGone):
		return "", exitcode.New(exitcode.Failure, fmt.Errorf("%s: volume %s %w", key, vol, errNoVolume),
			"check "+key+".volume (docker volume ls)")
	case errors.Is(err, volume.ErrEngine):
		return "", engineError(key, err)
	case err != nil: // a refusal: fireops cannot reach the volume's folder
		return "", Refused(exitcode.New(exitcode.Usage, fmt.Errorf("%s: %w", key, err),
			"run fireops as root on the Docker host (SQLite must open the database file itself for a consistent copy), or give path: the database's host path (restore: --to FILE)"))
	}
	return p, nil
}
