package files

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/sparsetest"
	"github.com/firetech/fireops/internal/walktest"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/tarsafe"
)

// TestTruncatedFileFailsThePart: a file made with truncate whose holes
// pass the part's cap (16 TiB: a restore would read them as zeros for
// about 6 minutes) fails the part with an error naming it and saying to
// exclude it; excluded, the part is written.
func TestTruncatedFileFailsThePart(t *testing.T) {
	t.Parallel()
	app := filepath.Join(t.TempDir(), "app")
	walktest.WriteTree(t, app, map[string]string{"a": "mine a"})
	big := filepath.Join(app, "big")
	f, err := os.Create(big)
	must(t, err)
	must(t, f.Truncate(16<<40-4096)) // ext4's largest file
	must(t, f.Close())
	s, err := New(config.FileSource{Name: "cfg", Paths: []string{app}})
	must(t, err)
	_, err = s.WriteTar(context.Background(), &sparsetest.LimitWriter{W: io.Discard, Max: 1 << 20})
	if !errors.Is(err, tarsafe.ErrTooManyHoles) || !strings.Contains(err.Error(), big) || !strings.Contains(err.Error(), "exclude it") {
		t.Fatalf("WriteTar: %v; want an error naming %s and saying to exclude it", err, big)
	}
	s, err = New(config.FileSource{Name: "cfg", Paths: []string{app}, Exclude: []string{"big"}})
	must(t, err)
	if _, err := s.WriteTar(context.Background(), io.Discard); err != nil {
		t.Fatalf("WriteTar with big excluded: %v", err)
	}
}

// TestPartHolesCapped: the sparse entries of one part carry at most
// maxPartHoles bytes of holes: files under the cap are archived (a later
// name of one stays a hard link when the cap is nearly reached), and the
// file that would pass it fails the part. (Not parallel: maxPartHoles.)
func TestPartHolesCapped(t *testing.T) {
	const limit = 64 << 20
	maxPartHoles = limit
	t.Cleanup(func() { maxPartHoles = tarsafe.MaxSparseHoles })
	app := filepath.Join(t.TempDir(), "app")
	must(t, os.Mkdir(app, 0o755))
	data := map[int64][]byte{0: sparsetest.Pattern(4096, 1)}
	mk := func(name string, size int64) {
		sparsetest.Make(t, filepath.Join(app, name), size, data)
	}
	mk("a1", 40<<20) // archived: 40 MiB of holes
	must(t, os.Link(filepath.Join(app, "a1"), filepath.Join(app, "a2")))
	mk("c", 20<<20) // 60 MiB: archived
	s, err := New(config.FileSource{Name: "cfg", Paths: []string{app}})
	must(t, err)
	var buf bytes.Buffer
	st, err := s.WriteTar(context.Background(), &sparsetest.LimitWriter{W: &buf, Max: 1 << 20})
	must(t, err)
	if st.Details["files"] != "2" || st.Details["hardlinks"] != "1" {
		t.Errorf("details %v", st.Details)
	}
	var holes int64
	for _, h := range walktest.Headers(t, buf.Bytes()) {
		if tarsafe.IsSparse(h) {
			holes += h.Size - 4096
		}
	}
	if holes != 60<<20-2*4096 {
		t.Errorf("the sparse entries hold %d bytes of holes, want %d", holes, 60<<20-2*4096)
	}

	mk("z", 10<<20) // 70 MiB: fails the part
	_, err = s.WriteTar(context.Background(), &sparsetest.LimitWriter{W: io.Discard, Max: 1 << 20})
	if b := filepath.Join(app, "z"); !errors.Is(err, tarsafe.ErrTooManyHoles) || !strings.Contains(err.Error(), b) || !strings.Contains(err.Error(), "exclude it") {
		t.Fatalf("WriteTar: %v; want an error naming %s and saying to exclude it", err, b)
	}
}
