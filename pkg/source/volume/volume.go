// Package volume is the "volume" source kind: Docker volumes (every user's
// `jupyterhub-user-*` and the hub's `jupyterhub-data`), found by name
// patterns and archived through the Docker Engine, and the restorer that
// replaces a volume's content through a staging volume.
//
// # Discovery
//
// [Client.Discover] lists the volumes whose names match an include glob and
// no exclude glob. The Engine's `name` filter is a regular expression
// search, so each glob is sent as an anchored expression and every name is
// matched against the globs again here. New users' volumes are picked up
// by the next snapshot.
//
// # Read paths
//
// Both paths produce the same tar stream, byte for byte, for a volume that
// does not change while it is read:
//
//   - mountpoint: when fireops runs as root, the Engine is reached through
//     its local socket, and the volume is a plain "local" volume (no driver
//     options: an NFS or bind volume is mounted only while a container uses
//     it), fireops walks the folder VolumeInspect names. Faster than the
//     API path, which goes through dockerd (2.5 times with a warm page
//     cache in BenchmarkVolumeRead; more under load).
//   - api: the Engine archives the volume (CopyFromContainer) from a helper
//     container that mounts it read-only. fireops re-encodes the Engine's
//     stream entry by entry; a stream that ends without tar's end-of-archive
//     marker is an error (the Engine cuts its stream short when it fails
//     half way).
//
// `read: auto` picks mountpoint when it can, `mountpoint` fails when it
// cannot (saying why), `api` always uses the Engine.
//
// Helper containers are created from [HelperImage], a zero-byte image
// fireops imports from an empty tar (nothing is pulled), and are never
// started; their User stays empty, so the Engine keeps owners. Both paths
// create one for the duration of a read: it pins the volume, so that
// `docker volume rm` refuses to remove it while it is being read. Helpers
// are removed on every exit path, also after cancellation.
//
// # Archive layout
//
// Entry names are relative to the volume's root: "./" (the root itself,
// with its owner and mode), "./a/", "./a/file". Kept: the permission bits
// with setuid, setgid and sticky, numeric owners (no names: ids in a
// container mean nothing by name on the host), modification times in whole
// seconds (the Engine's archiver truncates them, and both paths must agree),
// symbolic links, hard links (the second and later names of a file are
// hard link entries), empty folders. Not kept: access times, extended
// attributes, ACLs. Sockets, named pipes and devices are skipped and
// counted (Stats.Details["special_skipped"]): a stray FIFO in a user's home
// must not fail every backup, and restore never creates them.
//
// # Files left out
//
// [Options.Exclude] names files inside the volume (SQLite databases that an
// sqlite source copies consistently); each is left out with its -wal,
// -journal and -shm companions, and so are later hard links to them.
// Details["left_out"] lists the configured paths (a JSON array, see
// [LeftOut]), so that a restore keeps the live files there (see
// [Restorer]).
//
// # Changing volumes
//
// A volume is read while its users may be writing. A file or folder that
// disappears between listing its folder and reading it is left out
// (counted in Details["vanished"], mountpoint path): it was deleted. On the
// mountpoint path a file whose size changes while it is read is archived
// with its size at opening, padded with zeros if it shrank, counted in
// Details["changed_during_read"] and logged. The Engine's archiver (api
// path) skips vanished files too and cuts its stream short when a file
// shrinks while it reads it, which fails the part. Set pause_containers ([Options.Pause]) for a
// consistent copy: the running containers that use the volume are paused
// while it is read, and always unpaused afterwards, also on error and
// cancellation (SIGTERM).
//
// # A volume that disappears
//
// A volume removed between discovery and its read (a deleted user's) makes
// Fingerprint return an error wrapping [source.ErrGone]; the snapshot
// engine then leaves the part out with a warning instead of failing the
// run, since the volume no longer exists to be backed up. Once a read has
// started, the helper container keeps the volume from being removed; any
// failure during the read fails the part, and with it the snapshot.
//
// # Fingerprint
//
// On the mountpoint path, like the files kind: a SHA-256 over every entry's
// name, mode, size, modification and change times in nanoseconds, owner,
// link count and link target, plus the identity (device, inode) of the
// volume's folder and the files left out; no contents are read. On the api
// path there is no cheap fingerprint (""), so the part is uploaded every
// time.
package volume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/firetech/fireops/pkg/source"
)

// Kind is the part kind of this package's sources.
const Kind = "volume"

// Read modes of Options.Read.
const (
	ReadAuto       = "auto"
	ReadMountpoint = "mountpoint"
	ReadAPI        = "api"
)

// ErrGone is source.ErrGone: the volume no longer exists.
var ErrGone = source.ErrGone

// companions are the files SQLite keeps next to a database.
var companions = []string{"-wal", "-journal", "-shm"}

// copyBufferSize is the one buffer file contents are copied through.
const copyBufferSize = 256 << 10

// Options tune a Source.
type Options struct {
	// Read is ReadAuto (the default when empty), ReadMountpoint or ReadAPI.
	Read string
	// Pause pauses the running containers that use the volume while it is
	// read (pause_containers).
	Pause bool
	// Exclude lists files inside the volume (relative slash-separated
	// paths) to leave out, each with its -wal, -journal and -shm files.
	Exclude []string
	// Log receives warnings and progress; nil discards them.
	Log *slog.Logger
}

// Source archives one Docker volume. It owns a Client; Close releases it
// and any helper container.
type Source struct {
	c        *Client
	name     string
	read     string
	pause    bool
	leftOut  []string        // the configured excludes, cleaned and sorted
	excluded map[string]bool // leftOut and companions, relative paths
	log      *slog.Logger
	warnings []string
	pin      *pinned // from Fingerprint until WriteTar or Close
	size     int64   // the archive's size as the fingerprint's walk estimated it (0: none did)

	// beforeRead, when set (by tests), runs once the containers are
	// paused, right before the read; an error fails the read.
	beforeRead func(ctx context.Context) error
}

var _ source.Source = (*Source)(nil)

// NewSource returns the Source of the volume name. Nothing is read yet.
func NewSource(name string, o Options) (*Source, error) {
	if name == "" {
		return nil, errors.New("volume: no volume name")
	}
	switch o.Read {
	case "":
		o.Read = ReadAuto
	case ReadAuto, ReadMountpoint, ReadAPI:
	default:
		return nil, fmt.Errorf("volume:%s: unknown read mode %q (auto, mountpoint or api)", name, o.Read)
	}
	s := &Source{name: name, read: o.Read, pause: o.Pause, excluded: map[string]bool{}, log: o.Log}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, e := range o.Exclude {
		rel, err := cleanRel(e)
		if err != nil {
			return nil, fmt.Errorf("volume:%s: exclude %q: %w", name, e, err)
		}
		if !s.excluded[rel] {
			s.leftOut = append(s.leftOut, rel)
		}
		s.excluded[rel] = true
		for _, suf := range companions {
			s.excluded[rel+suf] = true
		}
	}
	slices.Sort(s.leftOut)
	c, err := NewClient(s.log)
	if err != nil {
		return nil, err
	}
	s.c = c
	return s, nil
}

// cleanRel checks a path inside a volume and returns it cleaned, without
// a leading "./" or "/".
func cleanRel(p string) (string, error) {
	if p == "" || path.IsAbs(p) {
		return "", errors.New("must be a relative path inside the volume")
	}
	c := path.Clean(p)
	if c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", errors.New("must name a file inside the volume")
	}
	return c, nil
}

// SetLogger sets the logger of warnings and progress.
func (s *Source) SetLogger(log *slog.Logger) {
	if log != nil {
		s.log, s.c.log = log, log
	}
}

// Warn adds a warning about the configuration, logged when the volume is
// read.
func (s *Source) Warn(msg string) { s.warnings = append(s.warnings, msg) }

// Kind returns "volume".
func (s *Source) Kind() string { return Kind }

// Name returns the volume's name.
func (s *Source) Name() string { return s.name }

// pinned is a volume being read: its facts, the read path chosen and the
// helper container that keeps it from being removed.
type pinned struct {
	ident  string // the host folder's device and inode, on the mountpoint path
	driver string
	mode   string // ReadMountpoint or ReadAPI
	dir    string // the host folder, on the mountpoint path
	why    string // why not mountpoint, under auto
	h      *helper
}

// prepare inspects the volume, chooses the read path and creates the
// helper container that pins the volume.
func (s *Source) prepare(ctx context.Context) (*pinned, error) {
	v, err := s.c.inspect(ctx, s.name)
	if err != nil {
		return nil, err
	}
	p := &pinned{driver: v.Driver, mode: ReadAPI}
	if s.read != ReadAPI {
		dir, err := s.c.hostFolder(v)
		switch {
		case err == nil:
			p.mode, p.dir = ReadMountpoint, dir
			if p.ident, err = folderID(dir); err != nil {
				return nil, fmt.Errorf("volume:%s: %w", s.name, err)
			}
		case s.read == ReadMountpoint:
			return nil, fmt.Errorf("volume:%s: read: mountpoint is not possible: %w", s.name, err)
		default:
			p.why = err.Error()
		}
	}
	h, err := s.c.newHelper(ctx, s.name, false)
	if err != nil {
		return nil, err
	}
	p.h = h
	// The Engine creates a missing volume that a container names: if the
	// volume was removed between the inspection and the helper, the
	// helper has just created an empty one. On the mountpoint path that
	// shows as a new folder: undo it and report the volume gone. (The api
	// path cannot tell; the window is the few milliseconds between the two
	// calls.)
	if p.mode == ReadMountpoint {
		before := p.ident
		if p.ident, err = folderID(p.dir); err != nil || p.ident != before {
			herr := h.remove()
			p.h = nil
			if err != nil {
				return nil, errors.Join(fmt.Errorf("volume:%s: %w", s.name, err), herr)
			}
			if rerr := s.c.removeVolume(s.name); rerr != nil || herr != nil {
				s.log.Warn("volume removed while fireops pinned it; removing the empty one the Engine recreated failed",
					"volume", s.name, "err", errors.Join(herr, rerr))
			}
			return nil, fmt.Errorf("volume: %s: removed just before it was read: %w", s.name, ErrGone)
		}
	}
	if p.why != "" {
		s.log.Debug("reading volume through the Engine API", "volume", s.name, "why_not_mountpoint", p.why)
	}
	return p, nil
}

// folderID returns a folder's device and inode.
func folderID(dir string) (string, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", fmt.Errorf("%s: no stat data", dir)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino), nil
}

// release removes the helper container of a prepared read.
func (s *Source) release() error {
	if s.pin == nil {
		return nil
	}
	err := s.pin.h.remove()
	s.pin = nil
	return err
}

// Close removes the helper container left by a Fingerprint whose part was
// reused, and releases the Engine client.
func (s *Source) Close() error {
	err := s.release()
	return errors.Join(err, s.c.Close())
}

// Fingerprint pins the volume (see the package documentation) and returns
// its fingerprint: on the mountpoint path a hash of the metadata of every
// entry, on the api path "". A volume that no longer exists gives an error
// wrapping ErrGone. The helper stays until WriteTar or Close.
func (s *Source) Fingerprint(ctx context.Context) (string, error) {
	if err := s.release(); err != nil {
		return "", err
	}
	p, err := s.prepare(ctx)
	if err != nil {
		return "", err
	}
	s.pin = p
	if p.mode != ReadMountpoint {
		return "", nil
	}
	fp, err := s.fingerprint(ctx, p)
	if err != nil {
		s.release()
		return "", err
	}
	return fp, nil
}

// WriteTar writes the volume's archive to w through the read path chosen
// by Fingerprint (or now), pausing the volume's containers when asked, and
// removes the helper container afterwards. Stats.Entries counts tar
// entries; Details: read (the path used), files, dirs, symlinks,
// hardlinks, bytes, special_skipped, left_out and, on the mountpoint path,
// vanished, changed_during_read and sparse_skipped.
func (s *Source) WriteTar(ctx context.Context, w io.Writer) (st source.Stats, err error) {
	if s.pin == nil {
		p, err := s.prepare(ctx)
		if err != nil {
			return st, err
		}
		s.pin = p
	}
	p := s.pin
	defer func() { err = errors.Join(err, s.release()) }()
	for _, w := range s.warnings {
		s.log.Warn(w, "volume", s.name)
	}
	if s.pause {
		resume, perr := s.c.pause(ctx, s.name)
		defer func() {
			if rerr := resume(); rerr != nil {
				err = errors.Join(err, fmt.Errorf("volume:%s: %w", s.name, rerr))
			}
		}()
		if perr != nil {
			return st, perr
		}
	}
	if s.beforeRead != nil {
		if err := s.beforeRead(ctx); err != nil {
			return st, err
		}
	}
	var c counts
	if p.mode == ReadMountpoint {
		c, err = s.writeMountpoint(ctx, p, w)
	} else {
		c, err = s.writeAPI(ctx, p, w)
	}
	st = c.stats(p.mode, s.leftOut)
	if err != nil {
		return st, err
	}
	if c.changed > 0 {
		s.log.Warn("files changed while they were read; set sources.volumes.pause_containers for a consistent copy",
			"volume", s.name, "files", c.changed)
	}
	return st, nil
}

// counts are what a read wrote.
type counts struct {
	entries, files, dirs, symlinks, links, bytes int64
	special, vanished, changed                   int64
	sparseSkipped                                int64 // too fragmented, or too many holes (mountpoint path)
}

func (c counts) stats(mode string, leftOut []string) source.Stats {
	d := map[string]string{
		"read":            mode,
		"files":           strconv.FormatInt(c.files, 10),
		"dirs":            strconv.FormatInt(c.dirs, 10),
		"symlinks":        strconv.FormatInt(c.symlinks, 10),
		"hardlinks":       strconv.FormatInt(c.links, 10),
		"bytes":           strconv.FormatInt(c.bytes, 10),
		"special_skipped": strconv.FormatInt(c.special, 10),
	}
	if len(leftOut) > 0 {
		b, _ := json.Marshal(leftOut) // a []string always marshals
		d["left_out"] = string(b)
	}
	if mode == ReadMountpoint {
		d["vanished"] = strconv.FormatInt(c.vanished, 10)
		d["changed_during_read"] = strconv.FormatInt(c.changed, 10)
		d["sparse_skipped"] = strconv.FormatInt(c.sparseSkipped, 10)
	}
	return source.Stats{Entries: c.entries, Details: d}
}

// LeftOut parses Details["left_out"] of a volume part (a JSON array): the
// files its snapshot left out, without their companions.
func LeftOut(details map[string]string) ([]string, error) {
	v := details["left_out"]
	if v == "" {
		return nil, nil
	}
	var out []string
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		return nil, fmt.Errorf("volume: left_out %q: %w", v, err)
	}
	for _, p := range out {
		if _, err := cleanRel(p); err != nil {
			return nil, fmt.Errorf("volume: left_out %q: %w", p, err)
		}
	}
	return out, nil
}
