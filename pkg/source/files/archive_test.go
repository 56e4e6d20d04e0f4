package files

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firetech/fireops/pkg/config"
)

// reencode reads an archive and writes every entry again through
// archive/tar's Writer (Format PAX, the headers the sources build), so
// that an archive that is what archive/tar writes comes back unchanged.
func reencode(t testing.TB, archive []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	tr := tar.NewReader(bytes.NewReader(archive))
	tw := tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		h.PAXRecords, h.Format = nil, tar.FormatPAX
		must(t, tw.WriteHeader(h))
		_, err = io.Copy(tw, tr)
		must(t, err)
	}
	must(t, tw.Close())
	return out.Bytes()
}

// TestArchiveIsArchiveTars checks that WriteTar writes, byte for byte,
// what archive/tar writes for the same headers and contents, on a tree
// with long, split and non-ASCII names, a long symlink target, hard links,
// times with and without nanoseconds and an owner the host does not know.
func TestArchiveIsArchiveTars(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	app := makeApp(t, base)
	long := filepath.Join(app, strings.Repeat("d", 60), strings.Repeat("e", 60), strings.Repeat("f/", 30))
	must(t, os.MkdirAll(long, 0o755))
	must(t, os.WriteFile(filepath.Join(long, "deep"), []byte("deep"), 0o644))
	must(t, os.WriteFile(filepath.Join(app, strings.Repeat("n", 200)), []byte("long name"), 0o644))
	must(t, os.MkdirAll(filepath.Join(app, "dé"), 0o755))
	must(t, os.WriteFile(filepath.Join(app, "dé", "ü.txt"), []byte("é"), 0o644))
	must(t, os.Symlink("/"+strings.Repeat("t", 150)+"/"+strings.Repeat("u", 120), filepath.Join(app, "far")))
	must(t, os.WriteFile(filepath.Join(app, "whole"), []byte("w"), 0o644))
	setTime(t, filepath.Join(app, "whole"), 1700000000_000000000)
	if os.Geteuid() == 0 {
		must(t, os.Lchown(filepath.Join(app, "whole"), 54321, 54321))
	}
	s, err := New(config.FileSource{Name: "cfg", Paths: []string{app}, Exclude: []string{"*.swp", "cache/*.tmp"}})
	must(t, err)
	got, err := writeTar(t, s)
	must(t, err)
	if want := reencode(t, got); !bytes.Equal(got, want) {
		t.Fatalf("the archive (%d bytes) is not archive/tar's (%d bytes)", len(got), len(want))
	}
}
