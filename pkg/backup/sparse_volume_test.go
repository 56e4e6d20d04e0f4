package backup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/sparsetest"
	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/bootstrap"
	"github.com/firetech/fireops/pkg/source/volume"
)

func TestVolumeSparseFile(t *testing.T) {
	t.Parallel()
	cli := dockerClient(t)
	dir := t.TempDir()
	init, err := bootstrap.Init(bootstrap.Options{Dir: filepath.Join(dir, "etc"), Host: "gpu01"})
	testutil.Must(t, err)
	prefix := "fireops-sp-" + randomSuffix()
	ada, bob := prefix+"-user-ada", prefix+"-user-bob"
	amp, bmp := testVolume(t, cli, ada), testVolume(t, cli, bob)
	// A user's `truncate -s 1T` with a little data: the snapshot reads
	// and stores the data only, and the other user's part is there too.
	const size = 1 << 40
	sparsetest.Make(t, filepath.Join(amp, "big.img"), size, map[int64][]byte{
		0:        sparsetest.Pattern(10000, 1),
		size / 2: randomData(300000),
	})
	testutil.Must(t, os.WriteFile(filepath.Join(bmp, "notes.txt"), randomData(3000), 0o644))
	cfg := loadTestConfig(t, dir, "fireops", init, fmt.Sprintf("compression: fastest\nsources:\n  volumes: {include: [\"%s-user-*\"], read: mountpoint}\n", prefix))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a hang guard: dense, this takes hours
	defer cancel()
	res, err := Snapshot(ctx, cfg, SnapshotOptions{})
	testutil.Must(t, err)
	parts := map[string]int64{}
	for _, p := range res.Parts {
		parts[p.ID] = p.Size
		if p.Details["read"] != volume.ReadMountpoint || p.Details["sparse_skipped"] != "0" {
			t.Errorf("%s: details %v", p.ID, p.Details)
		}
	}
	if len(parts) != 2 || parts["volume:"+bob] == 0 || parts["volume:"+ada] == 0 || parts["volume:"+ada] > 1<<20 {
		t.Fatalf("parts and their sizes: %v", parts)
	}
}
