package testutil

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/firetech/fireops/internal/testenv"
)

// recorder is a testing.TB that records what Must, Replace and SameTree
// report instead of failing the test that runs them.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
	fatal  string
}

func (r *recorder) Helper() {}

func (r *recorder) Error(args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprint(args...))
}

func (r *recorder) Errorf(format string, args ...any) { r.Error(fmt.Sprintf(format, args...)) }

func (r *recorder) Fatal(args ...any) {
	r.mu.Lock()
	r.fatal = fmt.Sprint(args...)
	r.mu.Unlock()
	panic(r)
}

func (r *recorder) Fatalf(format string, args ...any) { r.Fatal(fmt.Sprintf(format, args...)) }

// run calls f with a recorder and returns it; a Fatal ends f only.
func run(t *testing.T, f func(tb testing.TB)) *recorder {
	r := &recorder{TB: t}
	func() {
		defer func() {
			if v := recover(); v != nil && v != r {
				panic(v)
			}
		}()
		f(r)
	}()
	return r
}

func TestMust(t *testing.T) {
	if r := run(t, func(tb testing.TB) { Must(tb, nil) }); r.fatal != "" {
		t.Errorf("Must(nil) failed the test: %s", r.fatal)
	}
	if r := run(t, func(tb testing.TB) { Must(tb, errors.New("boom")) }); r.fatal != "boom" {
		t.Errorf("Must(boom) ended the test with %q", r.fatal)
	}
}

func TestWaitFor(t *testing.T) {
	calls := 0
	r := run(t, func(tb testing.TB) {
		WaitFor(tb, "the third call", time.Millisecond, func() bool { calls++; return calls == 3 })
	})
	if r.fatal != "" || calls != 3 {
		t.Errorf("WaitFor: %d calls, ended with %q", calls, r.fatal)
	}
}

func TestReplace(t *testing.T) {
	for _, tc := range []struct {
		name, s, old, new string
		want              string // "" when the test must end
		all               bool   // ReplaceAll
	}{
		{name: "once", s: "a: 1\nb: 2\n", old: "b: 2", new: "b: 3", want: "a: 1\nb: 3\n"},
		{name: "missing", s: "a: 1\n", old: "b: 2", new: "b: 3"},
		{name: "twice", s: "x: 1\nx: 1\n", old: "x: 1", new: "x: 2"},
		{name: "all, twice", s: "x: 1\nx: 1\n", old: "x: 1", new: "x: 2", want: "x: 2\nx: 2\n", all: true},
		{name: "all, missing", s: "a: 1\n", old: "b", new: "c", all: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			r := run(t, func(tb testing.TB) {
				if tc.all {
					got = ReplaceAll(tb, tc.s, tc.old, tc.new)
				} else {
					got = Replace(tb, tc.s, tc.old, tc.new)
				}
			})
			switch {
			case tc.want == "" && r.fatal == "":
				t.Errorf("replacing %q in %q did not end the test (got %q)", tc.old, tc.s, got)
			case tc.want == "" && !strings.Contains(r.fatal, fmt.Sprintf("%q", tc.old)):
				t.Errorf("the failure does not name %q: %s", tc.old, r.fatal)
			case tc.want != "" && (r.fatal != "" || got != tc.want):
				t.Errorf("got %q (failure %q), want %q", got, r.fatal, tc.want)
			}
		})
	}
}

// makeTree writes a folder with a file, an executable, a subfolder with a
// file, a symlink and an empty folder, all with fixed times.
func makeTree(t *testing.T, root string) {
	t.Helper()
	Must(t, os.MkdirAll(filepath.Join(root, "sub", "empty"), 0o755))
	Must(t, os.WriteFile(filepath.Join(root, "a.txt"), []byte("alpha\n"), 0o644))
	Must(t, os.WriteFile(filepath.Join(root, "run.sh"), []byte("#!/bin/sh\n"), 0o755))
	Must(t, os.WriteFile(filepath.Join(root, "sub", "b.bin"), make([]byte, 200<<10), 0o600))
	Must(t, os.Symlink("sub/b.bin", filepath.Join(root, "link")))
	stamp := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, p := range []string{"a.txt", "run.sh", "sub/b.bin", "sub/empty", "sub"} {
		Must(t, os.Chtimes(filepath.Join(root, p), stamp, stamp))
	}
	tv := unix.NsecToTimeval(stamp.UnixNano())
	Must(t, unix.Lutimes(filepath.Join(root, "link"), []unix.Timeval{tv, tv}))
}

func TestDiffTrees(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, root string)
		want   []string // substrings of the differences, in order
		opts   []TreeOption
	}{
		{name: "same", change: func(*testing.T, string) {}},
		{name: "missing file", change: func(t *testing.T, root string) {
			Must(t, os.Remove(filepath.Join(root, "a.txt")))
		}, want: []string{"a.txt: missing (want a file)"}},
		{name: "extra file", change: func(t *testing.T, root string) {
			Must(t, os.WriteFile(filepath.Join(root, "sub", "empty", "new"), nil, 0o644))
		}, want: []string{"sub/empty: modified", "sub/empty/new: unexpected file"}},
		{name: "mode", change: func(t *testing.T, root string) {
			Must(t, os.Chmod(filepath.Join(root, "run.sh"), 0o700))
		}, want: []string{"run.sh: mode -rwx------, want -rwxr-xr-x"}},
		{name: "contents, same size", change: func(t *testing.T, root string) {
			f, err := os.OpenFile(filepath.Join(root, "sub", "b.bin"), os.O_WRONLY, 0)
			Must(t, err)
			_, err = f.WriteAt([]byte{1}, 150<<10)
			Must(t, err)
			Must(t, f.Close())
			stamp := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			Must(t, os.Chtimes(filepath.Join(root, "sub", "b.bin"), stamp, stamp))
		}, want: []string{fmt.Sprintf("sub/b.bin: contents differ from byte %d", 150<<10)}},
		{name: "size", change: func(t *testing.T, root string) {
			Must(t, os.WriteFile(filepath.Join(root, "a.txt"), []byte("alpha!\n"), 0o644))
		}, want: []string{"a.txt: modified", "a.txt: 7 bytes, want 6"}, opts: nil},
		{name: "time", change: func(t *testing.T, root string) {
			Must(t, os.Chtimes(filepath.Join(root, "a.txt"), time.Now(), time.Now()))
		}, want: []string{"a.txt: modified"}},
		{name: "time ignored", change: func(t *testing.T, root string) {
			Must(t, os.Chtimes(filepath.Join(root, "a.txt"), time.Now(), time.Now()))
		}, opts: []TreeOption{IgnoreTimes()}},
		{name: "symlink target", change: func(t *testing.T, root string) {
			Must(t, os.Remove(filepath.Join(root, "link")))
			Must(t, os.Symlink("a.txt", filepath.Join(root, "link")))
		}, want: []string{`link: symlink to "a.txt", want "sub/b.bin"`}, opts: []TreeOption{IgnoreTimes()}},
		{name: "type", change: func(t *testing.T, root string) {
			Must(t, os.Remove(filepath.Join(root, "link")))
			Must(t, os.WriteFile(filepath.Join(root, "link"), nil, 0o644))
		}, want: []string{"link: a file, want a symlink"}, opts: []TreeOption{IgnoreTimes()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, got := t.TempDir(), t.TempDir()
			makeTree(t, want)
			makeTree(t, got)
			tc.change(t, got)
			diffs, err := DiffTrees(want, got, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if len(diffs) != len(tc.want) {
				t.Fatalf("differences %q, want %d: %q", diffs, len(tc.want), tc.want)
			}
			for i, d := range diffs {
				if !strings.HasPrefix(d, tc.want[i]) {
					t.Errorf("difference %d is %q, want it to start with %q", i, d, tc.want[i])
				}
			}
			r := run(t, func(tb testing.TB) { SameTree(tb, want, got, tc.opts...) })
			if len(r.errors) != len(tc.want) || r.fatal != "" {
				t.Errorf("SameTree reported %q (fatal %q), want %d errors", r.errors, r.fatal, len(tc.want))
			}
		})
	}
}

// TestDiffTreesOwners: owner and group are compared unless IgnoreOwners.
func TestDiffTreesOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "root (to change a file's owner)", fmt.Errorf("running as uid %d", os.Geteuid()))
	}
	want, got := t.TempDir(), t.TempDir()
	makeTree(t, want)
	makeTree(t, got)
	Must(t, os.Lchown(filepath.Join(got, "link"), 1000, 1001))
	diffs, err := DiffTrees(want, got, IgnoreTimes())
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 1 || !strings.HasPrefix(diffs[0], "link: owner 1000:1001, want 0:0") {
		t.Errorf("differences %q, want the symlink's owner", diffs)
	}
	if diffs, err := DiffTrees(want, got, IgnoreTimes(), IgnoreOwners()); err != nil || len(diffs) != 0 {
		t.Errorf("with IgnoreOwners: %q, %v", diffs, err)
	}
}

// TestDiffTreesNotAFolder: a root that is not a folder is an error.
func TestDiffTreesNotAFolder(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	Must(t, os.WriteFile(file, nil, 0o644))
	if _, err := DiffTrees(dir, file); err == nil || !strings.Contains(err.Error(), "not a folder") {
		t.Errorf("DiffTrees on a file: %v", err)
	}
	if _, err := DiffTrees(dir, filepath.Join(dir, "missing")); err == nil {
		t.Error("DiffTrees on a missing folder: no error")
	}
}

func TestFileSums(t *testing.T) {
	dir := t.TempDir()
	Must(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	Must(t, os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o644))
	Must(t, os.WriteFile(filepath.Join(dir, "sub", "b"), []byte("b"), 0o644))
	got := FileSums(t, dir)
	if len(got) != 2 || got["a"] != sha256.Sum256([]byte("a")) || got[filepath.Join("sub", "b")] != sha256.Sum256([]byte("b")) {
		t.Errorf("FileSums = %x", got)
	}
}
