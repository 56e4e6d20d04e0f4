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

	"github.com/firetech/fireops/pkg/fingerprint"
	"github.com/firetech/fireops/pkg/tarsafe"
)

// entry is one path met by the mountpoint walk.
type entry struct {
	rel  string      // path relative to the volume root; "." for the root
	path string      // host path
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
// are later names of a file whose first name was left out.
type walker struct {
	s       *Source
	c       *counts
	dropped map[inode]bool // files whose first name was left out
	seen    map[inode]bool // files with several names already walked
	fn      func(entry) error
}

func (s *Source) walk(ctx context.Context, root string, c *counts, fn func(entry) error) error {
	w := &walker{s: s, c: c, dropped: map[inode]bool{}, seen: map[inode]bool{}, fn: fn}
	fi, err := os.Lstat(root)
	if err != nil {
		return fmt.Errorf("volume:%s: %w", s.name, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("volume:%s: %s is not a folder", s.name, root)
	}
	return w.dir(ctx, entry{rel: ".", path: root, fi: fi})
}

func (w *walker) dir(ctx context.Context, e entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d, err := os.Open(e.path)
	if err != nil && e.rel != "." && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)) {
		w.c.vanished++
		return nil
	}
	if err != nil {
		return fmt.Errorf("volume:%s: %w", w.s.name, err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("volume:%s: read folder %s: %w", w.s.name, e.path, err)
	}
	if err := w.fn(e); err != nil {
		return err
	}
	sort.Strings(names)
	for _, n := range names {
		child := entry{rel: n, path: e.path + "/" + n}
		if e.rel != "." {
			child.rel = e.rel + "/" + n
		}
		fi, err := os.Lstat(child.path)
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
			link, err := os.Readlink(child.path)
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
	tw := tar.NewWriter(w)
	hb := tarsafe.NewHeaderBuilder()
	buf := make([]byte, copyBufferSize)
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
		return s.writeFile(ctx, tw, hb, e, buf, &c)
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
// read). A file that vanished or stopped being a regular file since the
// walk saw it is left out and counted as vanished.
func (s *Source) writeFile(ctx context.Context, tw *tar.Writer, hb *tarsafe.HeaderBuilder, e entry, buf []byte, c *counts) error {
	f, err := os.OpenFile(e.path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ELOOP) {
		c.vanished++
		return nil
	}
	if err != nil {
		return fmt.Errorf("volume:%s: %w", s.name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
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
	src := io.LimitReader(tarsafe.ContextReader(ctx, f), hdr.Size)
	n, err := io.CopyBuffer(tw, src, buf)
	c.bytes += n
	if err != nil {
		return fmt.Errorf("volume:%s: read %s: %w", s.name, e.path, err)
	}
	changed := n != hdr.Size
	if changed {
		if _, err := io.CopyBuffer(tw, io.LimitReader(zeros{}, hdr.Size-n), buf); err != nil {
			return fmt.Errorf("volume:%s: %s: %w", s.name, e.path, err)
		}
	} else if now, err := f.Stat(); err == nil && (now.Size() != fi.Size() || !now.ModTime().Equal(fi.ModTime())) {
		changed = true
	}
	if changed {
		c.changed++
		s.log.Warn("file changed while it was read", "volume", s.name, "file", e.rel, "archived_bytes", hdr.Size, "read_bytes", n)
	}
	return nil
}

// zeros reads zero bytes forever.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
