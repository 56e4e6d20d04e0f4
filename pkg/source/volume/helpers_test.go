package volume

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"golang.org/x/sys/unix"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/internal/walktest"
	"github.com/firetech/fireops/pkg/source/volume/volumetest"
)

// engine returns a Docker client for the test Engine, or skips (fails
// under CI) without one.
func engine(t testing.TB) *client.Client {
	t.Helper()
	testenv.RequireDocker(t)
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// newVolume creates a volume with a unique name, removed when the test
// ends, and returns its name and host folder.
func newVolume(t testing.TB, cli *client.Client, prefix string) (string, string) {
	t.Helper()
	name := fmt.Sprintf("fireops-test-%s-%s", prefix, randomHex(4))
	v, err := cli.VolumeCreate(context.Background(), volume.CreateOptions{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeTestVolume(t, cli, name) })
	return name, v.Mountpoint
}

func removeTestVolume(t testing.TB, cli *client.Client, name string) {
	if err := cli.VolumeRemove(context.Background(), name, true); err != nil && !cerrdefs.IsNotFound(err) {
		t.Errorf("remove test volume %s: %v", name, err)
	}
}

// noLeftovers fails the test when a helper container for vol or a staging
// volume for vol exists.
func noLeftovers(t testing.TB, cli *client.Client, vol string) {
	t.Helper()
	ctx := context.Background()
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", LabelVolume+"="+vol))})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		t.Errorf("helper container %s for %s left behind (%s)", c.ID[:12], vol, c.State)
	}
	vs, err := cli.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelStaging+"="+vol))})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs.Volumes {
		t.Errorf("staging volume %s for %s left behind", v.Name, vol)
	}
}

// fixedTime is the base of the test tree's modification times; they have
// nanoseconds, which the archive drops.
var fixedTime = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)

// fillTree writes the test tree into dir: nested folders, files of many
// sizes (one of 3 MiB), owners 1000 and 0, modes 0600, 0755 and setgid,
// symlinks (one dangling), a hard link, an empty folder; every time fixed.
func fillTree(t testing.TB, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"work/rl/ppo", "work/rl/empty", ".ipynb_checkpoints", "shared"} {
		must(os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	files := []struct {
		name string
		size int
		mode fs.FileMode
		uid  int
	}{
		{"work/notebook.ipynb", 4096, 0o644, 1000},
		{"work/rl/ppo/policy.pt", 3 << 20, 0o600, 1000},
		{"work/rl/ppo/progress.csv", 70_001, 0o644, 1000},
		{"work/rl/run.sh", 33, 0o755, 1000},
		{".ipynb_checkpoints/notebook-checkpoint.ipynb", 4096, 0o644, 1000},
		{"shared/root-owned.txt", 10, 0o600, 0},
		{"zero", 0, 0o644, 1000},
		{".bashrc", 1, 0o644, 1000},
	}
	for i, f := range files {
		p := filepath.Join(dir, f.name)
		must(os.WriteFile(p, pattern(f.size, byte(i)), 0o600))
		must(os.Chmod(p, f.mode))
		must(os.Lchown(p, f.uid, f.uid))
	}
	must(os.Link(filepath.Join(dir, "work/rl/ppo/policy.pt"), filepath.Join(dir, "work/policy-latest.pt")))
	must(os.Symlink("rl/ppo", filepath.Join(dir, "work/latest")))
	must(os.Symlink("/nonexistent/target", filepath.Join(dir, "dangling")))
	must(os.Lchown(filepath.Join(dir, "work/latest"), 1000, 1000))
	must(os.Chmod(filepath.Join(dir, "shared"), 0o2775))
	must(os.Chmod(filepath.Join(dir, "work/rl/empty"), 0o700))
	// Owners and times, deepest first so that folder times stay.
	var all []string
	must(filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		all = append(all, p)
		return err
	}))
	for i := len(all) - 1; i >= 0; i-- {
		p := all[i]
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		must(err)
		if fi.IsDir() && rel != "shared" {
			must(os.Lchown(p, 1000, 1000))
		}
		ts := fixedTime.Add(time.Duration(i) * time.Hour)
		tv := []unix.Timespec{unix.NsecToTimespec(ts.UnixNano()), unix.NsecToTimespec(ts.UnixNano())}
		must(unix.UtimesNanoAt(unix.AT_FDCWD, p, tv, unix.AT_SYMLINK_NOFOLLOW))
	}
}

// pattern returns n bytes that differ per seed.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

// fileInfo is what the tree comparison looks at for one entry.
type fileInfo struct {
	mode     fs.FileMode
	uid, gid uint32
	mtime    int64 // seconds
	size     int64
	sha      string
	link     string
	ino      uint64
	nlink    uint64
}

// snapshotTree describes every entry below dir (the root as ".").
func snapshotTree(t testing.TB, dir string) map[string]fileInfo {
	t.Helper()
	out := map[string]fileInfo{}
	for rel, e := range walktest.Tree(t, dir) {
		fi := fileInfo{mode: e.Mode, uid: e.Uid, gid: e.Gid, mtime: e.Mtime.Unix(), link: e.Link, ino: e.Ino, nlink: e.Nlink}
		if e.Mode.IsRegular() {
			s := sha256.Sum256([]byte(e.Body))
			fi.sha, fi.size = hex.EncodeToString(s[:]), e.Size
		}
		out[rel] = fi
	}
	return out
}

// sameTree compares two trees file by file: content hash, mode, owner,
// mtime (seconds), link target, and which names share an inode.
func sameTree(t testing.TB, want, got map[string]fileInfo) {
	t.Helper()
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: missing after restore", name)
			continue
		}
		if w.mode != g.mode || w.uid != g.uid || w.gid != g.gid || w.mtime != g.mtime || w.sha != g.sha || w.link != g.link || w.nlink != g.nlink {
			t.Errorf("%s: got mode %v owner %d:%d mtime %d sha %.8s link %q nlink %d; want %v %d:%d %d %.8s %q %d",
				name, g.mode, g.uid, g.gid, g.mtime, g.sha, g.link, g.nlink, w.mode, w.uid, w.gid, w.mtime, w.sha, w.link, w.nlink)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: not in the original", name)
		}
	}
	// Hard links: names sharing an inode in want share one in got.
	for a, wa := range want {
		for b, wb := range want {
			if a < b && wa.ino == wb.ino && got[a].ino != got[b].ino {
				t.Errorf("%s and %s: hard link lost", a, b)
			}
		}
	}
	if len(want) < 10 {
		t.Fatalf("compared only %d entries", len(want))
	}
}

// readTar runs WriteTar and returns the archive.
func readTar(t testing.TB, s *Source) ([]byte, error) {
	t.Helper()
	var buf bytes.Buffer
	_, err := s.WriteTar(context.Background(), &buf)
	return buf.Bytes(), err
}

// snapshotPart archives the volume name through NewSource(name, o) and
// WriteTar, closes the source and returns the archive; an error ends the
// test.
func snapshotPart(t testing.TB, name string, o Options) []byte {
	t.Helper()
	s, err := NewSource(name, o)
	if err != nil {
		t.Fatal(err)
	}
	part, err := readTar(t, s)
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	return part
}

// TestMain removes the writer image after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	volumetest.RemoveImage()
	os.Exit(code)
}
