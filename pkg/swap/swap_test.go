package swap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/testutil"
)

// when is the time every test swap's aside names carry.
var when = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

const stamp = "20260304T050607Z"

// build makes, below root, the live and staged trees of the tests: a live
// file a whose plain aside name is taken, a live folder d, a staged n with
// nothing live, and a live z the staged tree has nothing for.
func build(t *testing.T, root string) (live, staged string) {
	t.Helper()
	live, staged = filepath.Join(root, "live"), filepath.Join(root, "staged")
	for p, data := range map[string]string{
		"live/a":               "old a",
		"live/a.fireops-old":   "older a",
		"live/d/x":             "old x",
		"live/z":               "old z",
		"staged/a":             "new a",
		"staged/d/y":           "new y",
		"staged/n/deep/file":   "new n",
		"staged/unrelated.txt": "stays",
	} {
		full := filepath.Join(root, filepath.FromSlash(p))
		testutil.Must(t, os.MkdirAll(filepath.Dir(full), 0o755))
		testutil.Must(t, os.WriteFile(full, []byte(p+": "+data), 0o640))
	}
	return live, staged
}

// pairs are the test trees' swaps, as staged and live paths.
func pairs(live, staged string) [][2]string {
	var out [][2]string
	for _, n := range []string{"a", "d", "n"} {
		out = append(out, [2]string{filepath.Join(staged, n), filepath.Join(live, n)})
	}
	return out
}

// putAll puts every pair, then moves z aside (what a volume's swap does
// with a live entry the part has nothing for), stopping at the first
// error.
func putAll(s *Swap, live, staged string) error {
	for _, p := range pairs(live, staged) {
		if err := s.Put(p[0], p[1]); err != nil {
			return err
		}
	}
	_, _, err := s.MoveAside(filepath.Join(live, "z"))
	return err
}

// renameFailing returns a rename that fails its calls whose numbers
// (from 1) are in fail, and counts them in *n.
func renameFailing(n *int, fail ...int) func(from, to string) error {
	return func(from, to string) error {
		*n++
		for _, f := range fail {
			if *n == f {
				return &os.LinkError{Op: "rename", Old: from, New: to, Err: errors.New("injected failure")}
			}
		}
		return os.Rename(from, to)
	}
}

// TestSwapDone: every staged path is at its live path, every live copy
// under its aside name (a taken one never reused), nothing else changed.
func TestSwapDone(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	live, staged := build(t, root)
	s := New(Options{Now: func() time.Time { return when }})
	testutil.Must(t, putAll(s, live, staged))
	testutil.Must(t, s.Sync())

	for p, want := range map[string]string{
		"live/a":                      "staged/a: new a",
		"live/a.fireops-old":          "live/a.fireops-old: older a",
		"live/a.fireops-old-" + stamp: "live/a: old a",
		"live/d/y":                    "staged/d/y: new y",
		"live/d.fireops-old/x":        "live/d/x: old x",
		"live/n/deep/file":            "staged/n/deep/file: new n",
		"live/z.fireops-old":          "live/z: old z",
		"staged/unrelated.txt":        "staged/unrelated.txt: stays",
	} {
		if b, err := os.ReadFile(filepath.Join(root, p)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", p, b, err, want)
		}
	}
	for _, p := range []string{"staged/a", "staged/d", "staged/n", "live/z", "live/d/x"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("%s is still there: %v", p, err)
		}
	}
	got := fmt.Sprint(s.Asides())
	want := fmt.Sprint([]Aside{
		{filepath.Join(live, "a"), filepath.Join(live, "a.fireops-old-"+stamp)},
		{filepath.Join(live, "d"), filepath.Join(live, "d.fireops-old")},
		{filepath.Join(live, "z"), filepath.Join(live, "z.fireops-old")},
	})
	if got != want {
		t.Errorf("Asides() = %s, want %s", got, want)
	}
}

// TestSwapUndoAtEveryStep: whichever rename of the swap fails, Undo puts
// the live and the staged trees back exactly as they were.
func TestSwapUndoAtEveryStep(t *testing.T) {
	t.Parallel()
	// The renames of a whole swap: a aside, a in, d aside, d in, n in, z
	// aside.
	const renames = 6
	var n int
	s := New(Options{Rename: renameFailing(&n)})
	live, staged := build(t, t.TempDir())
	testutil.Must(t, putAll(s, live, staged))
	if n != renames {
		t.Fatalf("a whole swap renamed %d times, the test expects %d", n, renames)
	}
	for step := 1; step <= renames; step++ {
		t.Run(fmt.Sprint("rename ", step, " fails"), func(t *testing.T) {
			t.Parallel()
			want, got := t.TempDir(), t.TempDir()
			build(t, want)
			live, staged := build(t, got)
			var n int
			s := New(Options{Rename: renameFailing(&n, step)})
			err := putAll(s, live, staged)
			if err == nil || !strings.Contains(err.Error(), "injected failure") {
				t.Fatalf("the swap with rename %d failing: %v", step, err)
			}
			if uerr := s.Undo(); uerr != nil {
				t.Fatalf("undo: %v", uerr)
			}
			testutil.SameTree(t, want, got, testutil.IgnoreTimes())
			if len(s.Asides()) != 0 {
				t.Errorf("asides after the undo: %v", s.Asides())
			}
		})
	}
}

// TestSwapUndoFails: when putting a live copy back fails too, the undo
// goes on with the other renames and its error names where that copy is.
func TestSwapUndoFails(t *testing.T) {
	t.Parallel()
	live, staged := build(t, t.TempDir())
	var n int
	// Rename 5 (n in) fails; the undo then puts d back (6, 7) and fails
	// putting a back from its aside name (8 is restored a to staged, 9 the
	// old a back).
	s := New(Options{Rename: renameFailing(&n, 5, 9), Now: func() time.Time { return when }})
	if err := putAll(s, live, staged); err == nil {
		t.Fatal("the swap succeeded with a failing rename")
	}
	err := s.Undo()
	if err == nil {
		t.Fatal("the undo succeeded with a failing rename")
	}
	old := filepath.Join(live, "a.fireops-old-"+stamp)
	if !strings.Contains(err.Error(), "put back "+filepath.Join(live, "a")+" from "+old) {
		t.Errorf("the undo's error does not say where the live a is: %v", err)
	}
	if b, _ := os.ReadFile(old); string(b) != "live/a: old a" {
		t.Errorf("%s = %q", old, b)
	}
	if b, _ := os.ReadFile(filepath.Join(live, "d", "x")); string(b) != "live/d/x: old x" {
		t.Errorf("d was not put back: %q", b)
	}
}

// TestSwapRetries: a folder a running writer recreates at the path after
// it was moved aside blocks the rename; with Retries it is moved aside too.
func TestSwapRetries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		retries int
		ok      bool
	}{{0, false}, {1, true}} {
		t.Run(fmt.Sprint("retries ", tc.retries), func(t *testing.T) {
			t.Parallel()
			live, staged := build(t, t.TempDir())
			d := filepath.Join(live, "d")
			wrote := false
			writer := func(from, to string) error {
				if from == filepath.Join(staged, "d") && to == d && !wrote {
					wrote = true
					if err := os.MkdirAll(filepath.Join(d, "logs"), 0o755); err != nil {
						return err
					}
				}
				return os.Rename(from, to)
			}
			s := New(Options{Rename: writer, Retries: tc.retries, Now: func() time.Time { return when }})
			err := s.Put(filepath.Join(staged, "d"), d)
			if (err == nil) != tc.ok {
				t.Fatalf("Put: %v", err)
			}
			if !tc.ok {
				testutil.Must(t, os.RemoveAll(d)) // the writer is gone
				testutil.Must(t, s.Undo())
				if b, _ := os.ReadFile(filepath.Join(d, "x")); string(b) != "live/d/x: old x" {
					t.Errorf("d was not put back: %q", b)
				}
				return
			}
			if _, err := os.Stat(filepath.Join(d, "y")); err != nil {
				t.Error(err)
			}
			if _, err := os.Stat(filepath.Join(live, "d.fireops-old-"+stamp, "logs")); err != nil {
				t.Errorf("the writer's folder was not moved aside: %v", err)
			}
		})
	}
}

// TestOldName: the aside name scheme never names a path that exists.
func TestOldName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		taken []string
		dir   string // AsideDir below the test folder, "" next to live
		want  string
	}{
		{"free", nil, "", "conf.fireops-old"},
		{"taken", []string{"conf.fireops-old"}, "", "conf.fireops-old-" + stamp},
		{"stamp taken", []string{"conf.fireops-old", "conf.fireops-old-" + stamp}, "", "conf.fireops-old-" + stamp + "-2"},
		{"several taken", []string{"conf.fireops-old", "conf.fireops-old-" + stamp, "conf.fireops-old-" + stamp + "-2"}, "", "conf.fireops-old-" + stamp + "-3"},
		{"aside folder", []string{"conf.fireops-old"}, "hold", "hold/conf.fireops-old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			testutil.Must(t, os.Mkdir(filepath.Join(root, "hold"), 0o700))
			for _, p := range tc.taken {
				testutil.Must(t, os.WriteFile(filepath.Join(root, p), nil, 0o600))
			}
			dir := ""
			if tc.dir != "" {
				dir = filepath.Join(root, tc.dir)
			}
			if got, err := OldName(dir, filepath.Join(root, "conf"), stamp); err != nil || got != filepath.Join(root, tc.want) {
				t.Errorf("OldName = %s, %v, want %s", got, err, filepath.Join(root, tc.want))
			}
		})
	}
}

// TestOldNameLong: a live name of up to NAME_MAX bytes gets an aside name
// that fits (cut short at a character boundary, then suffixed), also when
// that one is taken; a candidate that cannot be looked at fails the call
// instead of being skipped for ever.
func TestOldNameLong(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	long := strings.Repeat("n", 250)
	utf := strings.Repeat("é", 127) // 254 bytes
	for _, tc := range []struct {
		live  string
		taken bool
		want  string
	}{
		{long, false, long[:255-len(OldSuffix)] + OldSuffix},
		{long, true, long[:255-len(OldSuffix)-1-len(stamp)] + OldSuffix + "-" + stamp},
		{utf, false, strings.Repeat("é", (255-len(OldSuffix))/2) + OldSuffix},
	} {
		dir := t.TempDir()
		if tc.taken {
			first, err := OldName(dir, filepath.Join(root, tc.live), stamp)
			testutil.Must(t, err)
			testutil.Must(t, os.WriteFile(first, nil, 0o600))
		}
		got, err := OldName(dir, filepath.Join(root, tc.live), stamp)
		if err != nil || got != filepath.Join(dir, tc.want) || len(filepath.Base(got)) > 255 {
			t.Errorf("OldName(%d bytes, taken %v) = %s (%d bytes), %v; want %s", len(tc.live), tc.taken, filepath.Base(got), len(filepath.Base(got)), err, tc.want)
		}
	}
	// A folder that is a file: ENOTDIR, not "free" and not "taken".
	file := filepath.Join(root, "file")
	testutil.Must(t, os.WriteFile(file, nil, 0o600))
	if got, err := OldName(file, filepath.Join(root, "conf"), stamp); err == nil {
		t.Errorf("OldName in a file: %s, want an error", got)
	}
}

// TestPutLongName: a live entry whose name is 250 bytes is swapped.
func TestPutLongName(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	live, staged, hold := filepath.Join(root, "live"), filepath.Join(root, "staged"), filepath.Join(root, "hold")
	for _, d := range []string{live, staged, hold} {
		testutil.Must(t, os.Mkdir(d, 0o700))
	}
	long := strings.Repeat("n", 250)
	testutil.Must(t, os.WriteFile(filepath.Join(live, long), []byte("old"), 0o600))
	testutil.Must(t, os.WriteFile(filepath.Join(staged, long), []byte("new"), 0o600))
	s := New(Options{AsideDir: hold})
	if err := s.Put(filepath.Join(staged, long), filepath.Join(live, long)); err != nil {
		t.Fatalf("a 250-byte name: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(live, long)); err != nil || string(b) != "new" {
		t.Errorf("live: %q %v, want new", b, err)
	}
	if as := s.Asides(); len(as) != 1 {
		t.Errorf("asides: %v, want one", as)
	}
}

// TestMoveAsideManyCutNames: in a holding folder, live names that share
// their first 246 bytes are cut to one aside name; a user who made more
// of them than OldName searches (a thousand, in their own volume) must
// not make the swap fail: every one is moved aside under a name of its
// own, and Undo puts every one back.
func TestMoveAsideManyCutNames(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	live, hold := filepath.Join(root, "live"), filepath.Join(root, "hold")
	testutil.Must(t, os.Mkdir(live, 0o700))
	testutil.Must(t, os.Mkdir(hold, 0o700))
	prefix := strings.Repeat("x", 246)
	const n = maxOldNames + 100
	for i := 0; i < n; i++ {
		testutil.Must(t, os.WriteFile(filepath.Join(live, fmt.Sprintf("%s%04d", prefix, i)), []byte{byte(i)}, 0o600))
	}
	s := New(Options{AsideDir: hold})
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		old, moved, err := s.MoveAside(filepath.Join(live, fmt.Sprintf("%s%04d", prefix, i)))
		if err != nil || !moved {
			t.Fatalf("entry %d: moved %v, %v", i, moved, err)
		}
		if seen[old] || len(filepath.Base(old)) > maxName || filepath.Dir(old) != hold {
			t.Fatalf("entry %d: aside name %s taken twice, too long or outside the holding folder", i, filepath.Base(old))
		}
		seen[old] = true
	}
	if es, err := os.ReadDir(live); err != nil || len(es) != 0 {
		t.Fatalf("live after moving everything aside: %d entries, %v", len(es), err)
	}
	testutil.Must(t, s.Undo())
	for i := 0; i < n; i++ {
		b, err := os.ReadFile(filepath.Join(live, fmt.Sprintf("%s%04d", prefix, i)))
		if err != nil || len(b) != 1 || b[0] != byte(i) {
			t.Fatalf("entry %d after Undo: %v %v", i, b, err)
		}
	}
}
