package tarsafe

import (
	"archive/tar"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestAtHelpersMatchOS compares Lstatat, Fstat, Readlinkat, ReadDirNames
// and FileReader with the os package on every kind of entry.
func TestAtHelpersMatchOS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, mode fs.FileMode) {
		must(t, os.WriteFile(filepath.Join(dir, name), []byte("contents of "+name), 0o600))
		must(t, os.Chmod(filepath.Join(dir, name), mode))
	}
	write("file", 0o644)
	write("setuid", 0o4755)
	write("setgid", 0o2750)
	must(t, os.Mkdir(filepath.Join(dir, "sticky"), 0o755))
	must(t, os.Chmod(filepath.Join(dir, "sticky"), 0o1777))
	long := "/" + strings.Repeat("t", 200) + "/" + strings.Repeat("u", 200)
	must(t, os.Symlink(long, filepath.Join(dir, "link")))
	must(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o640))
	l, err := net.Listen("unix", filepath.Join(dir, "sock"))
	must(t, err)
	defer l.Close()
	must(t, os.Link(filepath.Join(dir, "file"), filepath.Join(dir, "hard")))

	dfd, err := Openat(unix.AT_FDCWD, dir, dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	must(t, err)
	defer unix.Close(dfd)
	names, err := ReadDirNames(dfd, dir, make([]byte, 64)) // small: several getdents calls
	must(t, err)
	ents, err := os.ReadDir(dir)
	must(t, err)
	var want []string
	for _, e := range ents {
		want = append(want, e.Name())
	}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Fatalf("ReadDirNames = %v, want %v", names, want)
	}
	same := func(name string, got, want fs.FileInfo) {
		t.Helper()
		if got.Name() != want.Name() || got.Mode() != want.Mode() || got.Size() != want.Size() ||
			!got.ModTime().Equal(want.ModTime()) || got.IsDir() != want.IsDir() ||
			!reflect.DeepEqual(got.Sys(), want.Sys()) {
			t.Errorf("%s: got %s %v %d %v %+v, want %s %v %d %v %+v", name,
				got.Name(), got.Mode(), got.Size(), got.ModTime(), got.Sys(),
				want.Name(), want.Mode(), want.Size(), want.ModTime(), want.Sys())
		}
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		got, err := Lstatat(dfd, n, p)
		must(t, err)
		want, err := os.Lstat(p)
		must(t, err)
		same(n, got, want)
		if hb, err := NewHeaderBuilder().Header(n, got, ""); err == nil {
			hw, err := tar.FileInfoHeader(want, "")
			must(t, err)
			if hb.Uname != hw.Uname || hb.Gname != hw.Gname || hb.Mode != hw.Mode || hb.Typeflag != hw.Typeflag {
				t.Errorf("%s: header %+v, archive/tar's %+v", n, hb, hw)
			}
		}
	}
	got, err := Lstatat(unix.AT_FDCWD, dir, dir)
	must(t, err)
	wantDir, err := os.Lstat(dir)
	must(t, err)
	same("the folder by path", got, wantDir)

	target, err := Readlinkat(dfd, "link", filepath.Join(dir, "link"))
	if err != nil || target != long {
		t.Errorf("Readlinkat = %q, %v", target, err)
	}

	fd, err := Openat(dfd, "file", filepath.Join(dir, "file"), unix.O_RDONLY|unix.O_NOFOLLOW)
	must(t, err)
	defer unix.Close(fd)
	fi, err := Fstat(fd, "file", filepath.Join(dir, "file"))
	must(t, err)
	wantFile, err := os.Lstat(filepath.Join(dir, "file"))
	must(t, err)
	same("fstat", fi, wantFile)
	b, err := io.ReadAll(FileReader(fd))
	if err != nil || string(b) != "contents of file" {
		t.Errorf("FileReader: %q, %v", b, err)
	}

	if _, err := Openat(dfd, "link", filepath.Join(dir, "link"), unix.O_RDONLY|unix.O_NOFOLLOW); !errors.Is(err, syscall.ELOOP) ||
		!strings.Contains(err.Error(), filepath.Join(dir, "link")) {
		t.Errorf("Openat of a symlink with O_NOFOLLOW: %v", err)
	}
	if _, err := Lstatat(dfd, "missing", filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) ||
		!strings.Contains(err.Error(), filepath.Join(dir, "missing")) {
		t.Errorf("Lstatat of a missing name: %v", err)
	}
}

// TestHeaderBuilderOwnerNames: names as archive/tar looks them up, an
// owner the host does not know gives empty names, and a numeric builder
// gives none.
func TestHeaderBuilderOwnerNames(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "f")
	must(t, os.WriteFile(p, []byte("x"), 0o644))
	check := func(what string) {
		fi, err := os.Lstat(p)
		must(t, err)
		want, err := tar.FileInfoHeader(fi, "")
		must(t, err)
		hb := NewHeaderBuilder()
		for range 2 { // the second from the cache
			got, err := hb.Header("f", fi, "")
			must(t, err)
			if got.Uname != want.Uname || got.Gname != want.Gname || got.Uid != want.Uid || got.Gid != want.Gid {
				t.Errorf("%s: owner %d:%d %q:%q, archive/tar's %d:%d %q:%q", what,
					got.Uid, got.Gid, got.Uname, got.Gname, want.Uid, want.Gid, want.Uname, want.Gname)
			}
		}
		got, err := NewNumericHeaderBuilder().Header("f", fi, "")
		must(t, err)
		if got.Uname != "" || got.Gname != "" || got.Uid != want.Uid || got.Gid != want.Gid {
			t.Errorf("%s: numeric builder: %d:%d %q:%q", what, got.Uid, got.Gid, got.Uname, got.Gname)
		}
	}
	check("own file")
	if os.Geteuid() == 0 {
		must(t, os.Lchown(p, 54321, 54321)) // an owner no host knows
		check("unknown owner")
	}
}
