package volume

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/internal/walktest"
	"github.com/firetech/fireops/pkg/tarsafe"
)

// readMountpoint archives dir as a volume's host folder through the
// mountpoint path.
func readMountpoint(t *testing.T, dir string) ([]byte, counts, error) {
	t.Helper()
	s := &Source{name: "t", excluded: map[string]bool{}, log: slog.New(slog.DiscardHandler)}
	var buf bytes.Buffer
	c, err := s.writeMountpoint(context.Background(), &pinned{mode: ReadMountpoint, dir: dir, ident: "t"}, &buf)
	return buf.Bytes(), c, err
}

// readAfterSwap archives vol as readMountpoint does, ends the test when
// that fails or when the swap hook did not run (did not set *swapped),
// and returns the archive's entries, checked to hold nothing of the host
// folder (walktest.NoSecret), and the counts.
func readAfterSwap(t *testing.T, vol string, swapped *bool) (map[string]string, counts) {
	t.Helper()
	b, c, err := readMountpoint(t, vol)
	if err != nil {
		t.Fatal(err)
	}
	if !*swapped {
		t.Fatal("the hook did not run")
	}
	got := walktest.Entries(t, b)
	walktest.NoSecret(t, got)
	return got, c
}

// setHook sets a test hook for the rest of the test.
func setHook(t *testing.T, hook *func(string), fn func(string)) {
	t.Helper()
	*hook = fn
	t.Cleanup(func() { *hook = nil })
}

// TestMountpointSymlinkSwapDuringRead: a user swaps folder D of their
// volume for a symlink to a host folder while a large file in D is being
// read. The rest of D is read through the folder the walk opened, never
// through the symlink: the archive holds D's own files and nothing of the
// host folder. (Not parallel: test hooks.)
func TestMountpointSymlinkSwapDuringRead(t *testing.T) {
	base := t.TempDir()
	vol, host := filepath.Join(base, "vol"), filepath.Join(base, "host")
	walktest.WriteTree(t, vol, map[string]string{"D/": "", "D/big": strings.Repeat("b", 4<<20), "D/sub/": "", "D/sub/own": "mine too", "D/z": "mine"})
	walktest.HostSecrets(t, host)
	big := filepath.Join(vol, "D", "big")
	swapped := false
	setHook(t, &testHookAfterFile, func(p string) {
		if p != big || swapped {
			return
		}
		swapped = true
		if err := os.Rename(filepath.Join(vol, "D"), filepath.Join(vol, "D.old")); err != nil {
			t.Error(err)
		}
		if err := os.Symlink(host, filepath.Join(vol, "D")); err != nil {
			t.Error(err)
		}
	})
	got, _ := readAfterSwap(t, vol, &swapped)
	if got["./D/z"] != "mine" || got["./D/sub/own"] != "mine too" {
		t.Errorf("D's own files after the swap: z %q, sub/own %q", got["./D/z"], got["./D/sub/own"])
	}
}

// TestMountpointReplacedBetweenListingAndOpen: a name whose file or folder
// is replaced between the listing and the open (another inode: renamed
// over, a host folder moved in, a symlink) is left out and counted as
// vanished, never archived; a volume root replaced the same way fails the
// read. (Not parallel: test hooks.)
func TestMountpointReplacedBetweenListingAndOpen(t *testing.T) {
	tests := []struct {
		name    string
		target  string // path below the volume the swap waits for ("" = the root)
		swap    func(t *testing.T, vol, target, host string)
		wantErr bool
	}{
		{"file renamed over", "f", func(t *testing.T, vol, target, host string) {
			must(t, os.WriteFile(filepath.Join(vol, "new"), []byte("SECRET new"), 0o644))
			must(t, os.Rename(filepath.Join(vol, "new"), target))
		}, false},
		{"file hard-linked to a host file", "f", func(t *testing.T, vol, target, host string) {
			must(t, os.Remove(target))
			must(t, os.Link(filepath.Join(host, "secret"), target))
		}, false},
		{"file swapped for a symlink", "f", func(t *testing.T, vol, target, host string) {
			must(t, os.Remove(target))
			must(t, os.Symlink(filepath.Join(host, "secret"), target))
		}, false},
		{"folder swapped for a host folder", "D", func(t *testing.T, vol, target, host string) {
			must(t, os.Rename(target, filepath.Join(vol, "..", "D.gone")))
			must(t, os.Rename(host, target))
		}, false},
		{"folder swapped for a symlink", "D", func(t *testing.T, vol, target, host string) {
			must(t, os.Rename(target, filepath.Join(vol, "..", "D.gone")))
			must(t, os.Symlink(host, target))
		}, false},
		{"root swapped for a host folder", "", func(t *testing.T, vol, target, host string) {
			must(t, os.Rename(vol, vol+".gone"))
			must(t, os.Rename(host, vol))
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			vol, host := filepath.Join(base, "vol"), filepath.Join(base, "host")
			walktest.WriteTree(t, vol, map[string]string{"a": "mine a", "D/": "", "D/d": "mine d", "f": "mine f"})
			walktest.HostSecrets(t, host)
			target := filepath.Join(vol, tc.target)
			if tc.target == "" {
				target = vol
			}
			done := false
			setHook(t, &testHookBeforeOpen, func(p string) {
				if p == target && !done {
					done = true
					tc.swap(t, vol, target, host)
				}
			})
			b, c, err := readMountpoint(t, vol)
			if !done {
				t.Fatal("the hook did not run")
			}
			if tc.wantErr {
				if err == nil {
					t.Fatalf("read succeeded (%d entries)", c.entries)
				}
				t.Logf("error: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := walktest.Entries(t, b)
			walktest.NoSecret(t, got)
			name := "./" + tc.target
			if _, ok := got[name]; ok {
				t.Errorf("%s is in the archive", name)
			}
			if _, ok := got[name+"/"]; ok {
				t.Errorf("%s/ is in the archive", name)
			}
			if c.vanished != 1 {
				t.Errorf("vanished = %d, want 1", c.vanished)
			}
			if got["./a"] != "mine a" {
				t.Errorf("./a = %q", got["./a"])
			}
		})
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestMountpointLongPaths: a volume holding a path far over PATH_MAX
// (300 levels of 40-byte names, 12 KiB) archives, with its other files,
// and the archive restores through tarsafe.Extract.
func TestMountpointLongPaths(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	vol := filepath.Join(base, "vol")
	walktest.WriteTree(t, vol, map[string]string{"a": "first", "z": "last"})
	rel := walktest.DeepChain(t, vol, 300, func(i int) string { return fmt.Sprintf("%03d-%s", i, strings.Repeat("n", 36)) }, "deep")
	if len(vol)+len(rel) < 3*unix.PathMax {
		t.Fatalf("path of %d bytes only", len(vol)+len(rel))
	}
	b, c, err := readMountpoint(t, vol)
	if err != nil {
		t.Fatal(err)
	}
	got := walktest.Entries(t, b)
	if got["./"+rel+"/leaf"] != "deep" || got["./a"] != "first" || got["./z"] != "last" {
		t.Errorf("archive: leaf %q, a %q, z %q", got["./"+rel+"/leaf"], got["./a"], got["./z"])
	}
	if c.dirs != 301 || c.files != 3 || c.vanished != 0 {
		t.Errorf("counts %+v", c)
	}
	out := filepath.Join(base, "out")
	if _, err := tarsafe.Extract(context.Background(), bytes.NewReader(b), out, tarsafe.Options{}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if leaf := walktest.ReadDeep(t, out, rel+"/leaf"); leaf != "deep" {
		t.Errorf("restored leaf %q", leaf)
	}
	if a := walktest.ReadDeep(t, out, "a"); a != "first" {
		t.Errorf("restored a %q", a)
	}
}

// lowerNoFile sets the soft RLIMIT_NOFILE to n for the rest of the test.
func lowerNoFile(t *testing.T, n uint64) {
	t.Helper()
	var old syscall.Rlimit
	must(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old))
	lim := old
	lim.Cur = n
	must(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
	t.Cleanup(func() { must(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)) })
}

// TestMountpointDeepFewDescriptors: a volume 2,000 folders deep archives
// with RLIMIT_NOFILE at 200: the walk holds a bounded number of folder
// descriptors, not one per level. (Not parallel: the limit is the
// process's.)
func TestMountpointDeepFewDescriptors(t *testing.T) {
	base := t.TempDir()
	vol := filepath.Join(base, "vol")
	walktest.WriteTree(t, vol, map[string]string{"a": "first", "z": "last"})
	rel := walktest.DeepChain(t, vol, 2000, func(int) string { return "d" }, "deep")
	lowerNoFile(t, 200)
	b, c, err := readMountpoint(t, vol)
	if err != nil {
		t.Fatal(err)
	}
	got := walktest.Entries(t, b)
	if got["./"+rel+"/leaf"] != "deep" || got["./a"] != "first" || got["./z"] != "last" {
		t.Errorf("archive: leaf %q, a %q, z %q", got["./"+rel+"/leaf"], got["./a"], got["./z"])
	}
	if c.dirs != 2001 {
		t.Errorf("counts %+v", c)
	}
}

// TestMountpointNameTooLong: an entry whose name is longer than an archive
// can hold for a restore (tarsafe.MaxNameLen; lowered here) is left out,
// with everything below it, counted and logged; the rest of the volume
// archives. (Not parallel: maxNameLen.)
func TestMountpointNameTooLong(t *testing.T) {
	maxNameLen = 2000
	t.Cleanup(func() { maxNameLen = tarsafe.MaxNameLen })
	base := t.TempDir()
	vol := filepath.Join(base, "vol")
	walktest.WriteTree(t, vol, map[string]string{"a": "first", "z": "last"})
	rel := walktest.DeepChain(t, vol, 30, func(i int) string { return fmt.Sprintf("%02d-%s", i, strings.Repeat("n", 97)) }, "deep")
	b, c, err := readMountpoint(t, vol)
	if err != nil {
		t.Fatal(err)
	}
	got := walktest.Entries(t, b)
	if got["./a"] != "first" || got["./z"] != "last" {
		t.Errorf("archive: a %q, z %q", got["./a"], got["./z"])
	}
	longest := ""
	for name := range got {
		if len(name) > maxNameLen {
			t.Errorf("a name of %d bytes is in the archive", len(name))
		}
		if len(name) > len(longest) {
			longest = name
		}
	}
	if !strings.HasPrefix(rel, strings.TrimSuffix(strings.TrimPrefix(longest, "./"), "/")) || len(longest) < maxNameLen-100 {
		t.Errorf("longest name kept: %d bytes", len(longest))
	}
	if c.special != 1 {
		t.Errorf("counts %+v, want the too-long folder counted in special", c)
	}
}

// TestMountpointDeepFolderMovedDuringWalk: deep in a volume, a folder
// whose descriptor the walk closed (it holds a bounded number) is swapped
// for a host folder moved in while a file far below it is read. Going
// back up, the walk reopens it by name, sees it is not the folder it
// listed, and leaves the rest of it out (vanished): nothing of the host
// folder is archived, and the rest of the volume is. (Not parallel: test
// hooks.)
func TestMountpointDeepFolderMovedDuringWalk(t *testing.T) {
	base := t.TempDir()
	vol, host := filepath.Join(base, "vol"), filepath.Join(base, "host")
	walktest.WriteTree(t, vol, map[string]string{"a": "first", "z": "last"})
	walktest.HostSecrets(t, host)
	rel := walktest.DeepChain(t, vol, 300, func(int) string { return "c" }, "deep")
	fifth := filepath.Join(vol, "c/c/c/c/c")
	must(t, os.WriteFile(filepath.Join(fifth, "z"), []byte("mine"), 0o644)) // read after the chain below
	leaf, swapped := filepath.Join(vol, rel, "leaf"), false
	setHook(t, &testHookAfterFile, func(p string) {
		if p == leaf && !swapped {
			swapped = true
			must(t, os.Rename(fifth, filepath.Join(base, "moved")))
			must(t, os.Rename(host, fifth))
		}
	})
	got, c := readAfterSwap(t, vol, &swapped)
	if got["./"+rel+"/leaf"] != "deep" || got["./z"] != "last" {
		t.Errorf("archive: leaf %q, z %q", got["./"+rel+"/leaf"], got["./z"])
	}
	if c.vanished == 0 {
		t.Errorf("counts %+v: nothing counted as vanished", c)
	}
}

// TestLongPathVolume: a Docker volume holding a path far over PATH_MAX
// (12 KiB) snapshots through the mountpoint path (WriteTar completes, the
// deep file is in the archive with the others) and restores through the
// volume's Restorer.
func TestLongPathVolume(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	cli := engine(t)
	name, mp := newVolume(t, cli, "long")
	walktest.WriteTree(t, mp, map[string]string{"a": "first", "z": "last"})
	rel := walktest.DeepChain(t, mp, 300, func(i int) string { return fmt.Sprintf("%03d-%s", i, strings.Repeat("n", 36)) }, "deep")
	s, err := NewSource(name, Options{Read: ReadMountpoint})
	must(t, err)
	if _, err := s.Fingerprint(context.Background()); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	st, err := s.WriteTar(context.Background(), &buf)
	must(t, err)
	must(t, s.Close())
	got := walktest.Entries(t, buf.Bytes())
	if got["./"+rel+"/leaf"] != "deep" || got["./a"] != "first" || got["./z"] != "last" || st.Entries != 304 {
		t.Errorf("archive: leaf %q, a %q, z %q, %d entries", got["./"+rel+"/leaf"], got["./a"], got["./z"], st.Entries)
	}
	removeTestVolume(t, cli, name)
	rs, err := NewRestorer(name, RestoreOptions{Write: ReadMountpoint})
	must(t, err)
	staged, err := rs.Stage(context.Background(), bytes.NewReader(buf.Bytes()))
	must(t, err)
	must(t, staged.Commit(context.Background()))
	v, err := cli.VolumeInspect(context.Background(), name)
	must(t, err)
	if leaf := walktest.ReadDeep(t, v.Mountpoint, rel+"/leaf"); leaf != "deep" {
		t.Errorf("restored leaf %q", leaf)
	}
}
