package tarsafe

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestApplyMeta: every option of ApplyMeta changes what it does (a case
// fails when ApplyMeta ignores the option), owner before mode keeps the
// setuid and setgid bits, and a symbolic link or a file at the name is
// refused, the folder it points to untouched. Not parallel: it replaces
// fchown (parallel tests run only after it) to make chown fail.
func TestApplyMeta(t *testing.T) {
	root := os.Geteuid() == 0
	a0, m0 := time.Unix(1000000000, 111), time.Unix(1100000000, 222)
	a1, m1 := time.Unix(1500000000, 333), time.Unix(1600000000, 444)
	own := Meta{Mode: 0o750 | fs.ModeSetgid, UID: 1000, GID: 1001, Atime: a1, Mtime: m1}
	kept := struct {
		mode     uint32
		uid, gid int
	}{0o700, os.Geteuid(), os.Getegid()}
	errIO := syscall.EIO
	for _, c := range []struct {
		name string
		m    Meta
		o    MetaOptions
		// at says what is at the name: "dir" (the folder), "fd" (the
		// folder, already open: name ""), "link" (a symlink to the
		// folder), "file" (a regular file).
		at string
		// fail is what chown returns (nil: the real chown).
		fail error
		// wantErr is an error the result wraps (nil: no error); refused:
		// ELOOP or ENOTDIR, as the kernel refuses O_NOFOLLOW|O_DIRECTORY.
		wantErr error
		refused bool
		// The folder afterwards; an owner is checked only as root.
		mode         uint32
		uid, gid     int
		atime, mtime time.Time
		noChown      bool
	}{
		{name: "owner mode times", m: own, at: "dir", mode: 0o2750, uid: 1000, gid: 1001, atime: a1, mtime: m1},
		{name: "open folder", m: own, at: "fd", mode: 0o2750, uid: 1000, gid: 1001, atime: a1, mtime: m1},
		{name: "setuid setgid sticky after chown",
			m:  Meta{Mode: 0o755 | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky, UID: 1000, GID: 1001, Atime: a1, Mtime: m1},
			at: "dir", mode: 0o7755, uid: 1000, gid: 1001, atime: a1, mtime: m1},
		{name: "owner -1 left", m: Meta{Mode: 0o755, UID: -1, GID: -1, Atime: a1, Mtime: m1}, at: "dir",
			mode: 0o755, uid: kept.uid, gid: kept.gid, atime: a1, mtime: m1, noChown: true},
		{name: "TimesMtime", m: own, o: MetaOptions{Times: TimesMtime}, at: "dir", mode: 0o2750, uid: 1000, gid: 1001, atime: a0, mtime: m1},
		{name: "TimesNone", m: own, o: MetaOptions{Times: TimesNone}, at: "dir", mode: 0o2750, uid: 1000, gid: 1001, atime: a0, mtime: m0},
		{name: "symlink not followed", m: own, at: "link", refused: true,
			mode: kept.mode, uid: kept.uid, gid: kept.gid, atime: a0, mtime: m0, noChown: true},
		{name: "file refused", m: own, at: "file", refused: true,
			mode: kept.mode, uid: kept.uid, gid: kept.gid, atime: a0, mtime: m0, noChown: true},
		{name: "EPERM ignored by default", m: own, at: "dir", fail: syscall.EPERM,
			mode: 0o2750, uid: kept.uid, gid: kept.gid, atime: a1, mtime: m1},
		{name: "EINVAL ignored by default", m: own, at: "fd", fail: syscall.EINVAL,
			mode: 0o2750, uid: kept.uid, gid: kept.gid, atime: a1, mtime: m1},
		{name: "EACCES reported by default", m: own, at: "dir", fail: syscall.EACCES, wantErr: syscall.EACCES,
			mode: kept.mode, uid: kept.uid, gid: kept.gid, atime: a0, mtime: m0},
		{name: "EACCES ignored as ErrPermission", m: own, o: MetaOptions{IgnoreChown: []error{fs.ErrPermission}}, at: "dir", fail: syscall.EACCES,
			mode: 0o2750, uid: kept.uid, gid: kept.gid, atime: a1, mtime: m1},
		{name: "EINVAL reported outside IgnoreChown", m: own, o: MetaOptions{IgnoreChown: []error{fs.ErrPermission}}, at: "dir", fail: syscall.EINVAL, wantErr: syscall.EINVAL,
			mode: kept.mode, uid: kept.uid, gid: kept.gid, atime: a0, mtime: m0},
		{name: "EPERM only", m: own, o: MetaOptions{IgnoreChown: []error{syscall.EPERM}}, at: "dir", fail: syscall.EINVAL, wantErr: syscall.EINVAL,
			mode: kept.mode, uid: kept.uid, gid: kept.gid, atime: a0, mtime: m0},
		{name: "stops at the first failure", m: own, at: "dir", fail: errIO, wantErr: errIO,
			mode: kept.mode, uid: kept.uid, gid: kept.gid, atime: a0, mtime: m0},
		{name: "KeepGoing", m: own, o: MetaOptions{KeepGoing: true}, at: "dir", fail: errIO, wantErr: errIO,
			mode: 0o2750, uid: kept.uid, gid: kept.gid, atime: a1, mtime: m1},
		{name: "KeepGoing TimesMtime", m: own, o: MetaOptions{KeepGoing: true, Times: TimesMtime}, at: "fd", fail: errIO, wantErr: errIO,
			mode: 0o2750, uid: kept.uid, gid: kept.gid, atime: a0, mtime: m1},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "d")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o700); err != nil { // no umask
				t.Fatal(err)
			}
			setTimesOf(t, dir, a0, m0)
			calls := 0
			fchown = func(fd, uid, gid int) error {
				calls++
				if c.fail != nil {
					return c.fail
				}
				return unix.Fchown(fd, uid, gid)
			}
			defer func() { fchown = unix.Fchown }()
			var err error
			switch c.at {
			case "dir":
				err = ApplyMeta(unix.AT_FDCWD, dir, c.m, c.o)
			case "fd":
				fd, oerr := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
				if oerr != nil {
					t.Fatal(oerr)
				}
				err = ApplyMeta(fd, "", c.m, c.o)
				unix.Close(fd)
			case "link":
				link := filepath.Join(base, "link")
				if err := os.Symlink(dir, link); err != nil {
					t.Fatal(err)
				}
				err = ApplyMeta(unix.AT_FDCWD, link, c.m, c.o)
			case "file":
				file := filepath.Join(base, "file")
				if err := os.WriteFile(file, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				err = ApplyMeta(unix.AT_FDCWD, file, c.m, c.o)
			}
			switch {
			case c.refused:
				if !errors.Is(err, syscall.ELOOP) && !errors.Is(err, syscall.ENOTDIR) {
					t.Errorf("error %v, want ELOOP or ENOTDIR", err)
				}
			case c.wantErr == nil && err != nil, c.wantErr != nil && !errors.Is(err, c.wantErr):
				t.Errorf("error %v, want %v", err, c.wantErr)
			}
			if c.noChown && calls != 0 {
				t.Errorf("chown called %d times, want none", calls)
			}
			var st unix.Stat_t
			if err := unix.Lstat(dir, &st); err != nil {
				t.Fatal(err)
			}
			if got := st.Mode & 0o7777; got != c.mode {
				t.Errorf("mode %04o, want %04o", got, c.mode)
			}
			if root && (int(st.Uid) != c.uid || int(st.Gid) != c.gid) {
				t.Errorf("owner %d:%d, want %d:%d", st.Uid, st.Gid, c.uid, c.gid)
			}
			if got := time.Unix(st.Atim.Unix()); !got.Equal(c.atime) {
				t.Errorf("atime %v, want %v", got, c.atime)
			}
			if got := time.Unix(st.Mtim.Unix()); !got.Equal(c.mtime) {
				t.Errorf("mtime %v, want %v", got, c.mtime)
			}
		})
	}
}

// setTimesOf sets p's access and modification times.
func setTimesOf(t *testing.T, p string, atime, mtime time.Time) {
	t.Helper()
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNano(p, ts); err != nil {
		t.Fatal(err)
	}
}

// TestMetaOf: MetaOf reads the owner, the mode with its setuid, setgid
// and sticky bits, and both times of a stat result; without stat data it
// says so and leaves the owner (-1).
func TestMetaOf(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "d")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755|fs.ModeSetgid|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}
	at, mt := time.Unix(1500000000, 5), time.Unix(1600000000, 6)
	setTimesOf(t, dir, at, mt)
	fi, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := MetaOf(fi)
	want := Meta{Mode: 0o755 | fs.ModeSetgid | fs.ModeSticky, UID: os.Geteuid(), GID: os.Getegid(), Atime: at, Mtime: mt}
	if !ok || m.Mode != want.Mode || m.UID != want.UID || m.GID != want.GID || !m.Atime.Equal(at) || !m.Mtime.Equal(mt) {
		t.Errorf("MetaOf = %+v, %v; want %+v, true", m, ok, want)
	}
	m, ok = MetaOf(noStat{fi})
	if ok || m.UID != -1 || m.GID != -1 || !m.Mtime.Equal(mt) || m.Mode != want.Mode {
		t.Errorf("MetaOf without stat data = %+v, %v", m, ok)
	}
}

// noStat is a FileInfo without stat data.
type noStat struct{ fs.FileInfo }

func (noStat) Sys() any { return nil }
