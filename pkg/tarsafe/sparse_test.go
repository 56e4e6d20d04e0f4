package tarsafe

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/firetech/fireops/internal/sparsetest"
	"github.com/firetech/fireops/internal/testenv"
)

var (
	makeSparse = sparsetest.Make
	allocated  = sparsetest.Allocated
	sameSparse = sparsetest.Same
	pattern    = sparsetest.Pattern
)

// archiveFiles writes an archive of the files (name in the archive ->
// host path) the way the sources do: a sparse entry for a file with
// holes, a plain one otherwise.
func archiveFiles(t testing.TB, files [][2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := NewWriter(&buf)
	hb := NewNumericHeaderBuilder()
	for _, nf := range files {
		f, err := os.Open(nf[1])
		if err != nil {
			t.Fatal(err)
		}
		fd := int(f.Fd())
		fi, err := Fstat(fd, nf[1], nf[1])
		if err != nil {
			t.Fatal(err)
		}
		sp, err := ScanSparse(context.Background(), fd, fi)
		if err != nil {
			t.Fatal(err)
		}
		hdr, err := hb.Header(nf[0], fi, "")
		if err != nil {
			t.Fatal(err)
		}
		var n, want int64
		if sp != nil {
			must(t, tw.WriteSparseHeader(hdr, sp))
			n, err = tw.ReadSparse(context.Background(), fd, sp)
			want = sp.DataSize()
		} else {
			must(t, tw.WriteHeader(hdr))
			n, err = tw.ReadContents(context.Background(), FileReader(fd))
			want = hdr.Size
		}
		must(t, err)
		if n != want {
			t.Fatalf("%s: read %d bytes, want %d", nf[1], n, want)
		}
		f.Close()
	}
	must(t, tw.Close())
	return buf.Bytes()
}

func TestScanSparse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const mib = 1 << 20
	for _, tc := range []struct {
		name string
		size int64
		data map[int64][]byte
		want []Region // nil: archived whole
	}{
		{"small dense", 100, map[int64][]byte{0: pattern(100, 1)}, nil},
		{"dense", 4 * mib, map[int64][]byte{0: pattern(4*mib, 1)}, nil},
		{"small holes", 4 * mib, map[int64][]byte{0: pattern(1*mib, 1), 1*mib + 32<<10: pattern(3*mib-32<<10, 2)}, nil},
		{"holes below the threshold", SparseMinHoles + 4096, map[int64][]byte{0: pattern(8192, 1)}, nil},
		{"only a hole", 1 << 40, nil, []Region{}},
		{"start middle end", 64 * mib, map[int64][]byte{0: pattern(5000, 1), 30 * mib: pattern(70000, 2), 64*mib - 3: []byte("end")},
			[]Region{{0, 8192}, {30 * mib, 73728}, {64*mib - 4096, 4096}}},
		{"unaligned end", 64*mib + 3, map[int64][]byte{64 * mib: []byte("end")}, []Region{{64 * mib, 3}}},
		{"short gaps merged", 64 * mib, map[int64][]byte{mib: pattern(4096, 1), mib + 40<<10: pattern(4096, 2), 40 * mib: pattern(4096, 3)},
			[]Region{{mib, 44 << 10}, {40 * mib, 4096}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			makeSparse(t, p, tc.size, tc.data)
			f, err := os.Open(p)
			must(t, err)
			defer f.Close()
			fi, err := f.Stat()
			must(t, err)
			for range 2 { // the same file gives the same map
				sp, err := ScanSparse(context.Background(), int(f.Fd()), fi)
				must(t, err)
				if tc.want == nil {
					if sp != nil {
						t.Fatalf("map %+v for a file to archive whole", sp)
					}
					continue
				}
				if sp == nil {
					t.Fatal("no map for a file with holes")
				}
				if sp.Size != tc.size || fmt.Sprint(sp.Regions) != fmt.Sprint(tc.want) {
					t.Fatalf("map %d %v, want %d %v", sp.Size, sp.Regions, tc.size, tc.want)
				}
				if off, err := unix.Seek(int(f.Fd()), 0, io.SeekCurrent); err != nil || off != 0 {
					t.Fatalf("file offset %d, %v after the scan", off, err)
				}
			}
		})
	}
}

func TestMergeGaps(t *testing.T) {
	t.Parallel()
	rs := []Region{{0, 10}, {20, 10}, {35, 5}, {100, 1}, {103, 1}, {108, 2}}
	// Gaps 10, 5, 60, 2, 4: merging 3 joins 2, 4 and 5.
	got, added := mergeGaps(append([]Region(nil), rs...), 3)
	if want := []Region{{0, 10}, {20, 20}, {100, 10}}; fmt.Sprint(got) != fmt.Sprint(want) || added != 11 {
		t.Fatalf("mergeGaps: %v %d, want %v 11", got, added, want)
	}
	// Equal gaps: the leftmost go first.
	got, added = mergeGaps([]Region{{0, 1}, {2, 1}, {4, 1}, {6, 1}}, 2)
	if want := []Region{{0, 5}, {6, 1}}; fmt.Sprint(got) != fmt.Sprint(want) || added != 2 {
		t.Fatalf("mergeGaps ties: %v %d, want %v 2", got, added, want)
	}
	if got, added := mergeGaps(rs[:2], 5); len(got) != 2 || added != 0 {
		t.Fatalf("mergeGaps under the limit: %v %d", got, added)
	}
}

// manyRegions makes a file with n data blocks of 4 KiB, every step bytes.
func manyRegions(t testing.TB, path string, n int, step int64) {
	t.Helper()
	data := map[int64][]byte{}
	b := pattern(4096, 7)
	for i := range n {
		data[int64(i)*step] = b
	}
	makeSparse(t, path, int64(n)*step, data)
}

func TestScanSparseFragmented(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	n := maxSparseRegions + 100
	// Regions 128 KiB apart: 100 gaps of 124 KiB merged, 12 MiB of zeros
	// stored: archived with holes, and readable back.
	ok := filepath.Join(dir, "ok")
	manyRegions(t, ok, n, 128<<10)
	f, err := os.Open(ok)
	must(t, err)
	fi, _ := f.Stat()
	sp, err := ScanSparse(context.Background(), int(f.Fd()), fi)
	f.Close()
	must(t, err)
	if sp == nil || len(sp.Regions) != maxSparseRegions || sp.DataSize() != int64(n)*4096+100*(124<<10) {
		t.Fatalf("map of %v regions", sp)
	}
	arch := archiveFiles(t, [][2]string{{"ok", ok}})
	_, target, _ := sandbox(t)
	if _, err := Extract(context.Background(), bytes.NewReader(arch), target, Options{}); err != nil {
		t.Fatal(err)
	}
	sameSparse(t, ok, filepath.Join(target, "ok"))

	// Regions 64 MiB apart: merging would store a GiB of zeros.
	bad := filepath.Join(dir, "bad")
	manyRegions(t, bad, n, 64<<20)
	f, err = os.Open(bad)
	must(t, err)
	defer f.Close()
	fi, _ = f.Stat()
	if sp, err := ScanSparse(context.Background(), int(f.Fd()), fi); !errors.Is(err, ErrTooFragmented) {
		t.Fatalf("ScanSparse: %v, %v; want ErrTooFragmented", sp, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ScanSparse(ctx, int(f.Fd()), fi); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ScanSparse: %v", err)
	}
}

// sparseFixture makes a sparse file of size bytes in dir with data at its
// start, middle and end, and a dense one, and returns their paths.
func sparseFixture(t testing.TB, dir string, size int64) (sparse, dense string) {
	t.Helper()
	sparse, dense = filepath.Join(dir, "disk.img"), filepath.Join(dir, "notes.txt")
	sparsetest.MakeSpread(t, sparse, size)
	must(t, os.WriteFile(dense, pattern(3000, 4), 0o644))
	mt := time.Unix(1700000000, 123456789)
	must(t, os.Chtimes(sparse, mt, mt))
	return sparse, dense
}

func TestSparseArchiveReadByArchiveTar(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const size = 1 << 40 // a terabyte: only its data is read and stored
	sparse, dense := sparseFixture(t, dir, size)
	files := [][2]string{{"./work/disk.img", sparse}, {"./work/notes.txt", dense}}
	arch := archiveFiles(t, files)
	if len(arch) > 1<<20 {
		t.Fatalf("archive of %d bytes for 315 KB of data", len(arch))
	}
	if again := archiveFiles(t, files); !bytes.Equal(arch, again) {
		t.Fatal("two archives of the same files differ")
	}
	fi, _ := os.Stat(sparse)
	tr := tar.NewReader(bytes.NewReader(arch))
	hdr, err := tr.Next()
	must(t, err)
	if hdr.Name != "./work/disk.img" || hdr.Size != size || hdr.Typeflag != tar.TypeReg || hdr.Mode != 0o640 ||
		!hdr.ModTime.Equal(fi.ModTime()) || hdr.Uid != os.Getuid() || hdr.PAXRecords["GNU.sparse.major"] != "1" {
		t.Fatalf("header %+v", hdr)
	}
	// The first MiB through archive/tar (reading on through the holes
	// would take a while: Extract and GNU tar check the rest).
	buf := make([]byte, 1<<20)
	_, err = io.ReadFull(tr, buf)
	must(t, err)
	if !bytes.Equal(buf[:10000], pattern(10000, 1)) || !bytes.Equal(buf[10000:], make([]byte, len(buf)-10000)) {
		t.Fatal("the first MiB differs")
	}
	hdr, err = tr.Next()
	must(t, err)
	if b, _ := io.ReadAll(tr); hdr.Name != "./work/notes.txt" || !bytes.Equal(b, pattern(3000, 4)) {
		t.Fatalf("second entry %q: %d bytes", hdr.Name, len(b))
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Fatalf("after the last entry: %v", err)
	}
}

func TestSparseRoundTripExtract(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// 64 GiB: archive/tar hands Extract the holes as zeros, at tens of
	// GB/s; a terabyte would take half a minute here.
	sparse, dense := sparseFixture(t, dir, 64<<30)
	arch := archiveFiles(t, [][2]string{{"work/disk.img", sparse}, {"work/notes.txt", dense}})
	_, target, _ := sandbox(t)
	st, err := Extract(context.Background(), bytes.NewReader(arch), target, Options{})
	must(t, err)
	if st.Files != 2 || st.Entries != 2 {
		t.Errorf("stats %+v", st)
	}
	got := filepath.Join(target, "work", "disk.img")
	sameSparse(t, sparse, got)
	sameSparse(t, dense, filepath.Join(target, "work", "notes.txt"))
	if a := allocated(t, got); a > 2<<20 {
		t.Errorf("restored sparse file allocates %d bytes", a)
	}
	wi, _ := os.Stat(sparse)
	gi, _ := os.Stat(got)
	if gi.Mode() != wi.Mode() || !gi.ModTime().Equal(wi.ModTime()) {
		t.Errorf("restored %v %v, want %v %v", gi.Mode(), gi.ModTime(), wi.Mode(), wi.ModTime())
	}
}

func TestSparseRoundTripGNUTar(t *testing.T) {
	t.Parallel()
	gnutar := testenv.RequireTool(t, "tar")
	if out, err := exec.Command(gnutar, "--version").Output(); err != nil || !strings.Contains(string(out), "GNU tar") {
		testenv.Unavailable(t, "GNU tar", fmt.Errorf("%s --version: %q, %v", gnutar, out, err))
	}
	dir := t.TempDir()
	sparse, dense := sparseFixture(t, dir, 64<<20)
	big := filepath.Join(dir, "big.img")
	makeSparse(t, big, 1<<40, map[int64][]byte{1 << 39: []byte("middle")})
	arch := archiveFiles(t, [][2]string{{"./work/disk.img", sparse}, {"./work/notes.txt", dense}, {"./big.img", big}})
	out := sparsetest.ExtractGNU(t, gnutar, arch, dir)
	// cmp reads the 64 MiB file whole, holes included.
	if b, err := exec.Command("cmp", sparse, filepath.Join(out, "work", "disk.img")).CombinedOutput(); err != nil {
		t.Fatalf("cmp: %v\n%s", err, b)
	}
	sameSparse(t, dense, filepath.Join(out, "work", "notes.txt"))
	sameSparse(t, big, filepath.Join(out, "big.img"))
	for _, p := range []string{filepath.Join(out, "work", "disk.img"), filepath.Join(out, "big.img")} {
		if a := allocated(t, p); a > 2<<20 {
			t.Errorf("tar -x wrote %s with %d bytes allocated", p, a)
		}
	}
	if names, _ := os.ReadDir(filepath.Join(out, "work")); len(names) != 2 {
		t.Errorf("tar -x made %v", names)
	}
}

// paxSparse is a hand-built archive of one GNU sparse entry, PAX format
// major.minor, of a file of realsize bytes holding "x" at its last byte.
func paxSparse(t testing.TB, name string, realsize int64, major, minor string) []byte {
	t.Helper()
	rec := func(k, v string) string {
		s := " " + k + "=" + v + "\n"
		n := len(s) + 1
		for len(strconv.Itoa(n))+len(s) != n {
			n++
		}
		return strconv.Itoa(n) + s
	}
	recs := rec("GNU.sparse.major", major) + rec("GNU.sparse.minor", minor) + rec("GNU.sparse.name", name) + rec("GNU.sparse.realsize", strconv.FormatInt(realsize, 10))
	var data []byte
	if major == "1" {
		data = append(pad(fmt.Appendf(nil, "1\n%d\n1\n", realsize-1)), 'x')
	} else {
		recs += rec("GNU.sparse.numblocks", "1") + rec("GNU.sparse.map", fmt.Sprintf("%d,1", realsize-1))
		data = []byte("x")
	}
	var b []byte
	b = append(b, ustarBlock("PaxHeaders/"+name, tar.TypeXHeader, int64(len(recs)))...)
	b = append(b, pad([]byte(recs))...)
	b = append(b, ustarBlock("GNUSparseFile.0/"+name, tar.TypeReg, int64(len(data)))...)
	b = append(b, pad(data)...)
	return append(b, make([]byte, 1024)...)
}

func TestExtractSparseBomb(t *testing.T) {
	t.Parallel()
	// 1.5 KiB declaring a GiB: written with its hole, not dense.
	arch := paxSparseBomb(t)
	_, target, _ := sandbox(t)
	st, err := Extract(context.Background(), bytes.NewReader(arch), target, Options{})
	must(t, err)
	p := filepath.Join(target, "bomb")
	fi, err := os.Stat(p)
	must(t, err)
	if fi.Size() != 1<<30 || st.Files != 1 || st.Bytes != 1<<30 {
		t.Fatalf("size %d, stats %+v", fi.Size(), st)
	}
	if a := allocated(t, p); a > 64<<10 {
		t.Errorf("the bomb allocated %d bytes", a)
	}
	f, err := os.Open(p)
	must(t, err)
	last := make([]byte, 2)
	_, err = f.ReadAt(last, 1<<30-2)
	f.Close()
	if err != nil || string(last) != "\x00x" {
		t.Errorf("last bytes %q, %v", last, err)
	}
}

func TestExtractSparseBombCancels(t *testing.T) {
	t.Parallel()
	// A terabyte hole: archive/tar hands it over as zeros without reading
	// the archive, so only Extract's own checks can stop it. (Written
	// dense, it would fill the disk: the cancel comes once a MiB is
	// allocated, and the check below fails.)
	arch := paxSparse(t, "bomb", 1<<40, "1", "0")
	_, target, _ := sandbox(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Extract(ctx, bytes.NewReader(arch), target, Options{})
		done <- err
	}()
	p := filepath.Join(target, "bomb")
	for { // wait until the hole is being read: the file has its size
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err == nil && (st.Size == 1<<40 || st.Blocks*512 > 1<<20) {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Extract returned before the cancel: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Extract: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second): // a hang guard, not a timing check
		t.Fatal("Extract did not return after cancellation")
	}
	if a := allocated(t, p); a > 64<<10 {
		t.Errorf("the cancelled bomb allocated %d bytes", a)
	}
}

func TestExtractRefusesOtherSparseForms(t *testing.T) {
	t.Parallel()
	for name, arch := range map[string][]byte{
		"old gnu": gnuSparseBomb(t),
		"pax 0.1": paxSparse(t, "bomb", 1<<30, "0", "1"),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			checkBombRefused(t, arch)
		})
	}
}

func TestWriteSparseHeaderRecords(t *testing.T) {
	t.Parallel()
	// Values that do not fit the header block go in PAX records, as
	// archive/tar does; archive/tar reads them all back.
	long := strings.Repeat("d/", 60) + "é.img"
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: long, Size: 1 << 40, Mode: 0o4750, Uid: 1 << 30, Gid: 5,
		Uname: strings.Repeat("u", 40), Gname: "grüppe", ModTime: time.Unix(-100, 5), Format: tar.FormatPAX}
	m := &SparseMap{Size: 1 << 40, Regions: []Region{{4096, 512}, {1<<40 - 3, 3}}}
	var buf bytes.Buffer
	tw := NewWriter(&buf)
	must(t, tw.WriteSparseHeader(hdr, m))
	_, err := tw.Write(pattern(515, 9))
	must(t, err)
	must(t, tw.Close())
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	got, err := tr.Next()
	must(t, err)
	if got.Name != long || got.Size != 1<<40 || got.Mode != 0o4750 || got.Uid != 1<<30 || got.Gid != 5 ||
		got.Uname != hdr.Uname || got.Gname != hdr.Gname || !got.ModTime.Equal(hdr.ModTime) {
		t.Fatalf("read back %+v", got)
	}
	b := make([]byte, 4096+512)
	_, err = io.ReadFull(tr, b)
	must(t, err)
	if !bytes.Equal(b[4096:], pattern(515, 9)[:512]) || !bytes.Equal(b[:4096], make([]byte, 4096)) {
		t.Fatal("first region differs")
	}
	// Errors: the map must fit the file and the header be a plain one.
	for name, h := range map[string]*tar.Header{
		"folder":  {Typeflag: tar.TypeDir, Name: "d/", Size: 1 << 40},
		"size":    {Typeflag: tar.TypeReg, Name: "f", Size: 5},
		"records": {Typeflag: tar.TypeReg, Name: "f", Size: 1 << 40, PAXRecords: map[string]string{"a": "b"}},
		"gnu":     {Typeflag: tar.TypeReg, Name: "f", Size: 1 << 40, Format: tar.FormatGNU},
	} {
		if err := NewWriter(io.Discard).WriteSparseHeader(h, m); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	bad := &SparseMap{Size: 1 << 40, Regions: []Region{{4096, 512}, {0, 3}}}
	if err := NewWriter(io.Discard).WriteSparseHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "f", Size: 1 << 40}, bad); err == nil {
		t.Error("regions out of order: no error")
	}
}

func TestReadSparseShrunkFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	makeSparse(t, p, 64<<20, map[int64][]byte{0: pattern(4096, 1), 60 << 20: pattern(4096, 2)})
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	fi, _ := f.Stat()
	sp, err := ScanSparse(context.Background(), int(f.Fd()), fi)
	must(t, err)
	if sp == nil || len(sp.Regions) != 2 {
		t.Fatalf("map %+v", sp)
	}
	must(t, f.Truncate(1<<20)) // the second region is gone
	tw := NewWriter(io.Discard)
	must(t, tw.WriteSparseHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "f", Size: 64 << 20}, sp))
	n, err := tw.ReadSparse(context.Background(), int(f.Fd()), sp)
	must(t, err)
	if n != 4096 {
		t.Fatalf("read %d bytes of a shrunk file, want 4096", n)
	}
	if err := tw.Close(); err == nil {
		t.Fatal("Close after a short read: no error")
	}
	must(t, tw.FillZeros())
	must(t, tw.Close())
}
