package backup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/firetech/fireops/internal/sparsetest"
	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/bootstrap"
	"github.com/firetech/fireops/pkg/restore"
)

func TestSparseFileRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	init, err := bootstrap.Init(bootstrap.Options{Dir: filepath.Join(dir, "etc"), Host: "gpu01"})
	testutil.Must(t, err)
	data := filepath.Join(dir, "data", "vm")
	testutil.Must(t, os.MkdirAll(data, 0o755))
	// 64 GiB made with truncate, data at its start, middle and end: the
	// snapshot holds the data, the restore allocates no more.
	const size = 64 << 30
	img := filepath.Join(data, "disk.img")
	sparsetest.Make(t, img, size, map[int64][]byte{
		0:           sparsetest.Pattern(10000, 1),
		size / 2:    randomData(300000),
		size - 5000: sparsetest.Pattern(5000, 3),
	})
	testutil.Must(t, os.WriteFile(filepath.Join(data, "notes.txt"), randomData(3000), 0o644))
	cfg := loadTestConfig(t, dir, "fireops", init, fmt.Sprintf("compression: fastest\nsources:\n  files: [{name: vm, paths: [%s]}]\n", data))
	ctx := context.Background()
	res, err := Snapshot(ctx, cfg, SnapshotOptions{})
	testutil.Must(t, err)
	if len(res.Parts) != 1 || res.Parts[0].Size > 1<<20 {
		t.Fatalf("parts %+v", res.Parts)
	}
	to := filepath.Join(t.TempDir(), "restored")
	if _, err := restore.Restore(ctx, cfg, restore.Options{Snapshot: "latest", Dest: "local", To: to}); err != nil {
		t.Fatal(err)
	}
	got := filepath.Join(to, data) // one part: restored into to itself
	sparsetest.Same(t, img, filepath.Join(got, "disk.img"))
	sparsetest.Same(t, filepath.Join(data, "notes.txt"), filepath.Join(got, "notes.txt"))
	if a := sparsetest.Allocated(t, filepath.Join(got, "disk.img")); a > 2<<20 {
		t.Errorf("the restored sparse file allocates %d bytes", a)
	}
	wi, err := os.Stat(img)
	testutil.Must(t, err)
	gi, err := os.Stat(filepath.Join(got, "disk.img"))
	testutil.Must(t, err)
	if gi.Mode() != wi.Mode() || !gi.ModTime().Equal(wi.ModTime()) {
		t.Errorf("restored %v %v, want %v %v", gi.Mode(), gi.ModTime(), wi.Mode(), wi.ModTime())
	}
	if vr, err := Verify(ctx, cfg, VerifyOptions{Level: LevelRestoreTest}); err != nil || len(vr) != 1 {
		t.Fatalf("verify restore-test: %v %+v", err, vr)
	}
}
