package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/testutil"
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
		testutil.ReadFiles(t, dir, func(rel string, b []byte) {
			out[rel] = sha256.Sum256(b)
			switch {
			case strings.HasSuffix(rel, ".ipynb"), strings.HasSuffix(rel, ".json"):
				if !json.Valid(b) {
					t.Errorf("%s is not valid JSON", rel)
				}
			case strings.HasSuffix(rel, ".jsonl"):
				line, _, _ := strings.Cut(string(b), "\n")
				if !json.Valid([]byte(line)) {
					t.Errorf("%s: first line is not JSON: %q", rel, line)
				}
			}
		})
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

func TestParseSnapResult(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      *snapResult
	}{
		{
			name: "today's output",
			out: `{"id":"20261128T030000Z-ab12","host":"bench","parts":[{"id":"files:ml","kind":"files","size":100,"stored":60,"reused":true}],` +
				`"destinations":[{"name":"local1","uploaded":4096,"reused":1,"retries":0}]}` + "\n",
			want: &snapResult{ID: "20261128T030000Z-ab12", Parts: []snapPart{{ID: "files:ml", Reused: true, Size: 100, Stored: 60}},
				Destinations: []snapDest{{Name: "local1", Uploaded: 4096, Reused: 1}}},
		},
		{
			name: "new fields, a field of another type, text around",
			out: "note: format v2\n" + `{"id":"x","format":2,"parts":[{"id":"files:ml","reused":"partly","size":1.5e3,"pieces":{"new":3,"known":97}}],` +
				`"destinations":[{"name":"d","uploaded":12,"reused":{"objects":97},"error":{"code":5}}],"objects":{"uploaded":3}}` + "\ndone\n",
			want: &snapResult{ID: "x", Parts: []snapPart{{ID: "files:ml", Size: 1500}},
				Destinations: []snapDest{{Name: "d", Uploaded: 12, Error: `{"code":5}`}}},
		},
		{
			name: "empty object",
			out:  "{}",
			want: &snapResult{},
		},
		{name: "no JSON", out: "fireops: error: something\n"},
		{name: "broken JSON", out: `{"id": `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSnapResult([]byte(tc.out))
			if tc.want == nil {
				if err == nil {
					t.Fatalf("no error, got %+v", got)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, %v\nwant %+v", got, err, tc.want)
			}
		})
	}
}

func TestOnly(t *testing.T) {
	for _, tc := range []struct {
		only         string
		churn, small bool // the flags
		want         []string
		err          bool
	}{
		{only: "", churn: true, small: true, want: []string{groupMain, groupChurn, groupSmall}},
		{only: "", churn: false, small: true, want: []string{groupMain, groupSmall}},
		{only: "churn", churn: false, small: true, want: []string{groupChurn}},
		{only: "main, small-files", churn: true, small: true, want: []string{groupMain, groupSmall}},
		{only: "churn,small", want: []string{groupChurn, groupSmall}},
		{only: "restore", err: true},
	} {
		only, err := parseOnly(tc.only)
		if (err != nil) != tc.err {
			t.Errorf("%q: %v", tc.only, err)
			continue
		}
		if err != nil {
			continue
		}
		o := options{only: only, churn: tc.churn, smallFiles: tc.small}
		var got []string
		for _, g := range []string{groupMain, groupChurn, groupSmall} {
			if o.enabled(g) {
				got = append(got, g)
			}
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("-only %q, -churn=%v -small-files=%v: %v, want %v", tc.only, tc.churn, tc.small, got, tc.want)
		}
	}
}

func TestDiskNeed(t *testing.T) {
	base := options{size: gib, churnSize: 300 * mib, churnNights: 7, smallCount: 100000, scaleCheck: true}
	for _, tc := range []struct {
		name string
		o    func(o *options)
		want int64
	}{
		{"main only", func(o *options) { o.only = map[string]bool{groupMain: true} }, 11 * gib},
		{"main without the 4x check", func(o *options) { o.only = map[string]bool{groupMain: true}; o.scaleCheck = false }, 8 * gib},
		{"churn only", func(o *options) { o.only = map[string]bool{groupChurn: true} }, 10 * 300 * mib},
		{"small only", func(o *options) { o.only = map[string]bool{groupSmall: true} }, 100000 * smallFileMean * 3},
		{"all, small dataset", func(o *options) { o.size = 64 * mib; o.churn, o.smallFiles = true, true }, 64*mib + 10*300*mib},
	} {
		o := base
		tc.o(&o)
		if got := diskNeed(o); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, fmtBytes(got), fmtBytes(tc.want))
		}
	}
}
