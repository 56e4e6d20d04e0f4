package files

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/firetech/fireops/internal/walktest"
	"github.com/firetech/fireops/pkg/config"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// meta is what a round trip must keep for one path.
type meta struct {
	mode     fs.FileMode
	uid, gid uint32
	mtime    int64
	link     string
	body     string
	linkID   int // >0: hard-linked, same number = same inode
}

// tree records every path below root, relative to root.
func tree(t testing.TB, root string) map[string]meta {
	t.Helper()
	out := map[string]meta{}
	for rel, e := range walktest.Tree(t, root) {
		out[rel] = meta{mode: e.Mode, uid: e.Uid, gid: e.Gid, mtime: e.Mtime.UnixNano(), link: e.Link, body: e.Body, linkID: e.LinkID}
	}
	return out
}

func setTime(t testing.TB, p string, ns int64) {
	t.Helper()
	ts := []unix.Timespec{unix.NsecToTimespec(ns), unix.NsecToTimespec(ns)}
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
}

// makeApp builds base/src/app with every kind of entry, plus excluded
// files and a socket. It returns the app folder.
func makeApp(t testing.TB, base string) string {
	t.Helper()
	app := filepath.Join(base, "src", "app")
	for _, d := range []string{"conf/sub", "empty", "cache", "ro"} {
		must(t, os.MkdirAll(filepath.Join(app, d), 0o755))
	}
	w := func(rel, body string, mode fs.FileMode) {
		must(t, os.WriteFile(filepath.Join(app, rel), []byte(body), mode))
		must(t, os.Chmod(filepath.Join(app, rel), mode))
	}
	w("conf/app.yaml", "a: 1\n", 0o644)
	w("conf/secret.key", "KEY", 0o600)
	w("conf/sub/big.bin", strings.Repeat("0123456789", 100000), 0o640)
	w("run.sh", "#!/bin/sh\n", 0o755)
	w("setgid-tool", "x", 0o2755)
	w("ro/inside", "ro", 0o444)
	w("cache/x.tmp", "excluded by relative path", 0o644)
	w("cache/keep", "kept", 0o644)
	w("scratch.swp", "excluded by base name", 0o644)
	w("conf/sub/also.swp", "excluded by base name", 0o644)
	must(t, os.Link(filepath.Join(app, "conf/secret.key"), filepath.Join(app, "conf/sub/secret-link")))
	must(t, os.Symlink("conf/app.yaml", filepath.Join(app, "current")))
	must(t, os.Symlink("/nonexistent/target", filepath.Join(app, "dangling")))
	must(t, os.Chmod(filepath.Join(app, "empty"), 0o700))
	if os.Geteuid() == 0 {
		must(t, os.Lchown(filepath.Join(app, "conf/secret.key"), 1000, 1000))
		must(t, os.Lchown(filepath.Join(app, "conf/sub"), 1000, 1001))
		must(t, os.Lchown(filepath.Join(app, "current"), 1000, 1000))
	}
	l, err := net.Listen("unix", filepath.Join(app, "conf", "app.sock"))
	must(t, err)
	t.Cleanup(func() { l.Close() })
	var paths []string
	must(t, filepath.WalkDir(filepath.Join(base, "src"), func(p string, d fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	}))
	sort.Sort(sort.Reverse(sort.StringSlice(paths))) // contents before their folder
	for i, p := range paths {
		setTime(t, p, 1600000000_000000000+int64(i)*3_600_000_000_123)
	}
	must(t, os.Chmod(filepath.Join(app, "ro"), 0o555))
	return app
}

func writeTar(t testing.TB, s *Source) ([]byte, error) {
	t.Helper()
	var buf bytes.Buffer
	st, err := s.WriteTar(context.Background(), &buf)
	if err == nil && st.Entries == 0 {
		t.Errorf("no entries")
	}
	return buf.Bytes(), err
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	app := makeApp(t, base)
	single := filepath.Join(base, "src", "single.conf")
	must(t, os.WriteFile(single, []byte("single"), 0o640))
	s, err := New(config.FileSource{
		Name:    "cfg",
		Paths:   []string{app, single, filepath.Join(app, "conf") + "/"}, // conf is inside app: dropped
		Exclude: []string{"*.swp", "cache/*.tmp"},
	})
	must(t, err)
	if got := s.Paths(); len(got) != 2 {
		t.Fatalf("Paths = %v", got)
	}
	want := tree(t, app)
	for _, p := range []string{"scratch.swp", "conf/sub/also.swp", "cache/x.tmp", "conf/app.sock"} {
		if _, ok := want[p]; !ok {
			t.Fatalf("test tree lacks %s", p)
		}
		delete(want, p)
	}

	var buf bytes.Buffer
	st, err := s.WriteTar(context.Background(), &buf)
	must(t, err)
	if st.Details["sockets_skipped"] != "1" || st.Details["hardlinks"] != "1" || st.Details["symlinks"] != "2" {
		t.Errorf("details %v", st.Details)
	}
	// The archived paths are recorded, so that a restore in place can tell
	// them from the folders above them.
	if roots, ok, err := RecordedRoots(st.Details); err != nil || !ok || !slices.Equal(roots, s.Paths()) {
		t.Errorf("recorded roots %v %v %v, want %v", roots, ok, err, s.Paths())
	}

	// Names: parents first, no leading slash, sorted within folders.
	names := walktest.Names(t, buf.Bytes())
	if int64(len(names)) != st.Entries {
		t.Errorf("Entries = %d, archive has %d", st.Entries, len(names))
	}
	rel := strings.TrimPrefix(base, "/")
	if names[0] != strings.SplitN(rel, "/", 2)[0]+"/" || names[len(names)-1] != rel+"/src/single.conf" {
		t.Errorf("names %v", names)
	}
	for _, n := range names {
		if strings.HasPrefix(n, "/") {
			t.Errorf("absolute name %s", n)
		}
	}

	// Restore into a fresh folder and compare with the original.
	dst := filepath.Join(base, "restore")
	r, err := NewRestorer(dst, false)
	must(t, err)
	staged, err := r.Stage(context.Background(), bytes.NewReader(buf.Bytes()))
	must(t, err)
	if staged.Stats().Entries != st.Entries {
		t.Errorf("staged entries %d, written %d", staged.Stats().Entries, st.Entries)
	}
	for _, k := range []string{"files", "dirs", "symlinks", "hardlinks", "bytes"} {
		if staged.Stats().Details[k] != st.Details[k] {
			t.Errorf("%s: staged %s, written %s", k, staged.Stats().Details[k], st.Details[k])
		}
	}
	must(t, staged.Commit(context.Background()))
	must(t, staged.Abort()) // a no-op after Commit
	got := tree(t, filepath.Join(dst, app))
	compare(t, want, got)
	if b, err := os.ReadFile(filepath.Join(dst, single)); err != nil || string(b) != "single" {
		t.Errorf("single file: %q, %v", b, err)
	}
	// Parents of the configured paths keep their metadata too.
	srcFI, _ := os.Stat(filepath.Join(base, "src"))
	gotFI, err := os.Stat(filepath.Join(dst, base, "src"))
	must(t, err)
	if srcFI.Mode() != gotFI.Mode() || !srcFI.ModTime().Equal(gotFI.ModTime()) {
		t.Errorf("parent src: %v %v, want %v %v", gotFI.Mode(), gotFI.ModTime(), srcFI.Mode(), srcFI.ModTime())
	}
	if os.Geteuid() == 0 {
		fi, _ := os.Lstat(filepath.Join(dst, app, "conf/secret.key"))
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1000 || st.Gid != 1000 {
			t.Errorf("owner %d:%d, want 1000:1000", st.Uid, st.Gid)
		}
	}
	noLeftovers(t, base)

	// GNU tar extracts the same tree.
	gnu := filepath.Join(base, "gnu")
	must(t, os.Mkdir(gnu, 0o755))
	cmd := exec.Command("tar", "-x", "-p", "-C", gnu)
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v\n%s", err, out)
	}
	compare(t, want, tree(t, filepath.Join(gnu, app)))
}

func compare(t testing.TB, want, got map[string]meta) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: missing", p)
			continue
		}
		if len(g.body) > 40 {
			g.body, w.body = g.body[:40], w.body[:40]+map[bool]string{true: "", false: "(differs)"}[g.body == want[p].body]
		}
		if g != w {
			t.Errorf("%s:\n got  %+v\n want %+v", p, g, w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: unexpected", p)
		}
	}
}

// noLeftovers fails when a staging or old folder is left in dir.
func noLeftovers(t testing.TB, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".fireops-") {
			t.Errorf("left behind: %s", filepath.Join(dir, e.Name()))
		}
	}
}

func TestFingerprint(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	app := makeApp(t, base)
	cfg := config.FileSource{Name: "cfg", Paths: []string{app}, Exclude: []string{"*.swp", "cache/*.tmp"}}
	fp := func(cfg config.FileSource) string {
		t.Helper()
		s, err := New(cfg)
		must(t, err)
		f, err := s.Fingerprint(context.Background())
		must(t, err)
		return f
	}
	first := fp(cfg)
	if len(first) != 64 || fp(cfg) != first {
		t.Fatalf("fingerprint not stable: %s", first)
	}
	// A change in an excluded file does not count, nor does activity
	// next to the configured path (its parent's times change).
	must(t, os.WriteFile(filepath.Join(app, "scratch.swp"), []byte("changed"), 0o644))
	must(t, os.WriteFile(filepath.Join(base, "src", "sibling"), []byte("x"), 0o644))
	if fp(cfg) != first {
		t.Errorf("excluded file or parent folder times changed the fingerprint")
	}
	steps := []struct {
		name   string
		change func()
		cfg    func(c config.FileSource) config.FileSource
	}{
		{name: "parent folder mode", change: func() { must(t, os.Chmod(filepath.Join(base, "src"), 0o750)) }},
		{name: "exclude list", cfg: func(c config.FileSource) config.FileSource { c.Exclude = c.Exclude[:1]; return c }},
		{name: "chmod", change: func() { must(t, os.Chmod(filepath.Join(app, "run.sh"), 0o700)) }},
		{name: "content, same size and mtime", change: func() {
			p := filepath.Join(app, "conf/app.yaml")
			fi, _ := os.Stat(p)
			must(t, os.WriteFile(p, []byte("a: 2\n"), 0o644))
			setTime(t, p, fi.ModTime().UnixNano()) // ctime still moves
		}},
		{name: "new empty folder", change: func() { must(t, os.Mkdir(filepath.Join(app, "empty", "new"), 0o755)) }},
		{name: "symlink target", change: func() {
			must(t, os.Remove(filepath.Join(app, "current")))
			must(t, os.Symlink("run.sh", filepath.Join(app, "current")))
		}},
	}
	prev := first
	for _, step := range steps {
		c := cfg
		if step.change != nil {
			step.change()
		}
		if step.cfg != nil {
			c = step.cfg(c)
		}
		got := fp(c)
		if got == prev {
			t.Errorf("%s: fingerprint unchanged", step.name)
		}
		prev = fp(cfg)
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	for _, cfg := range []config.FileSource{
		{Name: "", Paths: []string{"/x"}},
		{Name: "a"},
		{Name: "a", Paths: []string{"rel/path"}},
		{Name: "a", Paths: []string{"/"}},
		{Name: "a", Paths: []string{"/x"}, Exclude: []string{"[bad"}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func TestWriteTarErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T, app string, s *Source) string // returns the path the error must name
	}{
		{name: "missing path", setup: func(t *testing.T, app string, s *Source) string {
			must(t, os.RemoveAll(app))
			return app
		}},
		{name: "named pipe", setup: func(t *testing.T, app string, s *Source) string {
			p := filepath.Join(app, "pipe")
			must(t, syscall.Mkfifo(p, 0o644))
			return p
		}},
		{name: "vanishes between listing and open", setup: func(t *testing.T, app string, s *Source) string {
			p := filepath.Join(app, "b")
			s.beforeOpen = func(path string) {
				if path == p {
					os.Remove(p)
				}
			}
			return p
		}},
		{name: "replaced by a symlink between listing and open", setup: func(t *testing.T, app string, s *Source) string {
			p := filepath.Join(app, "b")
			s.beforeOpen = func(path string) {
				if path == p {
					os.Remove(p)
					os.Symlink("/etc/passwd", p)
				}
			}
			return p
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			app := filepath.Join(t.TempDir(), "app")
			must(t, os.MkdirAll(app, 0o755))
			must(t, os.WriteFile(filepath.Join(app, "a"), []byte("aaaa"), 0o644))
			must(t, os.WriteFile(filepath.Join(app, "b"), []byte("bbbbbbbb"), 0o644))
			s, err := New(config.FileSource{Name: "cfg", Paths: []string{app}})
			must(t, err)
			name := tc.setup(t, app, s)
			_, err = writeTar(t, s)
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("WriteTar: %v, want an error naming %s", err, name)
			}
			t.Logf("error: %v", err)
			if tc.name == "missing path" || tc.name == "named pipe" {
				if _, err := s.Fingerprint(context.Background()); err == nil {
					t.Errorf("Fingerprint succeeded")
				}
			}
		})
	}
}

// TestUnreadable checks that a file the process may not read fails the
// part with an error naming it. Root reads everything, so as root the
// check runs in a copy of the test binary started as nobody (uid 65534).
func TestUnreadable(t *testing.T) {
	if p := os.Getenv("FIREOPS_TEST_UNREADABLE"); p != "" {
		s, err := New(config.FileSource{Name: "cfg", Paths: []string{p}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.WriteTar(context.Background(), io.Discard)
		t.Logf("RESULT: %v", err)
		return
	}
	t.Parallel()
	base := t.TempDir()
	must(t, os.Chmod(base, 0o755))
	must(t, os.Chmod(filepath.Dir(base), 0o755)) // so nobody can run the copy
	app := filepath.Join(base, "app")
	must(t, os.MkdirAll(filepath.Join(app, "closed"), 0o755))
	must(t, os.WriteFile(filepath.Join(app, "a"), []byte("a"), 0o644))
	must(t, os.WriteFile(filepath.Join(app, "secret"), []byte("s"), 0o600))
	must(t, os.Chmod(filepath.Join(app, "secret"), 0o000))
	must(t, os.WriteFile(filepath.Join(app, "closed", "x"), []byte("x"), 0o644))

	run := func(t *testing.T) string {
		if os.Geteuid() != 0 {
			s, err := New(config.FileSource{Name: "cfg", Paths: []string{app}})
			must(t, err)
			_, err = s.WriteTar(context.Background(), io.Discard)
			if err == nil {
				return "<nil>"
			}
			return err.Error()
		}
		bin := filepath.Join(base, "files.test")
		if _, err := os.Stat(bin); err != nil {
			self, err := os.ReadFile(os.Args[0])
			must(t, err)
			must(t, os.WriteFile(bin, self, 0o755))
		}
		cmd := exec.Command(bin, "-test.run=^TestUnreadable$", "-test.v")
		cmd.Env = append(os.Environ(), "FIREOPS_TEST_UNREADABLE="+app)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helper as nobody: %v\n%s", err, out)
		}
		_, res, ok := strings.Cut(string(out), "RESULT: ")
		if !ok {
			t.Fatalf("helper output:\n%s", out)
		}
		return strings.SplitN(res, "\n", 2)[0]
	}
	res := run(t)
	t.Logf("unreadable file (euid %d, helper as 65534 when root): %s", os.Geteuid(), res)
	if !strings.Contains(res, filepath.Join(app, "secret")) || !strings.Contains(res, "permission denied") {
		t.Errorf("unreadable file: %s", res)
	}
	must(t, os.Chmod(filepath.Join(app, "secret"), 0o644))
	must(t, os.Chmod(filepath.Join(app, "closed"), 0o000))
	res = run(t)
	if !strings.Contains(res, filepath.Join(app, "closed")) || !strings.Contains(res, "permission denied") {
		t.Errorf("unreadable folder: %s", res)
	}
	must(t, os.Chmod(filepath.Join(app, "closed"), 0o755))
	if res = run(t); res != "<nil>" {
		t.Errorf("readable tree: %s", res)
	}
}

// TestShortRead checks writeFile's "shrank" error with a file truncated
// after it was opened and stat'ed.
func TestShortRead(t *testing.T) {
	t.Parallel()
	app := filepath.Join(t.TempDir(), "app")
	must(t, os.MkdirAll(app, 0o755))
	p := filepath.Join(app, "log")
	must(t, os.WriteFile(p, bytes.Repeat([]byte("x"), 1<<20), 0o644))
	s, err := New(config.FileSource{Name: "cfg", Paths: []string{app}})
	must(t, err)
	// Truncate from a writer that sees the header go out.
	w := &truncWriter{path: p}
	_, err = s.WriteTar(context.Background(), w)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "shrank") {
		t.Fatalf("WriteTar: %v", err)
	}
	t.Logf("error: %v", err)
}

// truncWriter truncates path once the first 256 KiB of its contents went
// out.
type truncWriter struct {
	path string
	n    int
	done bool
}

func (w *truncWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	if !w.done && w.n > 100000 {
		w.done = true
		if err := os.Truncate(w.path, 1000); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func TestRestoreTargetRules(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	app := filepath.Join(base, "src", "app")
	must(t, os.MkdirAll(app, 0o755))
	must(t, os.WriteFile(filepath.Join(app, "new"), []byte("new"), 0o644))
	s, err := New(config.FileSource{Name: "cfg", Paths: []string{app}})
	must(t, err)
	arch, err := writeTar(t, s)
	must(t, err)

	target := filepath.Join(base, "target")
	must(t, os.MkdirAll(target, 0o750))
	must(t, os.WriteFile(filepath.Join(target, "old"), []byte("old"), 0o644))
	before := tree(t, target)

	// Non-empty target without force: refused before extracting.
	r, err := NewRestorer(target, false)
	must(t, err)
	if _, err := r.Stage(context.Background(), bytes.NewReader(arch)); !errors.Is(err, ErrNotEmpty) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("Stage into non-empty target: %v", err)
	}
	compare(t, before, tree(t, target))
	noLeftovers(t, base)

	// Force, then Abort: the target is untouched, staging removed.
	r, err = NewRestorer(target, true)
	must(t, err)
	staged, err := r.Stage(context.Background(), bytes.NewReader(arch))
	must(t, err)
	compare(t, before, tree(t, target))
	must(t, staged.Abort())
	compare(t, before, tree(t, target))
	noLeftovers(t, base)
	if err := staged.Commit(context.Background()); err == nil {
		t.Errorf("Commit after Abort succeeded")
	}

	// A malicious archive fails Stage and leaves nothing behind.
	bad := badArchive(t)
	if _, err := r.Stage(context.Background(), bytes.NewReader(bad)); err == nil {
		t.Fatalf("malicious archive staged")
	}
	compare(t, before, tree(t, target))
	noLeftovers(t, base)

	// Force and Commit: replaced, the old copy removed, the folder keeps
	// the replaced folder's mode.
	staged, err = r.Stage(context.Background(), bytes.NewReader(arch))
	must(t, err)
	must(t, staged.Commit(context.Background()))
	if _, err := os.Stat(filepath.Join(target, "old")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("old content still there: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(target, app, "new")); err != nil || string(b) != "new" {
		t.Errorf("restored file: %q, %v", b, err)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o750 {
		t.Errorf("target mode %v, want 0750", fi.Mode())
	}
	noLeftovers(t, base)

	// An empty existing folder needs no force.
	empty := filepath.Join(base, "empty")
	must(t, os.Mkdir(empty, 0o755))
	r, err = NewRestorer(empty, false)
	must(t, err)
	staged, err = r.Stage(context.Background(), bytes.NewReader(arch))
	must(t, err)
	must(t, staged.Commit(context.Background()))
	noLeftovers(t, base)

	// A target that gains content between Stage and Commit is refused
	// by Commit (no force), and Abort still removes the staging folder.
	late := filepath.Join(base, "late")
	r, err = NewRestorer(late, false)
	must(t, err)
	staged, err = r.Stage(context.Background(), bytes.NewReader(arch))
	must(t, err)
	must(t, os.Mkdir(late, 0o755))
	must(t, os.WriteFile(filepath.Join(late, "meanwhile"), []byte("x"), 0o644))
	lateBefore := tree(t, late)
	if err := staged.Commit(context.Background()); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("Commit over a target filled after Stage: %v", err)
	}
	compare(t, lateBefore, tree(t, late))
	must(t, staged.Abort())
	noLeftovers(t, base)

	// A file where the folder should be is refused even with force.
	file := filepath.Join(base, "file")
	must(t, os.WriteFile(file, nil, 0o644))
	r, err = NewRestorer(file, true)
	must(t, err)
	if _, err := r.Stage(context.Background(), bytes.NewReader(arch)); err == nil {
		t.Errorf("restore over a file staged")
	}
}

func TestRestoreSubtree(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	app := makeApp(t, base)
	s, err := New(config.FileSource{Name: "cfg", Paths: []string{app}})
	must(t, err)
	arch, err := writeTar(t, s)
	must(t, err)
	want := tree(t, app)
	delete(want, "conf/app.sock")
	dst := filepath.Join(base, "only-app")
	r, err := NewRestorer(dst, false, Subtree(strings.TrimPrefix(app, "/")))
	must(t, err)
	staged, err := r.Stage(context.Background(), bytes.NewReader(arch))
	must(t, err)
	must(t, staged.Commit(context.Background()))
	compare(t, want, tree(t, dst))
}

func badArchive(t testing.TB) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeReg, Name: "fine", Mode: 0o644, ModTime: time.Now()},
		{Typeflag: tar.TypeSymlink, Name: "l", Linkname: "/tmp", Mode: 0o777},
		{Typeflag: tar.TypeReg, Name: "l/escape", Mode: 0o644},
	} {
		must(t, tw.WriteHeader(h))
	}
	must(t, tw.Close())
	return buf.Bytes()
}
