package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/firetech/fireops/internal/churn"
	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/source"
	"github.com/firetech/fireops/pkg/source/files"
)

// dirBytes is the apparent size of the files under dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if p == dir && errors.Is(err, fs.ErrNotExist) {
			return nil // nothing written yet
		}
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n += fi.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestNightlyChurnAgainstRestic: a volume-like tree changed the way a
// night of work does (a log grows, two notebooks are edited, a small file
// appears), snapshotted every night by fireops and by restic side by side
// on the same data. The targets (per night at most 2.5x what
// restic adds, at most 1.2x its total after 7 nights) are measured by
// make bench on a 300 MiB tree (docs/benchmarks.md: 1.84x and 1.03x). This
// test keeps the tree at 48 MiB to stay fast, where the same changes weigh
// more against a smaller restic repository and restic's random chunker
// makes its nights vary (medians 1.7x-2.6x seen): it fails above 4x per
// night (median) or 1.35x in total; format v1 added 100x and more. The
// total is not held to the 1.2x here: on this small tree both
// chunkers' random keys move it (13 runs: 1.04x-1.23x, mean 1.11x; the
// 1.23x failed a run), and make bench holds the 300 MiB tree to 1.2x.
func TestNightlyChurnAgainstRestic(t *testing.T) {
	t.Parallel()
	restic := testenv.RequireTool(t, "restic")
	if testing.Short() {
		t.Skip("-short: the churn test makes a 48 MiB tree")
	}
	ctx := context.Background()
	work := t.TempDir()
	tree := filepath.Join(work, "tree")
	if _, err := churn.Generate(ctx, tree, 48<<20, 7); err != nil {
		t.Fatal(err)
	}
	src, err := files.New(config.FileSource{Name: "vol", Paths: []string{tree}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, 1)
	e.opts.ChunkSize = 32 << 20
	e.opts.Compression = "default"
	e.withState(t)
	repo := filepath.Join(work, "restic")
	renv := append(os.Environ(), "RESTIC_PASSWORD=test", "RESTIC_REPOSITORY="+repo, "RESTIC_CACHE_DIR="+filepath.Join(work, "rcache"))
	runRestic := func(args ...string) {
		t.Helper()
		cmd := exec.Command(restic, args...)
		cmd.Env = renv
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("restic %v: %v\n%s", args, err, out)
		}
	}
	runRestic("init")
	dest := e.stores[0].root
	var foTotal, rsTotal int64
	var ratios []float64
	nights := 5
	for night := 0; night <= nights; night++ {
		if night > 0 {
			if _, err := churn.ApplyNight(tree, 7, night); err != nil {
				t.Fatal(err)
			}
		}
		foBefore, rsBefore := dirBytes(t, dest), dirBytes(t, repo)
		res, err := Create(ctx, e.opts, e.storeList(), []source.Source{src})
		if err != nil {
			t.Fatal(err)
		}
		runRestic("backup", "-q", tree)
		fo, rs := dirBytes(t, dest)-foBefore, dirBytes(t, repo)-rsBefore
		foTotal, rsTotal = dirBytes(t, dest), dirBytes(t, repo)
		t.Logf("night %d: fireops adds %d bytes (pieces uploaded: %d bytes; the part has %d pieces), restic adds %d: %.2fx",
			night, fo, res.Parts[0].Uploaded, res.Parts[0].Pieces, rs, float64(fo)/float64(rs))
		if night > 0 {
			ratios = append(ratios, float64(fo)/float64(rs))
		}
		e.restoreAll(t, e.stores[0], res.ID)
	}
	t.Logf("after %d nights: fireops stores %d bytes, restic %d: %.2fx", nights, foTotal, rsTotal, float64(foTotal)/float64(rsTotal))
	slices.Sort(ratios)
	if med := ratios[len(ratios)/2]; med > 4 {
		t.Errorf("fireops added a median %.2fx what restic added per night (%v), more than 4x", med, ratios)
	}
	if float64(foTotal) > 1.35*float64(rsTotal) {
		t.Errorf("fireops stores %s, more than 1.35x restic's %s", fmt.Sprint(foTotal), fmt.Sprint(rsTotal))
	}
}
