package volume

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/internal/walktest"
	"github.com/firetech/fireops/pkg/exitcode"
)

// safeDepth is the longest path of a folder in a volume (bytes, relative
// to the root) whose names the Engine's archive always holds: "/v/", the
// folder, "/" and a 255-byte name make 4,095 bytes, one under PATH_MAX.
const safeDepth = 3836

// folderOfLen returns the names of nested folders whose slash-separated
// path is n bytes long, none over 200 bytes.
func folderOfLen(n int) []string {
	k := (n + 1 + 200) / 201
	total := n - (k - 1)
	names := make([]string, k)
	for i := range names {
		size := total / k
		if i < total%k {
			size++
		}
		names[i] = fmt.Sprintf("%c", 'a'+i%26) + strings.Repeat("d", size-1)
	}
	return names
}

// makeFolder creates the nested folders names below dir through
// descriptors (the host path may pass PATH_MAX) and in the deepest one the
// files (content: the name's length); it returns the folder's path
// relative to dir.
func makeFolder(t testing.TB, dir string, names []string, files ...string) string {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(t, err)
	for _, n := range names {
		if err := unix.Mkdirat(fd, n, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Close(fd)
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		must(t, err)
		fd = next
	}
	defer unix.Close(fd)
	for _, f := range files {
		w, err := unix.Openat(fd, f, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
		must(t, err)
		_, err = unix.Write(w, []byte(fmt.Sprint(len(f))))
		unix.Close(w)
		must(t, err)
	}
	return strings.Join(names, "/")
}

// TestAPILongPaths archives the same tree through both read paths. The
// Engine's archiver leaves out every path of PATH_MAX bytes or more, with
// no error; the api path must then give the mountpoint path's entries or
// fail naming the folder, never a shorter archive.
func TestAPILongPaths(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	cli := engine(t)
	long := strings.Repeat("x", 255)
	tests := []struct {
		name    string
		make    func(t *testing.T, mp string) string // builds the tree, returns the folder named by the error
		exclude []string
		wantErr bool
	}{
		{"deepest safe folder", func(t *testing.T, mp string) string {
			return makeFolder(t, mp, folderOfLen(safeDepth), long, "leaf")
		}, nil, false},
		{"one byte deeper", func(t *testing.T, mp string) string {
			return makeFolder(t, mp, folderOfLen(safeDepth+1), long, "leaf")
		}, nil, true},
		{"12 KiB path", func(t *testing.T, mp string) string {
			rel := walktest.DeepChain(t, mp, 300, func(i int) string { return fmt.Sprintf("%03d-%s", i, strings.Repeat("n", 36)) }, "deep")
			parts := strings.Split(rel, "/")
			for k := range parts { // the first folder of the chain past safeDepth
				if f := strings.Join(parts[:k+1], "/"); len(f) > safeDepth {
					return f
				}
			}
			return rel
		}, nil, true},
		{"12 KiB path in a left-out folder", func(t *testing.T, mp string) string {
			walktest.DeepChain(t, mp, 300, func(i int) string { return fmt.Sprintf("%03d-%s", i, strings.Repeat("n", 36)) }, "deep")
			return ""
		}, []string{"000-" + strings.Repeat("n", 36)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name, mp := newVolume(t, cli, "apilong")
			walktest.WriteTree(t, mp, map[string]string{"a": "first", "z": "last", "m/": "", "m/f": "mid"})
			folder := tc.make(t, mp)
			read := func(mode string) ([]string, error) {
				s, err := NewSource(name, Options{Read: mode, Exclude: tc.exclude})
				must(t, err)
				var buf bytes.Buffer
				st, err := s.WriteTar(context.Background(), &buf)
				must(t, s.Close())
				noLeftovers(t, cli, name)
				if err != nil {
					return nil, err
				}
				names := walktest.Names(t, buf.Bytes())
				if st.Entries != int64(len(names)) {
					t.Errorf("%s: %d entries counted, %d in the archive", mode, st.Entries, len(names))
				}
				return names, nil
			}
			want, err := read(ReadMountpoint)
			must(t, err)
			deepest := 0
			for _, n := range want {
				deepest = max(deepest, enginePathLen(strings.TrimSuffix(strings.TrimPrefix(n, "./"), "/")))
			}
			if lost := deepest >= enginePathMax; lost != tc.wantErr {
				t.Fatalf("the tree's longest Engine path is %d bytes: the case is wrong", deepest)
			}
			got, err := read(ReadAPI)
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("api: %v", err)
				}
				if !slices.Equal(got, want) {
					t.Errorf("api: %d entries, mountpoint %d; first difference: %s", len(got), len(want), firstDiff(got, want))
				}
				return
			}
			if err == nil {
				t.Fatalf("api: %d entries and no error; mountpoint %d entries; first missing: %s", len(got), len(want), firstDiff(got, want))
			}
			msg := err.Error()
			if !errors.Is(err, errTooDeep) || !strings.Contains(msg, "./"+shortName(folder)+" ("+fmt.Sprint(len(folder))+" bytes)") {
				t.Errorf("api error does not name the folder ./%s (%d bytes): %v", shortName(folder), len(folder), err)
			}
			if h := exitcode.Hint(err); !strings.Contains(h, "read: auto or mountpoint") {
				t.Errorf("hint %q", h)
			}
		})
	}
}

// firstDiff describes the first entry where two name lists differ.
func firstDiff(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("api %q, mountpoint %q", shortName(got[i]), shortName(want[i]))
		}
	}
	if len(got) < len(want) {
		return fmt.Sprintf("mountpoint's %q", shortName(want[len(got)]))
	}
	if len(got) > len(want) {
		return fmt.Sprintf("api's %q", shortName(got[len(want)]))
	}
	return "none"
}

// engineStream writes an archive as the Engine writes one of helperMount:
// entries named "v/...", folders with a trailing slash; a name ending in
// "/" is a folder, others are files holding "x". With end false it stops
// without the end-of-archive marker.
func engineStream(t *testing.T, names []string, end bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		h := &tar.Header{Name: "v/" + n, Mode: 0o755, Typeflag: tar.TypeDir, Format: tar.FormatPAX}
		if n == "." {
			h.Name = "v/"
		} else if !strings.HasSuffix(n, "/") {
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o644, 1
		}
		must(t, tw.WriteHeader(h))
		if h.Size > 0 {
			_, err := tw.Write([]byte("x"))
			must(t, err)
		}
	}
	if end {
		must(t, tw.Close())
	} else {
		must(t, tw.Flush())
	}
	return buf.Bytes()
}

// TestRewriteEngine: the re-encoding of the Engine's archive refuses a
// stream that misses what the Engine could not read (the root, a cut
// stream) or may have left out (a folder whose names could pass
// PATH_MAX), and keeps the rest.
func TestRewriteEngine(t *testing.T) {
	t.Parallel()
	safe := strings.Join(folderOfLen(safeDepth), "/")
	deep := strings.Join(folderOfLen(safeDepth+1), "/")
	top := strings.SplitN(deep, "/", 2)[0]
	tests := []struct {
		name    string
		entries []string
		end     bool
		exclude []string
		want    []string // the names written, or nil for an error
		errHas  string
		cut     int // keep only this many bytes of the stream, when > 0
	}{
		{"volume", []string{".", "a", "d/", "d/f"}, true, nil, []string{"./", "./a", "./d/", "./d/f"}, "", 0},
		{"deepest safe folder", []string{".", safe + "/", safe + "/f"}, true, nil, []string{"./", "./" + safe + "/", "./" + safe + "/f"}, "", 0},
		{"folder one byte deeper", []string{".", "a", deep + "/", "z"}, true, nil, nil,
			fmt.Sprintf("folder ./%s (%d bytes) is too deep", shortName(deep), len(deep)), 0},
		{"empty folder one byte deeper", []string{".", deep + "/"}, true, nil, nil, "too deep", 0},
		{"deep folder left out", []string{".", "a", top + "/", deep + "/", deep + "/f", "z"}, true, []string{top},
			[]string{"./", "./a", "./z"}, "", 0},
		{"no root folder", []string{"a", "z"}, true, nil, nil, `starts with "v/a", not the volume's root folder`, 0},
		{"nothing at all", nil, true, nil, nil, "no entry for the volume's root folder", 0},
		{"cut short", []string{".", "a"}, false, nil, nil, "without tar's end-of-archive marker", 0},
		{"cut inside a file", []string{".", "a"}, false, nil, nil, "./a: it broke off after 0 of 1 bytes: the Engine failed", 1024},
		{"cut inside a header", []string{".", "a"}, false, nil, nil, "broke off inside an entry's header: the Engine failed", 600},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := NewSource("t", Options{Read: ReadAPI, Exclude: tc.exclude})
			must(t, err)
			s.log = slog.New(slog.DiscardHandler)
			t.Cleanup(func() { s.Close() })
			var out bytes.Buffer
			in := engineStream(t, tc.entries, tc.end)
			if tc.cut > 0 {
				in = in[:tc.cut]
			}
			c, err := s.rewriteEngine(context.Background(), bytes.NewReader(in), &out, "")
			if tc.want == nil {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err = %v, want one holding %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := walktest.Names(t, out.Bytes()); !slices.Equal(got, tc.want) || c.entries != int64(len(tc.want)) {
				t.Errorf("names %q (%d counted), want %q", got, c.entries, tc.want)
			}
		})
	}
}

// TestTooDeepHint: the hint says why the mountpoint path was not used.
func TestTooDeepHint(t *testing.T) {
	t.Parallel()
	s := &Source{name: "t"}
	err := s.tooDeep(strings.Repeat("é", 2000), "fireops does not run as root")
	if h := exitcode.Hint(err); !strings.Contains(h, "now it cannot be used: fireops does not run as root") {
		t.Errorf("hint %q", h)
	}
	if msg := err.Error(); !strings.Contains(msg, "é…é") || !strings.Contains(msg, "(4000 bytes)") || strings.Count(msg, "é") != 100 {
		t.Errorf("message %q", msg)
	}
}
