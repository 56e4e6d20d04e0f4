package volume

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/internal/walktest"
	"github.com/firetech/fireops/pkg/source"
	"github.com/firetech/fireops/pkg/source/volume/volumetest"
)

func TestGlobRegexp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		glob      string
		match, no []string
	}{
		{"jupyterhub-data", []string{"jupyterhub-data"}, []string{"old-jupyterhub-data", "jupyterhub-data-2", "jupyterhubXdata"}},
		{"jupyterhub-user-*", []string{"jupyterhub-user-", "jupyterhub-user-bob-2dsmith"}, []string{"x-jupyterhub-user-bob", "jupyterhub-users"}},
		{"user.?", []string{"user.a"}, []string{"userXa", "user.ab"}},
		{"v[0-9]x", []string{"v1x"}, []string{"v12x"}},
		{`a\*b`, []string{"a*b"}, []string{"axb"}},
	}
	for _, tc := range tests {
		re, err := globRegexp(tc.glob)
		if err != nil {
			t.Fatalf("%s: %v", tc.glob, err)
		}
		rx := regexp.MustCompile(re)
		for _, m := range tc.match {
			if !rx.MatchString(m) {
				t.Errorf("%s (%s) does not match %q", tc.glob, re, m)
			}
		}
		for _, m := range tc.no {
			// A class may match more than the glob; the globs decide then.
			if rx.MatchString(m) && !strings.Contains(tc.glob, "[") {
				t.Errorf("%s (%s) matches %q", tc.glob, re, m)
			}
		}
	}
	if _, err := globRegexp("[a-"); err == nil {
		t.Error("bad glob accepted")
	}
}

func TestDiscover(t *testing.T) {
	t.Parallel()
	cli := engine(t)
	id := randomHex(4)
	ctx := context.Background()
	mk := func(name string) {
		if _, err := cli.VolumeCreate(ctx, volume.CreateOptions{Name: name}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { removeTestVolume(t, cli, name) })
	}
	p := "fireops-disc-" + id
	for _, n := range []string{p + "-user-ada", p + "-user-bob", p + "-user-tmp", p + "-data", "old-" + p + "-data", p + "-data-2"} {
		mk(n)
	}
	c, err := NewClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := c.Discover(ctx, []string{p + "-user-*", p + "-data"}, []string{"*-tmp"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{p + "-data", p + "-user-ada", p + "-user-bob"}
	if !slices.Equal(got, want) {
		t.Fatalf("Discover = %v, want %v", got, want)
	}
	// New volumes are picked up by the next discovery.
	mk(p + "-user-cy")
	got, _ = c.Discover(ctx, []string{p + "-user-*"}, nil)
	if !slices.Contains(got, p+"-user-cy") {
		t.Fatalf("new volume not discovered: %v", got)
	}
}

func TestEngineUnreachable(t *testing.T) {
	t.Parallel()
	cli, err := client.NewClientWithOpts(client.WithHost("unix:///nonexistent/docker.sock"), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{cli: cli, log: slog.New(slog.DiscardHandler)}
	defer c.Close()
	_, err = c.Discover(context.Background(), []string{"jupyterhub-*"}, nil)
	if !errors.Is(err, ErrEngine) || !strings.Contains(err.Error(), "/nonexistent/docker.sock") {
		t.Fatalf("err = %v", err)
	}
}

// TestReadPathsRoundTrip archives the same tree through both read paths,
// which must give the same bytes; then, for each path, removes the volume,
// restores it through the same path and compares the trees.
func TestReadPathsRoundTrip(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	cli := engine(t)
	want := t.TempDir()
	fillTree(t, want)
	wantTree := snapshotTree(t, want)

	name, mp := newVolume(t, cli, "rt")
	fillTree(t, mp)
	// The volume's root belongs to jovyan (1000), as in a user's volume.
	archives := map[string][]byte{}
	for _, mode := range []string{ReadMountpoint, ReadAPI} {
		s, err := NewSource(name, Options{Read: mode})
		if err != nil {
			t.Fatal(err)
		}
		fp, err := s.Fingerprint(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if (fp != "") != (mode == ReadMountpoint) {
			t.Errorf("%s: fingerprint %q", mode, fp)
		}
		var buf bytes.Buffer
		st, err := s.WriteTar(context.Background(), &buf)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if st.Details["read"] != mode || st.Entries != int64(len(wantTree)) {
			t.Errorf("%s: stats %+v, want %d entries", mode, st, len(wantTree))
		}
		archives[mode] = buf.Bytes()
		noLeftovers(t, cli, name)
	}
	a, b := sha256.Sum256(archives[ReadMountpoint]), sha256.Sum256(archives[ReadAPI])
	if a != b {
		t.Errorf("the read paths differ:\nmountpoint %v\napi        %v", walktest.Names(t, archives[ReadMountpoint]), walktest.Names(t, archives[ReadAPI]))
	}
	if names := walktest.Names(t, archives[ReadAPI]); names[0] != "./" || !slices.Contains(names, "./work/rl/empty/") {
		t.Errorf("entry names: %v", names)
	}

	for _, mode := range []string{ReadMountpoint, ReadAPI} {
		t.Run(mode, func(t *testing.T) {
			removeTestVolume(t, cli, name)
			rs, err := NewRestorer(name, RestoreOptions{Write: mode})
			if err != nil {
				t.Fatal(err)
			}
			staged, err := rs.Stage(context.Background(), bytes.NewReader(archives[mode]))
			if err != nil {
				t.Fatal(err)
			}
			if got := staged.Stats().Entries; got != int64(len(wantTree)) {
				t.Errorf("staged %d entries, want %d", got, len(wantTree))
			}
			if err := staged.Commit(context.Background()); err != nil {
				t.Fatal(err)
			}
			v, err := cli.VolumeInspect(context.Background(), name)
			if err != nil {
				t.Fatal(err)
			}
			sameTree(t, wantTree, snapshotTree(t, v.Mountpoint))
			noLeftovers(t, cli, name)
		})
	}
}

// TestLeftOut leaves a database and its companions out, and a hard link to
// it, with the same bytes on both paths; a restore keeps the live files.
func TestLeftOut(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	cli := engine(t)
	name, mp := newVolume(t, cli, "left")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(mp, "cookie_secret"), []byte("s3cret"), 0o600))
	for _, f := range []string{"hub/jupyterhub.sqlite", "hub/jupyterhub.sqlite-wal", "hub/jupyterhub.sqlite-shm", "hub/jupyterhub.sqlite-journal", "hub/other.sqlite"} {
		must(os.MkdirAll(filepath.Join(mp, "hub"), 0o755))
		must(os.WriteFile(filepath.Join(mp, f), []byte("live "+f), 0o644))
	}
	must(os.Link(filepath.Join(mp, "hub/jupyterhub.sqlite"), filepath.Join(mp, "hub/z-backup-link")))
	var sums [][32]byte
	var part []byte
	for _, mode := range []string{ReadMountpoint, ReadAPI} {
		s, err := NewSource(name, Options{Read: mode, Exclude: []string{"hub/jupyterhub.sqlite"}})
		must(err)
		b, err := readTar(t, s)
		must(err)
		s.Close()
		names := walktest.Names(t, b)
		want := []string{"./", "./cookie_secret", "./hub/", "./hub/other.sqlite"}
		if !slices.Equal(names, want) {
			t.Errorf("%s: entries %v, want %v", mode, names, want)
		}
		sums = append(sums, sha256.Sum256(b))
		part = b
	}
	if sums[0] != sums[1] {
		t.Error("the read paths differ")
	}
	// Restore over the live volume: the left-out files stay as they are.
	must(os.WriteFile(filepath.Join(mp, "cookie_secret"), []byte("changed"), 0o600))
	must(os.WriteFile(filepath.Join(mp, "new-file"), []byte("x"), 0o600))
	rs, err := NewRestorer(name, RestoreOptions{Keep: []string{"hub/jupyterhub.sqlite"}})
	must(err)
	st, err := rs.Stage(context.Background(), bytes.NewReader(part))
	must(err)
	must(st.Commit(context.Background()))
	for f, want := range map[string]string{
		"cookie_secret": "s3cret", "hub/jupyterhub.sqlite": "live hub/jupyterhub.sqlite",
		"hub/jupyterhub.sqlite-wal": "live hub/jupyterhub.sqlite-wal", "hub/other.sqlite": "live hub/other.sqlite",
	} {
		if b, err := os.ReadFile(filepath.Join(mp, f)); err != nil || string(b) != want {
			t.Errorf("%s after restore: %q, %v; want %q", f, b, err, want)
		}
	}
	for _, gone := range []string{"new-file", "hub/z-backup-link"} {
		if _, err := os.Lstat(filepath.Join(mp, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived the restore: %v", gone, err)
		}
	}
	noLeftovers(t, cli, name)
}

// TestGone: a volume removed between discovery and its read is reported
// with ErrGone, not recreated, and leaves nothing behind.
func TestGone(t *testing.T) {
	t.Parallel()
	cli := engine(t)
	for _, mode := range []string{ReadAuto, ReadAPI} {
		name, _ := newVolume(t, cli, "gone")
		s, err := NewSource(name, Options{Read: mode})
		if err != nil {
			t.Fatal(err)
		}
		removeTestVolume(t, cli, name)
		_, err = s.Fingerprint(context.Background())
		if !errors.Is(err, source.ErrGone) || !strings.Contains(err.Error(), name) {
			t.Fatalf("%s: Fingerprint: %v", mode, err)
		}
		if _, err := readTar(t, s); !errors.Is(err, source.ErrGone) {
			t.Fatalf("%s: WriteTar: %v", mode, err)
		}
		s.Close()
		if _, err := cli.VolumeInspect(context.Background(), name); !cerrdefs.IsNotFound(err) {
			t.Errorf("%s: the volume was recreated: %v", mode, err)
		}
		noLeftovers(t, cli, name)
	}
}

// TestPinned: while a volume is read, `docker volume rm` refuses to remove
// it; after the read nothing is left.
func TestPinned(t *testing.T) {
	t.Parallel()
	cli := engine(t)
	name, _ := newVolume(t, cli, "pin")
	s, err := NewSource(name, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fingerprint(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := cli.VolumeRemove(context.Background(), name, false); err == nil {
		t.Fatal("the volume was removed while fireops held it")
	}
	if _, err := readTar(t, s); err != nil {
		t.Fatal(err)
	}
	s.Close()
	noLeftovers(t, cli, name)
}

// TestPause: a running container writing into the volume is paused during
// the read and running afterwards, also when the read fails or is
// cancelled.
func TestPause(t *testing.T) {
	t.Parallel()
	cli := engine(t)
	name, _ := newVolume(t, cli, "pause")
	id, _ := volumetest.StartWriter(t, cli, name)
	tests := []struct {
		name string
		hook func(ctx context.Context, cancel func()) error
		want error
	}{
		{"success", func(context.Context, func()) error { return nil }, nil},
		{"failure", func(context.Context, func()) error { return errors.New("read failed") }, errors.New("read failed")},
		{"cancelled", func(_ context.Context, cancel func()) error { cancel(); return nil }, context.Canceled},
	}
	for _, tc := range tests {
		s, err := NewSource(name, Options{Pause: true, Read: ReadAPI})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		sawPaused := false
		s.beforeRead = func(ctx context.Context) error {
			_, paused := volumetest.State(t, cli, id)
			sawPaused = paused
			return tc.hook(ctx, cancel)
		}
		var buf bytes.Buffer
		_, err = s.WriteTar(ctx, &buf)
		cancel()
		s.Close()
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != nil && (err == nil || !strings.Contains(err.Error(), tc.want.Error())):
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
		if !sawPaused {
			t.Errorf("%s: the writer was not paused during the read", tc.name)
		}
		if running, paused := volumetest.State(t, cli, id); !running || paused {
			t.Errorf("%s: after the read: running %v, paused %v", tc.name, running, paused)
		}
		noLeftovers(t, cli, name)
	}
}

// TestRestoreRefusals: a volume in use needs Force (naming the container);
// a failed restore leaves the live volume as it was and nothing behind; the
// API path cannot replace a non-empty volume.
func TestRestoreRefusals(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	cli := engine(t)
	name, mp := newVolume(t, cli, "refuse")
	if err := os.WriteFile(filepath.Join(mp, "keep.txt"), []byte("live"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mp, "big"), pattern(100_000, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	part := snapshotPart(t, name, Options{})
	stage := func(o RestoreOptions, data []byte) error {
		return stageInto(t, name, o, data)
	}
	// Truncated part: Stage fails, the live volume is unchanged.
	for _, mode := range []string{ReadMountpoint, ReadAPI} {
		fresh := "fireops-test-fresh-" + randomHex(4)
		if err := stageInto(t, fresh, RestoreOptions{Write: mode}, part[:len(part)/2]); err == nil {
			t.Errorf("%s: a truncated part was staged", mode)
		}
		if err := stage(RestoreOptions{Write: mode}, part[:len(part)/2]); err == nil {
			t.Errorf("%s: a truncated part was staged", mode)
		}
		if _, err := cli.VolumeInspect(context.Background(), fresh); !cerrdefs.IsNotFound(err) {
			t.Errorf("%s: a failed restore left the target volume %s: %v", mode, fresh, err)
		}
		noLeftovers(t, cli, fresh)
	}
	// Through the API the content of a non-empty volume cannot be replaced.
	if err := stage(RestoreOptions{Write: ReadAPI}, part); !errors.Is(err, ErrNotReplaceable) {
		t.Errorf("api over a non-empty volume: %v", err)
	}
	// In use by a running container.
	volumetest.StartWriter(t, cli, name)
	err := stage(RestoreOptions{}, part)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "fireops-test-writer-") {
		t.Errorf("in use: %v", err)
	}
	if err := stage(RestoreOptions{Force: true}, part); err != nil {
		t.Errorf("in use, with Force: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(mp, "keep.txt")); string(b) != "live" {
		t.Error("a refused or aborted restore changed the live volume")
	}
	noLeftovers(t, cli, name)
}

// stageInto stages data into a restore of target and aborts it.
func stageInto(t *testing.T, target string, o RestoreOptions, data []byte) error {
	t.Helper()
	{
		rs, err := NewRestorer(target, o)
		if err != nil {
			t.Fatal(err)
		}
		st, err := rs.Stage(context.Background(), bytes.NewReader(data))
		if err != nil {
			return err
		}
		return st.Abort()
	}
}

// TestAPIRestoreIntoNewVolume restores through the Engine API into a new
// volume (--to volume:NEW without root).
func TestAPIRestoreIntoNewVolume(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t) // to fill and compare the trees
	cli := engine(t)
	name, mp := newVolume(t, cli, "api-src")
	fillTree(t, mp)
	want := snapshotTree(t, mp)
	part := snapshotPart(t, name, Options{Read: ReadAPI})
	target := "fireops-test-api-dst-" + randomHex(4)
	t.Cleanup(func() { removeTestVolume(t, cli, target) })
	rs, err := NewRestorer(target, RestoreOptions{Write: ReadAPI})
	if err != nil {
		t.Fatal(err)
	}
	st, err := rs.Stage(context.Background(), bytes.NewReader(part))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	v, err := cli.VolumeInspect(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	got := snapshotTree(t, v.Mountpoint)
	// Folder times are the one thing the Engine's extraction does not
	// promise to keep for the volume's root; compare the rest.
	sameTree(t, want, got)
	noLeftovers(t, cli, target)
}

// cancelAfter is a reader that cancels a context once n bytes were read.
type cancelAfter struct {
	r      *bytes.Reader
	n      int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
	}
	if len(p) > 4096 {
		p = p[:4096]
	}
	n, err := c.r.Read(p)
	c.n -= n
	return n, err
}

// TestRestoreCancelled: a restore cancelled half way leaves no target, no
// staging volume and no helper container, on both write paths; so does a
// read cancelled half way.
func TestRestoreCancelled(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	cli := engine(t)
	name, mp := newVolume(t, cli, "cancel")
	fillTree(t, mp)
	for _, mode := range []string{ReadMountpoint, ReadAPI} {
		s, err := NewSource(name, Options{Read: mode})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		s.beforeRead = func(context.Context) error { cancel(); return nil }
		if _, err := s.WriteTar(ctx, &bytes.Buffer{}); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: cancelled read: %v", mode, err)
		}
		s.Close()
		noLeftovers(t, cli, name)
	}
	part := snapshotPart(t, name, Options{})
	for _, mode := range []string{ReadMountpoint, ReadAPI} {
		target := "fireops-test-cancel-dst-" + randomHex(4)
		rs, err := NewRestorer(target, RestoreOptions{Write: mode})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		in := &cancelAfter{r: bytes.NewReader(part), n: len(part) / 2, cancel: cancel}
		if _, err := rs.Stage(ctx, in); err == nil {
			t.Errorf("%s: a cancelled restore was staged", mode)
		}
		cancel()
		if _, err := cli.VolumeInspect(context.Background(), target); !cerrdefs.IsNotFound(err) {
			t.Errorf("%s: the cancelled restore left the target: %v", mode, err)
			removeTestVolume(t, cli, target)
		}
		noLeftovers(t, cli, target)
	}
}
