package files

// The tests of InPlace, the files restorer of restore --all (moved here
// from pkg/backup with it; pkg/backup's tests check the paths it is given).

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/leftovertest"
	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/leftover"
)

// TestInPlaceLeftoversRemoved: the staging and undo folders a killed
// in-place restore left next to its paths are removed, each with a log
// line, when the next one stages; a live run's are kept.
func TestInPlaceLeftoversRemoved(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	path := filepath.Join(base, "opt", "firetech")
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
	parent := filepath.Dir(path)
	var dead []string
	for _, prefix := range []string{stagingPrefix, undoPrefix} {
		d := filepath.Join(parent, prefix+leftovertest.KilledTag(t)+"-7")
		if err := os.MkdirAll(filepath.Join(d, "restored"), 0o700); err != nil {
			t.Fatal(err)
		}
		dead = append(dead, d)
	}
	live, err := os.MkdirTemp(parent, leftover.Pattern(stagingPrefix))
	if err != nil {
		t.Fatal(err)
	}

	var arch bytes.Buffer
	tw := tar.NewWriter(&arch)
	rel := strings.TrimPrefix(path, "/")
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: rel + "/", Mode: 0o755, ModTime: time.Unix(1600000000, 0)})
	tw.Close()

	var logs bytes.Buffer
	r := NewInPlace([]string{path}, false)
	r.SetLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	st, err := r.Stage(context.Background(), &arch)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Abort()
	for _, d := range dead {
		if _, err := os.Lstat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is still there: %v", d, err)
		}
		if !strings.Contains(logs.String(), "path="+d) {
			t.Errorf("no log line for %s:\n%s", d, logs.String())
		}
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("a live run's staging folder was removed: %v", err)
	}
	if s := st.(*inPlaceStaged).staging; !strings.HasPrefix(filepath.Base(s), stagingPrefix+leftover.Tag()+"-") {
		t.Errorf("staging folder %s does not carry the run's tag", s)
	}
}

// TestInPlaceCommitUndoAcrossFilesystems: when a later path fails, a path
// already moved into place on another filesystem than the staging folder
// must be put back as it was (old content, no *.fireops-old left).
func TestInPlaceCommitUndoAcrossFilesystems(t *testing.T) {
	t.Parallel()
	other, err := os.MkdirTemp("/dev/shm", "fireops-test-")
	if err != nil {
		testenv.Unavailable(t, "/dev/shm (a second filesystem)", err)
	}
	t.Cleanup(func() { os.RemoveAll(other) })
	base := t.TempDir()
	var a, b syscall.Stat_t
	if syscall.Stat(other, &a) != nil || syscall.Stat(base, &b) != nil || a.Dev == b.Dev {
		testenv.Unavailable(t, "/dev/shm on another filesystem than the temp folder", errors.New("same device"))
	}
	// Sorted, "/dev/shm/..." comes first: the staging folder is on /dev/shm
	// and base's paths are another filesystem.
	p0 := filepath.Join(other, "p0")
	p1 := filepath.Join(base, "p1")
	p2 := filepath.Join(base, "z", "p2")
	for _, f := range []struct{ path, data string }{{p0, "old p0"}, {p1, "old p1"}, {filepath.Join(base, "z"), "a file now, a folder in the snapshot"}} {
		if err := os.WriteFile(f.path, []byte(f.data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range []string{p0, p1, p2} {
		name := strings.TrimPrefix(p, "/")
		data := "new " + filepath.Base(p)
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(data)), ModTime: time.Now()}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(data))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	r := NewInPlace([]string{p0, p1, p2}, false)
	st, err := r.Stage(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Abort()
	if err := st.Commit(context.Background()); err == nil {
		t.Fatal("commit succeeded with a file where the folder of a path should be")
	}
	for p, want := range map[string]string{p0: "old p0", p1: "old p1"} {
		if got, err := os.ReadFile(p); err != nil || string(got) != want {
			t.Errorf("%s after a failed commit: %q, %v; want %q", p, got, err, want)
		}
		if _, err := os.Lstat(p + ".fireops-old"); err == nil {
			t.Errorf("%s.fireops-old left after a failed commit", p)
		}
	}
}

// TestInPlaceCommitKeepsEveryOldCopy: when PATH.fireops-old and
// PATH.fireops-old-<UTC second> are both taken (restores in quick
// succession), moving PATH aside must not replace either.
func TestInPlaceCommitKeepsEveryOldCopy(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	p := filepath.Join(base, "conf")
	if err := os.WriteFile(p, []byte("live"), 0o600); err != nil {
		t.Fatal(err)
	}
	taken := map[string]string{p + ".fireops-old": "first old copy"}
	now := time.Now().UTC()
	for s := -2; s <= 60; s++ {
		name := p + ".fireops-old-" + now.Add(time.Duration(s)*time.Second).Format("20060102T150405Z")
		taken[name] = "old copy " + name
	}
	for name, data := range taken {
		if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(p, "/"), Typeflag: tar.TypeReg, Mode: 0o600, Size: 8, ModTime: now}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte("restored"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := NewInPlace([]string{p}, false).Stage(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Abort()
	if err := st.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != "restored" {
		t.Errorf("%s: %q, want the restored copy", p, got)
	}
	for name, want := range taken {
		if got, err := os.ReadFile(name); err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
	live := 0
	ents, _ := os.ReadDir(base)
	for _, e := range ents {
		if got, _ := os.ReadFile(filepath.Join(base, e.Name())); string(got) == "live" {
			live++
		}
	}
	if live != 1 {
		t.Errorf("the replaced live copy is kept %d times, want once", live)
	}
}

// TestInPlaceCreatesParentsWithArchiveMeta: folders above a path that are
// missing on the (new) server are created with the owner, mode and
// modification time the archive has for them, not as root 0755; a restore
// that is aborted removes the folders it created.
func TestInPlaceCreatesParentsWithArchiveMeta(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t) // it sets folder owners
	ctx := context.Background()
	base := t.TempDir()
	srv, app := filepath.Join(base, "srv"), filepath.Join(base, "srv", "app")
	conf, data := filepath.Join(app, "conf"), filepath.Join(app, "data")
	must(t, os.MkdirAll(conf, 0o755))
	must(t, os.MkdirAll(data, 0o755))
	must(t, os.WriteFile(filepath.Join(conf, "x"), []byte("x"), 0o600))
	must(t, os.WriteFile(filepath.Join(data, "y"), []byte("y"), 0o600))
	must(t, os.Chmod(srv, 0o711))
	must(t, os.Chown(srv, 1001, 1002))
	must(t, os.Chmod(app, 0o750|os.ModeSetgid))
	must(t, os.Chown(app, 1000, 1000))
	old := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, d := range []string{app, srv} {
		must(t, os.Chtimes(d, old, old))
	}
	src, err := New(config.FileSource{Name: "s", Paths: []string{conf, data}})
	must(t, err)
	var buf bytes.Buffer
	if _, err := src.WriteTar(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	must(t, os.RemoveAll(srv)) // the bare machine

	// Aborted: the folders it created are gone again.
	r := NewInPlace([]string{conf, data}, false)
	st, err := r.Stage(ctx, bytes.NewReader(buf.Bytes()))
	must(t, err)
	must(t, st.Abort())
	if _, err := os.Lstat(srv); err == nil {
		t.Error("an aborted restore left the folders it created")
	}

	st, err = r.Stage(ctx, bytes.NewReader(buf.Bytes()))
	must(t, err)
	must(t, st.Commit(ctx))
	for _, tc := range []struct {
		path     string
		mode     os.FileMode
		uid, gid uint32
	}{
		{srv, 0o711, 1001, 1002},
		{app, 0o750 | os.ModeSetgid, 1000, 1000},
	} {
		fi, err := os.Stat(tc.path)
		must(t, err)
		sys := fi.Sys().(*syscall.Stat_t)
		if got := fi.Mode() & (os.ModePerm | os.ModeSetgid); got != tc.mode || sys.Uid != tc.uid || sys.Gid != tc.gid {
			t.Errorf("%s restored as %v %d:%d, the snapshot has %v %d:%d", tc.path, got, sys.Uid, sys.Gid, tc.mode, tc.uid, tc.gid)
		}
		if !fi.ModTime().Equal(old) {
			t.Errorf("%s: mtime %v, the snapshot has %v", tc.path, fi.ModTime(), old)
		}
	}
	for _, p := range []string{filepath.Join(conf, "x"), filepath.Join(data, "y")} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
	if ents, _ := os.ReadDir(app); len(ents) != 2 {
		t.Errorf("%s holds %v, want conf and data only", app, ents)
	}
}
