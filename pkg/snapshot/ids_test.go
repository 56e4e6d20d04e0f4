package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestValidIDPrefix(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"", false},
		{"2", true},
		{"20260301", true},
		{"20260301T", true},
		{"20260301T120000Z-", true},
		{"20260301T120000Z-0a1b2c", true},
		{"20260301T120000Z-0a1b2c0", false}, // too long
		{"2026030x", false},
		{"20260301X", false},
		{"20260301T120000Z-0A", false}, // upper-case hex
		{"latest", false},
	} {
		if got := ValidIDPrefix(tc.id); got != tc.want {
			t.Errorf("ValidIDPrefix(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}

func TestIDSecond(t *testing.T) {
	for id, want := range map[string]string{
		"20260301T120000Z-0a1b2c": "20260301T120000Z",
		"20260301T120000Z":        "20260301T120000Z",
		"":                        "",
	} {
		if got := IDSecond(id); got != want {
			t.Errorf("IDSecond(%q) = %q, want %q", id, got, want)
		}
	}
}

// TestLayoutListings covers IDs, Hosts and StartedTime on a folder tree
// laid out as a destination is.
func TestLayoutListings(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	mk := func(p, data string) {
		t.Helper()
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			t.Fatal(err)
		}
		if data != "" {
			if err := os.WriteFile(full, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
		} else if err := os.Mkdir(full, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	const a, b = "20260301T120000Z-0a1b2c", "20260302T120000Z-ffffff"
	mk("h1/snapshots/"+a+"/"+StartedFile, "2026-03-01T12:00:00.5Z\n")
	mk("h1/snapshots/"+b, "")
	mk("h1/snapshots/not-an-id", "")
	mk("h1/snapshots/20260303T120000Z-000000", "a file, not a folder")
	mk("h2/snapshots/x", "")
	mk("h3/objects/00", "")
	mk("stray", "a file at the root")
	st := &dirStore{name: "d", root: root}

	ids, err := IDs(ctx, st, "h1")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{a, b}) {
		t.Errorf("IDs(h1) = %q, want %q", ids, []string{a, b})
	}
	if ids, err := IDs(ctx, st, "h3"); err != nil || len(ids) != 0 {
		t.Errorf("IDs(h3) = %q, %v; want none", ids, err)
	}

	hosts, err := Hosts(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(hosts)
	if !slices.Equal(hosts, []string{"h1", "h2"}) {
		t.Errorf("Hosts = %q, want [h1 h2]", hosts)
	}

	want := time.Date(2026, 3, 1, 12, 0, 0, 5e8, time.UTC)
	if got := StartedTime(ctx, st, "h1", a); !got.Equal(want) {
		t.Errorf("StartedTime(a) = %v, want %v", got, want)
	}
	if got := StartedTime(ctx, st, "h1", b); !got.IsZero() {
		t.Errorf("StartedTime(b) without a started file = %v, want zero", got)
	}
}
