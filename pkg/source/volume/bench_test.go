package volume

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/testenv"
)

// BenchmarkVolumeRead archives one volume of about 240 MiB (64 files of
// 2 MiB, 4000 of 16 KiB in 40 folders, one of 48 MiB) through the
// mountpoint path, the API path and GNU tar (`tar -cf - -C <mountpoint> .`),
// in turn in every iteration, and reports the throughput of each in MB/s
// and the throughputs of the two read paths relative to tar's.
//
// tar's output goes through a pipe into this process, which discards it:
// with its output redirected to /dev/null GNU tar notices and does not
// read the files at all (it "archives" 500 MB in 10 ms), which would make
// a meaningless baseline. fireops' paths write into io.Discard.
func BenchmarkVolumeRead(b *testing.B) {
	testenv.RequireRoot(b)
	cli := engine(b)
	tarBin := testenv.RequireTool(b, "tar")
	name, mp := newVolume(b, cli, "bench")
	var size int64
	write := func(p string, n int, seed byte) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, pattern(n, seed), 0o644); err != nil {
			b.Fatal(err)
		}
		size += int64(n)
	}
	for i := range 64 {
		write(filepath.Join(mp, "checkpoints", fmt.Sprintf("ckpt-%02d.pt", i)), 2<<20, byte(i))
	}
	for i := range 4000 {
		write(filepath.Join(mp, "runs", fmt.Sprintf("run-%02d", i%40), fmt.Sprintf("log-%04d.csv", i)), 16<<10, byte(i))
	}
	write(filepath.Join(mp, "dataset.npz"), 48<<20, 7)
	ctx := context.Background()

	read := func(mode string) time.Duration {
		begin := time.Now()
		s, err := NewSource(name, Options{Read: mode})
		if err != nil {
			b.Fatal(err)
		}
		st, err := s.WriteTar(ctx, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
		if st.Details["read"] != mode {
			b.Fatalf("read %s, want %s", st.Details["read"], mode)
		}
		return time.Since(begin)
	}
	tarRead := func() time.Duration {
		begin := time.Now()
		cmd := exec.Command(tarBin, "-cf", "-", "-C", mp, ".")
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = io.Discard, &stderr // a pipe: tar must read every file
		if err := cmd.Run(); err != nil {
			b.Fatalf("tar: %v %s", err, stderr.Bytes())
		}
		return time.Since(begin)
	}
	read(ReadMountpoint) // warm the page cache for all three

	var tTar, tMount, tAPI time.Duration
	b.ResetTimer()
	for range b.N {
		tTar += tarRead()
		tMount += read(ReadMountpoint)
		tAPI += read(ReadAPI)
	}
	b.StopTimer()
	mb := float64(size) / 1e6 * float64(b.N)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(mb/tTar.Seconds(), "tar_MB/s")
	b.ReportMetric(mb/tMount.Seconds(), "mountpoint_MB/s")
	b.ReportMetric(mb/tAPI.Seconds(), "api_MB/s")
	b.ReportMetric(tTar.Seconds()/tMount.Seconds(), "mountpoint/tar")
	b.ReportMetric(tTar.Seconds()/tAPI.Seconds(), "api/tar")
	noLeftovers(b, cli, name)
}
