package volume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/internal/walktest"
)

// TestSwap: the live folder ends up with the staged entries and the kept
// files, and nothing of the old content or the holding folder is left.
func TestSwap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		live  map[string]string // path -> content; "" with a trailing / is a folder
		stage map[string]string
		keep  []string
		want  map[string]string
	}{
		{"replace", map[string]string{"a": "old", "d/": "", "d/x": "old"}, map[string]string{"a": "new", "b": "new"}, nil,
			map[string]string{"a": "new", "b": "new"}},
		{"keep a live file", map[string]string{"db.sqlite": "live", "n": "old"}, map[string]string{"n": "new"}, []string{"db.sqlite"},
			map[string]string{"db.sqlite": "live", "n": "new"}},
		{"restored wins over kept", map[string]string{"db.sqlite": "live"}, map[string]string{"db.sqlite": "restored"}, []string{"db.sqlite"},
			map[string]string{"db.sqlite": "restored"}},
		{"empty live", nil, map[string]string{"d/": "", "d/y": "new"}, nil, map[string]string{"d/y": "new"}},
		{"empty part", map[string]string{"a": "old"}, nil, nil, map[string]string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			live, staged, hold := filepath.Join(base, "live"), filepath.Join(base, "staged"), filepath.Join(base, "hold")
			walktest.WriteTree(t, live, tc.live)
			walktest.WriteTree(t, staged, tc.stage)
			if err := swap(live, staged, hold, tc.keep); err != nil {
				t.Fatal(err)
			}
			if got := readTree(t, live); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("live after swap = %v, want %v", got, tc.want)
			}
			if _, err := os.Lstat(hold); !os.IsNotExist(err) {
				t.Errorf("holding folder left behind: %v", err)
			}
		})
	}
}

// TestSwapConcurrentWriter: a forced restore into a volume whose container
// keeps writing (write counter.tmp, rename it to counter, and recreate a
// folder the part also holds) succeeds: entries that vanish or reappear
// during the swap do not fail it, and the restored entries are in place.
func TestSwapConcurrentWriter(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	live := filepath.Join(base, "live")
	walktest.WriteTree(t, live, map[string]string{"notes.txt": "v2"})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			p := filepath.Join(live, "counter")
			_ = os.WriteFile(p+".tmp", []byte(fmt.Sprint(n)), 0o644)
			_ = os.Rename(p+".tmp", p)
			_ = os.MkdirAll(filepath.Join(live, "logs", "run"), 0o755)
			time.Sleep(20 * time.Microsecond)
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(5 * time.Millisecond)
	for i := range 200 {
		staged, hold := filepath.Join(base, fmt.Sprint("staged", i)), filepath.Join(base, fmt.Sprint("hold", i))
		walktest.WriteTree(t, staged, map[string]string{"notes.txt": "v1", "logs/": "", "logs/old.log": "x"})
		if err := swap(live, staged, hold, nil); err != nil {
			t.Fatalf("swap %d with a writer running: %v", i, err)
		}
		if b, err := os.ReadFile(filepath.Join(live, "notes.txt")); err != nil || string(b) != "v1" {
			t.Fatalf("swap %d: notes.txt = %q, %v", i, b, err)
		}
		if b, err := os.ReadFile(filepath.Join(live, "logs", "old.log")); err != nil || string(b) != "x" {
			t.Fatalf("swap %d: logs/old.log = %q, %v", i, b, err)
		}
		walktest.WriteTree(t, live, map[string]string{"notes.txt": "v2"})
	}
}

// readTree returns every regular file under dir with its content.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	testutil.ReadFiles(t, dir, func(rel string, b []byte) { got[filepath.ToSlash(rel)] = string(b) })
	return got
}

// TestSwapFailures: a rename that fails while the restored entries move in
// puts the live content back (and says nothing about keeping the staging
// volume); when putting it back fails too, the error says where the live
// content is and marks the staging volume as kept (errKeepStaging).
func TestSwapFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		fail     func(from, to string) bool
		keep     bool   // errKeepStaging expected
		liveWant string // notes.txt in live afterwards ("" = not checked)
	}{
		{"moving in fails, undo works",
			func(from, to string) bool { return strings.Contains(from, "staged") && strings.HasSuffix(to, "b.txt") },
			false, "live"},
		{"moving in and putting back fail",
			func(from, to string) bool {
				return strings.Contains(from, "staged") && strings.HasSuffix(to, "b.txt") ||
					strings.Contains(from, "hold") && strings.HasSuffix(to, "notes.txt")
			},
			true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			live, staged, hold := filepath.Join(base, "live"), filepath.Join(base, "staged"), filepath.Join(base, "hold")
			walktest.WriteTree(t, live, map[string]string{"notes.txt": "live"})
			walktest.WriteTree(t, staged, map[string]string{"a.txt": "new", "b.txt": "new", "notes.txt": "restored"})
			rename := func(from, to string) error {
				if tc.fail(from, to) {
					return fmt.Errorf("rename %s: injected failure", from)
				}
				return os.Rename(from, to)
			}
			err := swapWith(rename, live, staged, hold, nil)
			if err == nil {
				t.Fatal("swap succeeded with a failing rename")
			}
			if errors.Is(err, errKeepStaging) != tc.keep {
				t.Fatalf("errKeepStaging = %v, want %v: %v", errors.Is(err, errKeepStaging), tc.keep, err)
			}
			if tc.keep && !strings.Contains(err.Error(), hold) {
				t.Errorf("the error does not say where the live content is: %v", err)
			}
			if tc.liveWant != "" {
				if b, err := os.ReadFile(filepath.Join(live, "notes.txt")); err != nil || string(b) != tc.liveWant {
					t.Errorf("live notes.txt after a failed swap: %q, %v", b, err)
				}
			}
		})
	}
}
