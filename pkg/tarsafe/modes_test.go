package tarsafe

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// modeArchive returns a tar of hdrs; regular files get a one-byte body.
func modeArchive(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeReg {
			h.Size = 1
		}
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte{'x'})
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawMode is the file's mode as stat(2) gives it (permission, setuid,
// setgid, sticky bits).
func rawMode(t *testing.T, p string) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Mode & 0o7777
}

// TestExtractDropsSetID: no file gets a setuid, setgid or sticky bit from
// an archive (a setuid-root program from a hub user's volume would give
// root to whoever runs it); folders keep setgid and sticky, not setuid.
func TestExtractDropsSetID(t *testing.T) {
	t.Parallel()
	mt := time.Unix(1600000000, 0)
	arch := modeArchive(t,
		&tar.Header{Typeflag: tar.TypeDir, Name: "shared/", Mode: 0o2775, ModTime: mt},
		&tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777, ModTime: mt},
		&tar.Header{Typeflag: tar.TypeDir, Name: "odd/", Mode: 0o4755, ModTime: mt},
		&tar.Header{Typeflag: tar.TypeReg, Name: "suid-root", Mode: 0o4755, ModTime: mt},
		&tar.Header{Typeflag: tar.TypeReg, Name: "sgid", Mode: 0o2755, ModTime: mt},
		&tar.Header{Typeflag: tar.TypeReg, Name: "sticky", Mode: 0o1644, ModTime: mt},
		&tar.Header{Typeflag: tar.TypeReg, Name: "shared/plain", Mode: 0o640, ModTime: mt},
	)
	dst := filepath.Join(t.TempDir(), "staging")
	st, err := Extract(context.Background(), bytes.NewReader(arch), dst, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint32{
		"shared": 0o2775, "tmp": 0o1777, "odd": 0o755,
		"suid-root": 0o755, "sgid": 0o755, "sticky": 0o644, "shared/plain": 0o640,
	}
	for name, w := range want {
		if got := rawMode(t, filepath.Join(dst, name)); got != w {
			t.Errorf("%s: mode %04o, want %04o", name, got, w)
		}
	}
	if st.SetIDDropped != 3 {
		t.Errorf("SetIDDropped = %d, want 3", st.SetIDDropped)
	}
}

// TestExtractRootStaysPrivate: whatever the archive's "./" entry says,
// the target folder stays 0700 through Extract; ApplyRoot, at commit,
// gives it the entry's mode (setuid dropped), owner and times.
func TestExtractRootStaysPrivate(t *testing.T) {
	t.Parallel()
	mt := time.Unix(1600000000, 123456789)
	arch := modeArchive(t,
		&tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o4777, Uid: 1000, Gid: 1000, ModTime: mt},
		&tar.Header{Typeflag: tar.TypeReg, Name: "secret", Mode: 0o644, ModTime: mt},
	)
	dst := filepath.Join(t.TempDir(), "staging")
	st, err := Extract(context.Background(), bytes.NewReader(arch), dst, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := rawMode(t, dst); got != 0o700 {
		t.Fatalf("staging root after Extract: mode %04o, want 0700", got)
	}
	if !st.Root || st.RootMeta.Mode.Perm() != 0o777 || st.RootMeta.UID != 1000 || !st.RootMeta.Mtime.Equal(mt) {
		t.Fatalf("Root %v, RootMeta %+v", st.Root, st.RootMeta)
	}
	if err := ApplyRoot(dst, st); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if got := rawMode(t, dst); got != 0o777 {
		t.Errorf("root after ApplyRoot: mode %04o, want 0777", got)
	}
	if !fi.ModTime().Equal(mt) {
		t.Errorf("root mtime %v, want %v", fi.ModTime(), mt)
	}
	if os.Geteuid() == 0 {
		if s := fi.Sys().(*syscall.Stat_t); s.Uid != 1000 || s.Gid != 1000 {
			t.Errorf("root owner %d:%d, want 1000:1000", s.Uid, s.Gid)
		}
	}

	// An archive without "./": nothing to apply.
	other := filepath.Join(t.TempDir(), "other")
	st, err = Extract(context.Background(), bytes.NewReader(modeArchive(t, &tar.Header{Typeflag: tar.TypeReg, Name: "f", Mode: 0o644})), other, Options{})
	if err != nil || st.Root {
		t.Fatalf("Extract: %v, Root %v", err, st.Root)
	}
	if err := ApplyRoot(other, st); err != nil || rawMode(t, other) != 0o700 {
		t.Errorf("ApplyRoot without a root entry: %v, mode %04o", err, rawMode(t, other))
	}

	// A symlink where the staging folder was is refused.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dst, link); err != nil {
		t.Fatal(err)
	}
	if err := ApplyRoot(link, Stats{Root: true, RootMeta: Meta{Mode: 0o755}}); err == nil || rawMode(t, dst) != 0o777 {
		t.Errorf("ApplyRoot through a symlink: %v; the folder's mode is %04o", err, rawMode(t, dst))
	}
}
