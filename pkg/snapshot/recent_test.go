package snapshot

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestRecentSnapshots: the ids a host recorded writing to a destination,
// from the known-objects logs' companions of every dedup space and the
// per-part record, newest first and each once; another destination's
// records, malformed ones and a fresh state_dir name none.
func TestRecentSnapshots(t *testing.T) {
	t.Parallel()
	tg := newTestTagger(t)
	dir := t.TempDir()
	if got := RecentSnapshots(dir, "gpu01", "local"); len(got) != 0 {
		t.Fatalf("fresh state_dir: %v", got)
	}
	const (
		s1 = "20260101T030000Z-aaaaaa"
		s2 = "20260102T030000Z-bbbbbb"
		s3 = "20260103T030000Z-cccccc"
		s4 = "20260104T030000Z-dddddd"
	)
	last := func(dest, space, content string) {
		t.Helper()
		p := knownPath(dir, "gpu01", dest, space) + ".last"
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	last("local", "old", s1+" 00ff")
	last("local", "new", s3+" 00ff")
	last("local", "bad", "not-an-id 00ff")
	last("remote", "new", s4+" 00ff")
	// files:stack last in s2 (an --only run of it), sqlite:hub in s3.
	if err := recordParts(dir, "gpu01", "local", s2, Written{Tagger: tg, Parts: []Part{{ID: "files:stack"}, {ID: "sqlite:hub"}}, Clean: true}); err != nil {
		t.Fatal(err)
	}
	if err := recordParts(dir, "gpu01", "local", s3, Written{Tagger: tg, Parts: []Part{{ID: "sqlite:hub"}}}); err != nil {
		t.Fatal(err)
	}
	if got, want := RecentSnapshots(dir, "gpu01", "local"), []string{s3, s2, s1}; !reflect.DeepEqual(got, want) {
		t.Errorf("local: %v, want %v", got, want)
	}
	if got, want := RecentSnapshots(dir, "gpu01", "remote"), []string{s4}; !reflect.DeepEqual(got, want) {
		t.Errorf("remote: %v, want %v", got, want)
	}
	if got := RecentSnapshots(dir, "gpu02", "local"); len(got) != 0 {
		t.Errorf("another host: %v", got)
	}
}
