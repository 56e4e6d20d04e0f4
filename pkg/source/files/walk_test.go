package files

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/firetech/fireops/internal/walktest"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/tarsafe"
)

// TestSymlinkSwapDuringRead: folder D of a configured path is swapped for
// a symlink to a host folder while a large file in D is being read; the
// rest of D is read through the folder the walk opened, never through the
// symlink: nothing of the host folder is in the archive.
func TestSymlinkSwapDuringRead(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	app, host := filepath.Join(base, "app"), filepath.Join(base, "host")
	walktest.WriteTree(t, app, map[string]string{"D/big": strings.Repeat("b", 4<<20), "D/sub/own": "mine too", "D/z": "mine"})
	walktest.HostSecrets(t, host)
	s, err := New(config.FileSource{Name: "cfg", Paths: []string{app}})
	must(t, err)
	big, swapped := filepath.Join(app, "D", "big"), false
	s.afterRead = func(p string) {
		if p == big && !swapped {
			swapped = true
			must(t, os.Rename(filepath.Join(app, "D"), filepath.Join(app, "D.old")))
			must(t, os.Symlink(host, filepath.Join(app, "D")))
		}
	}
	b, err := writeTar(t, s)
	must(t, err)
	if !swapped {
		t.Fatal("the hook did not run")
	}
	got := walktest.Entries(t, b)
	walktest.NoSecret(t, got)
	d := app[1:] + "/D/"
	if got[d+"z"] != "mine" || got[d+"sub/own"] != "mine too" {
		t.Errorf("D's own files after the swap: z %q, sub/own %q", got[d+"z"], got[d+"sub/own"])
	}
}

// TestReplacedBetweenListingAndOpen: a folder or file replaced between
// the listing and the open (another inode at its name) fails the part
// with an error naming it; nothing is read from what took its place.
func TestReplacedBetweenListingAndOpen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		target string // below the configured path; "" = the configured path
		swap   func(t *testing.T, app, target, host string)
	}{
		{"file renamed over", "f", func(t *testing.T, app, target, host string) {
			must(t, os.WriteFile(filepath.Join(app, "new"), []byte("SECRET new"), 0o644))
			must(t, os.Rename(filepath.Join(app, "new"), target))
		}},
		{"folder swapped for a host folder", "D", func(t *testing.T, app, target, host string) {
			must(t, os.Rename(target, filepath.Join(app, "..", "D.gone")))
			must(t, os.Rename(host, target))
		}},
		{"folder swapped for a symlink", "D", func(t *testing.T, app, target, host string) {
			must(t, os.Rename(target, filepath.Join(app, "..", "D.gone")))
			must(t, os.Symlink(host, target))
		}},
		{"configured folder swapped for a host folder", "", func(t *testing.T, app, target, host string) {
			must(t, os.Rename(app, app+".gone"))
			must(t, os.Rename(host, app))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			app, host := filepath.Join(base, "app"), filepath.Join(base, "host")
			walktest.WriteTree(t, app, map[string]string{"a": "mine a", "D/d": "mine d", "f": "mine f"})
			walktest.HostSecrets(t, host)
			target := app
			if tc.target != "" {
				target = filepath.Join(app, tc.target)
			}
			s, err := New(config.FileSource{Name: "cfg", Paths: []string{app}})
			must(t, err)
			done := false
			s.beforeOpen = func(p string) {
				if p == target && !done {
					done = true
					tc.swap(t, app, target, host)
				}
			}
			var buf bytes.Buffer
			_, err = s.WriteTar(context.Background(), &buf)
			if !done {
				t.Fatal("the hook did not run")
			}
			if err == nil || !strings.Contains(err.Error(), target) || !strings.Contains(err.Error(), "replaced") {
				t.Fatalf("WriteTar: %v, want an error saying %s was replaced", err, target)
			}
			t.Logf("error: %v", err)
			if bytes.Contains(buf.Bytes(), []byte("SECRET")) {
				t.Errorf("the archive written so far holds a host file")
			}
		})
	}
}

// TestLongPaths: a configured folder holding a path far over PATH_MAX
// (300 levels of 40-byte names, 12 KiB) archives, with its other files
// and another configured path, and restores through tarsafe.Extract.
func TestLongPaths(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	app, other := filepath.Join(base, "app"), filepath.Join(base, "other")
	walktest.WriteTree(t, app, map[string]string{"a": "first", "z": "last"})
	walktest.WriteTree(t, other, map[string]string{"o": "other"})
	rel := walktest.DeepChain(t, app, 300, func(i int) string { return fmt.Sprintf("%03d-%s", i, strings.Repeat("n", 36)) }, "deep")
	if len(app)+len(rel) < 3*unix.PathMax {
		t.Fatalf("path of %d bytes only", len(app)+len(rel))
	}
	s, err := New(config.FileSource{Name: "cfg", Paths: []string{app, other}})
	must(t, err)
	b, err := writeTar(t, s)
	must(t, err)
	got := walktest.Entries(t, b)
	leaf := app[1:] + "/" + rel + "/leaf"
	if got[leaf] != "deep" || got[app[1:]+"/a"] != "first" || got[other[1:]+"/o"] != "other" {
		t.Errorf("archive: leaf %q, a %q, other/o %q", got[leaf], got[app[1:]+"/a"], got[other[1:]+"/o"])
	}
	if _, err := s.Fingerprint(context.Background()); err != nil {
		t.Errorf("Fingerprint: %v", err)
	}
	out := filepath.Join(base, "out")
	if _, err := tarsafe.Extract(context.Background(), bytes.NewReader(b), out, tarsafe.Options{}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if got := walktest.ReadDeep(t, out, leaf); got != "deep" {
		t.Errorf("restored leaf %q", got)
	}
	if got := walktest.ReadDeep(t, out, other[1:]+"/o"); got != "other" {
		t.Errorf("restored other/o %q", got)
	}
}

// TestDeepFewDescriptors: a configured folder 2,000 levels deep archives
// with RLIMIT_NOFILE at 200: the walk holds a bounded number of folder
// descriptors, not one per level. (Not parallel: the limit is the
// process's.)
func TestDeepFewDescriptors(t *testing.T) {
	base := t.TempDir()
	app := filepath.Join(base, "app")
	walktest.WriteTree(t, app, map[string]string{"a": "first", "z": "last"})
	rel := walktest.DeepChain(t, app, 2000, func(int) string { return "d" }, "deep")
	s, err := New(config.FileSource{Name: "cfg", Paths: []string{app}})
	must(t, err)
	var old syscall.Rlimit
	must(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old))
	lim := old
	lim.Cur = 200
	must(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
	b, err := writeTar(t, s)
	must(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old))
	must(t, err)
	got := walktest.Entries(t, b)
	if leaf := app[1:] + "/" + rel + "/leaf"; got[leaf] != "deep" || got[app[1:]+"/z"] != "last" {
		t.Errorf("archive: leaf %q, z %q", got[leaf], got[app[1:]+"/z"])
	}
}

// TestNameTooLong: a path longer than an archive can hold for a restore
// (tarsafe.MaxNameLen; lowered here) fails the part with an error naming
// it and the fix; excluded, the rest archives. (Not parallel:
// maxNameLen.)
func TestNameTooLong(t *testing.T) {
	maxNameLen = 2000
	t.Cleanup(func() { maxNameLen = tarsafe.MaxNameLen })
	base := t.TempDir()
	app := filepath.Join(base, "app")
	walktest.WriteTree(t, app, map[string]string{"a": "first", "deep/": ""})
	walktest.DeepChain(t, filepath.Join(app, "deep"), 30, func(i int) string { return fmt.Sprintf("%02d-%s", i, strings.Repeat("n", 97)) }, "x")
	s, err := New(config.FileSource{Name: "cfg", Paths: []string{app}})
	must(t, err)
	_, err = s.WriteTar(context.Background(), io.Discard)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(app, "deep")) || !strings.Contains(err.Error(), "too long") {
		t.Fatalf("WriteTar: %v, want a too-long error", err)
	}
	t.Logf("error: %v", err)
	s, err = New(config.FileSource{Name: "cfg", Paths: []string{app}, Exclude: []string{"deep"}})
	must(t, err)
	b, err := writeTar(t, s)
	must(t, err)
	if got := walktest.Entries(t, b); got[app[1:]+"/a"] != "first" {
		t.Errorf("archive without the long path: a %q", got[app[1:]+"/a"])
	}
}

// TestDeepFolderMovedDuringWalk: deep in a configured folder, a folder
// whose descriptor the walk closed (it holds a bounded number) is swapped
// for a symlink to a host folder while a file far below it is read; going
// back up, the walk reopens it by name, sees it is not the folder it
// listed and fails the part, having archived nothing of the host folder.
func TestDeepFolderMovedDuringWalk(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	app, host := filepath.Join(base, "app"), filepath.Join(base, "host")
	walktest.WriteTree(t, app, map[string]string{"a": "first"})
	walktest.HostSecrets(t, host)
	rel := walktest.DeepChain(t, app, 300, func(int) string { return "c" }, "deep")
	fifth := filepath.Join(app, "c/c/c/c/c")
	must(t, os.WriteFile(filepath.Join(fifth, "z"), []byte("mine"), 0o644))
	s, err := New(config.FileSource{Name: "cfg", Paths: []string{app}})
	must(t, err)
	leaf, swapped := filepath.Join(app, rel, "leaf"), false
	s.afterRead = func(p string) {
		if p == leaf && !swapped {
			swapped = true
			must(t, os.Rename(fifth, filepath.Join(base, "moved")))
			must(t, os.Symlink(host, fifth))
		}
	}
	var buf bytes.Buffer
	_, err = s.WriteTar(context.Background(), &buf)
	if !swapped {
		t.Fatal("the hook did not run")
	}
	if err == nil || !strings.Contains(err.Error(), "moved or replaced") {
		t.Fatalf("WriteTar: %v, want a moved-or-replaced error", err)
	}
	t.Logf("error: %v", err)
	if bytes.Contains(buf.Bytes(), []byte("SECRET")) {
		t.Errorf("the archive written so far holds a host file")
	}
}
