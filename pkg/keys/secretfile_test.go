package keys

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/firetech/fireops/internal/testenv"
)

// TestOpenSecretFile: a secret file is refused, with the fix as the hint,
// when its type, mode or owner is wrong; a private one is opened and read.
func TestOpenSecretFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		msg, hint  string // "" msg: accepted
		notExist   bool
	}{
		{name: "private", path: write("ok", 0o600)},
		{name: "read-only", path: write("ro", 0o400)},
		{name: "group readable", path: write("g", 0o640), msg: "holds a secret but is readable by group or others (mode 0640)", hint: "run: chmod 600 "},
		{name: "world readable", path: write("w", 0o604), msg: "(mode 0604)", hint: "run: chmod 600 "},
		{name: "missing", path: filepath.Join(dir, "nope"), msg: "does not exist", notExist: true},
		{name: "folder", path: dir, msg: "is not a regular file", hint: "point it at a regular file"},
		// A named pipe would block an open without O_NONBLOCK.
		{name: "named pipe", path: fifo, msg: "is not a regular file", hint: "point it at a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := OpenSecretFile(tc.path)
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				defer f.Close()
				if b, err := io.ReadAll(f); err != nil || string(b) != "secret\n" {
					t.Fatalf("read %q, %v", b, err)
				}
				return
			}
			if err == nil {
				f.Close()
				t.Fatal("accepted")
			}
			var se *SecretFileError
			if !errors.As(err, &se) || !strings.Contains(se.Msg, tc.path) || !strings.Contains(se.Msg, tc.msg) || !strings.HasPrefix(se.Hint, tc.hint) {
				t.Fatalf("error %v (hint %q), want %q with hint %q", err, se.Hint, tc.msg, tc.hint)
			}
			if errors.Is(err, fs.ErrNotExist) != tc.notExist {
				t.Errorf("errors.Is(err, fs.ErrNotExist) = %v", !tc.notExist)
			}
			if CheckSecretFile(tc.path) == nil {
				t.Error("CheckSecretFile accepted it")
			}
		})
	}
}

// TestOpenSecretFileOwner: a private file owned by another user (nobody)
// is refused, naming its owner, with a chown as the hint.
func TestOpenSecretFileOwner(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	p := filepath.Join(t.TempDir(), "identity.txt")
	if err := os.WriteFile(p, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := OpenSecretFile(p)
	var se *SecretFileError
	if !errors.As(err, &se) || !strings.Contains(se.Msg, "owned by uid 65534, neither root nor the running user (uid 0)") || se.Hint != "run: chown 0 "+p+" (root or the user running fireops)" {
		t.Fatalf("OpenSecretFile = %v", err)
	}
	// Root's own files are fine.
	if err := os.Chown(p, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := CheckSecretFile(p); err != nil {
		t.Fatal(err)
	}
}
