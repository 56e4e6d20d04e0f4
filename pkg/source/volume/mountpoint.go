package volume

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

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
// folder with O_NOFOLLOW (writeFile), and each opened folder or file is
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
	h := sha256.New()
	fmt.Fprintf(h, "fireops volume fingerprint v1\x00%q\x00%q\x00%q\x00", s.name, p.ident, s.leftOut)
	var line []byte
	var c counts
	var size int64
	err := s.walk(ctx, p.dir, &c, func(e tarsafe.WalkEntry) error {
		size += tarsafe.EntrySize(e.Info)
		var err error
		if line, err = fingerprint.AppendEntry(line[:0], e.Rel, e.Info, e.Link); err != nil {
			return fmt.Errorf("volume:%s: %w", s.name, err)
		}
		h.Write(line)
		return nil
	})
	if err != nil {
		return "", err
	}
	s.size = size + tarsafe.EndSize
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
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
	hb := tarsafe.NewNumericHeaderBuilder() // normalize drops owner names
	err := s.walk(ctx, p.dir, &c, func(e tarsafe.WalkEntry) error {
		if !e.Info.Mode().IsRegular() {
			hdr, err := hb.Header(archiveName(e.Rel), e.Info, e.Link)
			if err != nil {
				return fmt.Errorf("volume:%s: %w", s.name, err)
			}
			if err := tw.WriteHeader(normalize(hdr)); err != nil {
				return fmt.Errorf("volume:%s: %s: %w", s.name, e.Path, err)
			}
			c.entries++
			if e.Info.IsDir() {
				c.dirs++
			} else {
				c.symlinks++
			}
			return nil
		}
		return s.writeFile(ctx, tw, hb, e, &c)
	})
	if err != nil {
		return c, err
	}
	if err := tw.Close(); err != nil {
		return c, fmt.Errorf("volume:%s: finish archive: %w", s.name, err)
	}
	return c, nil
}

// writeFile writes one regular file: header from the open file's fstat,
// then exactly its size in bytes (padded with zeros when it shrank while
// read), read straight into the archive writer's buffer. A file that
// vanished or was replaced since the walk listed it (another inode: a
// rename over it, a hard link or a symlink to a file elsewhere) is left
// out and counted as vanished, and never opened for reading: the name is
// opened with O_PATH and checked first ([tarsafe.OpenRegular]), so a
// device node swapped in is not opened (its driver would run, as root on
// the host). A file with holes (tarsafe.ScanSparse: a
// megabyte or more unallocated, like one made with truncate) is written
// as a GNU sparse entry holding only its data: its holes are neither read
// nor stored, and a restore does not allocate them. One whose data is
// scattered in too many pieces to map is left out, logged and counted in
// sparse_skipped: archived dense it would cost its whole size. So is one
// whose holes would bring the part's past maxPartHoles: a restore reads
// every hole as zeros (see [tarsafe.MaxSparseHoles]). A file left out
// is never the target of a hard link: its later names meet the same test
// and are left out too.
func (s *Source) writeFile(ctx context.Context, tw *tarsafe.Writer, hb *tarsafe.HeaderBuilder, e tarsafe.WalkEntry, c *counts) error {
	if testHookBeforeOpen != nil {
		testHookBeforeOpen(e.Path)
	}
	// Never opened unless it is still the regular file listed: a device
	// node, named pipe or socket the user renamed over it is not opened
	// (no driver open), only left out.
	fd, fi, err := tarsafe.OpenRegular(e.Dir, e.Base, e.Path, e.Info)
	if tarsafe.Gone(err) {
		c.vanished++ // removed, or something else took its name since it was listed
		return nil
	}
	if err != nil {
		return fmt.Errorf("volume:%s: %w", s.name, err)
	}
	defer unix.Close(fd)
	// Before the header: a file left out must not become the target of
	// hard links from its other names. A later name of a file archived
	// is a hard link entry: nothing to scan, no holes.
	var sp *tarsafe.SparseMap
	if hb.LinkTarget(fi) == "" {
		sp, err = tarsafe.ScanSparse(ctx, fd, fi)
		if errors.Is(err, tarsafe.ErrTooFragmented) {
			c.sparseSkipped++
			s.log.Warn("sparse file left out: its data is in too many pieces to archive without its holes",
				"volume", s.name, "file", e.Rel, "size", fi.Size(), "error", err)
			return nil
		}
		if err != nil {
			return fmt.Errorf("volume:%s: %s: %w", s.name, e.Path, err)
		}
		if sp != nil && c.holes+sp.Holes() > maxPartHoles {
			c.sparseSkipped++
			s.log.Warn("sparse file left out: its holes would cost a restore too long (a restore reads every hole as zeros)",
				"volume", s.name, "file", e.Rel, "size", fi.Size(), "holes", sp.Holes(),
				"part_holes", c.holes, "max_part_holes", maxPartHoles)
			return nil
		}
	}
	hdr, err := hb.Header(archiveName(e.Rel), fi, "")
	if err != nil {
		return fmt.Errorf("volume:%s: %w", s.name, err)
	}
	sparse := sp != nil && hdr.Typeflag == tar.TypeReg
	if sparse {
		c.holes += sp.Holes()
		err = tw.WriteSparseHeader(normalize(hdr), sp)
	} else {
		err = tw.WriteHeader(normalize(hdr))
	}
	if err != nil {
		return fmt.Errorf("volume:%s: %s: %w", s.name, e.Path, err)
	}
	c.entries++
	if hdr.Typeflag == tar.TypeLink {
		c.links++
		return nil
	}
	c.files++
	var n int64
	want := hdr.Size
	if sparse {
		want = sp.DataSize()
		n, err = tw.ReadSparse(ctx, fd, sp)
	} else {
		n, err = tw.ReadContents(ctx, tarsafe.FileReader(fd))
	}
	c.bytes += n
	if err != nil {
		return fmt.Errorf("volume:%s: read %s: %w", s.name, e.Path, err)
	}
	changed := n != want
	if changed {
		if err := tw.FillZeros(); err != nil {
			return fmt.Errorf("volume:%s: %s: %w", s.name, e.Path, err)
		}
	} else if now, err := tarsafe.Fstat(fd, e.Base, e.Path); err == nil && (now.Size() != fi.Size() || !now.ModTime().Equal(fi.ModTime())) {
		changed = true
	}
	if changed {
		c.changed++
		s.log.Warn("file changed while it was read", "volume", s.name, "file", e.Rel, "archived_bytes", want, "read_bytes", n)
	}
	return nil
}
