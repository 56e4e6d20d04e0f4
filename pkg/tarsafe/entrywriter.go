package tarsafe

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io/fs"

	"golang.org/x/sys/unix"
)

// EntryWriter writes the entries a [Walker] meets into an archive, for
// the sources that archive a host folder; with the walker it is their
// defence against a tree whose owner changes it while it is archived.
//
// A regular file is opened without following a symlink and must still be
// the inode the walk saw, so a file swapped in between is never read;
// whatever took its name is never opened for reading either: the name is
// opened with O_PATH and checked first ([OpenRegular]), so a device node
// swapped in is not opened (its driver would run, as root on the host).
// The header comes from the fstat of the opened file, and the contents
// are read straight into the archive writer's buffer: one read for a
// small file. A file with holes ([ScanSparse]: a megabyte or more
// unallocated, like one made with truncate) is written as a GNU sparse
// entry holding only its data: its holes are neither read nor stored,
// and a restore (Extract or tar -x) does not allocate them. The holes of
// one archive are capped (MaxHoles): a restore reads every hole as zeros
// (see [MaxSparseHoles]). A later name of a file archived is a hard link
// entry: nothing to scan, no holes.
//
// The [WalkPolicy] says what happens to a file that vanished or was
// replaced since it was listed (another inode: a rename over it, a hard
// link or a symlink to a file elsewhere), to one whose data is scattered
// in too many pieces to map ([ErrTooFragmented]) or whose holes would
// bring the archive's past MaxHoles, and to one that shrinks while it is
// read. [WalkStrict] fails with an error naming the file. [WalkTolerant]
// leaves the first three out (told in [Written].Skip; a file left out is
// never the target of a hard link, as its later names meet the same test
// and are left out too) and writes the last with exactly the size in its
// header, padded with zeros ([Written].Changed). A file that grows while
// it is read is archived with the size it had when opened.
//
// Set the fields, then call Write for each entry; an EntryWriter is not
// safe for concurrent use.
type EntryWriter struct {
	// Policy says whether a file that cannot be archived whole fails the
	// archive or is left out.
	Policy WalkPolicy
	// Prefix starts every error message ("files:web").
	Prefix string
	// Writer is the archive written to.
	Writer *Writer
	// Headers makes the entries' headers (and knows the hard links).
	Headers *HeaderBuilder
	// Normalize, when set, returns the header written for the one
	// Headers made.
	Normalize func(*tar.Header) *tar.Header
	// MaxHoles is the most hole bytes the sparse entries written may
	// carry together; Holes counts them.
	MaxHoles, Holes int64
	// BeforeOpen, when set (by tests), is called with the host path of a
	// regular file before it is opened.
	BeforeOpen func(path string)

	// Entries counts the entries whose header was written (a file's even
	// when reading its contents then failed): Files regular files, Dirs
	// folders, Symlinks symlinks and Links hard link entries. Bytes counts
	// the content bytes read.
	Entries, Files, Dirs, Symlinks, Links, Bytes int64
}

// Written is what [EntryWriter.Write] did with one entry.
type Written struct {
	// Skip is why the entry was left out (WalkTolerant only):
	// [SkipVanished], [SkipFragmented] or [SkipHoles]; 0 when it was not.
	Skip WalkSkip
	// Info is the fstat of the opened file (nil when it vanished), Holes
	// the hole bytes of a sparse one and Err what [ScanSparse] said of
	// one too fragmented: what the log of a file left out tells.
	Info  fs.FileInfo
	Holes int64
	Err   error
	// Read is the content bytes read, Want those the entry holds (the
	// data of a sparse one); Changed says (WalkTolerant only) that the
	// file shrank while it was read, padded with zeros to Want, or that
	// its size or modification time changed.
	Read, Want int64
	Changed    bool
}

// Write writes e, whose archive name is name: a folder or symlink as its
// header, a regular file as its header and contents; it counts what it
// wrote in w's counters.
func (w *EntryWriter) Write(ctx context.Context, e WalkEntry, name string) (Written, error) {
	if e.Info.Mode().IsRegular() {
		return w.writeFile(ctx, e, name)
	}
	hdr, err := w.Headers.Header(name, e.Info, e.Link)
	if err != nil {
		return Written{}, fmt.Errorf("%s: %w", w.Prefix, err)
	}
	if err := w.writeHeader(hdr, nil); err != nil {
		return Written{}, fmt.Errorf("%s: %s: %w", w.Prefix, e.Path, err)
	}
	w.Entries++
	if e.Info.IsDir() {
		w.Dirs++
	} else {
		w.Symlinks++
	}
	return Written{}, nil
}

func (w *EntryWriter) writeHeader(hdr *tar.Header, sp *SparseMap) error {
	if w.Normalize != nil {
		hdr = w.Normalize(hdr)
	}
	if sp != nil {
		return w.Writer.WriteSparseHeader(hdr, sp)
	}
	return w.Writer.WriteHeader(hdr)
}

func (w *EntryWriter) writeFile(ctx context.Context, e WalkEntry, name string) (r Written, err error) {
	tolerant := w.Policy == WalkTolerant
	if w.BeforeOpen != nil {
		w.BeforeOpen(e.Path)
	}
	fd, fi, err := OpenRegular(e.Dir, e.Base, e.Path, e.Info)
	if tolerant && Gone(err) {
		return Written{Skip: SkipVanished}, nil // removed, or something else took its name
	}
	if err != nil {
		return r, StrictError(w.Prefix, e.Path, err)
	}
	defer unix.Close(fd)
	r.Info = fi
	// Before the header: a file left out must not become the target of
	// hard links from its other names.
	var sp *SparseMap
	if w.Headers.LinkTarget(fi) == "" {
		sp, err = ScanSparse(ctx, fd, fi)
		if errors.Is(err, ErrTooFragmented) {
			if tolerant {
				r.Skip, r.Err = SkipFragmented, err
				return r, nil
			}
			return r, fmt.Errorf("%s: %s: %w; exclude it, or copy it without holes", w.Prefix, e.Path, err)
		}
		if err != nil {
			return r, fmt.Errorf("%s: %s: %w", w.Prefix, e.Path, err)
		}
		if sp != nil && w.Holes+sp.Holes() > w.MaxHoles {
			if tolerant {
				r.Skip, r.Holes = SkipHoles, sp.Holes()
				return r, nil
			}
			return r, fmt.Errorf("%s: %s: %w: its %d bytes of holes would bring the part's to %d, over %d (a restore reads every hole as zeros); exclude it",
				w.Prefix, e.Path, ErrTooManyHoles, sp.Holes(), w.Holes+sp.Holes(), w.MaxHoles)
		}
	}
	hdr, err := w.Headers.Header(name, fi, "")
	if err != nil {
		return r, fmt.Errorf("%s: %w", w.Prefix, err)
	}
	if hdr.Typeflag != tar.TypeReg {
		sp = nil
	}
	if sp != nil {
		w.Holes += sp.Holes()
	}
	if err := w.writeHeader(hdr, sp); err != nil {
		return r, fmt.Errorf("%s: %s: %w", w.Prefix, e.Path, err)
	}
	w.Entries++
	if hdr.Typeflag == tar.TypeLink {
		w.Links++
		return r, nil
	}
	w.Files++
	r.Want = hdr.Size
	if sp != nil {
		r.Want = sp.DataSize()
		r.Read, err = w.Writer.ReadSparse(ctx, fd, sp)
	} else {
		r.Read, err = w.Writer.ReadContents(ctx, FileReader(fd))
	}
	w.Bytes += r.Read
	if err != nil {
		return r, fmt.Errorf("%s: read %s: %w", w.Prefix, e.Path, err)
	}
	if r.Read != r.Want {
		if !tolerant {
			return r, fmt.Errorf("%s: %s shrank while it was read (%d of %d bytes)", w.Prefix, e.Path, r.Read, r.Want)
		}
		r.Changed = true
		if err := w.Writer.FillZeros(); err != nil {
			return r, fmt.Errorf("%s: %s: %w", w.Prefix, e.Path, err)
		}
	} else if tolerant {
		now, err := Fstat(fd, e.Base, e.Path)
		r.Changed = err == nil && (now.Size() != fi.Size() || !now.ModTime().Equal(fi.ModTime()))
	}
	return r, nil
}
