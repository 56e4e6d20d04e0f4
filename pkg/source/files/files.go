// Package files is the "files" source kind: host folders and files from a
// config FileSource, archived as one tar stream, and the restorer that
// writes such a stream into a folder through staging.
//
// # Archive layout
//
// Entry names are the absolute host paths without the leading "/", so
// `tar -x -C /` recreates opt/firetech/... in place and `tar -x -C DIR`
// recreates it under DIR. The folders above each configured path come
// first, as folder entries (read with stat, so a symlinked parent is
// stored as the folder it points to), so their modes, owners and times
// round-trip too. Then each configured path is walked depth first with the
// names of every folder sorted bytewise. Configured paths are cleaned,
// sorted, and a path inside another configured path is dropped (it is
// already included).
//
// Kept: modes (with setuid, setgid, sticky), numeric owners and owner
// names, modification times with nanoseconds (PAX), symbolic links (never
// followed, a configured path that is a symlink included), hard links (the
// second and later names of an inode are hard link entries), empty
// folders. Not kept: access times, extended attributes, ACLs.
//
// # Exclude globs
//
// Each pattern ([path/filepath.Match] syntax: `*` does not cross "/") is
// matched against an entry's base name and against its path relative to
// the configured path it was found under ("cache/*.tmp" below
// /opt/app matches /opt/app/cache/x.tmp). A matching folder is left out
// with everything in it. Configured paths themselves and their parents are
// never excluded.
//
// # Errors, not skips
//
// Nothing is silently lost: a file or folder that cannot be read, that
// vanishes or is replaced (another inode at its name: renamed over,
// swapped for a symlink) between listing its folder and reading it, or
// that shrinks while it is read fails the whole part with an error naming
// the file. Nothing is ever read through a symlink below a configured
// path, nor through a folder swapped in during the walk (see walk).
// Named pipes and devices are an error too (fireops' restore refuses to
// create them, so a backup holding them could not be restored; exclude
// them). Sockets are the one exception: a tar cannot hold them and they
// are runtime artefacts, so they are skipped and counted in
// Stats.Details["sockets_skipped"]. A file that grows while it is read is
// archived with the size it had when opened. A file with holes is stored
// without them, but the holes a part may carry are capped
// ([tarsafe.MaxSparseHoles], 1 TiB: a restore reads them as zeros): a
// file that would pass the cap, or whose data is too scattered to map,
// fails the part naming it (exclude it).
//
// # Recorded roots
//
// Stats.Details[DetailRoots] lists the configured paths as archived (JSON),
// so that a restore in place can tell the archived paths from the folders
// above them: both are folder entries of the archive.
package files

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/fingerprint"
	"github.com/firetech/fireops/pkg/source"
	"github.com/firetech/fireops/pkg/tarsafe"
)

// Kind is the part kind of this package's sources.
const Kind = "files"

// DetailRoots is the Stats.Details key of the archived paths: a JSON list
// of the configured paths as archived (see [Source.Paths]).
const DetailRoots = "roots"

// RecordedRoots returns the archived paths a part's Stats.Details records;
// ok is false for a part written before they were recorded.
func RecordedRoots(details map[string]string) (roots []string, ok bool, err error) {
	v, ok := details[DetailRoots]
	if !ok {
		return nil, false, nil
	}
	if err := json.Unmarshal([]byte(v), &roots); err != nil {
		return nil, true, fmt.Errorf("files: details %s: %w", DetailRoots, err)
	}
	return roots, true, nil
}

// Source archives the paths of one config FileSource.
type Source struct {
	name    string
	roots   []string
	exclude []string
	// beforeOpen and afterRead, when set (by tests), are called with the
	// host path before a folder or file is opened, and after a regular
	// file was archived (read).
	beforeOpen, afterRead func(path string)
	// size is the tar stream's size as the last Fingerprint's walk
	// estimated it (sized: it did), for Size.
	size  int64
	sized bool
}

var _ source.Source = (*Source)(nil)

// New checks cfg and returns its Source. Paths must be absolute and not
// "/"; exclude patterns must be valid globs. Nothing is read from disk
// yet.
func New(cfg config.FileSource) (*Source, error) {
	if cfg.Name == "" {
		return nil, errors.New("files: source has no name")
	}
	if len(cfg.Paths) == 0 {
		return nil, fmt.Errorf("files:%s: no paths", cfg.Name)
	}
	var roots []string
	for _, p := range cfg.Paths {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("files:%s: path %q is not absolute", cfg.Name, p)
		}
		p = filepath.Clean(p)
		if p == "/" {
			return nil, fmt.Errorf("files:%s: archiving / is not supported; list the folders", cfg.Name)
		}
		roots = append(roots, p)
	}
	sort.Strings(roots)
	kept := roots[:0]
	for _, r := range roots {
		if n := len(kept); n > 0 && (r == kept[n-1] || strings.HasPrefix(r, kept[n-1]+"/")) {
			continue // inside the previous root (sorted order puts it right after)
		}
		kept = append(kept, r)
	}
	for _, pat := range cfg.Exclude {
		if _, err := filepath.Match(pat, ""); err != nil {
			return nil, fmt.Errorf("files:%s: exclude pattern %q: %w", cfg.Name, pat, err)
		}
	}
	return &Source{name: cfg.Name, roots: kept, exclude: append([]string(nil), cfg.Exclude...)}, nil
}

// Kind returns "files".
func (s *Source) Kind() string { return Kind }

// Name returns the config's name of the source.
func (s *Source) Name() string { return s.name }

// Paths returns the configured paths as archived: cleaned, sorted, without
// paths inside other ones.
func (s *Source) Paths() []string { return append([]string(nil), s.roots...) }

// entry is one path met by the walk: WalkEntry's Path is the host path,
// Dir the descriptor of the folder holding it (unix.AT_FDCWD for the
// roots and the folders above them), Base its name in that folder (the
// path for those), Info from lstat (stat for the folders above the
// roots), Link a symlink's target.
type entry struct {
	tarsafe.WalkEntry
	name   string // archive name: the absolute path without the leading "/"
	parent bool   // a folder above a configured path
}

// maxNameLen is tarsafe.MaxNameLen, lowered by tests.
var maxNameLen = tarsafe.MaxNameLen

// maxPartHoles is tarsafe.MaxSparseHoles, the hole bytes the sparse
// entries of one part may carry; lowered by tests.
var maxPartHoles int64 = tarsafe.MaxSparseHoles

// walk calls fn for every entry of the archive, in archive order, and
// returns the number of sockets skipped.
//
// The folders above the configured paths come from stat. Each configured
// path is walked by a [tarsafe.Walker] under [tarsafe.WalkStrict]: it is
// opened once (its last component not followed), every folder below it
// relative to the folder above with O_NOFOLLOW|O_DIRECTORY and every
// file relative to its folder with O_NOFOLLOW (WriteTar), and each
// opened folder or file must be the inode its listing saw (device, inode,
// type): a folder or file renamed over, swapped for a symlink or for one
// from elsewhere fails the walk ("was replaced"), and whatever is renamed
// above the current folder cannot redirect it, so nothing outside the
// configured paths is read. Headers come from the fstat of the opened
// folder or file. Paths of any length and depth work (iterative, bounded
// descriptors, only the current path held); a name too long for an
// archive a restore can read ([tarsafe.MaxNameLen]) is an error naming
// it, and so is a named pipe or device; sockets are skipped and counted.
func (s *Source) walk(ctx context.Context, fn func(entry) error) (sockets int64, err error) {
	w := &tarsafe.Walker{
		Policy:     tarsafe.WalkStrict,
		Prefix:     "files:" + s.name,
		MaxNameLen: maxNameLen,
		BeforeOpen: s.beforeOpen,
		// Sockets are all WalkStrict leaves out.
		Skipped: func(tarsafe.WalkEntry, tarsafe.WalkSkip) { sockets++ },
		Visit: func(e tarsafe.WalkEntry) error {
			if err := fn(entry{WalkEntry: e, name: e.Path[1:]}); err != nil {
				return err
			}
			if s.afterRead != nil && e.Info.Mode().IsRegular() {
				s.afterRead(e.Path)
			}
			return nil
		},
	}
	if len(s.exclude) > 0 {
		w.Exclude = func(e tarsafe.WalkEntry) bool { return s.excluded(e.Base, e.Rel) }
	}
	parents := map[string]bool{}
	for _, root := range s.roots {
		// Folders above the root, outermost first.
		var ups []string
		for d := filepath.Dir(root); d != "/"; d = filepath.Dir(d) {
			ups = append(ups, d)
		}
		for i := len(ups) - 1; i >= 0; i-- {
			d := ups[i]
			if parents[d] {
				continue
			}
			parents[d] = true
			fi, err := os.Stat(d)
			if err != nil {
				return sockets, fmt.Errorf("files:%s: %w", s.name, err)
			}
			if !fi.IsDir() {
				return sockets, fmt.Errorf("files:%s: %s is not a folder", s.name, d)
			}
			if err := fn(entry{WalkEntry: tarsafe.WalkEntry{Path: d, Dir: unix.AT_FDCWD, Base: d, Info: fi}, name: d[1:], parent: true}); err != nil {
				return sockets, err
			}
		}
		if err := w.Walk(ctx, root, root[1:]); err != nil {
			return sockets, err
		}
	}
	return sockets, nil
}

// excluded matches the exclude patterns against base, an entry's base
// name, and rel, its path relative to the configured path it was found
// under.
func (s *Source) excluded(base, rel string) bool {
	for _, pat := range s.exclude {
		if ok, _ := filepath.Match(pat, base); ok {
			return true
		}
		if ok, _ := filepath.Match(pat, rel); ok {
			return true
		}
	}
	return false
}

// Fingerprint hashes (SHA-256) the configured paths and exclude patterns
// and, for every entry in archive order, its [fingerprint.AppendEntry]
// line (name, mode, size, mtime and ctime, owner ids, link count, symlink
// target). No contents are read.
//
// The folders above the configured paths count by name, mode and owner
// only: their times and sizes change with unrelated activity (any file
// created in /etc) and are not what is backed up. A reused part thus
// restores those folders with the times of its first upload. (v2: parts
// reused from before v2 do not record their roots, see [DetailRoots]; the
// new version uploads every files part once more.)
func (s *Source) Fingerprint(ctx context.Context) (string, error) {
	fp := fingerprint.NewTree(fmt.Sprintf("fireops files fingerprint v2\x00%q\x00%q\x00", s.roots, s.exclude))
	var size int64
	_, err := s.walk(ctx, func(e entry) error {
		size += tarsafe.EntrySize(e.Info)
		if !e.parent {
			if err := fp.Entry(e.name, e.Info, e.Link); err != nil {
				return fmt.Errorf("files:%s: %w", s.name, err)
			}
			return nil
		}
		st, ok := e.Info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("files:%s: %s: no stat data", s.name, e.Path)
		}
		fmt.Fprintf(fp, "%s parent %o %d %d\n", strconv.Quote(e.name), uint32(e.Info.Mode()), st.Uid, st.Gid)
		return nil
	})
	if err != nil {
		return "", err
	}
	s.size, s.sized = size+tarsafe.EndSize, true
	return fp.Sum(), nil
}

// WriteTar writes the archive to w. Stats.Entries counts tar entries;
// Details holds "files", "dirs", "symlinks", "hardlinks", "bytes",
// "sockets_skipped" and [DetailRoots].
//
// Each entry is written by a [tarsafe.EntryWriter] under
// [tarsafe.WalkStrict]. A regular file's header and contents: it opens
// the file without following a symlink and checks that it is still the
// inode the walk saw, so a file swapped in between is an error, not a
// surprise; whatever took its name is never opened for reading (the name
// is opened with O_PATH and checked first, [tarsafe.OpenRegular]: a
// device node swapped in is not opened, its driver does not run). The
// contents are read straight into the archive writer's buffer: one read
// for a small file. A file with holes (tarsafe.ScanSparse: a megabyte or
// more unallocated) is written as a GNU sparse entry holding only its
// data: its holes are neither read nor stored, and a restore (Extract or
// tar -x) does not allocate them. One whose data is scattered in too many
// pieces to map fails the part with an error naming it, and so does one
// whose holes would bring the part's past maxPartHoles: a restore reads
// every hole as zeros (see [tarsafe.MaxSparseHoles]). One that shrinks
// while it is read fails the part too.
func (s *Source) WriteTar(ctx context.Context, w io.Writer) (source.Stats, error) {
	tw := tarsafe.NewWriter(w)
	ew := &tarsafe.EntryWriter{
		Policy:     tarsafe.WalkStrict,
		Prefix:     "files:" + s.name,
		Writer:     tw,
		Headers:    tarsafe.NewHeaderBuilder(),
		MaxHoles:   maxPartHoles,
		BeforeOpen: s.beforeOpen,
	}
	var st source.Stats
	sockets, err := s.walk(ctx, func(e entry) error {
		if _, err := ew.Write(ctx, e.WalkEntry, e.name); err != nil {
			return err
		}
		st.Entries++
		return nil
	})
	if err != nil {
		return st, err
	}
	if err := tw.Close(); err != nil {
		return st, fmt.Errorf("files:%s: finish archive: %w", s.name, err)
	}
	roots, err := json.Marshal(s.roots)
	if err != nil {
		return st, fmt.Errorf("files:%s: %w", s.name, err)
	}
	st.Details = map[string]string{
		DetailRoots:       string(roots),
		"files":           strconv.FormatInt(ew.Files, 10),
		"dirs":            strconv.FormatInt(ew.Dirs, 10),
		"symlinks":        strconv.FormatInt(ew.Symlinks, 10),
		"hardlinks":       strconv.FormatInt(ew.Links, 10),
		"bytes":           strconv.FormatInt(ew.Bytes, 10),
		"sockets_skipped": strconv.FormatInt(sockets, 10),
	}
	return st, nil
}
