// Package tarsafe extracts tar streams into a folder without letting an
// archive write outside it, and builds tar headers from file metadata and
// writes archives ([Writer]: archive/tar's bytes, cheaply per file) for
// the sources that write archives, with helpers for walking a tree
// through folder descriptors ([Openat], [Lstatat]).
//
// Extract is what every restorer uses. It refuses entry names (and hard
// link targets) that are absolute or contain a ".." component, and it
// refuses to write through a symbolic link: every parent folder of an
// entry is checked with lstat, so neither a symlink already in the target
// nor one created earlier by the same archive can redirect a later entry.
// As a second line of defence all writes go through an [os.Root] opened on
// the target, so even a folder swapped for a symlink behind Extract's back
// cannot lead outside the target.
//
// Supported entry types are regular files, folders, symbolic links and hard
// links. Character and block devices and named pipes are refused with an
// error unless [Options.SkipSpecial] is set, in which case they are skipped
// and counted in [Stats.Skipped]: fireops never writes such entries itself,
// and creating device nodes from a backup is not something a restore should
// do silently. Unknown entry types are always an error.
//
// Modes (including setuid, setgid and sticky bits), numeric owners and
// access and modification times are restored. Owners are applied by
// number, like tar --numeric-owner, because archives of container volumes
// carry ids that mean nothing by name on the host; when the process may
// not change owners (not root), EPERM is ignored and files belong to the
// current user. Folder modes and times are applied after all entries, so a
// read-only folder can still be filled and its mtime is not disturbed by
// its contents. Extended attributes and ACLs are not restored.
package tarsafe

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// copyBufferSize is the size of the one buffer Extract copies file contents
// through; memory does not grow with file size.
const copyBufferSize = 256 << 10

// ErrUnsafe is wrapped by every error about an entry that would escape the
// target folder (absolute name, "..", a path through a symlink, a hard link
// to something outside or not yet extracted).
var ErrUnsafe = errors.New("unsafe tar entry")

// ErrUnsupported is wrapped by errors about entry types Extract does not
// create (devices, named pipes, unknown types).
var ErrUnsupported = errors.New("unsupported tar entry type")

// Options tunes Extract. The zero value is the safe default.
type Options struct {
	// SkipSpecial skips device and named pipe entries (counting them in
	// Stats.Skipped) instead of failing.
	SkipSpecial bool
	// Map, when set, is called with every entry's cleaned name (and with
	// every hard link's cleaned target) before it is checked and
	// extracted. It returns the name to use inside the target, or false to
	// skip the entry. It lets a restore pick a subtree or rename its top
	// folder. Names it returns are checked like the archive's own.
	Map func(name string) (string, bool)
}

// Stats counts what Extract read and wrote.
type Stats struct {
	// Entries is the number of tar entries read, skipped ones included, so
	// that it can be compared with the count recorded at backup time.
	Entries int64
	// Files, Dirs, Symlinks and Links count the entries created, by type.
	Files, Dirs, Symlinks, Links int64
	// Skipped counts entries left out by Options.Map or SkipSpecial.
	Skipped int64
	// Bytes is the total size of the regular files written.
	Bytes int64
	// Root is true when the archive held an entry for the target folder
	// itself ("./") whose mode, owner and times were applied to it.
	Root bool
}

// dirMeta is what is applied to a folder after all entries are written.
type dirMeta struct {
	name         string
	mode         fs.FileMode
	uid, gid     int
	atime, mtime time.Time
}

type extractor struct {
	ctx   context.Context
	root  *os.Root
	opts  Options
	buf   []byte
	safe  map[string]struct{} // folders known to be real folders (not symlinks)
	dirs  map[string]int      // index into meta, so a repeated folder entry wins
	meta  []dirMeta
	stats Stats
}

// Extract reads the tar stream r and writes its entries below dir, which is
// created (0700) when missing. It reads r to its end, past the tar
// end-of-archive marker, so that a caller hashing r sees every byte. On
// error, what was written so far stays in dir: extract into a staging
// folder and remove it on failure.
func Extract(ctx context.Context, r io.Reader, dir string, opts Options) (Stats, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Stats{}, fmt.Errorf("tarsafe: create %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return Stats{}, fmt.Errorf("tarsafe: open %s: %w", dir, err)
	}
	defer root.Close()
	x := &extractor{
		ctx:  ctx,
		root: root,
		opts: opts,
		buf:  make([]byte, copyBufferSize),
		safe: map[string]struct{}{".": {}},
		dirs: map[string]int{},
	}
	cr := ContextReader(ctx, r)
	tr := tar.NewReader(cr)
	for {
		if err := ctx.Err(); err != nil {
			return x.stats, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return x.stats, fmt.Errorf("tarsafe: read entry %d: %w", x.stats.Entries+1, err)
		}
		x.stats.Entries++
		if err := x.entry(tr, hdr); err != nil {
			return x.stats, err
		}
	}
	if err := x.finishDirs(); err != nil {
		return x.stats, err
	}
	// Drain what follows the end-of-archive marker (record padding).
	if _, err := io.CopyBuffer(io.Discard, cr, x.buf); err != nil {
		return x.stats, fmt.Errorf("tarsafe: read after end of archive: %w", err)
	}
	return x.stats, nil
}

// CleanName checks a tar entry name (or hard link target) and returns it
// cleaned and without a trailing slash; the archive's root is ".". Names
// that are empty, absolute or contain a ".." component are refused with an
// error wrapping ErrUnsafe.
func CleanName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty name", ErrUnsafe)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: %q contains a NUL byte", ErrUnsafe, name)
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w: %q is absolute", ErrUnsafe, name)
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("%w: %q contains \"..\"", ErrUnsafe, name)
		}
	}
	return path.Clean(name), nil
}

// name checks and maps an entry name; ok is false when Map skips it.
func (x *extractor) name(raw string) (string, bool, error) {
	n, err := CleanName(raw)
	if err != nil {
		return "", false, err
	}
	if x.opts.Map != nil {
		m, ok := x.opts.Map(n)
		if !ok {
			return "", false, nil
		}
		if n, err = CleanName(m); err != nil {
			return "", false, fmt.Errorf("%w (mapped from %q)", err, raw)
		}
	}
	return n, true, nil
}

func (x *extractor) entry(tr *tar.Reader, hdr *tar.Header) error {
	name, ok, err := x.name(hdr.Name)
	if err != nil {
		return fmt.Errorf("tarsafe: entry %q: %w", hdr.Name, err)
	}
	if !ok {
		x.stats.Skipped++
		return nil
	}
	fail := func(err error) error { return fmt.Errorf("tarsafe: entry %q: %w", hdr.Name, err) }

	switch hdr.Typeflag {
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if x.opts.SkipSpecial {
			x.stats.Skipped++
			return nil
		}
		return fail(fmt.Errorf("%w: %s (devices and named pipes are not restored)", ErrUnsupported, typeName(hdr.Typeflag)))
	case tar.TypeDir:
		if name == "." {
			x.stats.Root = true
		} else if err := x.mkdir(name); err != nil {
			return fail(err)
		}
		x.stats.Dirs++
		m := dirMeta{name: name, mode: modeOf(hdr), uid: hdr.Uid, gid: hdr.Gid, atime: atimeOf(hdr), mtime: hdr.ModTime}
		if i, ok := x.dirs[name]; ok {
			x.meta[i] = m
		} else {
			x.dirs[name] = len(x.meta)
			x.meta = append(x.meta, m)
		}
		return nil
	}
	if name == "." {
		return fail(fmt.Errorf("%w: a %s cannot replace the target folder", ErrUnsafe, typeName(hdr.Typeflag)))
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		if err := x.file(tr, hdr, name); err != nil {
			return fail(err)
		}
		x.stats.Files++
	case tar.TypeSymlink:
		if err := x.symlink(hdr, name); err != nil {
			return fail(err)
		}
		x.stats.Symlinks++
	case tar.TypeLink:
		if err := x.hardlink(hdr, name); err != nil {
			return fail(err)
		}
		x.stats.Links++
	default:
		return fail(fmt.Errorf("%w: type %q", ErrUnsupported, hdr.Typeflag))
	}
	return nil
}

// parents makes sure every parent folder of name is a real folder inside
// the target, creating missing ones (0755 less umask, like tar; an entry
// for them may follow and set its own) and refusing symlinks.
func (x *extractor) parents(name string) error { return x.walkParents(name, true) }

// walkParents is parents; with create false a missing folder is an error.
func (x *extractor) walkParents(name string, create bool) error {
	dir := path.Dir(name)
	if _, ok := x.safe[dir]; ok {
		return nil
	}
	parts := strings.Split(dir, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		if _, ok := x.safe[p]; ok {
			continue
		}
		fi, err := x.root.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist) && !create:
			return fmt.Errorf("%w: %s is not extracted", ErrUnsafe, p)
		case errors.Is(err, fs.ErrNotExist):
			if err := x.root.Mkdir(p, 0o755); err != nil {
				return fmt.Errorf("create folder %s: %w", p, err)
			}
		case err != nil:
			return fmt.Errorf("check %s: %w", p, err)
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%w: %s is a symbolic link", ErrUnsafe, p)
		case !fi.IsDir():
			return fmt.Errorf("%s is not a folder", p)
		}
		x.safe[p] = struct{}{}
	}
	return nil
}

// clear removes whatever is at name unless it is a folder and keepDir is
// set; a non-empty folder is an error. It never follows a symlink at name.
func (x *extractor) clear(name string, keepDir bool) (isDir bool, err error) {
	fi, err := x.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check %s: %w", name, err)
	}
	if fi.IsDir() && keepDir {
		return true, nil
	}
	if err := x.root.Remove(name); err != nil {
		return false, fmt.Errorf("replace existing %s: %w", name, err)
	}
	delete(x.safe, name)
	if fi.IsDir() {
		// Only an empty folder can be removed, so nothing below it can
		// still be cached; drop such entries anyway.
		for p := range x.safe {
			if strings.HasPrefix(p, name+"/") {
				delete(x.safe, p)
			}
		}
	}
	return false, nil
}

func (x *extractor) mkdir(name string) error {
	if err := x.parents(name); err != nil {
		return err
	}
	isDir, err := x.clear(name, true)
	if err != nil {
		return err
	}
	if !isDir {
		if err := x.root.Mkdir(name, 0o700); err != nil {
			return fmt.Errorf("create folder: %w", err)
		}
	}
	x.safe[name] = struct{}{}
	return nil
}

func (x *extractor) file(tr *tar.Reader, hdr *tar.Header, name string) error {
	if err := x.parents(name); err != nil {
		return err
	}
	if _, err := x.clear(name, false); err != nil {
		return err
	}
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	// Hide os.File's ReadFrom so the copy goes through x.buf.
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, tr, x.buf)
	x.stats.Bytes += n
	if err != nil {
		f.Close()
		return fmt.Errorf("write contents: %w", err)
	}
	if err := chown(f.Chown(hdr.Uid, hdr.Gid)); err != nil {
		f.Close()
		return fmt.Errorf("chown: %w", err)
	}
	if err := f.Chmod(modeOf(hdr)); err != nil {
		f.Close()
		return fmt.Errorf("chmod: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	if err := x.root.Chtimes(name, atimeOf(hdr), hdr.ModTime); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

func (x *extractor) symlink(hdr *tar.Header, name string) error {
	if err := x.parents(name); err != nil {
		return err
	}
	if _, err := x.clear(name, false); err != nil {
		return err
	}
	if hdr.Linkname == "" {
		return fmt.Errorf("symbolic link with an empty target")
	}
	if err := x.root.Symlink(hdr.Linkname, name); err != nil {
		return fmt.Errorf("create symbolic link: %w", err)
	}
	if err := chown(x.root.Lchown(name, hdr.Uid, hdr.Gid)); err != nil {
		return fmt.Errorf("lchown: %w", err)
	}
	// No Root method sets a symlink's own times: use utimensat with
	// AT_SYMLINK_NOFOLLOW relative to the (checked) parent folder.
	parent, err := x.root.Open(path.Dir(name))
	if err != nil {
		return fmt.Errorf("open parent folder: %w", err)
	}
	defer parent.Close()
	ts := []unix.Timespec{unix.NsecToTimespec(atimeOf(hdr).UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	if err := unix.UtimesNanoAt(int(parent.Fd()), path.Base(name), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set symbolic link times: %w", err)
	}
	return nil
}

func (x *extractor) hardlink(hdr *tar.Header, name string) error {
	target, ok, err := x.name(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hard link target: %w", err)
	}
	if !ok {
		return fmt.Errorf("%w: hard link to %q, which is not extracted", ErrUnsafe, hdr.Linkname)
	}
	if target == "." {
		return fmt.Errorf("%w: hard link to the target folder", ErrUnsafe)
	}
	// The target must be a regular file already inside, reached without
	// symlinks: check its parents like an entry's, then the file itself.
	if err := x.walkParents(target, false); err != nil {
		return fmt.Errorf("hard link target %q: %w", hdr.Linkname, err)
	}
	fi, err := x.root.Lstat(target)
	if err != nil {
		return fmt.Errorf("%w: hard link target %q is not extracted: %w", ErrUnsafe, hdr.Linkname, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: hard link target %q is a %s, not a regular file", ErrUnsafe, hdr.Linkname, kindOf(fi.Mode()))
	}
	if err := x.parents(name); err != nil {
		return err
	}
	if target == name {
		return nil // a link to itself: already there
	}
	if _, err := x.clear(name, false); err != nil {
		return err
	}
	if err := x.root.Link(target, name); err != nil {
		return fmt.Errorf("create hard link to %q: %w", hdr.Linkname, err)
	}
	return nil
}

// finishDirs applies folder modes, owners and times, deepest first.
func (x *extractor) finishDirs() error {
	sort.Slice(x.meta, func(i, j int) bool { return x.meta[i].name > x.meta[j].name })
	for _, m := range x.meta {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		fi, err := x.root.Lstat(m.name)
		if err != nil {
			return fmt.Errorf("tarsafe: folder %q: %w", m.name, err)
		}
		if !fi.IsDir() {
			continue // replaced by a later entry
		}
		if err := chown(x.root.Chown(m.name, m.uid, m.gid)); err != nil {
			return fmt.Errorf("tarsafe: folder %q: chown: %w", m.name, err)
		}
		if err := x.root.Chmod(m.name, m.mode); err != nil {
			return fmt.Errorf("tarsafe: folder %q: chmod: %w", m.name, err)
		}
		if err := x.root.Chtimes(m.name, m.atime, m.mtime); err != nil {
			return fmt.Errorf("tarsafe: folder %q: set times: %w", m.name, err)
		}
	}
	return nil
}

// chown drops the errors that only mean "not allowed to give files away":
// EPERM when not root, EINVAL for ids outside the user namespace.
func chown(err error) error {
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) {
		return nil
	}
	return err
}

// modeOf returns the permission bits of an entry, with setuid, setgid and
// sticky.
func modeOf(hdr *tar.Header) fs.FileMode {
	return hdr.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

// atimeOf returns the entry's access time, or its mtime when the archive
// has none (USTAR archives store only mtime).
func atimeOf(hdr *tar.Header) time.Time {
	if hdr.AccessTime.IsZero() {
		return hdr.ModTime
	}
	return hdr.AccessTime
}

// kindOf names a file type for messages.
func kindOf(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "folder"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m.IsRegular():
		return "file"
	default:
		return "special file"
	}
}

func typeName(t byte) string {
	switch t {
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "named pipe"
	case tar.TypeDir:
		return "folder"
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeLink:
		return "hard link"
	default:
		return "file"
	}
}

// ContextReader returns a reader that fails with ctx's error once ctx is
// done, so that a long copy from r stops on cancellation.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return &ctxReader{ctx: ctx, r: r} }

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

// Read reads from the underlying reader unless ctx is done.
func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
