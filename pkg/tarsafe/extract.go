// Package tarsafe extracts tar streams into a folder without letting an
// archive write outside it, and builds tar headers from file metadata and
// writes archives ([Writer]: archive/tar's bytes, cheaply per file) for
// the sources that write archives: the one tree walker ([Walker], strict
// or tolerant of what changes during the walk, through folder
// descriptors) and entry writer ([EntryWriter]) both sources use, and
// [ApplyMeta], the one way a restored folder gets its owner, mode and
// times.
//
// Extract is what every restorer uses. It refuses entry names (and hard
// link targets) that are absolute or contain a ".." component, and it
// refuses to write through a symbolic link: every parent folder of an
// entry is opened relative to the one above it with O_NOFOLLOW|O_DIRECTORY
// and every entry is created relative to its opened parent (openat,
// mkdirat, symlinkat, linkat, never following a symlink at the name), so
// neither a symlink already in the target nor one created earlier by the
// same archive can redirect a later entry. The opened chain of parents is
// kept from one entry to the next, so the work per entry does not grow
// with its depth (one openat per new folder level).
//
// Sparse files in GNU's PAX format 1.0 (what fireops writes for a file
// with holes, see [ScanSparse]) are written without their holes: the file
// gets its size first and only the 4 KiB blocks that are not all zeros
// are written, so a tiny archive declaring a terabyte file allocates
// nothing and never writes it dense. Other sparse forms (old GNU 'S', PAX
// 0.x) are refused with an error wrapping ErrUnsupported. The context is
// checked between entries and before every chunk of a file's contents,
// holes included.
//
// Supported entry types are regular files, folders, symbolic links and hard
// links. Character and block devices and named pipes are refused with an
// error unless [Options.SkipSpecial] is set, in which case they are skipped
// and counted in [Stats.Skipped]: fireops never writes such entries itself,
// and creating device nodes from a backup is not something a restore should
// do silently. Unknown entry types are always an error.
//
// Modes, numeric owners and access and modification times are restored,
// except that no file gets a setuid or setgid bit and the target folder
// itself stays private (0700 when Extract creates it): its "./" entry's
// metadata is returned for the caller to apply when it commits (see
// [ApplyRoot] and [Stats.SetIDDropped]; modes.go says why). Owners are
// applied by number, like tar --numeric-owner, because archives of
// container volumes carry ids that mean nothing by name on the host; when
// the process may not change owners (not root), EPERM is ignored and files
// belong to the current user. Folder modes and times are applied after all entries, so a
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
	// itself ("./"). Its owner, mode and times are in RootMeta, not
	// applied: the target stays private until the caller commits it and
	// applies them with ApplyRoot.
	Root bool
	// RootMeta is the "./" entry's metadata (the last one's), when Root.
	RootMeta Meta
	// SetIDDropped counts the regular files whose setuid, setgid or
	// sticky bit was not applied (see the package documentation).
	SetIDDropped int64
}

// dirMeta is what is applied to a folder after all entries are written.
type dirMeta struct {
	name         *nameNode // in extractor.names
	mode         fs.FileMode
	uid, gid     int
	atime, mtime time.Time
}

// maxHeldDirs bounds the folder descriptors Extract keeps open for the
// chain of parents of the current entry: the deepest maxHeldDirs levels,
// and above them one level in every maxHeldDirs (a 1 MiB name, 500k
// levels, holds about 2,200). Going back up to a closed level reopens at
// most maxHeldDirs levels from the nearest open one, so the work stays
// linear in the entries.
const maxHeldDirs = 256

// ctxCheckEvery is how many folder levels Extract walks between two
// checks of its context.
const ctxCheckEvery = 1024

// level is one folder of the chain of the current entry's parents.
type level struct {
	name string // the component
	fd   int    // open folder, -1 once closed to stay within maxHeldDirs
}

// checkpoint reports whether level i of the chain stays open above the
// deepest maxHeldDirs levels.
func checkpoint(i int) bool { return i%maxHeldDirs == maxHeldDirs-1 }

type extractor struct {
	ctx    context.Context
	rootFd int // the target folder
	opts   Options
	buf    []byte
	zeros  []byte         // as long as buf, for sparse entries
	in     CountingReader // the archive, counted for sparse entries' holes
	// chain holds the folders from the target down to the parent of the
	// entry last written, each opened relative to the one above with
	// O_NOFOLLOW|O_DIRECTORY, so none is a symlink. Levels more than
	// maxHeldDirs above the bottom are closed, except checkpoints.
	chain []level
	// walks counts the openat and mkdirat calls made to resolve parent
	// folders: tests check that it grows linearly with the entries.
	walks int64
	// names holds the names of the folders in meta as a tree of their
	// components: a chain of folders thousands of levels deep costs
	// their own names, not each folder's whole name (the square of the
	// depth).
	names nameTree
	dirs  map[*nameNode]int // index into meta, so a repeated folder entry wins
	meta  []dirMeta
	stats Stats
}

// Extract reads the tar stream r and writes its entries below dir, which is
// created (0700) when missing. It reads r to its end, past the tar
// end-of-archive marker, so that a caller hashing r sees every byte. On
// error, what was written so far stays in dir: extract into a staging
// folder and remove it on failure.
func Extract(ctx context.Context, r io.Reader, dir string, opts Options) (Stats, error) {
	x, err := extract(ctx, r, dir, opts)
	return x.stats, err
}

// extract is Extract, returning the extractor for tests to inspect.
func extract(ctx context.Context, r io.Reader, dir string, opts Options) (*extractor, error) {
	x := &extractor{ctx: ctx, rootFd: -1, opts: opts, dirs: map[*nameNode]int{}}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return x, fmt.Errorf("tarsafe: create %s: %w", dir, err)
	}
	fd, err := Openat(unix.AT_FDCWD, dir, dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return x, fmt.Errorf("tarsafe: open %s: %w", dir, err)
	}
	x.rootFd = fd
	x.buf = make([]byte, copyBufferSize)
	defer func() {
		x.truncate(0)
		unix.Close(x.rootFd)
	}()
	x.in.R = ContextReader(ctx, r)
	cr := &x.in
	tr := tar.NewReader(cr)
	for {
		if err := ctx.Err(); err != nil {
			return x, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return x, fmt.Errorf("tarsafe: read entry %d: %w", x.stats.Entries+1, err)
		}
		x.stats.Entries++
		if err := x.entry(tr, hdr); err != nil {
			return x, err
		}
	}
	if err := x.finishDirs(); err != nil {
		return x, err
	}
	// Drain what follows the end-of-archive marker (record padding).
	if _, err := io.CopyBuffer(io.Discard, cr, x.buf); err != nil {
		return x, fmt.Errorf("tarsafe: read after end of archive: %w", err)
	}
	return x, nil
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

func (x *extractor) entry(tr *tar.Reader, hdr *tar.Header) error {
	fail := func(err error) error { return fmt.Errorf("tarsafe: entry %q: %w", hdr.Name, err) }
	sparse, err := sparseEntry(hdr)
	if err != nil {
		return fail(err)
	}
	// The checks of the header alone, which Extract shares with those that
	// hand entries to another extractor (policy.go).
	h, err := CheckHeader(hdr, x.opts)
	if err != nil {
		return fail(err)
	}
	if h.Skip {
		x.stats.Skipped++
		return nil
	}
	name := h.Name

	switch hdr.Typeflag {
	case tar.TypeDir:
		x.stats.Dirs++
		if name == "." {
			// Not applied: the target stays private until its commit.
			x.stats.Root = true
			x.stats.RootMeta = Meta{Mode: dirMode(hdr), UID: hdr.Uid, GID: hdr.Gid, Atime: atimeOf(hdr), Mtime: hdr.ModTime}
			return nil
		}
		if err := x.mkdir(name); err != nil {
			return fail(err)
		}
		n := x.names.find(name, true)
		m := dirMeta{name: n, mode: dirMode(hdr), uid: hdr.Uid, gid: hdr.Gid, atime: atimeOf(hdr), mtime: hdr.ModTime}
		if i, ok := x.dirs[n]; ok {
			x.meta[i] = m
		} else {
			x.dirs[n] = len(x.meta)
			x.meta = append(x.meta, m)
		}
		return nil
	case tar.TypeReg: // tar.Reader turns the legacy TypeRegA into TypeReg or TypeDir
		if err := x.file(tr, hdr, name, sparse); err != nil {
			return fail(err)
		}
		x.stats.Files++
	case tar.TypeSymlink:
		if err := x.symlink(hdr, name); err != nil {
			return fail(err)
		}
		x.stats.Symlinks++
	case tar.TypeLink:
		if err := x.hardlink(hdr, name, h.Link); err != nil {
			return fail(err)
		}
		x.stats.Links++
	}
	return nil
}

// truncate closes the chain's folders from level k down and drops them.
func (x *extractor) truncate(k int) {
	for i := k; i < len(x.chain); i++ {
		if x.chain[i].fd >= 0 {
			unix.Close(x.chain[i].fd)
		}
	}
	x.chain = x.chain[:k]
}

// top returns the open folder at the bottom of the chain (the target when
// the chain is empty), reopening it from the nearest open level above
// (at most maxHeldDirs levels) when truncate left a closed level there.
func (x *extractor) top() (int, error) {
	if len(x.chain) == 0 {
		return x.rootFd, nil
	}
	if fd := x.chain[len(x.chain)-1].fd; fd >= 0 {
		return fd, nil
	}
	j := len(x.chain) - 1
	for j >= 0 && x.chain[j].fd < 0 {
		j--
	}
	levels := append([]level(nil), x.chain[j+1:]...)
	x.chain = x.chain[:j+1]
	for _, l := range levels {
		if err := x.push(l.name, false); err != nil {
			return -1, err
		}
	}
	return x.chain[len(x.chain)-1].fd, nil
}

// push opens the folder name in the chain's bottom folder and appends it;
// with create a missing folder is made (0755 less umask, like tar; an
// entry for it may follow and set its own mode). A symlink is refused.
func (x *extractor) push(name string, create bool) error {
	if len(x.chain)%ctxCheckEvery == ctxCheckEvery-1 {
		if err := x.ctx.Err(); err != nil {
			return err
		}
	}
	parent, err := x.top()
	if err != nil {
		return err
	}
	x.walks++
	fd, err := Openat(parent, name, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) && create {
		x.walks++
		if err := unix.Mkdirat(parent, name, 0o755); err != nil && err != unix.EEXIST {
			return fmt.Errorf("create folder %s: %w", x.pathOf(name), err)
		}
		x.walks++
		fd, err = Openat(parent, name, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	}
	if err != nil {
		p := x.pathOf(name)
		fi, serr := Lstatat(parent, name, p)
		switch {
		case serr != nil && errors.Is(serr, fs.ErrNotExist):
			return fmt.Errorf("%w: %s is not extracted", ErrUnsafe, p)
		case serr != nil:
			return fmt.Errorf("check %s: %w", p, serr)
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%w: %s is a symbolic link", ErrUnsafe, p)
		case !fi.IsDir():
			return fmt.Errorf("%s is not a folder", p)
		}
		return fmt.Errorf("open folder %s: %w", p, err)
	}
	// A copy: name is a piece of an entry's name, which it would keep
	// whole (a chain thousands of levels deep held every entry's).
	x.chain = append(x.chain, level{name: strings.Clone(name), fd: fd})
	if j := len(x.chain) - 1 - maxHeldDirs; j >= 0 && !checkpoint(j) && x.chain[j].fd >= 0 {
		unix.Close(x.chain[j].fd)
		x.chain[j].fd = -1
	}
	return nil
}

// pathOf names name in the chain's bottom folder, for messages.
func (x *extractor) pathOf(name string) string {
	var b strings.Builder
	for _, l := range x.chain {
		b.WriteString(l.name)
		b.WriteByte('/')
	}
	b.WriteString(name)
	return b.String()
}

// resolve returns the open folder dir (a cleaned name, "." for the
// target), every component checked to be a real folder, not a symlink.
// It keeps the folders it opens, so consecutive entries in the same or
// nearby folders cost one openat per new level, not one per level of
// depth. With create, missing folders are made; without, a missing one is
// an error wrapping ErrUnsafe.
func (x *extractor) resolve(dir string, create bool) (int, error) {
	if dir == "." {
		x.truncate(0)
		return x.rootFd, nil
	}
	// Keep the common prefix of the chain and dir.
	k, rest := 0, dir
	for k < len(x.chain) {
		c, after, _ := strings.Cut(rest, "/")
		if c != x.chain[k].name {
			break
		}
		k++
		rest = after
		if rest == "" {
			break
		}
	}
	x.truncate(k)
	for rest != "" {
		var c string
		c, rest, _ = strings.Cut(rest, "/")
		if err := x.push(c, create); err != nil {
			return -1, err
		}
	}
	return x.top()
}

// clear removes whatever is at name in the folder dirfd unless it is a
// folder and keepDir is set; a non-empty folder is an error. It never
// follows a symlink at name.
func (x *extractor) clear(dirfd int, name, p string, keepDir bool) (isDir bool, err error) {
	fi, err := Lstatat(dirfd, name, p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check %s: %w", p, err)
	}
	if fi.IsDir() && keepDir {
		return true, nil
	}
	flags := 0
	if fi.IsDir() {
		flags = unix.AT_REMOVEDIR
	}
	if err := unix.Unlinkat(dirfd, name, flags); err != nil {
		return false, fmt.Errorf("replace existing %s: %w", p, err)
	}
	return false, nil
}

// prepare resolves name's parent folder (creating it) and clears name.
func (x *extractor) prepare(name string, keepDir bool) (dirfd int, base string, isDir bool, err error) {
	dirfd, err = x.resolve(path.Dir(name), true)
	if err != nil {
		return -1, "", false, err
	}
	base = path.Base(name)
	isDir, err = x.clear(dirfd, base, name, keepDir)
	return dirfd, base, isDir, err
}

func (x *extractor) mkdir(name string) error {
	dirfd, base, isDir, err := x.prepare(name, true)
	if err != nil {
		return err
	}
	if !isDir {
		if err := unix.Mkdirat(dirfd, base, 0o700); err != nil {
			return fmt.Errorf("create folder: %w", err)
		}
	}
	return nil
}

func (x *extractor) file(tr *tar.Reader, hdr *tar.Header, name string, sparse bool) error {
	dirfd, base, _, err := x.prepare(name, false)
	if err != nil {
		return err
	}
	fd, err := unix.Openat(dirfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	for err == unix.EINTR {
		fd, err = unix.Openat(dirfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	}
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if sparse {
		err = x.copySparse(f, tr, hdr.Size)
	} else {
		err = x.copy(f, tr)
	}
	if err == nil {
		err = chown(f.Chown(hdr.Uid, hdr.Gid))
		if err != nil {
			err = fmt.Errorf("chown: %w", err)
		}
	}
	if err == nil {
		mode, dropped := regularMode(hdr)
		if dropped {
			x.stats.SetIDDropped++
		}
		if err = f.Chmod(mode); err != nil {
			err = fmt.Errorf("chmod: %w", err)
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	if err != nil {
		return err
	}
	if err := setTimes(dirfd, base, atimeOf(hdr), hdr.ModTime); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// copy writes the entry's contents to f through x.buf, checking the
// context before every chunk.
func (x *extractor) copy(f *os.File, r io.Reader) error {
	for {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		n, err := r.Read(x.buf)
		if n > 0 {
			w, werr := f.Write(x.buf[:n])
			x.stats.Bytes += int64(w)
			if werr != nil {
				return fmt.Errorf("write contents: %w", werr)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("write contents: %w", err)
		}
	}
}

// setTimes sets the access and modification times of name in dirfd,
// without following a symlink at name.
func setTimes(dirfd int, name string, atime, mtime time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	return unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func (x *extractor) symlink(hdr *tar.Header, name string) error {
	dirfd, base, _, err := x.prepare(name, false)
	if err != nil {
		return err
	}
	if err := unix.Symlinkat(hdr.Linkname, dirfd, base); err != nil {
		return fmt.Errorf("create symbolic link: %w", err)
	}
	if err := chown(unix.Fchownat(dirfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW)); err != nil {
		return fmt.Errorf("lchown: %w", err)
	}
	if err := setTimes(dirfd, base, atimeOf(hdr), hdr.ModTime); err != nil {
		return fmt.Errorf("set symbolic link times: %w", err)
	}
	return nil
}

// hardlink links name to target (the link's target as CheckHeader
// cleaned and mapped it).
func (x *extractor) hardlink(hdr *tar.Header, name, target string) error {
	// The target must be a regular file already inside, reached without
	// symlinks: resolve its parents like an entry's, then check the file.
	tdir, err := x.resolve(path.Dir(target), false)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", hdr.Linkname, err)
	}
	tbase := path.Base(target)
	fi, err := Lstatat(tdir, tbase, target)
	if err != nil {
		return fmt.Errorf("%w: hard link target %q is not extracted: %w", ErrUnsafe, hdr.Linkname, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: hard link target %q is a %s, not a regular file", ErrUnsafe, hdr.Linkname, kindOf(fi.Mode()))
	}
	// Resolving name's parent may close tdir: keep a copy.
	tdir, err = unix.Dup(tdir)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", hdr.Linkname, err)
	}
	defer unix.Close(tdir)
	dirfd, err := x.resolve(path.Dir(name), true)
	if err != nil {
		return err
	}
	if target == name {
		return nil // a link to itself: already there
	}
	base := path.Base(name)
	if _, err := x.clear(dirfd, base, name, false); err != nil {
		return err
	}
	// linkat without AT_SYMLINK_FOLLOW does not follow a symlink at tbase.
	if err := unix.Linkat(tdir, tbase, dirfd, base, 0); err != nil {
		return fmt.Errorf("create hard link to %q: %w", hdr.Linkname, err)
	}
	return nil
}

// finishDirs applies folder modes, owners and times, deepest first.
func (x *extractor) finishDirs() error {
	for _, i := range x.dirOrder() {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		m := x.meta[i]
		name := m.name.path()
		fd := x.rootFd
		if name != "." {
			dirfd, err := x.resolve(path.Dir(name), false)
			if err != nil {
				return fmt.Errorf("tarsafe: folder %q: %w", name, err)
			}
			base := path.Base(name)
			fi, err := Lstatat(dirfd, base, name)
			if err != nil {
				return fmt.Errorf("tarsafe: folder %q: %w", name, err)
			}
			if !fi.IsDir() {
				continue // replaced by a later entry
			}
			if fd, err = Openat(dirfd, base, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW); err != nil {
				return fmt.Errorf("tarsafe: folder %q: %w", name, err)
			}
		}
		err := x.applyDir(fd, m)
		if fd != x.rootFd {
			unix.Close(fd)
		}
		if err != nil {
			return fmt.Errorf("tarsafe: folder %q: %w", name, err)
		}
	}
	return nil
}

// dirOrder returns the indexes of x.meta in the order finishDirs applies
// them: every folder after the folders below it, and the folders of one
// branch one after another, so that resolve keeps the chain from one to
// the next (siblings by name, descending). It walks the tree of their
// names: sorting the names themselves would build each whole.
func (x *extractor) dirOrder() []int {
	kids := map[*nameNode][]*nameNode{}
	linked := map[*nameNode]bool{} // in its parent's kids, and so are its parents
	for _, m := range x.meta {
		for n := m.name; n.parent != nil && !linked[n]; n = n.parent {
			linked[n] = true
			kids[n.parent] = append(kids[n.parent], n)
		}
	}
	type frame struct {
		n    *nameNode
		next int
	}
	order := make([]int, 0, len(x.meta))
	stack := []frame{{n: &x.names.root}}
	for len(stack) > 0 {
		f := &stack[len(stack)-1]
		ks := kids[f.n]
		if f.next == 0 {
			sort.Slice(ks, func(i, j int) bool { return ks[i].base > ks[j].base })
		}
		if f.next < len(ks) {
			f.next++
			stack = append(stack, frame{n: ks[f.next-1]})
			continue
		}
		if i, ok := x.dirs[f.n]; ok {
			order = append(order, i)
		}
		stack = stack[:len(stack)-1]
	}
	return order
}

// applyDir applies m to the open folder fd.
func (x *extractor) applyDir(fd int, m dirMeta) error { return applyMeta(fd, m) }

// syscallMode converts permission, setuid, setgid and sticky bits to
// chmod(2)'s.
func syscallMode(m fs.FileMode) uint32 {
	o := uint32(m.Perm())
	for _, b := range specialBits {
		if m&b.mode != 0 {
			o |= b.sys
		}
	}
	return o
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
