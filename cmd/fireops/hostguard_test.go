package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// hostFolders are the host's folders that the config `fireops init` writes
// names, or leaves as the default, and that the jobs write to: the local
// destination, the state folder, the config folder and the stack folder.
// No test may write there: scripts make their config with initlocal, Go
// tests with initForFiles, and TestJobsUnderUnitSandbox mounts folders of
// its own over these in a private mount namespace.
var hostFolders = []string{"/var/backups/fireops", "/var/lib/fireops", "/etc/fireops", "/opt/firetech"}

// hostTextfiles are fireops's textfiles (and their temp files) in the
// host's node-exporter textfile folder.
var hostTextfiles = []string{"/var/lib/prometheus/node-exporter/fireops_*", "/var/lib/prometheus/node-exporter/.fireops_*"}

// hostGuard runs the tests of m and fails the test binary when the host's
// folders (hostFolders, hostTextfiles) differ after them from before:
// something was added, removed, written or had its mode changed there.
type hostGuard struct {
	m       testscript.TestingM
	folders []string  // trees: every entry under each
	globs   []string  // files matching each pattern
	out     io.Writer // nil: os.Stderr
}

// newHostGuard guards the host's own folders around m.
func newHostGuard(m testscript.TestingM) hostGuard {
	return hostGuard{m: m, folders: hostFolders, globs: hostTextfiles}
}

// Run runs the tests; it returns 1 when they passed but changed the
// guarded folders, naming each change.
func (g hostGuard) Run() int {
	before := hostState(g.folders, g.globs)
	code := g.m.Run()
	changed := stateDiff(before, hostState(g.folders, g.globs))
	if len(changed) == 0 {
		return code
	}
	out := g.out
	if out == nil {
		out = os.Stderr
	}
	const most = 20
	fmt.Fprintf(out, "FAIL: the tests changed %d path(s) in the host's own folders (%s, %s); a test must write only under its own folders: give it a config with initlocal (scripts) or initForFiles (Go tests):\n",
		len(changed), strings.Join(g.folders, ", "), strings.Join(g.globs, ", "))
	for i, c := range changed {
		if i == most {
			fmt.Fprintf(out, "\t... and %d more\n", len(changed)-most)
			break
		}
		fmt.Fprintf(out, "\t%s\n", c)
	}
	fmt.Fprintln(out, "(another process writing there at the same time shows here too; remove what a test left there once it is fixed)")
	if code == 0 {
		code = 1
	}
	return code
}

// hostState describes every entry under each of folders (the folder
// included) and every file matching one of globs: its type and mode, its
// size and modification time. A folder that does not exist is "absent";
// one that cannot be read is its error.
func hostState(folders, globs []string) map[string]string {
	st := map[string]string{}
	describe := func(p string, fi fs.FileInfo) {
		st[p] = fmt.Sprintf("%v %d bytes, modified %s", fi.Mode(), fi.Size(), fi.ModTime().UTC().Format(time.RFC3339Nano))
	}
	for _, root := range folders {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if p == root && errors.Is(err, fs.ErrNotExist) {
					st[p] = "absent"
					return nil
				}
				st[p] = "unreadable: " + err.Error()
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				st[p] = "unreadable: " + err.Error()
				return nil
			}
			describe(p, fi)
			return nil
		})
		if err != nil {
			st[root] = "unreadable: " + err.Error()
		}
	}
	for _, g := range globs {
		ms, _ := filepath.Glob(g) // the patterns are fixed and valid
		for _, p := range ms {
			if fi, err := os.Lstat(p); err == nil {
				describe(p, fi)
			}
		}
	}
	return st
}

// stateDiff lists, sorted by path, what differs from before to after.
func stateDiff(before, after map[string]string) []string {
	var paths []string
	for p, b := range before {
		if a, ok := after[p]; !ok || a != b {
			paths = append(paths, p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		b, wasThere := before[p]
		a, isThere := after[p]
		switch {
		case !isThere:
			out = append(out, fmt.Sprintf("%s: removed (was %s)", p, b))
		case !wasThere:
			out = append(out, fmt.Sprintf("%s: added (%s)", p, a))
		default:
			out = append(out, fmt.Sprintf("%s: was %s, now %s", p, b, a))
		}
	}
	return out
}

// runFunc is a testscript.TestingM that runs f.
type runFunc func() int

func (f runFunc) Run() int { return f() }

// TestHostGuard: the guard fails a passing run that added, wrote or
// removed a file in a guarded folder, made an absent one or wrote a
// textfile, naming each path; a run that changed nothing there keeps its
// exit code.
func TestHostGuard(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	backups, absent, prom := filepath.Join(dir, "backups"), filepath.Join(dir, "etc"), filepath.Join(dir, "prom")
	for _, d := range []string{filepath.Join(backups, "gpu01"), prom} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustWriteFile(t, filepath.Join(backups, "gpu01", "old"), "old\n", 0o600)
	mustWriteFile(t, filepath.Join(backups, "gpu01", "kept"), "kept\n", 0o600)
	mustWriteFile(t, filepath.Join(prom, "node.prom"), "other\n", 0o644)
	guard := func(run func()) (int, string) {
		var out strings.Builder
		g := hostGuard{
			m:       runFunc(func() int { run(); return 0 }),
			folders: []string{backups, absent},
			globs:   []string{filepath.Join(prom, "fireops_*")},
			out:     &out,
		}
		return g.Run(), out.String()
	}

	// Reads and writes elsewhere, the textfile folder's other files included.
	code, out := guard(func() {
		if _, err := os.ReadFile(filepath.Join(backups, "gpu01", "old")); err != nil {
			t.Error(err)
		}
		mustWriteFile(t, filepath.Join(prom, "node.prom"), "other, again\n", 0o644)
		mustWriteFile(t, filepath.Join(dir, "elsewhere"), "x\n", 0o600)
	})
	if code != 0 || out != "" {
		t.Fatalf("nothing guarded changed: exit %d, output %q", code, out)
	}

	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(backups, "gpu01", "kept"), old, old); err != nil {
		t.Fatal(err)
	}
	code, out = guard(func() {
		mustWriteFile(t, filepath.Join(backups, "gpu01", "new"), "new\n", 0o600)
		if err := os.Remove(filepath.Join(backups, "gpu01", "old")); err != nil {
			t.Error(err)
		}
		mustWriteFile(t, filepath.Join(backups, "gpu01", "kept"), "kept\n", 0o600) // same size and content, new mtime
		if err := os.Mkdir(absent, 0o700); err != nil {
			t.Error(err)
		}
		mustWriteFile(t, filepath.Join(prom, "fireops_snapshot.prom"), "x 1\n", 0o644)
	})
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{
		"FAIL: the tests changed 6 path(s)",
		"\t" + filepath.Join(backups, "gpu01") + ": was ",
		"\t" + filepath.Join(backups, "gpu01", "new") + ": added (-rw------- 4 bytes",
		"\t" + filepath.Join(backups, "gpu01", "old") + ": removed (was ",
		"\t" + filepath.Join(backups, "gpu01", "kept") + ": was ",
		"\t" + absent + ": was absent, now drwx------",
		"\t" + filepath.Join(prom, "fireops_snapshot.prom") + ": added (",
		"initlocal",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// A failing run keeps its own exit code.
	g := hostGuard{m: runFunc(func() int { mustWriteFile(t, filepath.Join(backups, "x"), "x", 0o600); return 3 }), folders: []string{backups}, out: io.Discard}
	if code := g.Run(); code != 3 {
		t.Errorf("a failed run that also wrote: exit %d, want 3", code)
	}
}
