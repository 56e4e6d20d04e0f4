package churn

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/testutil"
)

func size(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		size                 int64
		minNotebooks, maxNbs int
		minCheckpoints       int
	}{
		{size: 30 * mib, minNotebooks: 85, maxNbs: 95, minCheckpoints: 1},
		{size: 300 * mib, minNotebooks: 890, maxNbs: 910, minCheckpoints: 3},
		{size: 2 * mib, minNotebooks: 10, maxNbs: 10, minCheckpoints: 1},
	} {
		a, b := plan(tc.size, 9), plan(tc.size, 9)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("size %d: plan not deterministic", tc.size)
		}
		if reflect.DeepEqual(a, plan(tc.size, 10)) {
			t.Errorf("size %d: seeds 9 and 10 give the same plan", tc.size)
		}
		kinds := map[Kind]int{}
		var total int64
		paths := map[string]bool{}
		for _, s := range a {
			kinds[s.kind]++
			if s.kind != Notebook { // notebooks overshoot their target (see TestGenerate)
				total += s.size
			}
			if paths[s.rel] {
				t.Errorf("size %d: %s planned twice", tc.size, s.rel)
			}
			paths[s.rel] = true
		}
		if kinds[Notebook] < tc.minNotebooks || kinds[Notebook] > tc.maxNbs || kinds[Checkpoint] < tc.minCheckpoints || kinds[CSVLog] < 1 || kinds[Small] < 8 {
			t.Errorf("size %d: files per kind %v", tc.size, kinds)
		}
		if total < tc.size*80/100 || total > tc.size*92/100 {
			t.Errorf("size %d: %d bytes planned besides notebooks", tc.size, total)
		}
	}
}

// TestGenerateAndApply makes two trees with the same seed, checks they are
// equal and about the size asked for, applies nights to both and checks
// that each night changes what it says, in the same way on both.
func TestGenerateAndApply(t *testing.T) {
	ctx := context.Background()
	const want = 24 * mib
	d1, d2 := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	st, err := Generate(ctx, d1, want, 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(ctx, d2, want, 4); err != nil {
		t.Fatal(err)
	}
	s1 := testutil.FileSums(t, d1)
	if len(s1) != st.Files || !reflect.DeepEqual(s1, testutil.FileSums(t, d2)) {
		t.Fatalf("same seed, different trees (%d files, stats %+v)", len(s1), st)
	}
	if st.Bytes < want*90/100 || st.Bytes > want*115/100 {
		t.Errorf("generated %d bytes, asked for %d", st.Bytes, want)
	}

	for night := 1; night <= 3; night++ {
		before := testutil.FileSums(t, d1)
		sizes := map[string]int64{}
		for rel := range before {
			sizes[rel] = size(t, filepath.Join(d1, rel))
		}
		c, err := ApplyNight(d1, 4, night)
		if err != nil {
			t.Fatalf("night %d: %v", night, err)
		}
		if _, err := ApplyNight(d2, 4, night); err != nil {
			t.Fatal(err)
		}
		after := testutil.FileSums(t, d1)
		if !reflect.DeepEqual(after, testutil.FileSums(t, d2)) {
			t.Fatalf("night %d: the same change gave different trees", night)
		}
		if c.Edited != 2 || c.Added != 1 || len(c.Paths) != 4 || c.Appended < Nightly.Append || c.Appended > Nightly.Append+200 {
			t.Errorf("night %d: change %+v (%s)", night, c, c)
		}
		if c.AddedBytes < 2*kib || c.AddedBytes > 6*kib+200 {
			t.Errorf("night %d: added %d bytes", night, c.AddedBytes)
		}
		changed := map[string]bool{}
		for rel := range after {
			if before[rel] != after[rel] {
				changed[rel] = true
			}
		}
		if len(changed) != len(c.Paths) {
			t.Errorf("night %d: %d files changed, the change names %v", night, len(changed), c.Paths)
		}
		for _, rel := range c.Paths {
			if !changed[rel] {
				t.Errorf("night %d: %s named but unchanged", night, rel)
			}
			p := filepath.Join(d1, rel)
			switch {
			case strings.HasSuffix(rel, ".ipynb"):
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				var nb map[string]any
				if err := json.Unmarshal(b, &nb); err != nil || nb["cells"] == nil {
					t.Errorf("night %d: %s is no longer a notebook: %v", night, rel, err)
				}
				if d := int64(len(b)) - sizes[rel]; d < -10 || d > 20 {
					t.Errorf("night %d: %s changed size by %d bytes", night, rel, d)
				}
			case strings.HasSuffix(rel, "train_log.csv"):
				if d := size(t, p) - sizes[rel]; d != c.Appended {
					t.Errorf("night %d: %s grew by %d, change says %d", night, rel, d, c.Appended)
				}
				checkLog(t, p)
			default:
				if _, ok := before[rel]; ok {
					t.Errorf("night %d: %s was there before", night, rel)
				}
			}
		}
	}
	if _, err := ApplyNight(d1, 4, 2); err == nil || !strings.Contains(err.Error(), "already applied") {
		t.Errorf("night 2 again: %v, want already applied", err)
	}
}

// checkLog checks that a grown log's steps go on one by one.
func checkLog(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if lines[0]+"\n" != csvHeader {
		t.Fatalf("%s: header %q", path, lines[0])
	}
	for i, l := range lines[1:] {
		f := strings.Split(l, ",")
		if len(f) != 10 || f[1] != strconv.Itoa(i) {
			t.Fatalf("%s: row %d is %q", path, i, l)
		}
	}
}

func TestPercent(t *testing.T) {
	dir := t.TempDir()
	st, err := Generate(context.Background(), dir, 12*mib, 2)
	if err != nil {
		t.Fatal(err)
	}
	p := Percent(st.Bytes, 1)
	c, err := Apply(dir, 2, 1, p)
	if err != nil {
		t.Fatal(err)
	}
	total := c.Appended + c.AddedBytes
	if total < st.Bytes/100*90/100 || total > st.Bytes/100*115/100 || c.Edited != 4 || c.Added != 10 {
		t.Errorf("1%% of %d bytes: %s, %d bytes", st.Bytes, c, total)
	}
}

func TestEditCell(t *testing.T) {
	nb := "{\n \"cells\": [\n  {\n   \"source\": [\n    \"import numpy as np\\n\",\n    \"x = np.linspace(0, 1, 1000)\\n\"\n   ]\n  }\n ],\n" +
		" \"metadata\": {\"a\": \"a \\\"quoted\\\" value here\"},\n \"nbformat\": 4\n}\n"
	for seed := uint64(0); seed < 20; seed++ {
		out, err := editCell([]byte(nb), rand.New(rand.NewPCG(seed, 1)))
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("seed %d: %v\n%s", seed, err, out)
		}
		if string(out) == nb || !strings.Contains(string(out), `quoted\" value`) {
			t.Fatalf("seed %d: edited the wrong thing:\n%s", seed, out)
		}
		src := v["cells"].([]any)[0].(map[string]any)["source"].([]any)
		if len(src) != 2 || !strings.HasSuffix(src[0].(string), "\n") || !strings.HasSuffix(src[1].(string), "\n") {
			t.Fatalf("seed %d: source %q", seed, src)
		}
	}
	if _, err := editCell([]byte(`{"cells": []}`), rand.New(rand.NewPCG(1, 1))); err == nil {
		t.Error("a notebook without cell text: no error")
	}
}

func TestParseLastRow(t *testing.T) {
	for _, tc := range []struct {
		tail string
		ok   bool
		step int
	}{
		{csvHeader + "1,0,0.5,0.5,2.5,1.0,1.2,3e-04,0.9,1700000000.100\n", true, 1},
		{"…partial\n3,2999,0.5,12.5,2.5,1.0,1.2,3e-04,0.9,1700000000.100\n\n", true, 3000},
		{"a,b,c\n", false, 0},
		{"1,x,0.5,0.5,2.5,1.0,1.2,3e-04,0.9,1700000000.100\n", false, 0},
	} {
		l, err := parseLastRow([]byte(tc.tail))
		if (err == nil) != tc.ok || (tc.ok && l.step != tc.step) {
			t.Errorf("%q: %+v, %v", tc.tail, l, err)
		}
	}
}

// TestApplyFewFiles changes a tree with fewer logs and notebooks than the
// plan asks for, and one with none.
func TestApplyFewFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := WriteFile(filepath.Join(dir, "a/log.csv"), CSVLog, 100*kib, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteFile(filepath.Join(dir, "nb.ipynb"), Notebook, 30*kib, 2); err != nil {
		t.Fatal(err)
	}
	c, err := Apply(dir, 1, 1, Plan{Logs: 3, Append: 10 * kib, Notebooks: 2, NewFiles: 1})
	if err != nil {
		t.Fatal(err)
	}
	if c.Appended < 30*kib || c.Appended > 30*kib+200 || c.Edited != 1 || c.Added != 1 {
		t.Errorf("change %+v", c)
	}
	if _, err := Apply(t.TempDir(), 1, 1, Nightly); err == nil {
		t.Error("an empty tree: no error")
	}
}
