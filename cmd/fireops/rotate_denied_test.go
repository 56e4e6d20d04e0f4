package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/testenv"
)

// TestRotateDeniedDestination: rotate on a destination it may not write
// (a read-only bind mount, EROFS; immutable snapshot folders, EPERM)
// exits 1 and says that the sweep did not run, instead of object counts
// of 0 that read as an empty destination, with the permission hint a
// snapshot gives. Root ignores mode bits, hence the mount and chattr.
func TestRotateDeniedDestination(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"ro-mount", "chattr"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			dir, cfg, raw := initHost(t)
			data := filepath.Join(dir, "data")
			if err := os.MkdirAll(data, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(data, "a.txt"), []byte("hello\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			y := initForFiles(t, raw,
				"paths: [/opt/firetech]", "paths: ["+data+"]",
				"# state_dir: /var/lib/fireops", "state_dir: "+filepath.Join(dir, "state"),
				"# retention: {keep_last: 3, keep_daily: 7, keep_weekly: 4, keep_monthly: 6, incomplete_grace: 24h}",
				"retention: {keep_last: 1, keep_daily: 0, keep_weekly: 0, keep_monthly: 0, incomplete_grace: 24h}")
			if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
				t.Fatal(err)
			}
			// Two snapshots: keep_last 1 removes the older one.
			runFireops(t, cfg, "snapshot", "-q")
			runFireops(t, cfg, "snapshot", "-q")
			dest := filepath.Join(dir, "backups")
			snaps, err := filepath.Glob(filepath.Join(dest, "gpu01", "snapshots", "*"))
			if err != nil || len(snaps) != 2 {
				t.Fatalf("snapshot folders %v, %v; want 2", snaps, err)
			}

			var unlock func() error
			want := ""
			switch how {
			case "ro-mount":
				if out, err := exec.Command("mount", "--bind", "-o", "ro", dest, dest).CombinedOutput(); err != nil {
					testenv.Unavailable(t, "a read-only bind mount (root)", fmt.Errorf("%v: %s", err, out))
					return
				}
				unlock = func() error { return runTool("umount", dest) }
				want = "is on a read-only file system: mount it read-write"
			case "chattr":
				if err := runTool("chattr", append([]string{"+i"}, snaps...)...); err != nil {
					_ = runTool("chattr", append([]string{"-i"}, snaps...)...)
					testenv.Unavailable(t, "chattr +i", err)
					return
				}
				unlock = func() error { return runTool("chattr", append([]string{"-i"}, snaps...)...) }
				want = "(fix its permissions, owner or immutable flag)"
			}
			locked := true
			t.Cleanup(func() {
				if locked {
					if err := unlock(); err != nil {
						t.Errorf("undo %s: %v", how, err)
					}
				}
			})

			cmd := fireopsCmd(t, cfg, "rotate")
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err = cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("rotate: %v, want exit 1\n%s%s", err, stdout.String(), stderr.String())
			}
			out := stdout.String()
			if !strings.Contains(out, "\n  objects: sweep not run: removing snapshot ") || strings.Contains(out, "objects: 0,") {
				t.Errorf("rotate does not say the sweep did not run:\n%s", out)
			}
			if !strings.Contains(out, "\n  FAILED: ") {
				t.Errorf("rotate does not say the destination failed:\n%s", out)
			}
			hint := ""
			for _, l := range strings.Split(stderr.String(), "\n") {
				if h, ok := strings.CutPrefix(l, "fireops: hint: "); ok {
					hint = h
				}
			}
			if !strings.Contains(hint, want) || !strings.Contains(hint, dest) {
				t.Errorf("hint %q: want %q naming a folder of %s\n%s", hint, want, dest, stderr.String())
			}

			// Writable again: the next rotate removes the older snapshot and
			// sweeps.
			if err := unlock(); err != nil {
				t.Fatal(err)
			}
			locked = false
			out = runFireops(t, cfg, "rotate")
			if !strings.Contains(out, "  1 kept, 1 removed, ") || !strings.Contains(out, "  objects: ") || strings.Contains(out, "not run") {
				t.Errorf("rotate once writable:\n%s", out)
			}
		})
	}
}

// runTool runs a command, its output in the error.
func runTool(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}
