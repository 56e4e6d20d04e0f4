package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/rogpeppe/go-internal/diff"

	"github.com/firetech/fireops/internal/atomicfile"
)

// ManifestFile lists, in stack.dir, the files the last deploy rendered, so
// that a file the config no longer produces (gpu.yml after stack.gpus is
// turned off) is removed.
const ManifestFile = ".fireops-rendered"

// Change is what writing the stack does to one file.
type Change struct {
	// Path is relative to stack.dir.
	Path string `json:"path"`
	// Action is create, update, remove or unchanged.
	Action string `json:"action"`

	old, new []byte
}

// Plan compares the rendered files with stack.dir (or dir, when not empty)
// and returns one change per file, sorted by path. It writes nothing.
func (st *Stack) Plan(dir string) ([]Change, error) {
	if dir == "" {
		dir = st.Dir
	}
	var out []Change
	rendered := map[string]bool{}
	for _, f := range st.Files {
		rendered[f.Path] = true
		old, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Path)))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			out = append(out, Change{Path: f.Path, Action: "create", new: f.Data})
		case err != nil:
			return nil, fmt.Errorf("plan: %w", err)
		case bytes.Equal(old, f.Data):
			out = append(out, Change{Path: f.Path, Action: "unchanged", old: old, new: f.Data})
		default:
			out = append(out, Change{Path: f.Path, Action: "update", old: old, new: f.Data})
		}
	}
	prev, err := readManifest(dir)
	if err != nil {
		return nil, err
	}
	for _, p := range prev {
		if rendered[p] {
			continue
		}
		old, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("plan: %w", err)
		}
		out = append(out, Change{Path: p, Action: "remove", old: old})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// Changed reports whether any change is not "unchanged".
func Changed(changes []Change) bool {
	for _, c := range changes {
		if c.Action != "unchanged" {
			return true
		}
	}
	return false
}

// readManifest reads the paths the last render wrote; none when missing.
func readManifest(dir string) ([]string, error) {
	f, err := os.Open(filepath.Join(dir, ManifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ManifestFile, err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		// Only clean relative paths outside secrets/: a tampered manifest
		// must not make deploy remove anything else.
		if p == "" || strings.HasPrefix(p, "#") || path.IsAbs(p) || path.Clean(p) != p ||
			strings.HasPrefix(p, "../") || p == ".." || strings.HasPrefix(p, SecretsDir+"/") {
			continue
		}
		out = append(out, p)
	}
	return out, sc.Err()
}

// Write writes the rendered files into stack.dir: changed files are
// replaced atomically (0644), unchanged ones are left alone (their times
// too), files the last render wrote and this one does not are removed.
// It returns the changes made.
func (st *Stack) Write() ([]Change, error) {
	if err := os.MkdirAll(st.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("stack dir: %w", err)
	}
	changes, err := st.Plan(st.Dir)
	if err != nil {
		return nil, err
	}
	for _, c := range changes {
		p := filepath.Join(st.Dir, filepath.FromSlash(c.Path))
		switch c.Action {
		case "create", "update":
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return nil, fmt.Errorf("write %s: %w", c.Path, err)
			}
			if err := atomicfile.WriteFile(p, c.new, 0o644); err != nil {
				return nil, fmt.Errorf("write %s: %w", c.Path, err)
			}
		case "remove":
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("remove %s: %w", c.Path, err)
			}
		}
	}
	var m bytes.Buffer
	m.WriteString("# Files rendered by `fireops deploy`; it removes those it no longer renders.\n")
	for _, f := range st.Files {
		m.WriteString(f.Path + "\n")
	}
	mp := filepath.Join(st.Dir, ManifestFile)
	if old, err := os.ReadFile(mp); err != nil || !bytes.Equal(old, m.Bytes()) {
		if err := atomicfile.WriteFile(mp, m.Bytes(), 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", ManifestFile, err)
		}
	}
	return changes, nil
}

// WriteTo writes every rendered file into dir, which must be empty or not
// exist (--dry-run renders into a temp dir). No secrets are written.
func (st *Stack) WriteTo(dir string) error {
	for _, f := range st.Files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
	}
	return nil
}

// WriteDiff writes a unified diff of every change (stack.dir's file as
// "a/", the rendered one as "b/").
func WriteDiff(w io.Writer, changes []Change) error {
	for _, c := range changes {
		if c.Action == "unchanged" {
			continue
		}
		from, to := "a/"+c.Path, "b/"+c.Path
		switch c.Action {
		case "create":
			from = "/dev/null"
		case "remove":
			to = "/dev/null"
		}
		if _, err := fmt.Fprintf(w, "--- %s\n+++ %s\n", from, to); err != nil {
			return err
		}
		if err := unifiedDiff(w, c.old, c.new); err != nil {
			return err
		}
	}
	return nil
}

// unifiedDiff writes the hunks that turn a into b, with 3 lines of
// context. The hunks come from github.com/rogpeppe/go-internal/diff (the Go
// project's anchored diff: O(n log n) time, memory linear in the files'
// sizes); it starts a new hunk where exactly 6 unchanged lines separate two
// changes, so such adjacent hunks are joined here into one, as GNU diff -u
// writes them.
func unifiedDiff(w io.Writer, a, b []byte) error {
	out := diff.Diff("a", a, "b", b)
	// Skip the header ("diff a b", "--- a", "+++ b"): WriteDiff writes
	// its own.
	for range 3 {
		i := bytes.IndexByte(out, '\n')
		if i < 0 {
			return nil
		}
		out = out[i+1:]
	}
	var h hunk
	for len(out) > 0 {
		line := out
		if i := bytes.IndexByte(out, '\n'); i >= 0 {
			line = out[:i+1]
		}
		out = out[len(line):]
		if !bytes.HasPrefix(line, []byte("@@ ")) {
			h.body = append(h.body, line)
			continue
		}
		var next hunk
		if _, err := fmt.Sscanf(string(line), "@@ -%d,%d +%d,%d @@", &next.a, &next.na, &next.b, &next.nb); err != nil {
			return fmt.Errorf("diff: hunk header %q: %w", line, err)
		}
		if h.body != nil && h.a+h.na == next.a && h.b+h.nb == next.b {
			h.na += next.na
			h.nb += next.nb
			continue
		}
		if err := h.write(w); err != nil {
			return err
		}
		h = next
	}
	return h.write(w)
}

// hunk is one hunk of a unified diff: its start lines and line counts in
// the old and new file, and its lines.
type hunk struct {
	a, na, b, nb int
	body         [][]byte
}

// write writes h, if it has lines.
func (h *hunk) write(w io.Writer) error {
	if h.body == nil {
		return nil
	}
	if _, err := fmt.Fprintf(w, "@@ -%d,%d +%d,%d @@\n", h.a, h.na, h.b, h.nb); err != nil {
		return err
	}
	for _, l := range h.body {
		if _, err := w.Write(l); err != nil {
			return err
		}
	}
	return nil
}
