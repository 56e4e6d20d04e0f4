package volume

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/firetech/fireops/pkg/fingerprint"
	"github.com/firetech/fireops/pkg/tarsafe"
)

// archiveName is an entry's name in the archive: "./" + rel.
func archiveName(rel string) string {
	if rel == "." {
		return "./"
	}
	return "./" + rel
}

// inode identifies a file, for hard links to files left out.
type inode struct{ dev, ino uint64 }

// Test hooks, set only by tests (not in parallel ones): called with the
// host path before a folder or file is opened, and after a regular file
// was archived (read).
var testHookBeforeOpen, testHookAfterFile func(path string)

// maxNameLen is tarsafe.MaxNameLen, lowered by tests.
var maxNameLen = tarsafe.MaxNameLen

// maxPartHoles is tarsafe.MaxSparseHoles, the hole bytes the sparse
// entries of one volume's archive may carry; lowered by tests.
var maxPartHoles int64 = tarsafe.MaxSparseHoles

// walk calls fn for every entry of the archive of the volume's folder
// root, in archive order: the root, then depth first with every folder's
// names sorted bytewise (the order of the Engine's archiver). Left-out
// names and special files are skipped; so are later names of a file
// whose first name was left out.
//
// The walk is a [tarsafe.Walker] under [tarsafe.WalkTolerant]. Nothing
// is read through a host path below the root, which is opened once:
// folders are opened relative to the folder above with
// O_NOFOLLOW|O_DIRECTORY (a [tarsafe.DirChain]), files relative to their
// folder with O_NOFOLLOW (writeEntry), and each opened folder or file is
// checked to be the inode the listing saw (device, inode, type). A user
// who renames or swaps a folder or file of their volume for a symlink, a
// hard link or a folder from elsewhere while it is walked (between
// listing and opening, or while an earlier file is read) gets it left out
// and counted as vanished, never the other file in their archive.
// Headers come from the fstat of the opened folder or file. Paths of any
// length and depth work: the walk is iterative, holds the path of the
// current folder only, and a bounded number of descriptors; an entry
// whose name is longer than an archive can hold for a restore
// ([tarsafe.MaxNameLen]) is left out with everything below it, counted in
// special_skipped and logged.
func (s *Source) walk(ctx context.Context, root string, c *counts, fn func(tarsafe.WalkEntry) error) error {
	dropped := map[inode]tarsafe.FileStamp{} // files whose first name was left out
	seen := map[inode]tarsafe.FileStamp{}    // files with several names already walked
	w := &tarsafe.Walker{
		Policy:     tarsafe.WalkTolerant,
		Prefix:     "volume:" + s.name,
		RootFolder: true,
		MaxNameLen: maxNameLen,
		BeforeOpen: testHookBeforeOpen,
		Exclude:    func(e tarsafe.WalkEntry) bool { return s.excluded[e.Rel] },
		Excluded: func(e tarsafe.WalkEntry) {
			// When it is the first name of a file with several, its other
			// names are left out too (as the api path does). The stamp
			// tells that file from a later one given its inode number (the
			// file removed during the walk, a new one created).
			if k, stamp, ok := linked(e); ok {
				if was, ok := seen[k]; !ok || was != stamp {
					dropped[k] = stamp
				}
			}
		},
		Skipped: func(e tarsafe.WalkEntry, why tarsafe.WalkSkip) {
			switch why {
			case tarsafe.SkipVanished:
				c.vanished++
			case tarsafe.SkipTooLong:
				c.special++
				s.log.Warn("path too long for the archive, left out with what it holds", "volume", s.name,
					"path", e.Rel[:min(len(e.Rel), 200)]+"...", "bytes", len(e.Rel))
			default: // sockets, named pipes, devices
				c.special++
			}
		},
		Visit: func(e tarsafe.WalkEntry) error {
			if k, stamp, ok := linked(e); ok {
				if d, ok := dropped[k]; ok && d == stamp {
					return nil
				}
				seen[k] = stamp
			}
			if err := fn(e); err != nil {
				return err
			}
			if testHookAfterFile != nil && e.Info.Mode().IsRegular() {
				testHookAfterFile(e.Path)
			}
			return nil
		},
	}
	return w.Walk(ctx, root, ".")
}

// linked returns the identity of e when it is a regular file with
// several names.
func linked(e tarsafe.WalkEntry) (inode, tarsafe.FileStamp, bool) {
	st, ok := e.Info.Sys().(*syscall.Stat_t)
	if !ok || !e.Info.Mode().IsRegular() || st.Nlink < 2 {
		return inode{}, tarsafe.FileStamp{}, false
	}
	return inode{uint64(st.Dev), st.Ino}, tarsafe.StampOf(st), true
}

// fingerprint hashes the metadata of every entry the archive would hold.
func (s *Source) fingerprint(ctx context.Context, p *pinned) (string, error) {
	fp := fingerprint.NewTree(fmt.Sprintf("fireops volume fingerprint v1\x00%q\x00%q\x00%q\x00", s.name, p.ident, s.leftOut))
	var c counts
	var size int64
	err := s.walk(ctx, p.dir, &c, func(e tarsafe.WalkEntry) error {
		size += tarsafe.EntrySize(e.Info)
		if err := fp.Entry(e.Rel, e.Info, e.Link); err != nil {
			return fmt.Errorf("volume:%s: %w", s.name, err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	s.size = size + tarsafe.EndSize
	return "sha256:" + fp.Sum(), nil
}

// normalize returns the header both read paths write for an entry: type,
// name, link, size, permission bits with setuid/setgid/sticky, numeric
// owner and the modification time in whole seconds; nothing else (no
// owner names, access or change times, extended attributes).
func normalize(h *tar.Header) *tar.Header {
	return &tar.Header{
		Typeflag: h.Typeflag,
		Name:     h.Name,
		Linkname: h.Linkname,
		Size:     h.Size,
		Mode:     h.Mode & 0o7777,
		Uid:      h.Uid,
		Gid:      h.Gid,
		ModTime:  h.ModTime.Truncate(time.Second),
		Format:   tar.FormatPAX,
	}
}

// writeMountpoint archives the volume's host folder.
func (s *Source) writeMountpoint(ctx context.Context, p *pinned, w io.Writer) (counts, error) {
	var c counts
	tw := tarsafe.NewWriter(w)
	ew := &tarsafe.EntryWriter{
		Policy:     tarsafe.WalkTolerant,
		Prefix:     "volume:" + s.name,
		Writer:     tw,
		Headers:    tarsafe.NewNumericHeaderBuilder(), // normalize drops owner names
		Normalize:  normalize,
		MaxHoles:   maxPartHoles,
		BeforeOpen: testHookBeforeOpen,
	}
	err := s.walk(ctx, p.dir, &c, func(e tarsafe.WalkEntry) error {
		return s.writeEntry(ctx, ew, e, &c)
	})
	c.entries, c.files, c.dirs, c.symlinks, c.links, c.bytes = ew.Entries, ew.Files, ew.Dirs, ew.Symlinks, ew.Links, ew.Bytes
	if err != nil {
		return c, err
	}
	if err := tw.Close(); err != nil {
		return c, fmt.Errorf("volume:%s: finish archive: %w", s.name, err)
	}
	return c, nil
}

// writeEntry writes one entry with ew ([tarsafe.EntryWriter] under
// [tarsafe.WalkTolerant], which counts what it writes) and counts what it
// leaves out: a folder or symlink as its
// header; a regular file as its header from the open file's fstat, then
// exactly its size in bytes (padded with zeros when it shrank while
// read), read straight into the archive writer's buffer. A file that
// vanished or was replaced since the walk listed it (another inode: a
// rename over it, a hard link or a symlink to a file elsewhere) is left
// out and counted as vanished, and never opened for reading: the name is
// opened with O_PATH and checked first ([tarsafe.OpenRegular]), so a
// device node swapped in is not opened (its driver would run, as root on
// the host). A file with holes (tarsafe.ScanSparse: a megabyte or more
// unallocated, like one made with truncate) is written as a GNU sparse
// entry holding only its data: its holes are neither read nor stored, and
// a restore does not allocate them. One whose data is scattered in too
// many pieces to map is left out, logged and counted in sparse_skipped:
// archived dense it would cost its whole size. So is one whose holes
// would bring the part's past maxPartHoles: a restore reads every hole as
// zeros (see [tarsafe.MaxSparseHoles]). A file left out is never the
// target of a hard link: its later names meet the same test and are left
// out too.
func (s *Source) writeEntry(ctx context.Context, ew *tarsafe.EntryWriter, e tarsafe.WalkEntry, c *counts) error {
	holes := ew.Holes
	r, err := ew.Write(ctx, e, archiveName(e.Rel))
	if err != nil {
		return err
	}
	switch r.Skip {
	case tarsafe.SkipVanished:
		c.vanished++ // removed, or something else took its name since it was listed
	case tarsafe.SkipFragmented:
		c.sparseSkipped++
		s.log.Warn("sparse file left out: its data is in too many pieces to archive without its holes",
			"volume", s.name, "file", e.Rel, "size", r.Info.Size(), "error", r.Err)
	case tarsafe.SkipHoles:
		c.sparseSkipped++
		s.log.Warn("sparse file left out: its holes would cost a restore too long (a restore reads every hole as zeros)",
			"volume", s.name, "file", e.Rel, "size", r.Info.Size(), "holes", r.Holes,
			"part_holes", holes, "max_part_holes", maxPartHoles)
	}
	if r.Changed {
		c.changed++
		s.log.Warn("file changed while it was read", "volume", s.name, "file", e.Rel, "archived_bytes", r.Want, "read_bytes", r.Read)
	}
	return nil
}
