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
	"path/filepath"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/sparsetest"
	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/internal/walktest"
	"github.com/firetech/fireops/pkg/tarsafe"
)

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
	sparsetest.MakeSpread(t, img, size)
	notes := filepath.Join(dir, "work", "notes.txt")
	must(os.WriteFile(notes, sparsetest.Pattern(3000, 4), 0o644))
	// And 20,000 pieces of 4 KiB 64 MiB apart, with a second name: too
	// scattered to map, both names are left out and counted.
	scattered := filepath.Join(dir, "scattered.img")
	sparsetest.MakeScattered(t, scattered)
	must(os.Link(scattered, filepath.Join(dir, "scattered.link")))

	var logs bytes.Buffer
	s := &Source{name: "t", log: slog.New(slog.NewTextHandler(&logs, nil))}
	var arch bytes.Buffer
	c, err := s.writeMountpoint(context.Background(), &pinned{mode: ReadMountpoint, dir: dir, ident: "t"}, &sparsetest.LimitWriter{W: &arch, Max: 4 << 20})
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
	names := walktest.Names(t, arch.Bytes())
	if want := []string{"./", "./work/", "./work/disk.img", "./work/notes.txt"}; fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("entries %v, want %v", names, want)
	}
	for _, h := range walktest.Headers(t, arch.Bytes()) {
		if h.Name == "./work/disk.img" && (h.Size != size || h.Mode != 0o640 || h.Typeflag != tar.TypeReg) {
			t.Errorf("%s: size %d, mode %o, type %q", h.Name, h.Size, h.Mode, h.Typeflag)
		}
	}
	// A plain tar -x restores it with its holes.
	out := sparsetest.ExtractGNU(t, gnutar, arch.Bytes(), base)
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
	if _, err := s.writeMountpoint(context.Background(), &pinned{mode: ReadMountpoint, dir: dir, ident: "t"}, &sparsetest.LimitWriter{W: &arch, Max: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	var c counts
	out := &sparsetest.LimitWriter{W: io.Discard, Max: 1 << 20}
	err := forEngine(context.Background(), bytes.NewReader(arch.Bytes()), out, &c)
	if !errors.Is(err, tarsafe.ErrUnsupported) || !strings.Contains(err.Error(), "sparse") || !strings.Contains(err.Error(), "disk.img") {
		t.Fatalf("forEngine: %v, want a sparse refusal naming the file", err)
	}
}
