package tarsafe

import (
	"os"
	"path/filepath"
	"testing"
)

// TestEntrySize: a header block, plus a regular file's contents padded to
// whole 512-byte blocks.
func TestEntrySize(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		size int
		want int64
	}{{0, 512}, {1, 1024}, {512, 1024}, {513, 1536}} {
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, make([]byte, tc.size), 0o600); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := EntrySize(fi); got != tc.want {
			t.Errorf("file of %d bytes: %d, want %d", tc.size, got, tc.want)
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := EntrySize(fi); got != 512 {
		t.Errorf("folder: %d, want 512", got)
	}
}
