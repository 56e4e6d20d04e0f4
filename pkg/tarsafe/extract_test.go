package tarsafe

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/internal/walktest"
)

// ent is one entry of an archive built by a test.
type ent struct {
	typ  byte
	name string
	link string
	body string
	mode int64
}

func reg(name, body string) ent { return ent{typ: tar.TypeReg, name: name, body: body, mode: 0o644} }
func dir(name string) ent       { return ent{typ: tar.TypeDir, name: name, mode: 0o755} }
func sym(name, to string) ent   { return ent{typ: tar.TypeSymlink, name: name, link: to, mode: 0o777} }
func hard(name, to string) ent  { return ent{typ: tar.TypeLink, name: name, link: to} }

func build(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		hdr := &tar.Header{Typeflag: e.typ, Name: e.name, Linkname: e.link, Mode: e.mode, Size: int64(len(e.body)), ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Size > 0 {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sandbox makes base/target (empty) and base/outside (holding "passwd")
// and returns their paths.
func sandbox(t testing.TB) (base, target, outside string) {
	t.Helper()
	base = t.TempDir()
	target = filepath.Join(base, "target")
	outside = filepath.Join(base, "outside")
	for _, d := range []string{target, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "passwd"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	return base, target, outside
}

// checkOutside fails when anything but target and outside exists in base,
// or outside holds anything but the untouched passwd.
func checkOutside(t testing.TB, base, outside string) {
	t.Helper()
	names, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if n.Name() != "target" && n.Name() != "outside" {
			t.Errorf("extraction escaped: %s created in the parent", n.Name())
		}
	}
	names, err = os.ReadDir(outside)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0].Name() != "passwd" {
		t.Errorf("extraction escaped: outside holds %v", names)
	}
	b, err := os.ReadFile(filepath.Join(outside, "passwd"))
	if err != nil || string(b) != "secret" {
		t.Errorf("outside/passwd changed: %q, %v", b, err)
	}
	fi, err := os.Stat(filepath.Join(outside, "passwd"))
	if err == nil && fi.Sys().(*syscall.Stat_t).Nlink != 1 {
		t.Errorf("outside/passwd gained a hard link")
	}
}

func TestExtractRefusesMalicious(t *testing.T) {
	t.Parallel()
	const out = "@OUT@" // replaced by the outside folder's absolute path
	tests := []struct {
		name string
		ents []ent
		pre  func(t *testing.T, target, outside string) // prepare the target
		want error
	}{
		{name: "dotdot", ents: []ent{reg("../x", "x")}, want: ErrUnsafe},
		{name: "dotdot outside", ents: []ent{reg("../outside/passwd", "pwned")}, want: ErrUnsafe},
		{name: "absolute", ents: []ent{reg(out+"/x", "x")}, want: ErrUnsafe},
		{name: "absolute etc", ents: []ent{reg("/etc/x", "x")}, want: ErrUnsafe},
		{name: "inner dotdot", ents: []ent{reg("a/../../x", "x")}, want: ErrUnsafe},
		{name: "dot dotdot", ents: []ent{reg("./../x", "x")}, want: ErrUnsafe},
		{name: "dotdot dir", ents: []ent{dir("../d/")}, want: ErrUnsafe},
		{name: "symlink then file", ents: []ent{sym("l", out), reg("l/file", "x")}, want: ErrUnsafe},
		{name: "symlink then file /tmp style", ents: []ent{sym("l", "/tmp"), reg("l/file", "x")}, want: ErrUnsafe},
		{name: "symlink then deep file", ents: []ent{sym("l", out), reg("l/a/b/file", "x")}, want: ErrUnsafe},
		{name: "symlink then dir", ents: []ent{sym("l", out), dir("l/sub/")}, want: ErrUnsafe},
		{name: "symlink then symlink", ents: []ent{sym("l", out), sym("l/s", "/etc")}, want: ErrUnsafe},
		{name: "symlink then hardlink through it", ents: []ent{sym("l", out), hard("x", "l/passwd")}, want: ErrUnsafe},
		{name: "symlink then hardlink into it", ents: []ent{reg("f", "x"), sym("l", out), hard("l/x", "f")}, want: ErrUnsafe},
		{name: "relative symlink up", ents: []ent{sym("l", ".."), reg("l/outside/x", "x")}, want: ErrUnsafe},
		{name: "symlink inside still refused", ents: []ent{dir("d/"), sym("l", "d"), reg("l/x", "x")}, want: ErrUnsafe},
		{name: "dir replaced by symlink", ents: []ent{dir("d/"), sym("d", out), reg("d/x", "x")}, want: ErrUnsafe},
		{name: "hardlink dotdot", ents: []ent{hard("x", "../outside/passwd")}, want: ErrUnsafe},
		{name: "hardlink absolute", ents: []ent{hard("x", out+"/passwd")}, want: ErrUnsafe},
		{name: "hardlink not extracted", ents: []ent{hard("x", "nothere")}, want: ErrUnsafe},
		{name: "hardlink to symlink", ents: []ent{sym("l", out+"/passwd"), hard("x", "l")}, want: ErrUnsafe},
		{name: "hardlink to dir", ents: []ent{dir("d/"), hard("x", "d")}, want: ErrUnsafe},
		{name: "file as root", ents: []ent{reg(".", "x")}, want: ErrUnsafe},
		{name: "empty name", ents: []ent{{typ: tar.TypeReg, name: "", mode: 0o644}}, want: ErrUnsafe},
		{name: "fifo", ents: []ent{{typ: tar.TypeFifo, name: "p", mode: 0o644}}, want: ErrUnsupported},
		{name: "char device", ents: []ent{{typ: tar.TypeChar, name: "null", mode: 0o666}}, want: ErrUnsupported},
		{
			name: "symlink already in target",
			ents: []ent{reg("pre/x", "x")},
			pre: func(t *testing.T, target, outside string) {
				if err := os.Symlink(outside, filepath.Join(target, "pre")); err != nil {
					t.Fatal(err)
				}
			},
			want: ErrUnsafe,
		},
		{
			name: "symlink already in target, deep",
			ents: []ent{dir("a/"), reg("a/pre/b/x", "x")},
			pre: func(t *testing.T, target, outside string) {
				if err := os.Mkdir(filepath.Join(target, "a"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(outside, filepath.Join(target, "a", "pre")); err != nil {
					t.Fatal(err)
				}
			},
			want: ErrUnsafe,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base, target, outside := sandbox(t)
			if tc.pre != nil {
				tc.pre(t, target, outside)
			}
			ents := append([]ent(nil), tc.ents...)
			for i := range ents {
				ents[i].name = strings.ReplaceAll(ents[i].name, out, outside)
				ents[i].link = strings.ReplaceAll(ents[i].link, out, outside)
			}
			_, err := Extract(context.Background(), bytes.NewReader(build(t, ents...)), target, Options{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Extract: got %v, want %v", err, tc.want)
			}
			t.Logf("refused: %v", err)
			checkOutside(t, base, outside)
		})
	}
}

func TestExtractReplacesSymlinkAtEntry(t *testing.T) {
	t.Parallel()
	// A symlink at the entry's own name is replaced, never written through.
	base, target, outside := sandbox(t)
	if err := os.Symlink(filepath.Join(outside, "passwd"), filepath.Join(target, "f")); err != nil {
		t.Fatal(err)
	}
	st, err := Extract(context.Background(), bytes.NewReader(build(t, reg("f", "new"))), target, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 1 {
		t.Errorf("stats %+v", st)
	}
	checkOutside(t, base, outside)
	b, err := os.ReadFile(filepath.Join(target, "f"))
	if err != nil || string(b) != "new" {
		t.Errorf("f = %q, %v", b, err)
	}
}

func TestExtractSkipSpecialAndMap(t *testing.T) {
	t.Parallel()
	_, target, _ := sandbox(t)
	arch := build(t,
		dir("keep/"), reg("keep/a", "a"), ent{typ: tar.TypeFifo, name: "keep/p", mode: 0o644},
		dir("drop/"), reg("drop/b", "b"), hard("keep/h", "keep/a"))
	st, err := Extract(context.Background(), bytes.NewReader(arch), target, Options{
		SkipSpecial: true,
		Map: func(name string) (string, bool) {
			rest, ok := strings.CutPrefix(name, "keep/")
			if name == "keep" {
				return "new", true
			}
			return "new/" + rest, ok
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 6 || st.Skipped != 3 || st.Files != 1 || st.Links != 1 || st.Dirs != 1 {
		t.Errorf("stats %+v", st)
	}
	if b, err := os.ReadFile(filepath.Join(target, "new", "h")); err != nil || string(b) != "a" {
		t.Errorf("new/h = %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(target, "drop")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("drop extracted: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(target, "new", "p")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("fifo extracted: %v", err)
	}
}

func TestExtractDrainsAndCancels(t *testing.T) {
	t.Parallel()
	_, target, _ := sandbox(t)
	arch := append(build(t, reg("a", "a")), make([]byte, 9216)...) // GNU tar record padding
	r := bytes.NewReader(arch)
	if _, err := Extract(context.Background(), r, target, Options{}); err != nil {
		t.Fatal(err)
	}
	if r.Len() != 0 {
		t.Errorf("%d bytes left unread", r.Len())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Extract(ctx, bytes.NewReader(arch), filepath.Join(target, "x"), Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Extract: %v", err)
	}
	// Truncated archive: an error, not a short file.
	if _, err := Extract(context.Background(), bytes.NewReader(build(t, reg("big", strings.Repeat("x", 5000)))[:3000]), filepath.Join(target, "y"), Options{}); err == nil {
		t.Errorf("truncated archive extracted without error")
	}
}

// meta is what a round trip must keep for one path.
type meta struct {
	mode         fs.FileMode
	uid, gid     uint32
	size         int64
	mtime, atime int64
	link, body   string
	ino          uint64
}

// snapshotTree records every path below root (relative), with hard links
// shown as the index of the first path sharing the inode.
func snapshotTree(t testing.TB, root string, withAtime bool) map[string]meta {
	t.Helper()
	out := map[string]meta{}
	for rel, e := range walktest.Tree(t, root) {
		if rel == "." {
			continue
		}
		m := meta{mode: e.Mode, uid: e.Uid, gid: e.Gid, mtime: e.Mtime.UnixNano(), link: e.Link, ino: uint64(e.LinkID)}
		if withAtime && e.Mode&fs.ModeSymlink == 0 {
			m.atime = e.Atime
		}
		if e.Mode.IsRegular() {
			m.body, m.size = e.Body, e.Size
		}
		out[rel] = m
	}
	return out
}

// writeTree archives root with HeaderBuilder, names relative to root.
func writeTree(t testing.TB, root string, w io.Writer) {
	t.Helper()
	tw := tar.NewWriter(w)
	hb := NewHeaderBuilder()
	var paths []string
	if err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != root {
			paths = append(paths, p)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	for _, p := range paths {
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		hdr, err := hb.Header(filepath.ToSlash(rel), fi, link)
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(tw, f); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// makeTree builds a tree with every supported kind of entry and metadata.
func makeTree(t testing.TB, root string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "a", "b"), 0o755))
	must(os.Mkdir(filepath.Join(root, "empty"), 0o750))
	must(os.Mkdir(filepath.Join(root, "ro"), 0o755))
	must(os.WriteFile(filepath.Join(root, "a", "b", "data.bin"), bytes.Repeat([]byte{1, 2, 3}, 300000), 0o640))
	must(os.WriteFile(filepath.Join(root, "a", "exec.sh"), []byte("#!/bin/sh\n"), 0o755))
	must(os.WriteFile(filepath.Join(root, "a", "secret"), []byte("s"), 0o600))
	must(os.WriteFile(filepath.Join(root, "a", "empty-file"), nil, 0o644))
	must(os.WriteFile(filepath.Join(root, "ro", "inside"), []byte("ro"), 0o444))
	must(os.WriteFile(filepath.Join(root, "setuid"), []byte("su"), 0o644))
	must(os.Chmod(filepath.Join(root, "setuid"), 0o4755))
	must(os.Link(filepath.Join(root, "a", "secret"), filepath.Join(root, "hard-secret")))
	must(os.Symlink("a/exec.sh", filepath.Join(root, "rel-link")))
	must(os.Symlink("/etc/passwd", filepath.Join(root, "abs-link")))
	must(os.Symlink("nowhere", filepath.Join(root, "a", "dangling")))
	if os.Geteuid() == 0 {
		must(os.Lchown(filepath.Join(root, "a", "secret"), 1000, 1000))
		must(os.Lchown(filepath.Join(root, "a", "b"), 1001, 1002))
		must(os.Lchown(filepath.Join(root, "rel-link"), 1000, 1000))
	}
	// Times with nanoseconds, folders last so their contents don't move them.
	var paths []string
	must(filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if p != root {
			paths = append(paths, p)
		}
		return err
	}))
	sort.Sort(sort.Reverse(sort.StringSlice(paths)))
	for i, p := range paths {
		mt := time.Unix(1600000000+int64(i)*3600, int64(i)*1234567+89)
		if err := lutimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chmod(filepath.Join(root, "ro"), 0o555))
}

func lutimes(p string, at, mt time.Time) error {
	ts := []syscall.Timespec{syscall.NsecToTimespec(at.UnixNano()), syscall.NsecToTimespec(mt.UnixNano())}
	return utimesNoFollow(p, ts)
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	src := filepath.Join(base, "src")
	makeTree(t, src)
	var arch bytes.Buffer
	writeTree(t, src, &arch)
	want := snapshotTree(t, src, false)

	dst := filepath.Join(base, "dst")
	st, err := Extract(context.Background(), bytes.NewReader(arch.Bytes()), dst, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != int64(len(want)) || st.Links != 1 || st.Symlinks != 3 || st.Dirs != 4 {
		t.Errorf("stats %+v for %d paths", st, len(want))
	}
	compareTrees(t, want, snapshotTree(t, dst, false))
	if os.Geteuid() == 0 {
		fi, _ := os.Lstat(filepath.Join(dst, "a", "secret"))
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1000 || st.Gid != 1000 {
			t.Errorf("a/secret owner %d:%d, want 1000:1000", st.Uid, st.Gid)
		}
	} else {
		t.Log("not root: owners not checked")
	}

	// GNU tar reads the same archive and extracts the same tree: the
	// format is plain tar.
	tarBin := testenv.RequireTool(t, "tar")
	gnu := filepath.Join(base, "gnu")
	if err := os.Mkdir(gnu, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tarBin, "-x", "-p", "--numeric-owner", "-C", gnu)
	cmd.Stdin = bytes.NewReader(arch.Bytes())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v\n%s", err, out)
	}
	compareTrees(t, want, snapshotTree(t, gnu, false))
}

func TestRoundTripAtime(t *testing.T) {
	t.Parallel()
	at := time.Unix(1500000000, 123456789)
	mt := time.Unix(1600000000, 987654321)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "d/", Mode: 0o700, ModTime: mt, AccessTime: at, Format: tar.FormatPAX},
		{Typeflag: tar.TypeReg, Name: "d/f", Mode: 0o600, ModTime: mt, AccessTime: at, Format: tar.FormatPAX},
		{Typeflag: tar.TypeDir, Name: "./", Mode: 0o750, ModTime: mt, AccessTime: at, Format: tar.FormatPAX},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	dst := filepath.Join(t.TempDir(), "dst")
	st, err := Extract(context.Background(), &buf, dst, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !st.Root {
		t.Errorf("root entry not reported")
	}
	// The root's metadata is the caller's to apply, at its commit.
	if err := ApplyRoot(dst, st); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dst, filepath.Join(dst, "d"), filepath.Join(dst, "d", "f")} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		s := fi.Sys().(*syscall.Stat_t)
		if s.Atim.Nano() != at.UnixNano() || s.Mtim.Nano() != mt.UnixNano() {
			t.Errorf("%s: atime %d mtime %d", p, s.Atim.Nano(), s.Mtim.Nano())
		}
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o750 {
		t.Errorf("root mode %v", fi.Mode())
	}
}

func compareTrees(t testing.TB, want, got map[string]meta) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: missing", p)
			continue
		}
		if g != w {
			t.Errorf("%s:\n got  %+v\n want %+v", p, trunc(g), trunc(w))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: unexpected", p)
		}
	}
}

func trunc(m meta) meta {
	if len(m.body) > 20 {
		m.body = m.body[:20] + "..."
	}
	return m
}

// FuzzExtract builds a two-entry archive from fuzzed names (a link, then a
// file) and checks that nothing is ever written outside the target.
func FuzzExtract(f *testing.F) {
	f.Add("l", "/tmp", "l/file", uint8(0))
	f.Add("l", "..", "l/outside/x", uint8(0))
	f.Add("l", "@OUT@", "l/passwd", uint8(0))
	f.Add("x", "@OUT@/passwd", "y", uint8(1))
	f.Add("x", "../outside/passwd", "x", uint8(1))
	f.Add("a/b", "../..", "a/b/outside/z", uint8(0))
	f.Add("./l", ".", "l/../../x", uint8(0))
	f.Add("d", "", "d/e", uint8(2))
	f.Fuzz(func(t *testing.T, name1, link, name2 string, kind uint8) {
		base, target, outside := sandbox(t)
		link = strings.ReplaceAll(link, "@OUT@", outside)
		first := sym(name1, link)
		switch kind % 3 {
		case 1:
			first = hard(name1, link)
		case 2:
			first = dir(name1)
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range []ent{first, reg(name2, "pwned")} {
			if err := tw.WriteHeader(&tar.Header{Typeflag: e.typ, Name: e.name, Linkname: e.link, Mode: 0o644, Size: int64(len(e.body)), Format: tar.FormatPAX}); err != nil {
				return // not representable
			}
			io.WriteString(tw, e.body)
		}
		if tw.Close() != nil {
			return
		}
		Extract(context.Background(), &buf, target, Options{})
		checkOutside(t, base, outside)
	})
}
