package tarsafe

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// octal writes n as a NUL-terminated octal field into b.
func octal(b []byte, n int64) {
	s := strconv.FormatInt(n, 8)
	copy(b, strings.Repeat("0", len(b)-1-len(s))+s)
	b[len(b)-1] = 0
}

// setChecksum writes the checksum of the header block h into it.
func setChecksum(h []byte) {
	copy(h[148:156], "        ")
	var sum int64
	for _, c := range h {
		sum += int64(c)
	}
	octal(h[148:155], sum)
	h[155] = ' '
}

// gnuSparseBomb is an old-GNU sparse entry ('S') of one data byte at the
// end of a 1 GiB file, as GNU tar writes it: 1.5 KiB of archive.
func gnuSparseBomb(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeGNUSparse, Name: "bomb", Size: 1, Mode: 0o644, Format: tar.FormatGNU}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	h := b[:512]
	octal(h[386:398], 1<<30-1) // sparse[0].offset
	octal(h[398:410], 1)       // sparse[0].numbytes
	octal(h[483:495], 1<<30)   // realsize
	setChecksum(h)
	return b
}

// ustarBlock is a USTAR header block, checksum included.
func ustarBlock(name string, typ byte, size int64) []byte {
	h := make([]byte, 512)
	copy(h, name)
	octal(h[100:108], 0o644)
	octal(h[108:116], 0)
	octal(h[116:124], 0)
	octal(h[124:136], size)
	octal(h[136:148], 1700000000)
	h[156] = typ
	copy(h[257:265], "ustar\x0000")
	setChecksum(h)
	return h
}

// pad appends zeros to b up to a multiple of 512 bytes.
func pad(b []byte) []byte { return append(b, make([]byte, (512-len(b)%512)%512)...) }

// paxSparseBomb is the PAX form (GNU.sparse 1.0) of gnuSparseBomb, built
// by hand: archive/tar's writer drops GNU.sparse records.
func paxSparseBomb(t *testing.T) []byte {
	t.Helper()
	var recs []byte
	for _, kv := range [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.name", "bomb"}, {"GNU.sparse.realsize", "1073741824"}} {
		rec := " " + kv[0] + "=" + kv[1] + "\n"
		n := len(rec) + 2
		if len(strconv.Itoa(n)) != 2 {
			t.Fatal("record length")
		}
		recs = append(recs, strconv.Itoa(n)+rec...)
	}
	data := append(pad([]byte("1\n1073741823\n1\n")), 'x')
	var b []byte
	b = append(b, ustarBlock("PaxHeaders/bomb", tar.TypeXHeader, int64(len(recs)))...)
	b = append(b, pad(recs)...)
	b = append(b, ustarBlock("GNUSparseFile.0/bomb", tar.TypeReg, int64(len(data)))...)
	b = append(b, pad(data)...)
	return append(b, make([]byte, 1024)...)
}

// checkBombRefused checks that arch is a sparse bomb (archive/tar
// expands its first entry, "bomb", to 1 GiB) and that Extract refuses it
// as sparse, having written nothing.
func checkBombRefused(t *testing.T, arch []byte) {
	t.Helper()
	// The archive really is a sparse bomb: archive/tar expands it.
	tr := tar.NewReader(bytes.NewReader(arch))
	hdr, err := tr.Next()
	if err != nil || hdr.Size != 1<<30 || hdr.Name != "bomb" {
		t.Fatalf("crafted archive: %+v, %v", hdr, err)
	}
	_, target, _ := sandbox(t)
	st, err := Extract(context.Background(), bytes.NewReader(arch), target, Options{})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "sparse") {
		t.Fatalf("Extract: %v, want a sparse refusal", err)
	}
	if st.Bytes != 0 || st.Files != 0 {
		t.Errorf("stats %+v", st)
	}
	if ents, err := os.ReadDir(target); err != nil || len(ents) != 0 {
		t.Errorf("target holds %v, %v", ents, err)
	}
}

func TestExtractRefusesSparse(t *testing.T) {
	t.Parallel()
	// PAX format 1.0 is written with holes: TestExtractSparseBomb.
	for name, arch := range map[string][]byte{"gnu": gnuSparseBomb(t)} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			checkBombRefused(t, arch)
		})
	}
}

// deepArchive writes to w a folder entry at every level of a chain of
// depth folders named "d", a file in each, and ends with up more files
// written from the bottom back up (so the chain is left and re-entered).
func deepArchive(w io.Writer, depth, up int) error {
	tw := tar.NewWriter(w)
	mod := time.Unix(1700000000, 0)
	for i := 1; i <= depth; i++ {
		p := strings.Repeat("d/", i)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p, Mode: 0o755, ModTime: mod, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p + "f", Mode: 0o644, Size: 1, ModTime: mod, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write([]byte("f")); err != nil {
			return err
		}
	}
	for i := depth; i > depth-up; i-- {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.Repeat("d/", i) + "g", Mode: 0o644, Size: 1, ModTime: mod, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write([]byte("g")); err != nil {
			return err
		}
	}
	return tw.Close()
}

// extractDeep extracts deepArchive(depth, up) and returns the extractor.
func extractDeep(t *testing.T, depth, up int) *extractor {
	t.Helper()
	_, target, _ := sandbox(t)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(deepArchive(pw, depth, up)) }()
	x, err := extract(context.Background(), pr, target, Options{})
	pr.Close()
	if err != nil {
		t.Fatalf("depth %d: %v", depth, err)
	}
	if x.stats.Dirs != int64(depth) || x.stats.Files != int64(depth+up) {
		t.Fatalf("depth %d: stats %+v", depth, x.stats)
	}
	// Check the tree through descriptors: it is deeper than PATH_MAX.
	fd, err := Openat(unix.AT_FDCWD, target, target, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= depth; i++ {
		next, err := Openat(fd, "d", "d", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
		unix.Close(fd)
		if err != nil {
			t.Fatalf("level %d: %v", i, err)
		}
		fd = next
		want := []string{"f"}
		if i > depth-up {
			want = append(want, "g")
		}
		for _, n := range want {
			fi, err := Lstatat(fd, n, n)
			if err != nil || !fi.Mode().IsRegular() || fi.Size() != 1 || fi.Mode().Perm() != 0o644 {
				t.Fatalf("level %d: %s: %v, %v", i, n, fi, err)
			}
		}
		if fi, err := Fstat(fd, "d", "d"); err != nil || fi.Mode().Perm() != 0o755 || !fi.ModTime().Equal(time.Unix(1700000000, 0)) {
			t.Fatalf("level %d: folder %v, %v", i, fi, err)
		}
	}
	unix.Close(fd)
	return x
}

func TestExtractDeepNestingLinear(t *testing.T) {
	t.Parallel()
	// Folder resolution work (openat/mkdirat calls) per entry must not
	// grow with depth: a deep chain costs about one open per level.
	var walks []int64
	for _, depth := range []int{1000, 2000} {
		x := extractDeep(t, depth, 0)
		walks = append(walks, x.walks)
		if x.walks > 2*x.stats.Entries {
			t.Errorf("depth %d: %d folder opens for %d entries", depth, x.walks, x.stats.Entries)
		}
	}
	if ratio := float64(walks[1]) / float64(walks[0]); ratio > 2.2 {
		t.Errorf("folder opens at depth 1000 / 2000: %d / %d (x%.1f, want about x2)", walks[0], walks[1], ratio)
	}
	if testing.Short() {
		return
	}
	x := extractDeep(t, 5000, 0)
	if x.walks > 2*x.stats.Entries {
		t.Errorf("depth 5000: %d folder opens for %d entries", x.walks, x.stats.Entries)
	}
}

func TestExtractDeepNestingBackUp(t *testing.T) {
	t.Parallel()
	// Deeper than the descriptors kept open, then back up level by level:
	// closed levels are reopened (and checked) from the target.
	extractDeep(t, 2*maxHeldDirs+100, maxHeldDirs+150)
}

// cancelReader serves r, cancels after n bytes, then yields slowly (one
// small read per millisecond), like a network stream still trickling.
type cancelReader struct {
	r      io.Reader
	n      int64
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
		time.Sleep(time.Millisecond)
		p = p[:min(len(p), 512)]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}

// zeros is an endless stream of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestExtractCancelsInsideLongOperations(t *testing.T) {
	t.Parallel()
	hugeEntry := func(w io.Writer) error {
		tw := tar.NewWriter(w)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "huge", Mode: 0o644, Size: 1 << 40}); err != nil {
			return err
		}
		_, err := io.Copy(tw, zeros{})
		return err
	}
	manyEntries := func(w io.Writer) error {
		tw := tar.NewWriter(w)
		for i := 0; ; i++ {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("d%d/f%d", i%10, i), Mode: 0o644, Size: 1}); err != nil {
				return err
			}
			if _, err := tw.Write([]byte("x")); err != nil {
				return err
			}
		}
	}
	for name, gen := range map[string]func(io.Writer) error{"huge entry": hugeEntry, "many entries": manyEntries} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, target, _ := sandbox(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(gen(pw)) }()
			defer pr.Close()
			done := make(chan error, 1)
			go func() {
				_, err := Extract(ctx, &cancelReader{r: pr, n: 256 << 10, cancel: cancel}, target, Options{})
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Extract: %v, want context.Canceled", err)
				}
			case <-time.After(5 * time.Second): // a hang guard, not a timing check
				t.Fatal("Extract did not return after cancellation")
			}
		})
	}
}
