// Package sparsetest makes and compares files with holes for tests:
// sparse files of any apparent size, compared by reading only where
// either file holds data; a writer that fails an archive storing holes,
// and a restore of an archive through GNU tar.
package sparsetest

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Pattern returns n bytes of a repeating pattern without zero bytes.
func Pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i%251) | 1
	}
	return b
}

// Make creates path (mode 0640) as a file of size bytes holding data at
// the given offsets and holes elsewhere, and fails the test when the file
// system did not keep the holes.
func Make(t testing.TB, path string, size int64, data map[int64][]byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	var n int64
	for off, b := range data {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
		n += int64(len(b))
	}
	if a := Allocated(t, path); a > n+int64(len(data))*(64<<10)+(1<<20) {
		t.Fatalf("%s: the test folder's file system does not keep holes (%d bytes allocated for %d of data)", path, a, n)
	}
}

// Allocated returns the bytes the file system allocated for path.
func Allocated(t testing.TB, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// Region is a run of data in a file.
type Region struct{ Offset, Length int64 }

// DataRegions returns the data regions of path as lseek SEEK_DATA and
// SEEK_HOLE report them.
func DataRegions(t testing.TB, path string) []Region {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	var rs []Region
	for off := int64(0); off < fi.Size(); {
		d, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		h, err := unix.Seek(int(f.Fd()), d, unix.SEEK_HOLE)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, Region{d, h - d})
		off = h
	}
	return rs
}

// Same fails the test unless the files want and got have the same size
// and contents. It reads only where either holds data: everywhere else
// both are holes, which read as zeros, so a terabyte costs its data.
func Same(t testing.TB, want, got string) {
	t.Helper()
	wf, err := os.Open(want)
	if err != nil {
		t.Fatal(err)
	}
	defer wf.Close()
	gf, err := os.Open(got)
	if err != nil {
		t.Fatal(err)
	}
	defer gf.Close()
	wi, err := wf.Stat()
	if err != nil {
		t.Fatal(err)
	}
	gi, err := gf.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if wi.Size() != gi.Size() {
		t.Fatalf("%s: size %d, want %d", got, gi.Size(), wi.Size())
	}
	a, b := make([]byte, 1<<20), make([]byte, 1<<20)
	for _, r := range append(DataRegions(t, want), DataRegions(t, got)...) {
		for off := r.Offset; off < r.Offset+r.Length; off += int64(len(a)) {
			n := int(min(int64(len(a)), r.Offset+r.Length-off))
			if _, err := wf.ReadAt(a[:n], off); err != nil {
				t.Fatal(err)
			}
			if _, err := gf.ReadAt(b[:n], off); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a[:n], b[:n]) {
				t.Fatalf("%s differs from %s in the %d bytes from %d", got, want, n, off)
			}
		}
	}
}

// MakeSpread creates path (see [Make]) as a file of size bytes (at least
// 300 KiB) holding data at its start (10,000 bytes of Pattern(_, 1)), its
// middle (300,000 of Pattern(_, 2), from size/2) and its end (5,000 of
// Pattern(_, 3)), and holes elsewhere.
func MakeSpread(t testing.TB, path string, size int64) {
	t.Helper()
	Make(t, path, size, map[int64][]byte{
		0:           Pattern(10000, 1),
		size / 2:    Pattern(300000, 2),
		size - 5000: Pattern(5000, 3),
	})
}

// MakeScattered creates path (see [Make]) as a file of 20,000 pieces of
// 4 KiB (Pattern(_, 5)) 64 MiB apart: mapping it in the 16,384 regions an
// archive's sparse map may hold would store a quarter terabyte of zeros,
// archiving it dense 1.2 TiB.
func MakeScattered(t testing.TB, path string) {
	t.Helper()
	data := map[int64][]byte{}
	for i := range int64(20000) {
		data[i<<26] = Pattern(4096, 5)
	}
	Make(t, path, 20000<<26, data)
}

// LimitWriter passes writes on to W and fails once more than Max bytes
// were written: an archive that stores a file's holes fails at once
// instead of writing a terabyte.
type LimitWriter struct {
	W   io.Writer
	Max int64
	n   int64
}

// Write passes p on to W unless the bytes written pass Max.
func (l *LimitWriter) Write(p []byte) (int, error) {
	l.n += int64(len(p))
	if l.n > l.Max {
		return 0, fmt.Errorf("archive larger than %d bytes", l.Max)
	}
	return l.W.Write(p)
}

// ExtractGNU restores the archive arch with GNU tar (tarBin): it writes
// it to dir/a.tar and extracts it with tar -x into the new folder
// dir/out, whose path it returns; it ends the test when tar fails.
func ExtractGNU(t testing.TB, tarBin string, arch []byte, dir string) string {
	t.Helper()
	ap := filepath.Join(dir, "a.tar")
	if err := os.WriteFile(ap, arch, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(tarBin, "-xf", ap, "-C", out).CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v\n%s", err, b)
	}
	return out
}
