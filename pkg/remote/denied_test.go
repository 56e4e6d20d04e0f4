package remote

import (
	"context"
	"errors"
	"fmt"
	"github.com/firetech/fireops/internal/testenv"
	"io"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rclone/rclone/fs/fserrors"
)

// TestDeniedNotRetryable: local permission and read-only errors, wrapped
// the way rclone's local backend and operations wrap them, are never
// retried and name the path and the running user; others still are.
func TestDeniedNotRetryable(t *testing.T) {
	ctx := context.Background()
	// b exists; x and new/ under it do not: the hint names the folder
	// where the write was refused, the nearest one that exists.
	b := filepath.Join(t.TempDir(), "b")
	if err := os.Mkdir(b, 0o755); err != nil {
		t.Fatal(err)
	}
	x := filepath.Join(b, "x")
	for _, c := range []struct {
		name          string
		err           error
		path, refused string
		errno         syscall.Errno
	}{
		{"open EACCES", fmt.Errorf("failed to open for update: %w", &iofs.PathError{Op: "open", Path: x, Err: syscall.EACCES}), x, b, syscall.EACCES},
		{"mkdir EPERM", fmt.Errorf("create root directory: %w", fmt.Errorf("failed to make directory: %w", &iofs.PathError{Op: "mkdir", Path: b, Err: syscall.EPERM})), b, b, syscall.EPERM},
		{"mkdir EPERM below", &iofs.PathError{Op: "mkdir", Path: filepath.Join(b, "new", "vm"), Err: syscall.EPERM}, filepath.Join(b, "new", "vm"), b, syscall.EPERM},
		{"rename EROFS", fserrors.RetryError(&os.LinkError{Op: "rename", Old: filepath.Join(b, ".x.partial"), New: x, Err: syscall.EROFS}), x, b, syscall.EROFS},
		{"bare errno", fmt.Errorf("write: %w", syscall.EACCES), "o/0", "", syscall.EACCES},
	} {
		de := deniedError(c.err, "o/0")
		if de == nil {
			t.Errorf("%s: not classified as denied", c.name)
			continue
		}
		if retryable(ctx, c.err) {
			t.Errorf("%s: retryable", c.name)
		}
		if de.Path != c.path || de.Refused != c.refused || de.Errno != c.errno {
			t.Errorf("%s: path %q refused %q errno %v, want %q %q %v", c.name, de.Path, de.Refused, de.Errno, c.path, c.refused, c.errno)
		}
		named := c.refused
		if named == "" {
			named = c.path
		}
		if !strings.Contains(de.Error(), fmt.Sprintf("uid %d", os.Getuid())) || !strings.Contains(de.Hint(), named+" ") {
			t.Errorf("%s: message %q hint %q: want the uid and %s", c.name, de.Error(), de.Hint(), named)
		}
	}
	for _, err := range []error{io.ErrUnexpectedEOF, syscall.ECONNRESET, fmt.Errorf("put: %w", syscall.ENOSPC)} {
		if deniedError(err, "") != nil {
			t.Errorf("%v: classified as denied", err)
		}
	}
	if !retryable(ctx, syscall.ECONNRESET) {
		t.Error("ECONNRESET: not retryable")
	}
}

// TestDeniedFailsAtOnce: a local destination rclone cannot write fails in
// well under a second with the default backoff (one second, doubling, five
// retries: ~30 s if it were retried), naming the path and the user.
// Root ignores mode bits, so the folder is made immutable (chattr +i,
// EPERM) or bind-mounted read-only (EROFS), whichever this machine allows.
func TestDeniedFailsAtOnce(t *testing.T) {
	hows := []string{"chattr", "ro-mount"}
	if os.Geteuid() != 0 {
		hows = append(hows, "chmod") // root ignores mode bits
	}
	for _, how := range hows {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			root := filepath.Join(dir, "dest")
			if err := os.MkdirAll(filepath.Join(root, "snapshots"), 0o755); err != nil {
				t.Fatal(err)
			}
			ro := root
			switch how {
			case "chattr":
				if out, err := exec.Command("chattr", "+i", filepath.Join(root, "snapshots")).CombinedOutput(); err != nil {
					testenv.Unavailable(t, "chattr +i", fmt.Errorf("%v: %s", err, out))
					return
				}
				t.Cleanup(func() { _ = exec.Command("chattr", "-i", filepath.Join(root, "snapshots")).Run() })
			case "ro-mount":
				ro = filepath.Join(dir, "ro")
				if err := os.Mkdir(ro, 0o755); err != nil {
					t.Fatal(err)
				}
				if out, err := exec.Command("mount", "--bind", "-o", "ro", root, ro).CombinedOutput(); err != nil {
					testenv.Unavailable(t, "a read-only bind mount (root)", fmt.Errorf("%v: %s", err, out))
					return
				}
				t.Cleanup(func() { _ = exec.Command("umount", ro).Run() })
			case "chmod":
				if err := os.Chmod(filepath.Join(root, "snapshots"), 0o555); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = os.Chmod(filepath.Join(root, "snapshots"), 0o755) })
			}
			ctx := context.Background()
			start := time.Now()
			r, err := Open(ctx, Options{Name: "local", Remote: ro}) // default retries and backoff
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer func() { _ = r.Close(ctx) }()
			err = r.Put(ctx, "snapshots/s1/manifest.json", []byte(`{"v":1}`))
			took := time.Since(start)
			if err == nil {
				t.Fatal("Put into a folder that cannot be written succeeded")
			}
			if took > time.Second {
				t.Errorf("failed after %v, want under a second (retried?)", took)
			}
			var de *DeniedError
			if !errors.As(err, &de) {
				t.Fatalf("error is no *DeniedError: %v", err)
			}
			msg := err.Error()
			for _, want := range []string{`destination "local"`, ro, fmt.Sprintf("uid %d", os.Getuid()), "not retried"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not say %q", msg, want)
				}
			}
			if !strings.HasPrefix(de.Path, ro) || !strings.Contains(de.Hint(), "point the destination elsewhere") {
				t.Errorf("path %q hint %q", de.Path, de.Hint())
			}
			if n := r.Stats().Retries; n != 0 {
				t.Errorf("%d retries, want 0", n)
			}
			t.Logf("%v; hint: %s", err, de.Hint())
		})
	}
}

// TestDeniedHintNamesRefusedFolder: a local destination inside an
// immutable (chattr +i, EPERM) or read-only bind-mounted (EROFS) folder
// fails to open at once, and the hint names that folder, where mkdir was
// refused, not the destination's own folder, which does not exist.
func TestDeniedHintNamesRefusedFolder(t *testing.T) {
	for _, how := range []string{"chattr", "ro-mount"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			locked := filepath.Join(dir, "locked")
			if err := os.Mkdir(locked, 0o755); err != nil {
				t.Fatal(err)
			}
			switch how {
			case "chattr":
				if out, err := exec.Command("chattr", "+i", locked).CombinedOutput(); err != nil {
					testenv.Unavailable(t, "chattr +i", fmt.Errorf("%v: %s", err, out))
					return
				}
				t.Cleanup(func() {
					if out, err := exec.Command("chattr", "-i", locked).CombinedOutput(); err != nil {
						t.Errorf("chattr -i %s: %v: %s", locked, err, out)
					}
				})
			case "ro-mount":
				if out, err := exec.Command("mount", "--bind", "-o", "ro", locked, locked).CombinedOutput(); err != nil {
					testenv.Unavailable(t, "a read-only bind mount (root)", fmt.Errorf("%v: %s", err, out))
					return
				}
				t.Cleanup(func() {
					if out, err := exec.Command("umount", locked).CombinedOutput(); err != nil {
						t.Errorf("umount %s: %v: %s", locked, err, out)
					}
				})
			}
			dest := filepath.Join(locked, "vm")
			start := time.Now()
			r, err := Open(context.Background(), Options{Name: "local", Remote: dest})
			if err == nil {
				_ = r.Close(context.Background())
				t.Fatal("opened a destination inside a folder that cannot be written")
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("failed after %v, want under a second (retried?)", took)
			}
			var de *DeniedError
			if !errors.As(err, &de) {
				t.Fatalf("error is no *DeniedError: %v", err)
			}
			if de.Refused != locked {
				t.Errorf("refused %q, want %q (path %q)", de.Refused, locked, de.Path)
			}
			h := de.Hint()
			if !strings.Contains(h, locked+" ") || strings.Contains(h, dest) {
				t.Errorf("hint %q: want %s, not %s", h, locked, dest)
			}
			t.Logf("%v; hint: %s", err, h)
		})
	}
}

// TestNotDirFailsAtOnce: a local destination whose path goes through a
// regular file (ENOTDIR), or an object path below a file left in the
// destination's folder, fails on the first attempt (no retry counted),
// and the error names the file in the way and the fix. A destination
// that is itself a file fails at once too.
func TestNotDirFailsAtOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "file.txt")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	opt := func(remote string) Options {
		return Options{Name: "local", Remote: remote, Retries: 2, RetryBase: time.Millisecond}
	}
	for _, c := range []struct {
		name, remote, file string
	}{
		{"below a file", filepath.Join(file, "fireops"), file},
		{"two below a file", filepath.Join(file, "a", "fireops"), file},
		{"a file", file, ""},
	} {
		_, err := Open(ctx, opt(c.remote))
		if err == nil {
			t.Errorf("%s: Open succeeded", c.name)
			continue
		}
		var re *Error
		if !errors.As(err, &re) || re.Retries != 0 || strings.Contains(err.Error(), "attempts failed") {
			t.Errorf("%s: Open retried (error %#v): %v", c.name, re, err)
		}
		if c.file == "" {
			continue
		}
		var ne *NotDirError
		if !errors.As(err, &ne) || ne.File != c.file {
			t.Errorf("%s: want a *NotDirError naming %s: %#v: %v", c.name, c.file, ne, err)
			continue
		}
		msg := err.Error()
		for _, want := range []string{`destination "local"`, c.file + " is a file, not a folder", "not retried"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: error %q does not say %q", c.name, msg, want)
			}
		}
		if h := ne.Hint(); !strings.Contains(h, "move "+c.file+" away") || !strings.Contains(h, "destinations[].remote") {
			t.Errorf("%s: hint %q does not name the fix", c.name, h)
		}
		if strings.Contains(msg, "\n") {
			t.Errorf("%s: error %q is not one line", c.name, msg)
		}
		t.Logf("%s: %v", c.name, err)
	}

	// An object path below a file in an opened destination.
	root := filepath.Join(dir, "dest")
	r, err := Open(ctx, opt(root))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close(ctx) }()
	inWay := filepath.Join(root, "snapshots")
	if err := os.WriteFile(inWay, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	const p = "snapshots/s1/manifest.json"
	for _, op := range []struct {
		name string
		fn   func() error
	}{
		{"put", func() error { return r.Put(ctx, p, []byte(`{"v":1}`)) }},
		{"get", func() error { _, err := r.GetBytes(ctx, p, 100); return err }},
		{"stat", func() error { _, _, err := r.Stat(ctx, p); return err }},
		{"delete", func() error { return r.Delete(ctx, p) }},
	} {
		before := r.Stats().Retries
		err := op.fn()
		if err == nil {
			t.Errorf("%s below a file succeeded", op.name)
			continue
		}
		if n := r.Stats().Retries - before; n != 0 {
			t.Errorf("%s: %d retries, want 0: %v", op.name, n, err)
		}
		var ne *NotDirError
		if !errors.As(err, &ne) || ne.File != inWay || !strings.Contains(err.Error(), inWay+" is a file") {
			t.Errorf("%s: want a *NotDirError naming %s: %v", op.name, inWay, err)
		}
	}
}
