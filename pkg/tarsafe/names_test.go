package tarsafe

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// heapInUse returns the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestHeaderBuilderLinkNamesBounded: a notebook user who makes a folder
// deep in their volume (its path hundreds of KiB: a few thousand folders
// of long names, cheap) and in it many empty files with two names each
// (no data blocks) must not make the snapshot keep a copy of that path
// for every file: the first names the builder remembers for hard links
// share their folders, so its memory grows with the names' own last
// components. (It kept each first name whole: 300 files in a 200 KiB
// deep folder held 60 MiB; 100,000 files in a 500 KiB one, 50 GiB.)
// Not parallel: it measures the heap.
func TestHeaderBuilderLinkNamesBounded(t *testing.T) {
	const files = 300
	deep := strings.Repeat("d/", 100_000) // 200 KiB
	file := func(i int, name string) *statInfo {
		fi := &statInfo{name: name, sys: syscall.Stat_t{Dev: 9, Ino: uint64(1000 + i), Nlink: 2, Mode: syscall.S_IFREG | 0o644}}
		fi.mode = fileMode(fi.sys.Mode)
		return fi
	}
	hb := NewNumericHeaderBuilder()
	var before int64
	for i := range files {
		name := deep + fmt.Sprintf("f%d", i) // a fresh string each, as the walk makes them
		if _, err := hb.Header(name, file(i, name), ""); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			before = int64(heapInUse()) // the folder's path, held once
		}
	}
	held := int64(heapInUse()) - before // what the other files added
	for i := range files {
		name := deep + fmt.Sprintf("g%d", i)
		hdr, err := hb.Header(name, file(i, name), "")
		if err != nil {
			t.Fatal(err)
		}
		if want := deep + fmt.Sprintf("f%d", i); hdr.Typeflag != tar.TypeLink || hdr.Linkname != want {
			t.Fatalf("second name %d: type %q, link of %d bytes, want a hard link to the first name", i, hdr.Typeflag, len(hdr.Linkname))
		}
	}
	runtime.KeepAlive(hb)
	if held > 1<<20 {
		t.Errorf("%d more hard-linked files in one %d KiB deep folder made the builder hold %d KiB more; want their own names only (a few KiB)",
			files-1, len(deep)>>10, held>>10)
	}
}

// TestCheckerSymlinkNamesBounded: the Checker (the entry policy of the
// api restore path, before the Docker Engine extracts) remembers the
// symbolic links an archive made; a user's volume with many symlinks in
// one deep folder (each an inode, no data) must not make it keep that
// folder's path once per symlink: its memory grows with the links' own
// last components. (It kept each name whole: 150 symlinks in a 100 KiB
// deep folder held 15 MiB, 100,000 in a 500 KiB one 50 GiB. And once the archive held one symlink, every
// entry D levels deep had its D parent paths hashed, D times its name's
// length: with 500 KiB names, tens of GiB of hashing per entry.) Not
// parallel: it measures the heap.
func TestCheckerSymlinkNamesBounded(t *testing.T) {
	const links = 150
	deep := strings.Repeat(strings.Repeat("d", 254)+"/", 400) // 100 KiB, 400 levels
	c := NewChecker(Options{})
	var before int64
	for i := range links {
		if _, err := c.Check(&tar.Header{Typeflag: tar.TypeSymlink, Name: deep + fmt.Sprintf("l%d", i), Linkname: "/etc"}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			before = int64(heapInUse()) // the folder's path, held once
		}
	}
	held := int64(heapInUse()) - before // what the other links added
	// What they are for still holds, however deep: nothing below one,
	// no hard link to one; a later entry of the name replaces it.
	for _, tc := range []struct {
		hdr *tar.Header
		ok  bool
	}{
		{&tar.Header{Typeflag: tar.TypeReg, Name: deep + "l7/passwd", Mode: 0o644}, false},
		{&tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: deep + "l8"}, false},
		{&tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: deep + "l9/x"}, false},
		{&tar.Header{Typeflag: tar.TypeReg, Name: deep + "l10x", Mode: 0o644}, true},
		{&tar.Header{Typeflag: tar.TypeDir, Name: deep + "l11/", Mode: 0o755}, true},
		{&tar.Header{Typeflag: tar.TypeReg, Name: deep + "l11/x", Mode: 0o644}, true},
		{&tar.Header{Typeflag: tar.TypeReg, Name: deep[:255] + "x", Mode: 0o644}, true},
	} {
		if _, err := c.Check(tc.hdr); (err == nil) != tc.ok {
			t.Errorf("%s...%s: %v, want accepted %v", tc.hdr.Name[:4], tc.hdr.Name[max(0, len(tc.hdr.Name)-8):], err, tc.ok)
		}
	}
	runtime.KeepAlive(c)
	if held > 1<<20 {
		t.Errorf("%d more symlinks in one %d KiB deep folder made the Checker hold %d KiB more; want their own names only (a few KiB)",
			links-1, len(deep)>>10, held>>10)
	}
}

// TestNameTreePath: a name given back by the tree is the name added,
// byte for byte, whatever its form (the hard link entries' targets must
// be the first names as written).
func TestNameTreePath(t *testing.T) {
	t.Parallel()
	var tr nameTree
	for _, name := range []string{"a", "./a/b", "/opt/x", "a//b", "a/b/", "", ".", "ä/\x01/c"} {
		if got := tr.find(name, true).path(); got != name {
			t.Errorf("%q came back as %q", name, got)
		}
		if tr.find(name, false) == nil {
			t.Errorf("%q not found once added", name)
		}
	}
	if tr.find("a/c", false) != nil {
		t.Error("a name never added was found")
	}
}

// TestExtractFolderNamesBounded: a restore of a user's volume holding a
// chain of folders thousands of levels deep (each folder an inode and a
// block) must not hold every folder's whole name until the end, where
// their modes and times are applied: that is the square of the depth (a
// chain of 250,000 one-letter folders, 500 KiB at the bottom, which the
// snapshot archives, had the restore hold some 60 GiB). Its memory grows
// with the folders' own names. Not parallel: it measures the heap.
func TestExtractFolderNamesBounded(t *testing.T) {
	const depth = 1000
	comp := strings.Repeat("d", 99) // 100 KiB at the bottom, 50 MiB of names in all
	_, target, _ := sandbox(t)
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		name := ""
		for i := 0; i < depth; i++ {
			name += comp + "/"
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o750, Format: tar.FormatPAX}); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(tw.Close())
	}()
	before := heapInUse()
	x, err := extract(context.Background(), pr, target, Options{})
	pr.Close()
	if err != nil {
		t.Fatal(err)
	}
	held := int64(heapInUse()) - int64(before)
	runtime.KeepAlive(x)
	if x.stats.Dirs != depth {
		t.Fatalf("%d folders extracted, want %d", x.stats.Dirs, depth)
	}
	if held > 8<<20 {
		t.Errorf("extracting a chain of %d folders (%d KiB at the bottom) left %d MiB held; want about the folders' own names (%d KiB)",
			depth, depth*len(comp+"/")>>10, held>>20, depth*len(comp+"/")>>10)
	}
	// The modes were applied all the way down.
	fd, err := Openat(unix.AT_FDCWD, target, target, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= depth; i++ {
		next, err := Openat(fd, comp, comp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
		unix.Close(fd)
		if err != nil {
			t.Fatalf("level %d: %v", i, err)
		}
		fd = next
		if fi, err := Fstat(fd, comp, comp); err != nil || fi.Mode().Perm() != 0o750 {
			t.Fatalf("level %d: %v, %v; want mode 0750", i, fi, err)
		}
	}
	unix.Close(fd)
}
