package files

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/firetech/fireops/pkg/config"
)

// TestSize: the size the fingerprint's walk measures, and the one Size
// measures without it, is the archive's within its headers' extended
// records (at most one extra block pair an entry), and grows with the
// contents.
func TestSize(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	data := filepath.Join(base, "data")
	for i, size := range []int{0, 1, 511, 512, 513, 100 << 10, 3 << 20} {
		dir := filepath.Join(data, "d", string(rune('a'+i%3)))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, string(rune('f'+i))), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a", filepath.Join(data, "link")); err != nil {
		t.Fatal(err)
	}
	s, err := New(config.FileSource{Name: "t", Paths: []string{data}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	walked, err := s.Size(ctx) // no fingerprint yet: a walk of its own
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fingerprint(ctx); err != nil {
		t.Fatal(err)
	}
	measured, err := s.Size(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var cw countingWriter
	st, err := s.WriteTar(ctx, io.Writer(&cw))
	if err != nil {
		t.Fatal(err)
	}
	if walked != measured {
		t.Fatalf("Size before the fingerprint %d, after %d", walked, measured)
	}
	if measured > cw.n || cw.n-measured > 1024*st.Entries {
		t.Fatalf("Size %d, archive %d bytes of %d entries", measured, cw.n, st.Entries)
	}
	if measured < 3<<20 {
		t.Fatalf("Size %d leaves out the contents", measured)
	}
}
