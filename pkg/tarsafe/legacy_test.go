package tarsafe

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestExtractLegacyRegular: an entry with the pre-POSIX type flag NUL
// (archive/tar's deprecated TypeRegA) is a regular file, or a folder when
// its name ends in a slash, as tar.Reader reports it: Extract writes both.
func TestExtractLegacyRegular(t *testing.T) {
	body := []byte("legacy contents\n")
	var b []byte
	b = append(b, ustarBlock("d/f", 0, int64(len(body)))...)
	b = append(b, pad(body)...)
	b = append(b, ustarBlock("e/", 0, 0)...)
	b = append(b, make([]byte, 1024)...)
	dir := t.TempDir()
	st, err := Extract(context.Background(), bytes.NewReader(b), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "d", "f"))
	if err != nil || !bytes.Equal(got, body) {
		t.Errorf("d/f: %q, %v; want %q", got, err, body)
	}
	if fi, err := os.Stat(filepath.Join(dir, "e")); err != nil || !fi.IsDir() {
		t.Errorf("e: %v, %v; want a folder", fi, err)
	}
	if st.Files != 1 {
		t.Errorf("stats %+v, want 1 file", st)
	}
}
