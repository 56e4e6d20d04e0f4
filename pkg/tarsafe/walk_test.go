package tarsafe

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestWalkerPolicies walks trees that change under the walk or hold what
// an archive does not, under both policies: WalkStrict fails naming the
// path, WalkTolerant leaves the entry out and says why, and neither ever
// visits what a swap points to.
func TestWalkerPolicies(t *testing.T) {
	t.Parallel()
	mkdir := func(t *testing.T, p string) {
		t.Helper()
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(t *testing.T, p string) {
		t.Helper()
		mkdir(t, filepath.Dir(p))
		if err := os.WriteFile(p, []byte(filepath.Base(p)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// swap replaces the folder p with what put makes there (once).
	swap := func(t *testing.T, p string, put func(string) error) func(string) {
		done := false
		return func(path string) {
			if path != p || done {
				return
			}
			done = true
			if err := os.Rename(p, p+".away"); err != nil {
				t.Error(err)
			}
			if err := put(p); err != nil {
				t.Error(err)
			}
		}
	}
	// swapA makes r/a/f, r/b and outside/secret below dir, and has the
	// walk find r/a replaced, just before it opens it, by what put makes
	// there from outside.
	swapA := func(put func(outside, p string) error) func(*testing.T, string, *Walker) string {
		return func(t *testing.T, dir string, w *Walker) string {
			root := filepath.Join(dir, "r")
			write(t, filepath.Join(root, "a/f"))
			write(t, filepath.Join(root, "b"))
			write(t, filepath.Join(dir, "outside/secret"))
			w.BeforeOpen = swap(t, filepath.Join(root, "a"), func(p string) error {
				return put(filepath.Join(dir, "outside"), p)
			})
			return root
		}
	}
	type outcome struct {
		err     string   // a part of the error; "" for none
		visited []string // Rel of every entry visited, in order ("rel -> link" for a symlink)
		skipped []string // "why rel" of every entry left out
	}
	cases := []struct {
		name string
		// prep makes the tree below dir and returns the root to walk; it
		// may set the walker's fields (the hooks).
		prep     func(t *testing.T, dir string, w *Walker) string
		strict   outcome
		tolerant outcome
	}{{
		name: "plain tree in archive order",
		prep: func(t *testing.T, dir string, w *Walker) string {
			root := filepath.Join(dir, "r")
			for _, f := range []string{"b", "a/z", "a/m/x", "B", "a b", "a.c"} {
				write(t, filepath.Join(root, f))
			}
			mkdir(t, filepath.Join(root, "empty"))
			return root
		},
		strict:   outcome{visited: []string{".", "B", "a", "a/m", "a/m/x", "a/z", "a b", "a.c", "b", "empty"}},
		tolerant: outcome{visited: []string{".", "B", "a", "a/m", "a/m/x", "a/z", "a b", "a.c", "b", "empty"}},
	}, {
		name:     "folder swapped for a symlink to a folder outside",
		prep:     swapA(os.Symlink),
		strict:   outcome{err: "/r/a was replaced during the walk", visited: []string{"."}},
		tolerant: outcome{visited: []string{".", "b"}, skipped: []string{"vanished a"}},
	}, {
		name:     "folder swapped for a folder from elsewhere",
		prep:     swapA(os.Rename),
		strict:   outcome{err: "/r/a was replaced during the walk", visited: []string{"."}},
		tolerant: outcome{visited: []string{".", "b"}, skipped: []string{"vanished a"}},
	}, {
		name: "file removed between listing and lstat",
		prep: func(t *testing.T, dir string, w *Walker) string {
			root := filepath.Join(dir, "r")
			write(t, filepath.Join(root, "d/x"))
			write(t, filepath.Join(root, "d/y"))
			visit := w.Visit
			w.Visit = func(e WalkEntry) error {
				if e.Rel == "d" {
					if err := os.Remove(filepath.Join(root, "d/x")); err != nil {
						t.Error(err)
					}
				}
				return visit(e)
			}
			return root
		},
		strict:   outcome{err: "/r/d/x vanished during the walk", visited: []string{".", "d"}},
		tolerant: outcome{visited: []string{".", "d", "d/y"}, skipped: []string{"vanished d/x"}},
	}, {
		name: "special files",
		prep: func(t *testing.T, dir string, w *Walker) string {
			root := filepath.Join(dir, "r")
			write(t, filepath.Join(root, "z"))
			l, err := net.Listen("unix", filepath.Join(root, "a.sock"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			if err := syscall.Mkfifo(filepath.Join(root, "p"), 0o644); err != nil {
				t.Fatal(err)
			}
			return root
		},
		// Sockets are left out under both.
		strict:   outcome{err: "/r/p is a named pipe", visited: []string{"."}, skipped: []string{"special a.sock"}},
		tolerant: outcome{visited: []string{".", "z"}, skipped: []string{"special a.sock", "special p"}},
	}, {
		name: "name over MaxNameLen",
		prep: func(t *testing.T, dir string, w *Walker) string {
			root := filepath.Join(dir, "r")
			write(t, filepath.Join(root, "d/f"))
			write(t, filepath.Join(root, strings.Repeat("L", 60), "f"))
			write(t, filepath.Join(root, "z"))
			// "r/d/" fits, "r/" + 60 bytes + "/" does not.
			w.MaxNameLen = 50
			return root
		},
		strict:   outcome{err: "too long for an archive", visited: []string{"."}},
		tolerant: outcome{visited: []string{".", "d", "d/f", "z"}, skipped: []string{"toolong " + strings.Repeat("L", 60)}},
	}, {
		name: "excluded folder",
		prep: func(t *testing.T, dir string, w *Walker) string {
			root := filepath.Join(dir, "r")
			write(t, filepath.Join(root, "a/f"))
			write(t, filepath.Join(root, "b"))
			w.Exclude = func(e WalkEntry) bool { return e.Info == nil && e.Base == "a" }
			w.Excluded = func(e WalkEntry) {
				if !e.Info.IsDir() || e.Rel != "a" {
					t.Errorf("Excluded(%q) with %v", e.Rel, e.Info.Mode())
				}
			}
			return root
		},
		strict:   outcome{visited: []string{".", "b"}},
		tolerant: outcome{visited: []string{".", "b"}},
	}, {
		name: "symlink root is not followed",
		prep: func(t *testing.T, dir string, w *Walker) string {
			write(t, filepath.Join(dir, "target/secret"))
			if err := os.Symlink("target", filepath.Join(dir, "r")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "r")
		},
		strict:   outcome{visited: []string{". -> target"}},
		tolerant: outcome{visited: []string{". -> target"}},
	}, {
		name: "symlink root refused where the root must be a folder",
		prep: func(t *testing.T, dir string, w *Walker) string {
			write(t, filepath.Join(dir, "target/secret"))
			if err := os.Symlink("target", filepath.Join(dir, "r")); err != nil {
				t.Fatal(err)
			}
			w.RootFolder = true
			return filepath.Join(dir, "r")
		},
		strict:   outcome{err: "/r is not a folder"},
		tolerant: outcome{err: "/r is not a folder"},
	}, {
		name: "root swapped for a symlink after its lstat",
		prep: func(t *testing.T, dir string, w *Walker) string {
			root := filepath.Join(dir, "r")
			write(t, filepath.Join(root, "f"))
			write(t, filepath.Join(dir, "outside/secret"))
			w.BeforeOpen = swap(t, root, func(p string) error {
				return os.Symlink(filepath.Join(dir, "outside"), p)
			})
			return root
		},
		// The root is never left out.
		strict:   outcome{err: "/r was replaced during the walk"},
		tolerant: outcome{err: ErrChanged.Error()},
	}}
	for _, tc := range cases {
		for _, policy := range []WalkPolicy{WalkStrict, WalkTolerant} {
			want := tc.strict
			if policy == WalkTolerant {
				want = tc.tolerant
			}
			t.Run(tc.name+"/"+map[WalkPolicy]string{WalkStrict: "strict", WalkTolerant: "tolerant"}[policy], func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				var got outcome
				w := &Walker{Policy: policy, Prefix: "test:t"}
				w.Visit = func(e WalkEntry) error {
					if strings.Contains(e.Path, "secret") || strings.Contains(e.Path, "outside") {
						t.Errorf("visited %s", e.Path)
					}
					if e.Info.Mode()&os.ModeSymlink != 0 {
						got.visited = append(got.visited, e.Rel+" -> "+e.Link)
					} else {
						got.visited = append(got.visited, e.Rel)
					}
					return nil
				}
				w.Skipped = func(e WalkEntry, why WalkSkip) {
					name := map[WalkSkip]string{SkipVanished: "vanished", SkipSpecial: "special", SkipTooLong: "toolong"}[why]
					got.skipped = append(got.skipped, name+" "+e.Rel)
				}
				root := tc.prep(t, dir, w)
				err := w.Walk(context.Background(), root, "r")
				switch {
				case want.err == "" && err != nil:
					t.Fatalf("Walk: %v", err)
				case want.err != "" && (err == nil || !strings.Contains(err.Error(), want.err)):
					t.Fatalf("Walk: %v, want an error saying %q", err, want.err)
				case err != nil && !strings.HasPrefix(err.Error(), "test:t: "):
					t.Errorf("Walk: %v, want it to start with the prefix", err)
				}
				if !slices.Equal(got.visited, want.visited) {
					t.Errorf("visited %q, want %q", got.visited, want.visited)
				}
				if !slices.Equal(got.skipped, want.skipped) {
					t.Errorf("skipped %q, want %q", got.skipped, want.skipped)
				}
				if w.chain.Depth() != 0 {
					t.Errorf("the chain holds %d folders after the walk", w.chain.Depth())
				}
			})
		}
	}
}
