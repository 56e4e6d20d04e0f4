package files

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/sparsetest"
	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/internal/walktest"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/tarsafe"
)

func TestWriteTarSparse(t *testing.T) {
	t.Parallel()
	gnutar := testenv.RequireTool(t, "tar")
	base := t.TempDir()
	app := filepath.Join(base, "opt", "app")
	must(t, os.MkdirAll(app, 0o755))
	// A terabyte made with truncate, data at its start, middle and end:
	// only the data is read and stored.
	const size = 1 << 40
	img := filepath.Join(app, "disk.img")
	sparsetest.MakeSpread(t, img, size)
	must(t, os.WriteFile(filepath.Join(app, "notes.txt"), sparsetest.Pattern(3000, 4), 0o644))
	must(t, os.Link(img, filepath.Join(app, "disk.link")))
	s, err := New(config.FileSource{Name: "app", Paths: []string{app}})
	must(t, err)
	var buf bytes.Buffer
	st, err := s.WriteTar(context.Background(), &sparsetest.LimitWriter{W: &buf, Max: 4 << 20})
	must(t, err)
	if n, _ := strconv.ParseInt(st.Details["bytes"], 10, 64); st.Details["files"] != "2" || st.Details["hardlinks"] != "1" || n < 318000 || n > 1<<20 {
		t.Errorf("details %v", st.Details)
	}
	// archive/tar reads the entry as the file it was.
	var names []string
	for _, h := range walktest.Headers(t, buf.Bytes()) {
		names = append(names, h.Name)
		if strings.HasSuffix(h.Name, "disk.img") && (h.Size != size || h.Typeflag != tar.TypeReg) {
			t.Errorf("%s: size %d, type %q", h.Name, h.Size, h.Typeflag)
		}
	}
	if int64(len(names)) != st.Entries || !strings.HasSuffix(names[len(names)-3], "app/disk.img") {
		t.Errorf("entries %v, stats %d", names, st.Entries)
	}
	// A plain tar -x restores it with its holes.
	out := sparsetest.ExtractGNU(t, gnutar, buf.Bytes(), base)
	got := filepath.Join(out, app[1:], "disk.img")
	sparsetest.Same(t, img, got)
	sparsetest.Same(t, filepath.Join(app, "notes.txt"), filepath.Join(out, app[1:], "notes.txt"))
	if a := sparsetest.Allocated(t, got); a > 2<<20 {
		t.Errorf("tar -x allocated %d bytes for %s", a, got)
	}
	if fi, err := os.Stat(filepath.Join(out, app[1:], "disk.link")); err != nil || !os.SameFile(fi, mustStat(t, got)) {
		t.Errorf("hard link not restored: %v", err)
	}
}

func mustStat(t testing.TB, p string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(p)
	must(t, err)
	return fi
}

func TestWriteTarSparseTooFragmented(t *testing.T) {
	t.Parallel()
	app := filepath.Join(t.TempDir(), "app")
	must(t, os.Mkdir(app, 0o755))
	// 20,000 pieces of 4 KiB, 64 MiB apart: mapping it in 16,384 regions
	// would store a quarter terabyte of zeros, archiving it dense 1.2 TiB.
	bad := filepath.Join(app, "scattered.img")
	sparsetest.MakeScattered(t, bad)
	s, err := New(config.FileSource{Name: "app", Paths: []string{app}})
	must(t, err)
	_, err = s.WriteTar(context.Background(), &sparsetest.LimitWriter{W: io.Discard, Max: 256 << 20})
	if !errors.Is(err, tarsafe.ErrTooFragmented) || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "exclude") {
		t.Fatalf("WriteTar: %v; want an error naming %s", err, bad)
	}
}
