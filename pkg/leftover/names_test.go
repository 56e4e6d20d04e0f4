package leftover

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestOwnerOf: which run made a name, and whether it lives.
func TestOwnerOf(t *testing.T) {
	t.Parallel()
	f := strings.Split(Tag(), "-")
	dead := strconv.Itoa(1<<22 + 12347)
	for _, tc := range []struct {
		name  string
		ok    bool
		pid   int
		rest  string
		alive bool
	}{
		{Name("p-", "abc-1"), true, os.Getpid(), "abc-1", true},
		{"p-" + f[0] + "-" + dead + "-5-h-0", true, 1<<22 + 12347, "h-0", false},
		{"p-ffffffffffff-" + f[1] + "-" + f[2] + "-x", true, os.Getpid(), "x", false}, // another boot
		{"p-0123abcd-1", false, 0, "", false},                                         // an older fireops
		{"q-" + Tag() + "-x", false, 0, "", false},                                    // another prefix
	} {
		o, ok := OwnerOf(tc.name, "p-")
		if ok != tc.ok || o.PID != tc.pid || o.Rest != tc.rest || o.Alive != tc.alive {
			t.Errorf("OwnerOf(%q) = %+v, %v; want pid %d, rest %q, alive %v, %v", tc.name, o, ok, tc.pid, tc.rest, tc.alive, tc.ok)
		}
	}
	if h := Host(); len(h) != 8 || !isHex(h) || Host() != h {
		t.Errorf("Host() = %q", h)
	}
}

// TestTempFile: the file has no name in its folder, on both paths; the
// fallback's name (while it exists) carries the run's tag, so that Clean
// finds one a killed run left.
func TestTempFile(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		noTmpfile = fallback
		dir := t.TempDir()
		f, err := TempFile(dir, ".fireops-x-")
		if err != nil {
			t.Fatalf("fallback %v: %v", fallback, err)
		}
		if _, err := f.WriteString("ciphertext"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if b, err := io.ReadAll(f); err != nil || string(b) != "ciphertext" {
			t.Errorf("fallback %v: read back %q, %v", fallback, b, err)
		}
		fi, err := f.Stat()
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("fallback %v: mode %v, %v", fallback, fi.Mode(), err)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("fallback %v: the temp file has a name: %v", fallback, ents[0].Name())
		}
		f.Close()
	}
	noTmpfile = false

	// What the fallback leaves when killed between create and unlink.
	dir := t.TempDir()
	left := filepath.Join(dir, ".fireops-x-"+strings.Split(Tag(), "-")[0]+"-"+strconv.Itoa(1<<22+12348)+"-5-123")
	if err := os.WriteFile(left, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(Pattern(".fireops-x-"), ".fireops-x-"+Tag()+"-") {
		t.Fatalf("Pattern %q", Pattern(".fireops-x-"))
	}
	var logs bytes.Buffer
	if removed, err := Clean(dir, ".fireops-x-", slog.New(slog.NewTextHandler(&logs, nil))); err != nil || len(removed) != 1 {
		t.Errorf("Clean: %v, %v", removed, err)
	}
}
