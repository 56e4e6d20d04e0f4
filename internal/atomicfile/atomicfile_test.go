package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretsNeverOverwriteARace (moved from pkg/deploy): Create refuses
// to replace a file that appeared meanwhile and leaves no temp file.
func TestSecretsNeverOverwriteARace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "s")
	if err := Create(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Create(p, []byte("two"), 0o600)
	if err == nil {
		t.Fatal("createFile replaced an existing file")
	}
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("error %v is not fs.ErrExist", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "one" {
		t.Fatalf("content %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temp files left behind: %v", entries)
	}
}

// TestWrite: the target gets the content and exactly the mode asked for
// (0666 shows that the umask does not apply), replacing an older file;
// during the write the only other file is a dot temp file in the same
// folder that does not end in the target's extension; a failed write
// leaves the old file and no temp file.
func TestWrite(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		old     string // "" for no file before
		mode    os.FileMode
		content string
		fail    bool
		want    string
	}{
		{name: "create 0600", mode: 0o600, content: "secret\n", want: "secret\n"},
		{name: "replace 0644", old: "old\n", mode: 0o644, content: "new\n", want: "new\n"},
		{name: "0666 ignores the umask", mode: 0o666, content: "x", want: "x"},
		{name: "empty", old: "old", mode: 0o600, want: ""},
		{name: "failed write keeps the old file", old: "old\n", mode: 0o644, content: "half", fail: true, want: "old\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			p := filepath.Join(dir, "x.prom")
			if tc.old != "" {
				if err := os.WriteFile(p, []byte(tc.old), 0o640); err != nil {
					t.Fatal(err)
				}
			}
			err := Write(p, tc.mode, func(w io.Writer) error {
				entries, err := os.ReadDir(dir)
				if err != nil {
					return err
				}
				for _, e := range entries {
					if e.Name() == "x.prom" {
						continue
					}
					if !strings.HasPrefix(e.Name(), ".x.prom.tmp") || strings.HasSuffix(e.Name(), ".prom") {
						t.Errorf("temp file %q", e.Name())
					}
				}
				if _, err := io.WriteString(w, tc.content); err != nil {
					return err
				}
				if tc.fail {
					return errors.New("boom")
				}
				return nil
			})
			if tc.fail != (err != nil) {
				t.Fatalf("err %v, want failure %v", err, tc.fail)
			}
			b, rerr := os.ReadFile(p)
			if rerr != nil || string(b) != tc.want {
				t.Fatalf("content %q (%v), want %q", b, rerr, tc.want)
			}
			if fi, err := os.Stat(p); err != nil {
				t.Fatal(err)
			} else if want := tc.mode; !tc.fail && fi.Mode().Perm() != want {
				t.Errorf("mode %v, want %v", fi.Mode().Perm(), want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("temp files left behind: %v", entries)
			}
		})
	}
}

// TestWriteFileNoFolder: a missing folder is an error naming the path,
// and nothing is created.
func TestWriteFileNoFolder(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "missing", "f")
	err := WriteFile(p, []byte("x"), 0o600)
	if err == nil || !strings.Contains(err.Error(), filepath.Dir(p)) {
		t.Fatalf("err %v", err)
	}
}
