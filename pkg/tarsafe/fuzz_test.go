package tarsafe

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FuzzCleanName: whatever an archive names an entry, a name CleanName
// accepts stays inside the target (relative, no ".." component, no NUL,
// already clean), and a refusal wraps ErrUnsafe.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"a/b", "./", ".", "a//b/./c/", "/etc/passwd", "../x", "a/../../b", "a/..", "..", "a\x00b",
		"", "//", "./../", "a/b/../c", strings.Repeat("d/", 300) + "f", "...", "..a/b..", "\\..\\x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got, err := CleanName(name)
		if err != nil {
			if !errors.Is(err, ErrUnsafe) {
				t.Fatalf("CleanName(%q): %v does not wrap ErrUnsafe", name, err)
			}
			return
		}
		switch {
		case got == "" || strings.HasPrefix(got, "/") || strings.IndexByte(got, 0) >= 0:
			t.Fatalf("CleanName(%q) = %q", name, got)
		case path.Clean(got) != got:
			t.Fatalf("CleanName(%q) = %q, not clean", name, got)
		}
		for _, c := range strings.Split(got, "/") {
			if c == ".." {
				t.Fatalf("CleanName(%q) = %q holds \"..\"", name, got)
			}
		}
		if j := filepath.Join("/target", got); j != "/target" && !strings.HasPrefix(j, "/target/") {
			t.Fatalf("CleanName(%q) = %q leaves the target: %s", name, got, j)
		}
	})
}

// fuzzSeeds are archives that try what a hostile volume would: escape
// through "..", an absolute name, a symlink or a hard link, replace the
// root, make devices, sparse holes and setuid files.
func fuzzSeeds(f *testing.F) [][]byte {
	mt := time.Unix(1600000000, 0)
	arch := func(hs ...*tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range hs {
			if h.ModTime.IsZero() {
				h.ModTime = mt
			}
			if err := tw.WriteHeader(h); err != nil {
				f.Fatal(err)
			}
			if h.Typeflag == tar.TypeReg && h.Size > 0 {
				tw.Write(bytes.Repeat([]byte{'x'}, int(h.Size)))
			}
		}
		tw.Close()
		return buf.Bytes()
	}
	return [][]byte{
		arch(&tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o777},
			&tar.Header{Typeflag: tar.TypeDir, Name: "d/", Mode: 0o2755},
			&tar.Header{Typeflag: tar.TypeReg, Name: "d/f", Mode: 0o4755, Size: 3},
			&tar.Header{Typeflag: tar.TypeLink, Name: "d/h", Linkname: "d/f"},
			&tar.Header{Typeflag: tar.TypeSymlink, Name: "d/s", Linkname: "../../outside"}),
		arch(&tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: ".."},
			&tar.Header{Typeflag: tar.TypeReg, Name: "l/outside/passwd", Mode: 0o644, Size: 2}),
		arch(&tar.Header{Typeflag: tar.TypeSymlink, Name: "abs", Linkname: "/"},
			&tar.Header{Typeflag: tar.TypeLink, Name: "x", Linkname: "abs/etc/passwd"}),
		arch(&tar.Header{Typeflag: tar.TypeReg, Name: "../outside/new", Mode: 0o644, Size: 1}),
		arch(&tar.Header{Typeflag: tar.TypeReg, Name: "/abs", Mode: 0o644, Size: 1}),
		arch(&tar.Header{Typeflag: tar.TypeSymlink, Name: "./", Linkname: "/"}),
		arch(&tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3, Mode: 0o666}),
		arch(&tar.Header{Typeflag: tar.TypeReg, Name: "a", Mode: 0o644, Size: 1},
			&tar.Header{Typeflag: tar.TypeDir, Name: "a/", Mode: 0o755},
			&tar.Header{Typeflag: tar.TypeReg, Name: "a/b", Mode: 0o644, Size: 1}),
		arch(&tar.Header{Typeflag: tar.TypeReg, Name: "sp", Size: 1 << 20, Mode: 0o644, Format: tar.FormatPAX,
			PAXRecords: map[string]string{"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "sp", "GNU.sparse.realsize": "1099511627776"}}),
		arch(&tar.Header{Typeflag: tar.TypeReg, Name: strings.Repeat("d/", 200) + "f", Mode: 0o644, Size: 1}),
		{},
	}
}

// FuzzExtractBytes: whatever the bytes (FuzzExtract builds archives from
// fuzzed names; this one fuzzes the archive itself, headers, PAX records
// and all), Extract into a folder never writes outside it (the folder
// beside it is untouched and nothing appears next to them), never leaves
// a setuid or setgid file, a device or a named pipe, and leaves the
// target itself private (0700).
func FuzzExtractBytes(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		base, target, outside := sandbox(t)
		if err := os.Remove(target); err != nil { // Extract creates it
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		Extract(ctx, bytes.NewReader(data), target, Options{}) // errors are fine; escapes are not
		checkOutside(t, base, outside)

		var st unix.Stat_t
		if err := unix.Lstat(target, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Mode&0o7777 != 0o700 {
			t.Fatalf("target is mode %o, want a folder 0700", st.Mode)
		}
		err := filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return err
			}
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFREG:
				if st.Mode&(unix.S_ISUID|unix.S_ISGID|unix.S_ISVTX) != 0 {
					t.Errorf("%s: file mode %o has setuid, setgid or sticky", p, st.Mode)
				}
			case unix.S_IFDIR:
				if st.Mode&unix.S_ISUID != 0 {
					t.Errorf("%s: folder mode %o has setuid", p, st.Mode)
				}
				// Let the walk (and t.TempDir's cleanup) in.
				os.Chmod(p, 0o700)
			case unix.S_IFLNK:
			default:
				t.Errorf("%s: a special file (mode %o)", p, st.Mode)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
