package tarsafe

import (
	"io"
	"io/fs"
	"path"
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
	for {
		n, err := unix.Read(int(f), p)
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
	if mode&syscall.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if mode&syscall.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if mode&syscall.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}
