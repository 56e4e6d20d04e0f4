package tarsafe

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestEntryWriterPolicies: a file removed between its listing and its
// open fails a WalkStrict writer naming it and is left out by a
// WalkTolerant one; what is written is counted.
func TestEntryWriterPolicies(t *testing.T) {
	for _, policy := range []WalkPolicy{WalkStrict, WalkTolerant} {
		dir := t.TempDir()
		for name, data := range map[string]string{"a": "hello", "gone": "x"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "b")); err != nil {
			t.Fatal(err)
		}
		entry := func(name string) WalkEntry {
			p := filepath.Join(dir, name)
			fi, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			return WalkEntry{Path: p, Rel: name, Dir: unix.AT_FDCWD, Base: p, Info: fi}
		}
		var buf bytes.Buffer
		w := &EntryWriter{Policy: policy, Prefix: "test:x", Writer: NewWriter(&buf), Headers: NewHeaderBuilder(), MaxHoles: MaxSparseHoles}
		for _, name := range []string{".", "a", "b"} {
			if _, err := w.Write(context.Background(), entry(name), name); err != nil {
				t.Fatal(err)
			}
		}
		gone := entry("gone")
		if err := os.Remove(gone.Path); err != nil {
			t.Fatal(err)
		}
		r, err := w.Write(context.Background(), gone, "gone")
		if policy == WalkStrict {
			if err == nil || !strings.Contains(err.Error(), "test:x: "+gone.Path+" vanished during the walk") {
				t.Errorf("strict: %v, want vanished during the walk", err)
			}
		} else if err != nil || r.Skip != SkipVanished {
			t.Errorf("tolerant: %+v, %v, want SkipVanished", r, err)
		}
		if err := w.Writer.Close(); err != nil {
			t.Fatal(err)
		}
		got := map[string]byte{}
		tr := tar.NewReader(&buf)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got[hdr.Name] = hdr.Typeflag
		}
		want := map[string]byte{"./": tar.TypeDir, "a": tar.TypeReg, "b": tar.TypeLink}
		if !maps.Equal(got, want) {
			t.Errorf("policy %d: entries %v, want %v", policy, got, want)
		}
		if w.Entries != 3 || w.Dirs != 1 || w.Files != 1 || w.Links != 1 || w.Symlinks != 0 || w.Bytes != 5 {
			t.Errorf("policy %d: counts %d entries, %d dirs, %d files, %d links, %d symlinks, %d bytes; want 3, 1, 1, 1, 0, 5",
				policy, w.Entries, w.Dirs, w.Files, w.Links, w.Symlinks, w.Bytes)
		}
	}
}
