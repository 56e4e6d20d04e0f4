package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSecurityDocNamesRealTests keeps docs/security.md honest: every
// guarantee there names the test that shows it, so every test, fuzz target
// and testscript it names must exist (a renamed or deleted test would
// leave a guarantee that nothing checks).
func TestSecurityDocNamesRealTests(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	funcRe := regexp.MustCompile(`(?m)^func ((?:Test|Fuzz)[A-Za-z0-9_]+)\(`)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == ".cache" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range funcRe.FindAllSubmatch(b, -1) {
			defined[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile("`((?:Test|Fuzz)[A-Za-z0-9_]+)`").FindAllSubmatch(doc, -1)
	if len(names) < 10 {
		t.Fatalf("docs/security.md names %d tests; the guarantees lost their tests?", len(names))
	}
	for _, m := range names {
		if !defined[string(m[1])] {
			t.Errorf("docs/security.md names %s, but no test file defines it", m[1])
		}
	}
	for _, m := range regexp.MustCompile(`testdata/script/[a-z0-9_]+\.txtar`).FindAll(doc, -1) {
		if _, err := os.Stat(filepath.Join(root, string(m))); err != nil {
			t.Errorf("docs/security.md names %s: %v", m, err)
		}
	}
}
