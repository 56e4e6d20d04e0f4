package tarsafe

import (
	"archive/tar"
	"syscall"
	"testing"
)

// TestHeaderBuilderInodeReused: names of one inode number become hard
// link entries only while the file's stamp (change and modification
// times, size) is the first name's. A file that got the number of a
// removed one (file systems reuse numbers at once: a hard-linked file
// removed during a walk, a new hard-linked pair created) is a regular
// entry, and its own later names link to it, not to the old file.
func TestHeaderBuilderInodeReused(t *testing.T) {
	t.Parallel()
	file := func(name string, ctime, mtime, size int64) *statInfo {
		fi := &statInfo{name: name, sys: syscall.Stat_t{Dev: 9, Ino: 42, Nlink: 2, Mode: syscall.S_IFREG | 0o644, Size: size,
			Ctim: syscall.Timespec{Sec: ctime, Nsec: 5}, Mtim: syscall.Timespec{Sec: mtime, Nsec: 7}}}
		fi.mode = fileMode(fi.sys.Mode)
		return fi
	}
	steps := []struct {
		fi   *statInfo
		link string // the hard link target wanted; "" = a regular entry
	}{
		{file("a", 100, 90, 8), ""},
		{file("a2", 100, 90, 8), "a"},     // the same file
		{file("m/b", 200, 90, 8), ""},     // another ctime: a new file with a's number
		{file("m/b2", 200, 90, 8), "m/b"}, // its second name
		{file("n/c", 200, 95, 8), ""},     // another mtime
		{file("n/d", 200, 95, 9), ""},     // another size
		{file("n/d2", 200, 95, 9), "n/d"},
	}
	hb := NewNumericHeaderBuilder()
	for _, s := range steps {
		if got := hb.LinkTarget(s.fi); got != s.link {
			t.Errorf("%s: LinkTarget %q, want %q", s.fi.name, got, s.link)
		}
		hdr, err := hb.Header(s.fi.name, s.fi, "")
		must(t, err)
		switch {
		case s.link == "" && (hdr.Typeflag != tar.TypeReg || hdr.Size != s.fi.sys.Size):
			t.Errorf("%s: type %q size %d, want a regular entry", s.fi.name, hdr.Typeflag, hdr.Size)
		case s.link != "" && (hdr.Typeflag != tar.TypeLink || hdr.Linkname != s.link || hdr.Size != 0):
			t.Errorf("%s: type %q link %q size %d, want a hard link to %s", s.fi.name, hdr.Typeflag, hdr.Linkname, hdr.Size, s.link)
		}
	}
}
