package files

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/config"
)

// benchFilesEnv scales the tree of BenchmarkSmallFiles (default 20,000
// files; the measurement that asked for it used 100,000).
const benchFilesEnv = "FIREOPS_BENCH_FILES"

// smallFileTree writes n files of 1-6 KB into dir, shaped like a Python
// environment (about 40%: packages of 20-60 modules in nested folders,
// a few symlinks) and an image dataset (about 60%: class folders of 250
// images). As root the dataset belongs to 1000:100, as in a Jupyter
// user's volume. It returns the bytes of file contents written.
func smallFileTree(tb testing.TB, dir string, n int) int64 {
	tb.Helper()
	var total int64
	x := uint32(12345)
	rnd := func() uint32 { x ^= x << 13; x ^= x >> 17; x ^= x << 5; return x }
	body := make([]byte, 6<<10)
	for i := range body {
		body[i] = byte(rnd())
	}
	write := func(p string, uid, gid int) {
		size := 1024 + int(rnd()%5120)
		off := int(rnd() % uint32(len(body)-size+1))
		if err := os.WriteFile(p, body[off:off+size], 0o644); err != nil {
			tb.Fatal(err)
		}
		if uid >= 0 {
			if err := os.Lchown(p, uid, gid); err != nil {
				tb.Fatal(err)
			}
		}
		total += int64(size)
	}
	mkdir := func(p string) {
		if err := os.MkdirAll(p, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	env := filepath.Join(dir, "venv")
	site := filepath.Join(env, "lib", "python3.11", "site-packages")
	mkdir(filepath.Join(env, "bin"))
	for _, l := range []string{"python", "python3"} {
		if err := os.Symlink("python3.11", filepath.Join(env, "bin", l)); err != nil {
			tb.Fatal(err)
		}
	}
	nEnv := n * 4 / 10
	for i, pkg := 0, 0; i < nEnv; pkg++ {
		for sub := 0; sub < 3 && i < nEnv; sub++ {
			d := filepath.Join(site, "pkg"+strconv.Itoa(pkg), "sub"+strconv.Itoa(sub))
			mkdir(d)
			for k, m := 0, 7+int(rnd()%14); k < m && i < nEnv; k, i = k+1, i+1 {
				write(filepath.Join(d, "module_"+strconv.Itoa(k)+".py"), -1, -1)
			}
		}
	}
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		uid, gid = 1000, 100
	}
	for i := nEnv; i < n; {
		d := filepath.Join(dir, "dataset", "train", fmt.Sprintf("class_%03d", (i-nEnv)/250))
		mkdir(d)
		for k := 0; k < 250 && i < n; k, i = k+1, i+1 {
			write(filepath.Join(d, fmt.Sprintf("img_%06d.jpg", i)), uid, gid)
		}
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
	n := 20000
	if v := os.Getenv(benchFilesEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("%s=%q: want a number of files", benchFilesEnv, v)
		}
	}
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
	tarOnce := func() {
		cmd := exec.Command(tarBin, "-cf", "-", "-C", dir, ".")
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = io.Discard, &stderr // a pipe: tar must read every file
		if err := cmd.Run(); err != nil {
			b.Fatalf("tar: %v %s", err, stderr.Bytes())
		}
	}
	var tarTime time.Duration
	for range 3 {
		begin := time.Now()
		tarOnce()
		if d := time.Since(begin); tarTime == 0 || d < tarTime {
			tarTime = d
		}
	}
	report := func(b *testing.B) {
		per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(per/float64(n), "ns/file")
		b.ReportMetric(per/float64(tarTime.Nanoseconds()), "x_tar")
	}
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
			tarOnce()
		}
		report(b)
	})
}
