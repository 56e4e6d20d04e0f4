package fingerprint

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestAppendEntryChangesWithMetadata(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	line := func() string {
		t.Helper()
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := AppendEntry(nil, "f", fi, "")
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	base := line()
	if line() != base {
		t.Fatal("the same entry gave two lines")
	}
	changes := []struct {
		name string
		do   func() error
	}{
		{"mode", func() error { return os.Chmod(p, 0o600) }},
		{"content, same size, mtime put back", func() error {
			fi, _ := os.Lstat(p)
			if err := os.WriteFile(p, []byte("xyz"), 0o600); err != nil {
				return err
			}
			return os.Chtimes(p, fi.ModTime(), fi.ModTime())
		}},
		{"mtime", func() error { return os.Chtimes(p, time.Unix(1, 0), time.Unix(1, 0)) }},
		{"hard link", func() error { return os.Link(p, filepath.Join(dir, "g")) }},
	}
	prev := base
	for _, c := range changes {
		if err := c.do(); err != nil {
			t.Fatal(err)
		}
		if got := line(); got == prev {
			t.Errorf("%s: line unchanged", c.name)
		} else {
			prev = got
		}
	}
}
