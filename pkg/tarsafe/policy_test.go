package tarsafe

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckerAgreesWithExtract: the Checker refuses what Extract refuses,
// with the same sentinel, and accepts what Extract writes: the one entry
// policy, whether the entries are written here or handed to the Docker
// Engine.
func TestCheckerAgreesWithExtract(t *testing.T) {
	t.Parallel()
	fifo := ent{typ: tar.TypeFifo, name: "p", mode: 0o644}
	for _, tc := range []struct {
		name string
		ents []ent
		want error // nil: accepted
		msg  string
	}{
		{"plain tree", []ent{dir("d/"), reg("d/f", "x"), sym("d/l", "f"), hard("d/h", "d/f")}, nil, ""},
		{"dot dot", []ent{reg("../x", "x")}, ErrUnsafe, `contains ".."`},
		{"absolute", []ent{reg("/etc/x", "x")}, ErrUnsafe, "is absolute"},
		{"named pipe", []ent{fifo}, ErrUnsupported, "devices and named pipes are not restored"},
		{"below a symlink", []ent{sym("l", "/etc"), reg("l/passwd", "x")}, ErrUnsafe, `"l/passwd" lies below the symbolic link "l"`},
		{"below a symlink, deeper", []ent{dir("a/"), sym("a/l", "/"), reg("a/l/b/c", "x")}, ErrUnsafe, "lies below the symbolic link"},
		{"symlink replaced by a folder", []ent{sym("l", "/etc"), dir("l/"), reg("l/x", "x")}, nil, ""},
		{"hard link below a symlink", []ent{sym("l", "/etc"), hard("h", "l/passwd")}, ErrUnsafe, "hard link target"},
		{"hard link to a symlink", []ent{sym("l", "/etc/passwd"), hard("h", "l")}, ErrUnsafe, "is a symbolic link, not a regular file"},
		{"hard link to the root", []ent{hard("h", ".")}, ErrUnsafe, "hard link to the target folder"},
		{"a file as the root", []ent{reg(".", "x")}, ErrUnsafe, "cannot replace the target folder"},
		{"a symlink as the root", []ent{sym(".", "/")}, ErrUnsafe, "cannot replace the target folder"},
		{"empty symlink target", []ent{sym("l", "")}, nil, "symbolic link with an empty target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			arch := build(t, tc.ents...)
			var cerr error
			tr := tar.NewReader(bytes.NewReader(arch))
			c := NewChecker(Options{})
			for cerr == nil {
				hdr, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				_, cerr = c.Check(hdr)
			}
			_, xerr := Extract(context.Background(), bytes.NewReader(arch), filepath.Join(t.TempDir(), "t"), Options{})
			for _, e := range []struct {
				who string
				err error
			}{{"Checker", cerr}, {"Extract", xerr}} {
				if (e.err == nil) != (tc.msg == "") {
					t.Errorf("%s: %v, want refusal %q", e.who, e.err, tc.msg)
					continue
				}
				if e.err == nil {
					continue
				}
				if tc.want != nil && !errors.Is(e.err, tc.want) {
					t.Errorf("%s: %v, want it to wrap %v", e.who, e.err, tc.want)
				}
				if e.who == "Checker" && !strings.Contains(e.err.Error(), tc.msg) {
					t.Errorf("%s: %v, want %q", e.who, e.err, tc.msg)
				}
			}
		})
	}
}

// TestCheckHeaderModeAndSkip: the mode bits Extract never applies are
// taken out, and Map and SkipSpecial skip entries.
func TestCheckHeaderModeAndSkip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		hdr  tar.Header
		opts Options
		want Header
	}{
		{"setuid file", tar.Header{Typeflag: tar.TypeReg, Name: "bin/su", Mode: 0o4755}, Options{}, Header{Name: "bin/su", Mode: 0o755}},
		{"sticky setgid file", tar.Header{Typeflag: tar.TypeReg, Name: "f", Mode: 0o3644}, Options{}, Header{Name: "f", Mode: 0o644}},
		{"setgid sticky folder kept", tar.Header{Typeflag: tar.TypeDir, Name: "d/", Mode: 0o3775}, Options{}, Header{Name: "d", Mode: 0o3775}},
		{"setuid folder", tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o4755}, Options{}, Header{Name: ".", Mode: 0o755}},
		{"symlink mode as is", tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: "x", Mode: 0o777}, Options{}, Header{Name: "l", Mode: 0o777}},
		{"hard link target cleaned", tar.Header{Typeflag: tar.TypeLink, Name: "./h", Linkname: "./a//b"}, Options{}, Header{Name: "h", Link: "a/b"}},
		{"special skipped", tar.Header{Typeflag: tar.TypeChar, Name: "dev/null"}, Options{SkipSpecial: true}, Header{Name: "dev/null", Skip: true}},
		{"mapped", tar.Header{Typeflag: tar.TypeReg, Name: "opt/x/f", Mode: 0o600}, Options{Map: func(n string) (string, bool) {
			r, ok := strings.CutPrefix(n, "opt/")
			return r, ok
		}}, Header{Name: "x/f", Mode: 0o600}},
		{"map skips", tar.Header{Typeflag: tar.TypeReg, Name: "etc/f"}, Options{Map: func(string) (string, bool) { return "", false }}, Header{Skip: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := CheckHeader(&tc.hdr, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("CheckHeader = %+v, want %+v", got, tc.want)
			}
		})
	}
}
