package tarsafe

import (
	"archive/tar"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"time"
)

// fileKey identifies an inode, for hard link detection.
type fileKey struct{ dev, ino uint64 }

// HeaderBuilder makes tar headers from file metadata for archive writers.
// It remembers the regular files with more than one link it has seen, by
// (device, inode), so that the second and later names of a file become hard
// link entries instead of copies. Use one HeaderBuilder per archive; it is
// not safe for concurrent use.
type HeaderBuilder struct {
	links map[fileKey]string
}

// NewHeaderBuilder returns a HeaderBuilder for one archive.
func NewHeaderBuilder() *HeaderBuilder {
	return &HeaderBuilder{links: map[fileKey]string{}}
}

// Header returns the tar header for the file fi (from lstat or fstat),
// stored in the archive as name (a relative slash-separated path; folders
// get a trailing slash). link is a symbolic link's target, ignored for
// other types. Owners are kept by number and by name (when the host knows
// the name). Modification times keep nanoseconds (PAX format); access and
// change times are left out, so an unchanged tree gives the same bytes.
//
// A regular file with more than one link whose inode was already passed to
// this builder yields a hard link entry (tar.TypeLink, Size 0) pointing at
// the first name; the caller must then write no contents. Sockets are
// refused: a tar archive cannot hold them.
func (b *HeaderBuilder) Header(name string, fi fs.FileInfo, link string) (*tar.Header, error) {
	if fi.Mode()&fs.ModeSocket != 0 {
		return nil, fmt.Errorf("tarsafe: %s: sockets cannot be archived", name)
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return nil, fmt.Errorf("tarsafe: %s: %w", name, err)
	}
	name = strings.TrimSuffix(name, "/")
	if fi.IsDir() {
		name += "/"
	}
	hdr.Name = name
	hdr.Format = tar.FormatPAX
	hdr.AccessTime = time.Time{}
	hdr.ChangeTime = time.Time{}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink > 1 {
		key := fileKey{dev: uint64(st.Dev), ino: st.Ino}
		if first, seen := b.links[key]; seen {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = first
			hdr.Size = 0
		} else {
			b.links[key] = name
		}
	}
	return hdr, nil
}
