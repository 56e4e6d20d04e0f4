package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestPlanDataset(t *testing.T) {
	for _, size := range []int64{64 * mib, 1 * gib, 4 * gib} {
		a, b := planDataset(size, 7), planDataset(size, 7)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("size %d: plan not deterministic", size)
		}
		var total int64
		kinds := map[fileKind]int{}
		for _, s := range a {
			total += s.size
			kinds[s.kind]++
		}
		if total < size*85/100 || total > size*105/100 {
			t.Errorf("size %d: planned %d bytes", size, total)
		}
		if len(kinds) != len(kindNames) || kinds[kindSmall] < 1000 {
			t.Errorf("size %d: files per kind %v", size, kinds)
		}
	}
}

// TestGenerateDataset checks that the same seed gives the same bytes, that
// notebooks and JSON files parse, and that checkpoints are the planned size.
func TestGenerateDataset(t *testing.T) {
	sum := func(dir string) map[string][32]byte {
		out := map[string][32]byte{}
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			out[rel] = sha256.Sum256(b)
			switch {
			case strings.HasSuffix(p, ".ipynb"), strings.HasSuffix(p, ".json"):
				if !json.Valid(b) {
					t.Errorf("%s is not valid JSON", rel)
				}
			case strings.HasSuffix(p, ".jsonl"):
				line, _, _ := strings.Cut(string(b), "\n")
				if !json.Valid([]byte(line)) {
					t.Errorf("%s: first line is not JSON: %q", rel, line)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	ctx := context.Background()
	d1, d2 := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	st, err := generateDataset(ctx, d1, 4*mib, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := generateDataset(ctx, d2, 4*mib, 3, 1); err != nil {
		t.Fatal(err)
	}
	s1, s2 := sum(d1), sum(d2)
	if len(s1) != st.files || !reflect.DeepEqual(s1, s2) {
		t.Fatalf("same seed, different datasets (%d and %d files)", len(s1), len(s2))
	}
	for _, s := range planDataset(4*mib, 3) {
		if s.kind != kindCheckpoint {
			continue
		}
		fi, err := os.Stat(filepath.Join(d1, s.rel))
		if err != nil || fi.Size() != s.size {
			t.Errorf("%s: %v, size %d, want %d", s.rel, err, fi.Size(), s.size)
		}
	}
}

func TestMeasure(t *testing.T) {
	ctx := context.Background()
	s, err := measure(ctx, command{argv: []string{"bash", "-c", `head -c 64000000 /dev/zero | cat > /dev/null`}})
	if err != nil {
		t.Fatal(err)
	}
	if s.wall <= 0 || s.maxRSS <= 0 || s.cpu < 0 {
		t.Errorf("sample %+v", s)
	}
	_, err = measure(ctx, command{argv: []string{"bash", "-c", "echo oops >&2; exit 3"}})
	if err == nil || !strings.Contains(err.Error(), "oops") {
		t.Errorf("error %v, want the command's stderr in it", err)
	}
	var out strings.Builder
	if _, err := measure(ctx, command{argv: []string{"echo", "hi"}, stdout: &out}); err != nil || out.String() != "hi\n" {
		t.Errorf("stdout %q, %v", out.String(), err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1GiB": gib, "256MiB": 256 * mib, "64M": 64 * mib, "1.5G": 3 * gib / 2, "4096": 4096} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-1GiB", "0"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) succeeded", in)
		}
	}
}

func TestVerdict(t *testing.T) {
	if v := verdict("x", 0.95, 1.1, "x"); !strings.HasPrefix(v, "PASS") || !strings.Contains(v, "14% under") {
		t.Error(v)
	}
	if v := verdict("x", 300, 256, " MiB"); !strings.HasPrefix(v, "MISS") || !strings.Contains(v, "300 MiB") || !strings.Contains(v, "17% over") {
		t.Error(v)
	}
	if v := verdict("x", -1, 1, "x"); !strings.HasPrefix(v, "SKIP") {
		t.Error(v)
	}
	if m := median([]int64{5, 1, 3}); m != 3 {
		t.Errorf("median %d", m)
	}
	if m := median([]int64{4, 1, 3, 2}); m != 2 {
		t.Errorf("median %d", m)
	}
}
