package volume

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/firetech/fireops/pkg/fingerprint"
	"github.com/firetech/fireops/pkg/tarsafe"
)

// entry is one path met by the mountpoint walk.
type entry struct {
	rel  string      // path relative to the volume root; "." for the root
	path string      // host path
	dir  int         // descriptor of the folder holding it (unix.AT_FDCWD for the root)
	base string      // its name in that folder (the path for the root)
	fi   fs.FileInfo // from lstat
	link string      // symlink target
}

// archiveName is an entry's name in the archive: "./" + rel.
func archiveName(rel string) string {
	if rel == "." {
		return "./"
	}
	return "./" + rel
}

// inode identifies a file, for hard links to files left out.
type inode struct{ dev, ino uint64 }

// walker walks a volume's folder in archive order: the root, then depth
// first with every folder's names sorted bytewise (the order of the
// Engine's archiver). Left-out names and special files are skipped; so
// are later names of a file whose first name was left out. Below the root
// it works through folder descriptors (openat, fstatat and readlinkat
// relative to the parent folder, which stays open while its entries are
// walked; folders are opened with O_NOFOLLOW): cheaper per file than host
// paths.
type walker struct {
	s       *Source
	c       *counts
	dropped map[inode]bool // files whose first name was left out
	seen    map[inode]bool // files with several names already walked
	fn      func(entry) error
	dirbuf  []byte // getdents buffer
}

func (s *Source) walk(ctx context.Context, root string, c *counts, fn func(entry) error) error {
	w := &walker{s: s, c: c, dropped: map[inode]bool{}, seen: map[inode]bool{}, fn: fn, dirbuf: make([]byte, 32<<10)}
	fi, err := os.Lstat(root)
	if err != nil {
		return fmt.Errorf("volume:%s: %w", s.name, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("volume:%s: %s is not a folder", s.name, root)
	}
	return w.dir(ctx, entry{rel: ".", path: root, dir: unix.AT_FDCWD, base: root, fi: fi})
}

func (w *walker) dir(ctx context.Context, e entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// A folder replaced by a symlink since it was listed (ELOOP) is gone
	// as a folder, like one removed.
	fd, err := tarsafe.Openat(e.dir, e.base, e.path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	if err != nil && e.rel != "." && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ELOOP)) {
		w.c.vanished++
		return nil
	}
	if err != nil {
		return fmt.Errorf("volume:%s: %w", w.s.name, err)
	}
	defer unix.Close(fd)
	names, err := tarsafe.ReadDirNames(fd, e.path, w.dirbuf)
	if err != nil {
		return fmt.Errorf("volume:%s: read folder %s: %w", w.s.name, e.path, err)
	}
	if err := w.fn(e); err != nil {
		return err
	}
	sort.Strings(names)
	for _, n := range names {
		child := entry{rel: n, path: e.path + "/" + n, dir: fd, base: n}
		if e.rel != "." {
			child.rel = e.rel + "/" + n
		}
		fi, err := tarsafe.Lstatat(fd, n, child.path)
		if errors.Is(err, fs.ErrNotExist) {
			w.c.vanished++
			continue
		}
		if err != nil {
			return fmt.Errorf("volume:%s: %w", w.s.name, err)
		}
		child.fi = fi
		st, _ := fi.Sys().(*syscall.Stat_t)
		if w.s.excluded[child.rel] {
			// Left out. When it is the first name of a file with several,
			// its other names are left out too (as the api path does).
			if st != nil && fi.Mode().IsRegular() && st.Nlink > 1 {
				k := inode{uint64(st.Dev), st.Ino}
				if !w.seen[k] {
					w.dropped[k] = true
				}
			}
			continue
		}
		switch m := fi.Mode(); {
		case m.IsDir():
			if err := w.dir(ctx, child); err != nil {
				return err
			}
			continue
		case m.IsRegular():
			if st != nil && st.Nlink > 1 {
				k := inode{uint64(st.Dev), st.Ino}
				if w.dropped[k] {
					continue
				}
				w.seen[k] = true
			}
		case m&fs.ModeSymlink != 0:
			link, err := tarsafe.Readlinkat(fd, n, child.path)
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.EINVAL) {
				w.c.vanished++
				continue
			}
			if err != nil {
				return fmt.Errorf("volume:%s: %w", w.s.name, err)
			}
			child.link = link
		default: // sockets, named pipes, devices
			w.c.special++
			continue
		}
		if err := w.fn(child); err != nil {
			return err
		}
	}
	return nil
}

// fingerprint hashes the metadata of every entry the archive would hold.
func (s *Source) fingerprint(ctx context.Context, p *pinned) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "fireops volume fingerprint v1\x00%q\x00%q\x00%q\x00", s.name, p.ident, s.leftOut)
	var line []byte
	var c counts
	err := s.walk(ctx, p.dir, &c, func(e entry) error {
		var err error
		if line, err = fingerprint.AppendEntry(line[:0], e.rel, e.fi, e.link); err != nil {
			return fmt.Errorf("volume:%s: %w", s.name, err)
		}
		h.Write(line)
		return nil
	})
	if err != nil {
		return "", err
	}
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
	err := s.walk(ctx, p.dir, &c, func(e entry) error {
		if !e.fi.Mode().IsRegular() {
			hdr, err := hb.Header(archiveName(e.rel), e.fi, e.link)
			if err != nil {
				return fmt.Errorf("volume:%s: %w", s.name, err)
			}
			if err := tw.WriteHeader(normalize(hdr)); err != nil {
				return fmt.Errorf("volume:%s: %s: %w", s.name, e.path, err)
			}
			c.entries++
			if e.fi.IsDir() {
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
// vanished or stopped being a regular file since the walk saw it is left
// out and counted as vanished.
func (s *Source) writeFile(ctx context.Context, tw *tarsafe.Writer, hb *tarsafe.HeaderBuilder, e entry, c *counts) error {
	fd, err := tarsafe.Openat(e.dir, e.base, e.path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ELOOP) {
		c.vanished++
		return nil
	}
	if err != nil {
		return fmt.Errorf("volume:%s: %w", s.name, err)
	}
	defer unix.Close(fd)
	fi, err := tarsafe.Fstat(fd, e.base, e.path)
	if err != nil {
		return fmt.Errorf("volume:%s: %w", s.name, err)
	}
	if !fi.Mode().IsRegular() {
		c.vanished++
		return nil
	}
	hdr, err := hb.Header(archiveName(e.rel), fi, "")
	if err != nil {
		return fmt.Errorf("volume:%s: %w", s.name, err)
	}
	if err := tw.WriteHeader(normalize(hdr)); err != nil {
		return fmt.Errorf("volume:%s: %s: %w", s.name, e.path, err)
	}
	c.entries++
	if hdr.Typeflag == tar.TypeLink {
		c.links++
		return nil
	}
	c.files++
	n, err := tw.ReadContents(ctx, tarsafe.FileReader(fd))
	c.bytes += n
	if err != nil {
		return fmt.Errorf("volume:%s: read %s: %w", s.name, e.path, err)
	}
	changed := n != hdr.Size
	if changed {
		if err := tw.FillZeros(); err != nil {
			return fmt.Errorf("volume:%s: %s: %w", s.name, e.path, err)
		}
	} else if now, err := tarsafe.Fstat(fd, e.base, e.path); err == nil && (now.Size() != fi.Size() || !now.ModTime().Equal(fi.ModTime())) {
		changed = true
	}
	if changed {
		c.changed++
		s.log.Warn("file changed while it was read", "volume", s.name, "file", e.rel, "archived_bytes", hdr.Size, "read_bytes", n)
	}
	return nil
}
