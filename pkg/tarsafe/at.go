package tarsafe

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Helpers for archive writers that walk a tree through folder descriptors
// (openat, fstatat, readlinkat relative to the parent folder) instead of
// full host paths: cheaper per file than the os package (no path lookup
// from the root, no *os.File), and a name is never resolved through a
// symlink above it. dirfd may be unix.AT_FDCWD with an absolute name.
// Errors are *fs.PathError naming path, the full host path.

// Openat opens name in the folder dirfd with flags (O_CLOEXEC is added),
// retrying on EINTR.
func Openat(dirfd int, name, path string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
}

// procFdDir is where OpenRegular reopens its O_PATH descriptors.
const procFdDir = "/proc/self/fd/"

// ErrNoProc is wrapped by OpenRegular's error when /proc is not mounted:
// it reopens files through /proc/self/fd.
var ErrNoProc = errors.New("/proc is not mounted (fireops opens files through /proc/self/fd; mount it: mount -t proc proc /proc)")

// OpenRegular opens the regular file name in the folder dirfd for reading
// and returns its descriptor and fstat, never opening anything else that
// may have taken the name since want (the lstat of a listing) was taken:
// it opens the name with O_PATH|O_NOFOLLOW, which runs no driver's open
// and sends no inotify IN_OPEN (a device node, a named pipe or a socket
// renamed over the file is not opened; a symlink is not followed), checks
// its fstat against want with [CheckSame] and that it is a regular file,
// and only then opens that very inode for reading through
// /proc/self/fd/N (O_RDONLY|O_NOCTTY|O_NONBLOCK|O_CLOEXEC). A name that no
// longer exists gives an error wrapping fs.ErrNotExist; one that holds
// another inode or something other than a regular file, an error wrapping
// [ErrChanged]; /proc not mounted, one wrapping [ErrNoProc].
func OpenRegular(dirfd int, name, path string, want fs.FileInfo) (int, fs.FileInfo, error) {
	pfd, err := Openat(dirfd, name, path, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return -1, nil, err
	}
	defer unix.Close(pfd)
	fi, err := Fstat(pfd, name, path)
	if err != nil {
		return -1, nil, err
	}
	if err := CheckSame(want, fi, path); err != nil {
		return -1, nil, err
	}
	if !fi.Mode().IsRegular() {
		return -1, nil, &fs.PathError{Op: "open", Path: path, Err: ErrChanged}
	}
	for {
		fd, err := unix.Open(procFdDir+strconv.Itoa(pfd), unix.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		switch {
		case err == nil:
			return fd, fi, nil
		case err == unix.EINTR:
			continue
		case err == unix.ENOENT:
			var sf unix.Statfs_t
			if unix.Statfs("/proc", &sf) != nil || sf.Type != unix.PROC_SUPER_MAGIC {
				err = ErrNoProc
			}
		case err == unix.ENXIO || err == unix.ENODEV || err == unix.ELOOP:
			err = ErrChanged // not a regular file after all (cannot happen: checked)
		}
		return -1, nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
}

// Lstatat returns the FileInfo of name in the folder dirfd, without
// following a symlink, like os.Lstat.
func Lstatat(dirfd int, name, path string) (fs.FileInfo, error) {
	var st unix.Stat_t
	for {
		err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "lstat", Path: path, Err: err}
		}
		break
	}
	fi := &statInfo{name: name, sys: syscall.Stat_t{
		Dev: st.Dev, Ino: st.Ino, Nlink: st.Nlink, Mode: st.Mode, Uid: st.Uid, Gid: st.Gid, Rdev: st.Rdev,
		Size: st.Size, Blksize: st.Blksize, Blocks: st.Blocks,
		Atim: syscall.Timespec(st.Atim), Mtim: syscall.Timespec(st.Mtim), Ctim: syscall.Timespec(st.Ctim),
	}}
	fi.mode = fileMode(fi.sys.Mode)
	return fi, nil
}

// Fstat returns the FileInfo of the open file fd, named name, like
// (*os.File).Stat.
func Fstat(fd int, name, path string) (fs.FileInfo, error) {
	fi := &statInfo{name: name}
	for {
		err := syscall.Fstat(fd, &fi.sys)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "stat", Path: path, Err: err}
		}
		fi.mode = fileMode(fi.sys.Mode)
		return fi, nil
	}
}

// Readlinkat returns the target of the symlink name in the folder dirfd.
func Readlinkat(dirfd int, name, path string) (string, error) {
	for n := 256; ; n *= 2 {
		b := make([]byte, n)
		k, err := unix.Readlinkat(dirfd, name, b)
		for err == unix.EINTR {
			k, err = unix.Readlinkat(dirfd, name, b)
		}
		if err != nil {
			return "", &fs.PathError{Op: "readlink", Path: path, Err: err}
		}
		if k < n {
			return string(b[:k]), nil
		}
	}
}

// ReadDirNames returns the names in the open folder fd, without "." and
// "..", in the order the file system gives them, like
// (*os.File).Readdirnames(-1). buf is the getdents buffer (a few KiB or
// more).
func ReadDirNames(fd int, path string, buf []byte) ([]string, error) {
	var names []string
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return names, &fs.PathError{Op: "readdirent", Path: path, Err: err}
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

// FileReader reads the open file descriptor it is, retrying on EINTR; a
// read at the end of the file returns io.EOF.
type FileReader int

// Read reads from the file.
func (f FileReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return retryRead(func() (int, error) { return unix.Read(int(f), p) })
}

// retryRead returns what read (a read(2) or pread(2) into a buffer that is
// not empty) returns, retrying on EINTR; nothing read is io.EOF.
func retryRead(read func() (int, error)) (int, error) {
	for {
		n, err := read()
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

// statInfo is the fs.FileInfo of a stat result, as the os package makes
// it on Linux.
type statInfo struct {
	name string
	mode fs.FileMode
	sys  syscall.Stat_t
}

func (fi *statInfo) Name() string       { return path.Base(fi.name) }
func (fi *statInfo) Size() int64        { return fi.sys.Size }
func (fi *statInfo) Mode() fs.FileMode  { return fi.mode }
func (fi *statInfo) IsDir() bool        { return fi.mode.IsDir() }
func (fi *statInfo) Sys() any           { return &fi.sys }
func (fi *statInfo) ModTime() time.Time { return time.Unix(fi.sys.Mtim.Unix()) }

// specialBits pairs the setuid, setgid and sticky bits of stat(2) and
// chmod(2) with fs.FileMode's.
var specialBits = [...]struct {
	sys  uint32
	mode fs.FileMode
}{
	{syscall.S_ISUID, fs.ModeSetuid},
	{syscall.S_ISGID, fs.ModeSetgid},
	{syscall.S_ISVTX, fs.ModeSticky},
}

// fileMode converts a stat mode as os.Lstat does (fillFileStatFromSys).
func fileMode(mode uint32) fs.FileMode {
	m := fs.FileMode(mode & 0o777)
	switch mode & syscall.S_IFMT {
	case syscall.S_IFBLK:
		m |= fs.ModeDevice
	case syscall.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFDIR:
		m |= fs.ModeDir
	case syscall.S_IFIFO:
		m |= fs.ModeNamedPipe
	case syscall.S_IFLNK:
		m |= fs.ModeSymlink
	case syscall.S_IFSOCK:
		m |= fs.ModeSocket
	}
	for _, b := range specialBits {
		if mode&b.sys != 0 {
			m |= b.mode
		}
	}
	return m
}

// ErrChanged is wrapped by the errors of [DirChain] and [CheckSame] when
// a name no longer holds the file a walk listed there (another device and
// inode, or another type; a symlink or a non-folder where a folder was):
// it was replaced, renamed over or swapped for a symlink in between.
var ErrChanged = errors.New("replaced since it was listed")

// MaxNameLen is the longest entry name the sources archive. archive/tar,
// and so [Extract], reads PAX extended headers of at most 1 MiB; a hard
// link entry holds two names (its own and its target), and the rest is
// left for a symlink target (at most 4 KiB), owner names and the time.
// Longer names (a path over 500 KiB, some 2,000 levels of 255-byte
// names) would make an archive nothing restores; the sources leave them
// out.
const MaxNameLen = 500 << 10

// CheckSame returns nil when got (from the fstat of an opened file) is
// the file want (from the lstat of a listing) names: same device, inode
// and type. Otherwise it returns an *fs.PathError for path wrapping
// [ErrChanged].
func CheckSame(want, got fs.FileInfo, path string) error {
	a, ok1 := want.Sys().(*syscall.Stat_t)
	b, ok2 := got.Sys().(*syscall.Stat_t)
	if ok1 && ok2 && a.Dev == b.Dev && a.Ino == b.Ino && a.Mode&syscall.S_IFMT == b.Mode&syscall.S_IFMT {
		return nil
	}
	return &fs.PathError{Op: "open", Path: path, Err: ErrChanged}
}

// walkHeldDirs bounds the folder descriptors a [DirChain] keeps open: its
// root, the deepest walkHeldDirs levels and, above them, one level in
// every walkHeldDirs (a walk 100,000 folders deep holds about 900).
const walkHeldDirs = 128

// DirChain is the chain of open folders of a walk through folder
// descriptors, from its root down to the current folder. Each folder is
// opened relative to the one above it with O_NOFOLLOW|O_DIRECTORY and
// checked against what the listing saw there (device, inode), so none is
// a symlink and none is a folder swapped in between listing and opening;
// whatever is renamed or replaced above the current folder later cannot
// redirect the walk, and no host path is ever resolved below the root,
// so paths of any length work.
//
// Levels more than walkHeldDirs above the current one are closed, except
// the root and one level in every walkHeldDirs; [DirChain.Leave] reopens
// a closed level by name from the nearest open one above it (checked
// again), keeping the levels it reopens, so the work stays linear in the
// depth and the descriptors bounded whatever RLIMIT_NOFILE is.
//
// The zero value is an empty chain; Close it when done. It is not safe
// for concurrent use.
type DirChain struct {
	levels []dirLevel
	open   int // descriptors held
	// reopens counts folders reopened by Leave (tests).
	reopens int
}

// dirLevel is one folder of a DirChain.
type dirLevel struct {
	name string // its name in the level above (the path for the root)
	fd   int    // -1 while closed (or lost: it could not be reopened)
	id   folderID
}

// chainKeeps reports whether level i stays open above the deepest
// walkHeldDirs levels.
func chainKeeps(i int) bool { return i%walkHeldDirs == 0 }

// openDir opens the folder name in dirfd without following a symlink and
// checks that it is want (device and inode, from a listing's lstat; nil:
// not checked). A symlink or a non-folder at name wraps ErrChanged, like
// another folder. Nothing but a folder is ever opened: the kernel refuses
// O_DIRECTORY on anything else (ENOTDIR) before it calls a driver's open,
// so a device node swapped in for a folder is not opened
// (TestOpenRegularOpensNothingElse checks it with inotify).
func openDir(dirfd int, name, path string, want fs.FileInfo) (int, *dirInfo, error) {
	fd, err := Openat(dirfd, name, path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	if errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENOTDIR) {
		return -1, nil, &fs.PathError{Op: "open", Path: path, Err: ErrChanged}
	}
	if err != nil {
		return -1, nil, err
	}
	fi, err := fstatDir(fd, name, path)
	if err == nil && want != nil {
		err = CheckSame(want, fi, path)
	}
	if err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	return fd, fi, nil
}

// dirInfo is the FileInfo of an open folder, with its folderID.
type dirInfo struct {
	statInfo
	id folderID
}

// fstatDir is [Fstat] for the open folder fd, with its folderID: one
// statx, which gives the birth time and mount too, in place of the
// fstat.
func fstatDir(fd int, name, path string) (*dirInfo, error) {
	var sx unix.Statx_t
	for {
		err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_SYNC_AS_STAT,
			unix.STATX_BASIC_STATS|unix.STATX_BTIME|unix.STATX_MNT_ID, &sx)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "stat", Path: path, Err: err}
		}
		break
	}
	fi := &dirInfo{statInfo: statInfo{name: name}}
	st := &fi.sys
	st.Dev = unix.Mkdev(sx.Dev_major, sx.Dev_minor)
	st.Ino = sx.Ino
	st.Mode, st.Uid, st.Gid = uint32(sx.Mode), sx.Uid, sx.Gid
	st.Rdev = unix.Mkdev(sx.Rdev_major, sx.Rdev_minor)
	st.Size = int64(sx.Size)
	// The width of these differs between architectures.
	setInt(&st.Nlink, int64(sx.Nlink))
	setInt(&st.Blksize, int64(sx.Blksize))
	setInt(&st.Blocks, int64(sx.Blocks))
	for _, t := range [...]struct {
		ts *syscall.Timespec
		sx unix.StatxTimestamp
	}{{&st.Atim, sx.Atime}, {&st.Mtim, sx.Mtime}, {&st.Ctim, sx.Ctime}} {
		setInt(&t.ts.Sec, t.sx.Sec)
		setInt(&t.ts.Nsec, int64(t.sx.Nsec))
	}
	fi.mode = fileMode(st.Mode)
	fi.id = folderID{dev: st.Dev, ino: st.Ino}
	if sx.Mask&unix.STATX_BTIME != 0 {
		fi.id.btime, fi.id.btimeNsec = sx.Btime.Sec, sx.Btime.Nsec
	}
	if sx.Mask&unix.STATX_MNT_ID != 0 {
		fi.id.mnt = sx.Mnt_id
	}
	return fi, nil
}

// setInt sets *p to v, converted to p's integer type.
func setInt[T ~int32 | ~int64 | ~uint32 | ~uint64](p *T, v int64) { *p = T(v) }

// OpenRoot opens the folder path (the last component not followed if it
// is a symlink) as the chain's root and checks that it is want, the
// folder os.Lstat saw there. It returns the folder's FileInfo from fstat.
func (c *DirChain) OpenRoot(path string, want fs.FileInfo) (fs.FileInfo, error) {
	if len(c.levels) != 0 {
		return nil, errors.New("tarsafe: DirChain.OpenRoot on a chain in use")
	}
	fd, fi, err := openDir(unix.AT_FDCWD, path, path, want)
	if err != nil {
		return nil, err
	}
	c.levels = append(c.levels, dirLevel{name: path, fd: fd, id: fi.id})
	c.open++
	return fi, nil
}

// Enter opens the folder name of the current folder (path is its host
// path, for errors), checks that it is want (the folder the listing's
// lstat saw there) and makes it the current folder. It returns the
// folder's FileInfo from fstat. On error (wrapping ErrChanged or
// fs.ErrNotExist when it was replaced or removed) the current folder
// stays.
func (c *DirChain) Enter(name, path string, want fs.FileInfo) (fs.FileInfo, error) {
	parent := c.Fd()
	if parent < 0 {
		return nil, &fs.PathError{Op: "open", Path: path, Err: syscall.EBADF}
	}
	fd, fi, err := openDir(parent, name, path, want)
	if err != nil {
		return nil, err
	}
	c.levels = append(c.levels, dirLevel{name: name, fd: fd, id: fi.id})
	c.open++
	if j := len(c.levels) - 1 - walkHeldDirs; j > 0 && !chainKeeps(j) && c.levels[j].fd >= 0 {
		unix.Close(c.levels[j].fd)
		c.levels[j].fd = -1
		c.open--
	}
	return fi, nil
}

// Fd returns the current folder's descriptor: -1 when the chain is empty
// or Leave could not reopen it.
func (c *DirChain) Fd() int {
	if len(c.levels) == 0 {
		return -1
	}
	return c.levels[len(c.levels)-1].fd
}

// id returns the current folder's folderID (the chain must not be empty).
func (c *DirChain) id() folderID { return c.levels[len(c.levels)-1].id }

// Depth returns the number of folders in the chain, the root included.
func (c *DirChain) Depth() int { return len(c.levels) }

// Leave closes the current folder and makes the folder above it current,
// reopening it when it was closed. When that fails (it was moved or
// replaced meanwhile: the error wraps ErrChanged or fs.ErrNotExist), the
// new current folder has no descriptor (Fd returns -1): its remaining
// entries cannot be read, and the caller leaves it too.
func (c *DirChain) Leave() error {
	n := len(c.levels) - 1
	if n < 0 {
		return nil
	}
	if fd := c.levels[n].fd; fd >= 0 {
		unix.Close(fd)
		c.open--
	}
	c.levels = c.levels[:n]
	if n == 0 || c.levels[n-1].fd >= 0 {
		return nil
	}
	// Reopen from the nearest open level (the root always is), keeping
	// the levels on the way: they are the next ones Leave goes up to.
	j := n - 2
	for c.levels[j].fd < 0 {
		j--
	}
	for i := j + 1; i < n; i++ {
		l := &c.levels[i]
		fd, fi, err := openDir(c.levels[i-1].fd, l.name, l.name, nil)
		if err == nil {
			if fi.id.dev != l.id.dev || fi.id.ino != l.id.ino {
				unix.Close(fd)
				err = &fs.PathError{Op: "open", Path: l.name, Err: ErrChanged}
			}
		}
		if err != nil {
			return fmt.Errorf("reopen a folder %d levels up: %w", n-i, err)
		}
		l.fd = fd
		c.open++
		c.reopens++
	}
	return nil
}

// Close closes every folder of the chain and empties it.
func (c *DirChain) Close() {
	for _, l := range c.levels {
		if l.fd >= 0 {
			unix.Close(l.fd)
		}
	}
	c.levels = c.levels[:0]
	c.open = 0
}
