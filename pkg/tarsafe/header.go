package tarsafe

import (
	"archive/tar"
	"fmt"
	"io/fs"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// fileKey identifies an inode, for hard link detection.
type fileKey struct{ dev, ino uint64 }

// FileStamp tells a file from a later one that got its inode number
// after it was removed (file systems reuse them at once): its change and
// modification times and size. Two names of one file that nobody changed
// in between have the same stamp.
type FileStamp struct {
	ctime, mtime syscall.Timespec
	size         int64
}

// StampOf returns the FileStamp of st.
func StampOf(st *syscall.Stat_t) FileStamp {
	return FileStamp{ctime: st.Ctim, mtime: st.Mtim, size: st.Size}
}

// linkTarget is the first name of a file with several (its node in the
// builder's names), and its stamp.
type linkTarget struct {
	name  *nameNode
	stamp FileStamp
}

// HeaderBuilder makes tar headers from file metadata for archive writers.
// It remembers the regular files with more than one link it has seen, by
// (device, inode) and [FileStamp], so that the second and later names of
// a file become hard link entries instead of copies. A name whose inode
// number was seen with another stamp is a regular entry (and the first
// name of what may be a new file): an inode number reused during a walk
// (a hard-linked file removed, a new one created) must not make the new
// file a hard link to the old one's name, and a file changed between two
// of its names is better archived twice than linked to other contents.
// Use one HeaderBuilder per archive; it is not safe for concurrent use.
//
// Owner names are looked up once per id and archive, failed lookups too
// (archive/tar caches only the names it found, so every file of an owner
// the host does not know cost a lookup in the user database).
//
// The first names are kept in a tree of their components (nameTree): a
// user's many hard-linked files in one folder hundreds of KiB deep cost
// that folder's path once, not once per file.
type HeaderBuilder struct {
	links   map[fileKey]linkTarget
	names   nameTree          // the first names of links
	numeric bool              // no owner names
	unames  map[uint32]string // "" where the lookup failed
	gnames  map[uint32]string
	named   namedInfo // passed to tar.FileInfoHeader
}

// NewHeaderBuilder returns a HeaderBuilder for one archive.
func NewHeaderBuilder() *HeaderBuilder {
	return &HeaderBuilder{links: map[fileKey]linkTarget{}, unames: map[uint32]string{}, gnames: map[uint32]string{}}
}

// NewNumericHeaderBuilder returns a HeaderBuilder for one archive whose
// headers carry numeric owners only (Uname and Gname empty): no lookups.
func NewNumericHeaderBuilder() *HeaderBuilder {
	b := NewHeaderBuilder()
	b.numeric = true
	return b
}

// namedInfo gives tar.FileInfoHeader the owner names through
// tar.FileInfoNames, from the builder's cache.
type namedInfo struct {
	fs.FileInfo
	b *HeaderBuilder
}

// Uname returns the name of the file's owner ("" when unknown).
func (n *namedInfo) Uname() (string, error) { return n.ownerName(false), nil }

// Gname returns the name of the file's group ("" when unknown).
func (n *namedInfo) Gname() (string, error) { return n.ownerName(true), nil }

// ownerName returns the name of the file's owner, or with group of its
// group, looked up once per id and archive (a failed lookup too): ""
// when the host does not know it or the builder is numeric.
func (n *namedInfo) ownerName(group bool) string {
	st, ok := n.Sys().(*syscall.Stat_t)
	if !ok || n.b.numeric {
		return ""
	}
	id, cache := st.Uid, n.b.unames
	if group {
		id, cache = st.Gid, n.b.gnames
	}
	name, ok := cache[id]
	if !ok {
		s := strconv.FormatUint(uint64(id), 10)
		if group {
			if g, err := user.LookupGroupId(s); err == nil {
				name = g.Name
			}
		} else if u, err := user.LookupId(s); err == nil {
			name = u.Username
		}
		cache[id] = name
	}
	return name
}

// LinkTarget returns the name that [HeaderBuilder.Header] would make fi a
// hard link to, or "" when it would give a regular entry. It records
// nothing: a caller that may leave the file out asks it first.
func (b *HeaderBuilder) LinkTarget(fi fs.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink > 1 {
		if l, ok := b.links[fileKey{dev: uint64(st.Dev), ino: st.Ino}]; ok && l.stamp == StampOf(st) {
			return l.name.path()
		}
	}
	return ""
}

// Header returns the tar header for the file fi (from lstat or fstat),
// stored in the archive as name (a relative slash-separated path; folders
// get a trailing slash). link is a symbolic link's target, ignored for
// other types. Owners are kept by number and by name (when the host knows
// the name; by number only from a [NewNumericHeaderBuilder]). Modification
// times keep nanoseconds (PAX format); access and change times are left
// out, so an unchanged tree gives the same bytes.
//
// A regular file with more than one link whose inode was already passed to
// this builder, with the same [FileStamp], yields a hard link entry
// (tar.TypeLink, Size 0) pointing at the first name; the caller must then
// write no contents. Sockets are refused: a tar archive cannot hold them.
func (b *HeaderBuilder) Header(name string, fi fs.FileInfo, link string) (*tar.Header, error) {
	if fi.Mode()&fs.ModeSocket != 0 {
		return nil, fmt.Errorf("tarsafe: %s: sockets cannot be archived", name)
	}
	b.named = namedInfo{FileInfo: fi, b: b}
	hdr, err := tar.FileInfoHeader(&b.named, link)
	b.named.FileInfo = nil
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
		key, stamp := fileKey{dev: uint64(st.Dev), ino: st.Ino}, StampOf(st)
		if first, seen := b.links[key]; seen && first.stamp == stamp {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = first.name.path()
			hdr.Size = 0
		} else {
			b.links[key] = linkTarget{name: b.names.find(name, true), stamp: stamp}
		}
	}
	return hdr, nil
}
