package churn

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// BenchFilesEnv scales the small-files trees of the source benchmarks
// (pkg/source/files, pkg/source/volume): a number of files.
const BenchFilesEnv = "FIREOPS_BENCH_FILES"

// BenchFiles is the number of files a small-files benchmark makes: def,
// or BenchFilesEnv when set.
func BenchFiles(b *testing.B, def int) int {
	b.Helper()
	v := os.Getenv(BenchFilesEnv)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a number of files", BenchFilesEnv, v)
	}
	return n
}

// TarReference times GNU tar (tarBin) archiving dir into a pipe, best of
// three (with its output on /dev/null GNU tar would skip reading the
// files), and returns what a sub-benchmark calls at its end to report
// ns/file over files files and x_tar, its time over tar's.
func TarReference(b *testing.B, tarBin, dir string, files int) func(*testing.B) {
	b.Helper()
	var best time.Duration
	for range 3 {
		begin := time.Now()
		TarPipe(b, tarBin, dir)
		if d := time.Since(begin); best == 0 || d < best {
			best = d
		}
	}
	return func(b *testing.B) {
		per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(per/float64(files), "ns/file")
		b.ReportMetric(per/float64(best.Nanoseconds()), "x_tar")
	}
}

// TarPipe runs GNU tar (tarBin) once, archiving dir into a pipe.
func TarPipe(b testing.TB, tarBin, dir string) {
	b.Helper()
	cmd := exec.Command(tarBin, "-cf", "-", "-C", dir, ".")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("tar: %v %s", err, stderr.Bytes())
	}
}
