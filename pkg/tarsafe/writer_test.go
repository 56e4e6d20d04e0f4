package tarsafe

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"path"
	"strings"
	"testing"
	"time"
)

// randomHeader returns a header of the kind the sources write most of the
// time, and now and then one that archive/tar must encode (or refuse):
// names and link targets around the field sizes, slashes where USTAR
// splits names, sub-second times, large ids and sizes, other formats.
func randomHeader(r *rand.Rand) *tar.Header {
	name := func() string {
		lengths := []int{1, 2, 7, 50, 98, 99, 100, 101, 102, 120, 154, 155, 156, 157, 158, 200, 255, 256, 257, 300, 1000}
		n := lengths[r.IntN(len(lengths))]
		b := make([]byte, n)
		for i := range b {
			switch x := r.IntN(20); {
			case x < 3:
				b[i] = '/'
			case x == 3:
				b[i] = '.'
			default:
				b[i] = byte('a' + r.IntN(26))
			}
		}
		s := string(b)
		switch r.IntN(40) {
		case 0:
			s = "./" + s
		case 1:
			s += "/"
		case 2:
			s = "dé/" + s // not ASCII
		case 3:
			s = s[:len(s)/2] + "\x00" + s[len(s)/2:]
		case 4:
			s = strings.Repeat("a", 100) + "/" + strings.Repeat("b", 99)
		case 5:
			s = strings.Repeat("a/", 60)
		}
		return s
	}
	h := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name(),
		Mode:     []int64{0o644, 0o755, 0o4755, 0o2775, 0o1777, 0o600, 0o7777}[r.IntN(7)],
		Uid:      []int{0, 1000, 65534, 2097151}[r.IntN(4)],
		Gid:      []int{0, 100, 1000, 2097151}[r.IntN(4)],
		Size:     []int64{0, 1, 511, 512, 513, 4096, 8<<30 - 1}[r.IntN(7)],
		ModTime:  time.Unix(1600000000+r.Int64N(100000000), []int64{0, 0, 1, 100, 120000000, 999999999, r.Int64N(1e9)}[r.IntN(7)]),
		Uname:    []string{"", "root", "jovyan", strings.Repeat("u", 32)}[r.IntN(4)],
		Gname:    []string{"", "root", "users", strings.Repeat("g", 32)}[r.IntN(4)],
		Format:   tar.FormatPAX,
	}
	switch r.IntN(10) {
	case 0, 1:
		h.Typeflag, h.Size = tar.TypeDir, 0
		if r.IntN(4) > 0 {
			h.Name = strings.TrimRight(h.Name, "/") + "/"
		}
	case 2:
		h.Typeflag, h.Size, h.Linkname = tar.TypeSymlink, 0, name()
	case 3:
		h.Typeflag, h.Size, h.Linkname = tar.TypeLink, 0, name()
	case 4:
		//lint:ignore SA1019 the legacy flag a caller may still write, which Writer must promote as archive/tar does
		h.Typeflag = tar.TypeRegA
	}
	// Now and then, what the fast path leaves to archive/tar.
	switch r.IntN(40) {
	case 0:
		h.Uid = 2097152
	case 1:
		h.Size = 8 << 30
	case 2:
		h.ModTime = time.Unix(-5, 5)
	case 3:
		h.ModTime = time.Unix(1<<33, 0)
	case 4:
		h.ModTime = time.Time{}
	case 5:
		h.Uname = strings.Repeat("u", 33)
	case 6:
		h.Gname = "grüppe"
	case 7:
		h.Format = tar.FormatUnknown
	case 8:
		h.Format = tar.FormatGNU
	case 9:
		h.Format = tar.FormatUSTAR
	case 10:
		h.AccessTime = time.Unix(1700000000, 1)
	case 11:
		h.PAXRecords = map[string]string{"comment": "x"}
	case 12:
		h.Typeflag, h.Size, h.Devmajor, h.Devminor = tar.TypeChar, 0, 1, 3
	case 13:
		h.Typeflag, h.Size = tar.TypeFifo, 0
	case 14:
		h.Mode = 1 << 21
	case 15:
		h.Size = -1
	case 16:
		h.Typeflag, h.Size = tar.TypeSymlink, 5 // a size on a header-only type
	}
	return h
}

// TestWriterHeadersMatchArchiveTar compares every header block Writer
// writes with archive/tar's, and its errors.
func TestWriterHeadersMatchArchiveTar(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	fast := 0
	for i := range 50000 {
		h := randomHeader(r)
		var want, got bytes.Buffer
		werr := tar.NewWriter(&want).WriteHeader(h)
		w := newWriterSize(&got, 4096)
		if w.encode(h, h.Typeflag) {
			fast++
			w.buf = w.buf[:0]
		}
		gerr := w.WriteHeader(h)
		w.flush()
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("header %d %+v: archive/tar: %v, Writer: %v", i, h, werr, gerr)
		}
		if !bytes.Equal(want.Bytes(), got.Bytes()) {
			t.Fatalf("header %d %+v: bytes differ\narchive/tar %q\nWriter      %q", i, h, want.Bytes(), got.Bytes())
		}
	}
	if fast < 20000 {
		t.Errorf("only %d of 50000 headers took the fast path", fast)
	}
	t.Logf("%d of 50000 headers took the fast path", fast)
}

// chunkReader returns at most n bytes a read.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

// TestWriterStreamMatchesArchiveTar writes archives of random entries with
// contents through archive/tar and through Writers with several buffer
// sizes (contents by Write, ReadContents and, for a short file,
// ReadContents then FillZeros) and compares the bytes.
func TestWriterStreamMatchesArchiveTar(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	type ent struct {
		h    *tar.Header
		body []byte
		how  int // 0 Write, 1 ReadContents, 2 short ReadContents + FillZeros, 3 ReadContents of a longer file
	}
	var ents []ent
	for len(ents) < 3000 {
		h := randomHeader(r)
		if tar.NewWriter(io.Discard).WriteHeader(h) != nil {
			continue
		}
		//lint:ignore SA1019 randomHeader writes the legacy flag on purpose
		if h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeRegA && !strings.HasSuffix(h.Name, "/") {
			h.Size = []int64{0, 1, 100, 511, 512, 513, 1500, 5000, 70000}[r.IntN(9)]
		}
		body := make([]byte, 0)
		//lint:ignore SA1019 randomHeader writes the legacy flag on purpose
		if !headerOnly(h.Typeflag) && !(h.Typeflag == tar.TypeRegA && strings.HasSuffix(h.Name, "/")) {
			body = make([]byte, h.Size)
			for i := range body {
				body[i] = byte(r.IntN(256))
			}
		}
		ents = append(ents, ent{h: h, body: body, how: r.IntN(4)})
	}
	var want bytes.Buffer
	tw := tar.NewWriter(&want)
	for _, e := range ents {
		if err := tw.WriteHeader(e.h); err != nil {
			t.Fatal(err)
		}
		body := e.body
		if e.how == 2 && len(body) > 0 {
			body = append(body[:len(body)/2:len(body)/2], make([]byte, len(body)-len(body)/2)...)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, size := range []int{512, 1000, 4096, 65536, writerBufferSize} {
		var got bytes.Buffer
		w := newWriterSize(&got, size)
		for i, e := range ents {
			if err := w.WriteHeader(e.h); err != nil {
				t.Fatalf("size %d entry %d: %v", size, i, err)
			}
			switch e.how {
			case 0:
				if n, err := w.Write(e.body); err != nil || n != len(e.body) {
					t.Fatalf("size %d entry %d: Write %d, %v", size, i, n, err)
				}
			case 1, 3:
				src := e.body
				if e.how == 3 {
					src = append(append([]byte(nil), src...), "more than the header says"...)
				}
				n, err := w.ReadContents(ctx, &chunkReader{bytes.NewReader(src), 1 + r.IntN(3000)})
				if err != nil || n != int64(len(e.body)) {
					t.Fatalf("size %d entry %d: ReadContents %d, %v", size, i, n, err)
				}
			case 2:
				n, err := w.ReadContents(ctx, bytes.NewReader(e.body[:len(e.body)/2]))
				if err != nil || n != int64(len(e.body)/2) {
					t.Fatalf("size %d entry %d: ReadContents %d, %v", size, i, n, err)
				}
				if err := w.FillZeros(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(want.Bytes(), got.Bytes()) {
			t.Fatalf("buffer %d: archives differ (%d and %d bytes)", size, want.Len(), got.Len())
		}
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

// TestWriterErrors: unfinished contents, too much contents, a failing
// writer (sticky), a cancelled context, writes after Close.
func TestWriterErrors(t *testing.T) {
	t.Parallel()
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: "f", Size: 10, Mode: 0o644, Format: tar.FormatPAX}
	w := NewWriter(io.Discard)
	must(t, w.WriteHeader(hdr))
	if _, err := w.Write([]byte("12345")); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteHeader(hdr); err == nil || !strings.Contains(err.Error(), "missed writing 5 bytes") {
		t.Errorf("WriteHeader with contents missing: %v", err)
	}
	if err := w.Close(); err == nil {
		t.Error("Close with contents missing succeeded")
	}
	if n, err := w.Write([]byte("6789012")); n != 5 || err != tar.ErrWriteTooLong {
		t.Errorf("Write past the size: %d, %v", n, err)
	}
	must(t, w.Close())
	if err := w.WriteHeader(hdr); err != tar.ErrWriteAfterClose {
		t.Errorf("WriteHeader after Close: %v", err)
	}

	fw := &failWriter{n: 5000}
	w = newWriterSize(fw, 512)
	var werr error
	for i := 0; i < 100 && werr == nil; i++ {
		if werr = w.WriteHeader(hdr); werr == nil {
			_, werr = w.ReadContents(context.Background(), strings.NewReader("0123456789"))
		}
	}
	if werr == nil || !strings.Contains(werr.Error(), "disk full") {
		t.Fatalf("writing into a failing writer: %v", werr)
	}
	if _, err := w.Write([]byte("x")); err != werr {
		t.Errorf("Write after a write error: %v", err)
	}
	if err := w.Close(); err != werr {
		t.Errorf("Close after a write error: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w = NewWriter(io.Discard)
	must(t, w.WriteHeader(hdr))
	if _, err := w.ReadContents(ctx, strings.NewReader("0123456789")); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadContents with a cancelled context: %v", err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestPaxHeaderNameAndChecksum compares the shortcuts of the encoder with
// what they replace: path.Join of path.Split, and a plain byte sum.
func TestPaxHeaderNameAndChecksum(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(5, 6))
	parts := []string{"a", "bc", ".", "..", "", "./", "x.y", "/"}
	for range 100000 {
		var sb strings.Builder
		for range 1 + r.IntN(6) {
			sb.WriteString(parts[r.IntN(len(parts))])
			if r.IntN(3) > 0 {
				sb.WriteByte('/')
			}
		}
		name := sb.String()
		dir, file := path.Split(name)
		if got, want := paxHeaderName(name), path.Join(dir, "PaxHeaders.0", file); got != want {
			t.Fatalf("paxHeaderName(%q) = %q, want %q", name, got, want)
		}
	}
	blk := make([]byte, blockSize)
	for range 1000 {
		for i := range blk {
			blk[i] = byte(r.IntN(256))
		}
		if r.IntN(2) == 0 {
			clear(blk[r.IntN(blockSize):])
		}
		var want int64
		for _, c := range blk {
			want += int64(c)
		}
		if got := byteSum(blk); got != want {
			t.Fatalf("byteSum = %d, want %d", got, want)
		}
	}
}
