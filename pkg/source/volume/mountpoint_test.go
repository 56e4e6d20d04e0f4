package volume

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/churn"
	"github.com/firetech/fireops/internal/testenv"
)

// TestMountpointArchiveIsArchiveTars checks, without an Engine, that the
// mountpoint path writes byte for byte what archive/tar writes for the
// normalized headers and the contents (the API path re-encodes through
// archive/tar, and both paths must agree), with long and non-ASCII
// names, a long symlink target and a file left out.
func TestMountpointArchiveIsArchiveTars(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t) // fillTree sets owners
	dir := filepath.Join(t.TempDir(), "_data")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(dir, 0o755))
	fillTree(t, dir)
	long := filepath.Join(dir, strings.Repeat("d", 60), strings.Repeat("e", 60), strings.Repeat("f/", 30))
	must(os.MkdirAll(long, 0o755))
	must(os.WriteFile(filepath.Join(long, "deep"), []byte("deep"), 0o644))
	must(os.WriteFile(filepath.Join(dir, strings.Repeat("n", 200)), []byte("long name"), 0o644))
	must(os.MkdirAll(filepath.Join(dir, "dé"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "dé", "ü.txt"), []byte("é"), 0o644))
	must(os.Symlink("/"+strings.Repeat("t", 150)+"/"+strings.Repeat("u", 120), filepath.Join(dir, "far")))
	must(os.WriteFile(filepath.Join(dir, "hub.sqlite"), []byte("db"), 0o644))
	s := &Source{name: "t", excluded: map[string]bool{"hub.sqlite": true}, leftOut: []string{"hub.sqlite"}, log: slog.New(slog.DiscardHandler)}
	var got bytes.Buffer
	c, err := s.writeMountpoint(context.Background(), &pinned{mode: ReadMountpoint, dir: dir, ident: "t"}, &got)
	must(err)
	if c.links != 1 || c.symlinks != 3 || c.vanished != 0 {
		t.Errorf("counts %+v", c)
	}
	var want bytes.Buffer
	tr := tar.NewReader(bytes.NewReader(got.Bytes()))
	tw := tar.NewWriter(&want)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(err)
		if h.Name == "./hub.sqlite" {
			t.Errorf("the left-out file is in the archive")
		}
		must(tw.WriteHeader(normalize(h)))
		_, err = io.Copy(tw, tr)
		must(err)
	}
	must(tw.Close())
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("the archive (%d bytes) is not archive/tar's (%d bytes)", got.Len(), want.Len())
	}
}

// smallFileTree writes n files of 1-6 KB into dir with churn.SmallFiles,
// like a user's volume holding a Python environment and an image dataset,
// every file owned by 1000:100 when run as root. It returns the bytes of
// file contents written.
func smallFileTree(tb testing.TB, dir string, n int) int64 {
	tb.Helper()
	var own func(string, bool) error
	if os.Geteuid() == 0 {
		own = func(p string, _ bool) error { return os.Lchown(p, 1000, 100) }
	}
	total, err := churn.SmallFiles(dir, n, own)
	if err != nil {
		tb.Fatal(err)
	}
	return total
}

// BenchmarkMountpointSmallFiles measures the per-file cost of the
// mountpoint read path (no Engine needed: it walks a temp folder as the
// volume's host folder) on a tree of small files (see smallFileTree;
// FIREOPS_BENCH_FILES scales it): the fingerprint walk, the archive into
// io.Discard, both, and GNU tar piping into this process. Each reports
// ns/file, MB/s of file contents, and x_tar: its time over tar's.
func BenchmarkMountpointSmallFiles(b *testing.B) {
	n := churn.BenchFiles(b, 20000)
	dir := filepath.Join(b.TempDir(), "_data")
	size := smallFileTree(b, dir, n)
	s := &Source{name: "bench", excluded: map[string]bool{}, log: slog.New(slog.DiscardHandler)}
	p := &pinned{mode: ReadMountpoint, dir: dir, ident: "bench"}
	ctx := context.Background()
	if _, err := s.writeMountpoint(ctx, p, io.Discard); err != nil { // warm the page cache
		b.Fatal(err)
	}
	tarBin := testenv.RequireTool(b, "tar")
	report := churn.TarReference(b, tarBin, dir, n)
	b.Run("Fingerprint", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if _, err := s.fingerprint(ctx, p); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("WriteTar", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if _, err := s.writeMountpoint(ctx, p, io.Discard); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("Fingerprint+WriteTar", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if _, err := s.fingerprint(ctx, p); err != nil {
				b.Fatal(err)
			}
			if _, err := s.writeMountpoint(ctx, p, io.Discard); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("tar-pipe", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			churn.TarPipe(b, tarBin, dir)
		}
		report(b)
	})
}
