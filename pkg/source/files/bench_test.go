package files

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/firetech/fireops/internal/churn"
	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/config"
)

// smallFileTree writes n files of 1-6 KB into dir with churn.SmallFiles
// (a Python environment and an image dataset); as root the dataset belongs
// to 1000:100, as in a Jupyter user's volume. It returns the bytes of file
// contents written.
func smallFileTree(tb testing.TB, dir string, n int) int64 {
	tb.Helper()
	var own func(string, bool) error
	if os.Geteuid() == 0 {
		own = func(p string, dataset bool) error {
			if !dataset {
				return nil
			}
			return os.Lchown(p, 1000, 100)
		}
	}
	total, err := churn.SmallFiles(dir, n, own)
	if err != nil {
		tb.Fatal(err)
	}
	return total
}

// countingWriter counts the bytes and the calls it is written.
type countingWriter struct{ n, calls int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	w.calls++
	return len(p), nil
}

// BenchmarkSmallFiles measures the per-file cost of the files source on a
// tree of small files (see smallFileTree; FIREOPS_BENCH_FILES scales it):
// Fingerprint, WriteTar into io.Discard and into a counting writer, and
// GNU tar piping into this process (`tar -cf - -C DIR .`; with its output
// on /dev/null GNU tar skips reading the files). Each reports ns/file, MB/s
// of file contents, and x_tar: its time over tar's.
func BenchmarkSmallFiles(b *testing.B) {
	n := churn.BenchFiles(b, 20000)
	dir := filepath.Join(b.TempDir(), "tree")
	size := smallFileTree(b, dir, n)
	s, err := New(config.FileSource{Name: "bench", Paths: []string{dir}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.WriteTar(ctx, io.Discard); err != nil { // warm the page cache
		b.Fatal(err)
	}
	tarBin := testenv.RequireTool(b, "tar")
	report := churn.TarReference(b, tarBin, dir, n)
	b.Run("Fingerprint", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if _, err := s.Fingerprint(ctx); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("WriteTar/discard", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if _, err := s.WriteTar(ctx, io.Discard); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("WriteTar/counting", func(b *testing.B) {
		b.SetBytes(size)
		var w countingWriter
		for b.Loop() {
			w = countingWriter{}
			if _, err := s.WriteTar(ctx, &w); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
		b.ReportMetric(float64(w.calls)/float64(n), "writes/file")
		b.ReportMetric(float64(w.n)/float64(size), "tar/content")
	})
	b.Run("Fingerprint+WriteTar", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if _, err := s.Fingerprint(ctx); err != nil {
				b.Fatal(err)
			}
			if _, err := s.WriteTar(ctx, io.Discard); err != nil {
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
