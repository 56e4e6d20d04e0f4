package volume

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/sparsetest"
	"github.com/firetech/fireops/internal/walktest"
	"github.com/firetech/fireops/pkg/tarsafe"
)

// sparseHoles returns the archived sparse entries of an archive by name
// and the hole bytes they declare, each entry holding dataPerFile bytes
// of data.
func sparseHoles(t *testing.T, b []byte, dataPerFile int64) (map[string]bool, int64) {
	t.Helper()
	names := map[string]bool{}
	var holes int64
	for _, h := range walktest.Headers(t, b) {
		if tarsafe.IsSparse(h) {
			names[h.Name] = true
			holes += h.Size - dataPerFile
		}
	}
	return names, holes
}

// TestTruncatedFilesRestoreQuickly: files made with truncate cost a
// snapshot nothing but a restore every hole read as zeros (16 TiB: about
// 6 minutes each). Files whose holes pass the part's cap are left out,
// logged and counted in sparse_skipped, so the archive restores at once.
// (Not parallel: maxPartHoles is lowered by another test.)
func TestTruncatedFilesRestoreQuickly(t *testing.T) {
	base := t.TempDir()
	vol := filepath.Join(base, "vol")
	walktest.WriteTree(t, vol, map[string]string{"a": "mine a"})
	const n, size = 2, 16<<40 - 4096 // ext4's largest file
	for i := range n {
		f, err := os.Create(filepath.Join(vol, fmt.Sprintf("big%d", i)))
		must(t, err)
		must(t, f.Truncate(size))
		must(t, f.Close())
	}
	var logs bytes.Buffer
	s := &Source{name: "t", excluded: map[string]bool{}, log: slog.New(slog.NewTextHandler(&logs, nil))}
	var arch bytes.Buffer
	c, err := s.writeMountpoint(context.Background(), &pinned{mode: ReadMountpoint, dir: vol, ident: "t"}, &arch)
	must(t, err)
	if c.sparseSkipped != n || c.files != 1 {
		t.Errorf("counts %+v: want the %d truncated files left out and counted", c, n)
	}
	if d := c.stats(ReadMountpoint, nil).Details; d["sparse_skipped"] != fmt.Sprint(n) {
		t.Errorf("details %v", d)
	}
	if names := walktest.Names(t, arch.Bytes()); fmt.Sprint(names) != "[./ ./a]" {
		t.Errorf("entries %v, want [./ ./a]", names)
	}
	if !strings.Contains(logs.String(), "big0") || !strings.Contains(logs.String(), "holes") {
		t.Errorf("log:\n%s", logs.String())
	}
	if t.Failed() {
		return // the archive holds the files: restoring it takes 13 minutes
	}
	// A hang guard, not a timing check.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := tarsafe.Extract(ctx, bytes.NewReader(arch.Bytes()), filepath.Join(base, "out"), tarsafe.Options{}); err != nil {
		t.Errorf("restoring the archive: %v", err)
	}
}

// TestPartHolesCapped: the sparse entries of one part carry at most
// maxPartHoles bytes of holes, whatever the files: those that would pass
// the cap are left out (with their other names), those under it are
// archived, and a later name of an archived file stays a hard link even
// when the cap is reached. (Not parallel: maxPartHoles.)
func TestPartHolesCapped(t *testing.T) {
	const limit = 64 << 20
	maxPartHoles = limit
	t.Cleanup(func() { maxPartHoles = tarsafe.MaxSparseHoles })
	dir := filepath.Join(t.TempDir(), "vol")
	must(t, os.Mkdir(dir, 0o755))
	data := map[int64][]byte{0: sparsetest.Pattern(4096, 1)}
	mk := func(name string, size int64) {
		sparsetest.Make(t, filepath.Join(dir, name), size, data)
	}
	mk("a1", 40<<20) // archived: 40 MiB of holes
	must(t, os.Link(filepath.Join(dir, "a1"), filepath.Join(dir, "a2")))
	mk("b1", 30<<20) // 70 MiB: left out, and its other name
	must(t, os.Link(filepath.Join(dir, "b1"), filepath.Join(dir, "b2")))
	mk("c", 20<<20) // 60 MiB: archived
	must(t, os.WriteFile(filepath.Join(dir, "d"), []byte("dense"), 0o644))
	var logs bytes.Buffer
	s := &Source{name: "t", excluded: map[string]bool{}, log: slog.New(slog.NewTextHandler(&logs, nil))}
	var arch bytes.Buffer
	c, err := s.writeMountpoint(context.Background(), &pinned{mode: ReadMountpoint, dir: dir, ident: "t"}, &sparsetest.LimitWriter{W: &arch, Max: 1 << 20})
	must(t, err)
	if c.sparseSkipped != 2 || c.files != 3 || c.links != 1 {
		t.Errorf("counts %+v", c)
	}
	if names := walktest.Names(t, arch.Bytes()); fmt.Sprint(names) != "[./ ./a1 ./a2 ./c ./d]" {
		t.Errorf("entries %v", names)
	}
	sparse, holes := sparseHoles(t, arch.Bytes(), 4096)
	if holes > limit || !sparse["./a1"] || !sparse["./c"] {
		t.Errorf("sparse entries %v with %d bytes of holes, want ./a1 and ./c within %d", sparse, holes, limit)
	}
	if !strings.Contains(logs.String(), "file=b1") || !strings.Contains(logs.String(), "file=b2") {
		t.Errorf("log:\n%s", logs.String())
	}
	out := filepath.Join(t.TempDir(), "out")
	_, err = tarsafe.Extract(context.Background(), bytes.NewReader(arch.Bytes()), out, tarsafe.Options{})
	must(t, err)
	sparsetest.Same(t, filepath.Join(dir, "a1"), filepath.Join(out, "a2"))
	sparsetest.Same(t, filepath.Join(dir, "c"), filepath.Join(out, "c"))
}
