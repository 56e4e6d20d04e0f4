package volume

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/sparsetest"
	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/tarsafe"
)

// limitWriter fails once more than max bytes were written: an archive
// that stores a file's holes fails at once instead of writing a terabyte.
type limitWriter struct {
	w   io.Writer
	max int64
	n   int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	l.n += int64(len(p))
	if l.n > l.max {
		return 0, fmt.Errorf("archive larger than %d bytes", l.max)
	}
	return l.w.Write(p)
}

func TestMountpointSparse(t *testing.T) {
	t.Parallel()
	gnutar := testenv.RequireTool(t, "tar")
	base := t.TempDir()
	dir := filepath.Join(base, "_data")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "work"), 0o755))
	// A user's terabyte made with truncate: only its data is read.
	const size = 1 << 40
	img := filepath.Join(dir, "work", "disk.img")
	sparsetest.Make(t, img, size, map[int64][]byte{
		0:           sparsetest.Pattern(10000, 1),
		size / 2:    sparsetest.Pattern(300000, 2),
		size - 5000: sparsetest.Pattern(5000, 3),
	})
	notes := filepath.Join(dir, "work", "notes.txt")
	must(os.WriteFile(notes, sparsetest.Pattern(3000, 4), 0o644))
	// And 20,000 pieces of 4 KiB 64 MiB apart, with a second name: too
	// scattered to map, both names are left out and counted.
	data := map[int64][]byte{}
	for i := range int64(20000) {
		data[i<<26] = sparsetest.Pattern(4096, 5)
	}
	scattered := filepath.Join(dir, "scattered.img")
	sparsetest.Make(t, scattered, 20000<<26, data)
	must(os.Link(scattered, filepath.Join(dir, "scattered.link")))

	var logs bytes.Buffer
	s := &Source{name: "t", log: slog.New(slog.NewTextHandler(&logs, nil))}
	var arch bytes.Buffer
	c, err := s.writeMountpoint(context.Background(), &pinned{mode: ReadMountpoint, dir: dir, ident: "t"}, &limitWriter{w: &arch, max: 4 << 20})
	must(err)
	if c.files != 2 || c.links != 0 || c.sparseSkipped != 2 || c.vanished != 0 || c.bytes > 1<<20 {
		t.Errorf("counts %+v", c)
	}
	if d := c.stats(ReadMountpoint, nil).Details; d["sparse_skipped"] != "2" {
		t.Errorf("details %v", d)
	}
	if !strings.Contains(logs.String(), "sparse file left out") || !strings.Contains(logs.String(), "scattered.link") {
		t.Errorf("log:\n%s", logs.String())
	}
	names := tarNames(t, arch.Bytes())
	if want := []string{"./", "./work/", "./work/disk.img", "./work/notes.txt"}; fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("entries %v, want %v", names, want)
	}
	tr := tar.NewReader(bytes.NewReader(arch.Bytes()))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(err)
		if h.Name == "./work/disk.img" && (h.Size != size || h.Mode != 0o640 || h.Typeflag != tar.TypeReg) {
			t.Errorf("%s: size %d, mode %o, type %q", h.Name, h.Size, h.Mode, h.Typeflag)
		}
	}
	// A plain tar -x restores it with its holes.
	ap := filepath.Join(base, "a.tar")
	must(os.WriteFile(ap, arch.Bytes(), 0o600))
	out := filepath.Join(base, "out")
	must(os.Mkdir(out, 0o700))
	if b, err := exec.Command(gnutar, "-xf", ap, "-C", out).CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v\n%s", err, b)
	}
	got := filepath.Join(out, "work", "disk.img")
	sparsetest.Same(t, img, got)
	sparsetest.Same(t, notes, filepath.Join(out, "work", "notes.txt"))
	if a := sparsetest.Allocated(t, got); a > 2<<20 {
		t.Errorf("tar -x allocated %d bytes for %s", a, got)
	}
}

func TestForEngineRefusesSparse(t *testing.T) {
	t.Parallel()
	// The api restore path hands the stream to the Engine, whose
	// extraction writes a sparse file dense: refused, not a full disk.
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	sparsetest.Make(t, img, 1<<40, map[int64][]byte{1 << 39: []byte("x")})
	s := &Source{name: "t", log: slog.New(slog.DiscardHandler)}
	var arch bytes.Buffer
	if _, err := s.writeMountpoint(context.Background(), &pinned{mode: ReadMountpoint, dir: dir, ident: "t"}, &limitWriter{w: &arch, max: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	var c counts
	out := &limitWriter{w: io.Discard, max: 1 << 20}
	err := forEngine(context.Background(), bytes.NewReader(arch.Bytes()), out, &c)
	if !errors.Is(err, tarsafe.ErrUnsupported) || !strings.Contains(err.Error(), "sparse") || !strings.Contains(err.Error(), "disk.img") {
		t.Fatalf("forEngine: %v, want a sparse refusal naming the file", err)
	}
}
