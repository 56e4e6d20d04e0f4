package metrics

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/testenv"
)

func sampleFamilies() []Family {
	return []Family{
		{
			Name: "fireops_test_ok", Help: "Whether a check passed (1) or failed (0).", Type: Gauge,
			Samples: []Sample{
				{Labels: L("check", "temperature", "gpu", "0"), Value: 1},
				{Labels: L("check", "ecc", "gpu", "1"), Value: 0},
				{Labels: L("check", "nvml"), Value: 1},
			},
		},
		{
			Name: "fireops_test_errors_total", Help: "Errors since boot.\nSecond line with a \\ backslash.", Type: Counter,
			Samples: []Sample{{Labels: L("name", "quote \" backslash \\ newline \n end"), Value: 3}},
		},
		{
			Name: "fireops_test_values", Help: "Special values.", Type: Gauge,
			Samples: []Sample{
				{Labels: L("v", "nan"), Value: math.NaN()},
				{Labels: L("v", "inf"), Value: math.Inf(1)},
				{Labels: L("v", "-inf"), Value: math.Inf(-1)},
				{Labels: L("v", "big"), Value: 1.7e12},
				{Labels: L("v", "frac"), Value: 0.25},
			},
		},
		{Name: "fireops_test_empty", Help: "No samples.", Type: Gauge},
	}
}

func TestWriteFormat(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, sampleFamilies()); err != nil {
		t.Fatal(err)
	}
	want := `# HELP fireops_test_ok Whether a check passed (1) or failed (0).
# TYPE fireops_test_ok gauge
fireops_test_ok{check="temperature",gpu="0"} 1
fireops_test_ok{check="ecc",gpu="1"} 0
fireops_test_ok{check="nvml"} 1
# HELP fireops_test_errors_total Errors since boot.\nSecond line with a \\ backslash.
# TYPE fireops_test_errors_total counter
fireops_test_errors_total{name="quote \" backslash \\ newline \n end"} 3
# HELP fireops_test_values Special values.
# TYPE fireops_test_values gauge
fireops_test_values{v="nan"} NaN
fireops_test_values{v="inf"} +Inf
fireops_test_values{v="-inf"} -Inf
fireops_test_values{v="big"} 1.7e+12
fireops_test_values{v="frac"} 0.25
# HELP fireops_test_empty No samples.
# TYPE fireops_test_empty gauge
`
	if got := b.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
}

func TestValidateRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		fams []Family
		want string
	}{
		{"bad metric name", []Family{{Name: "0abc"}}, "metric name"},
		{"dash in name", []Family{{Name: "a-b"}}, "metric name"},
		{"bad label name", []Family{{Name: "a", Samples: []Sample{{Labels: L("a-b", "x")}}}}, "label name"},
		{"reserved label", []Family{{Name: "a", Samples: []Sample{{Labels: L("__name__", "x")}}}}, "label name"},
		{"label twice", []Family{{Name: "a", Samples: []Sample{{Labels: L("x", "1", "x", "2")}}}}, "given twice"},
		{"family twice", []Family{{Name: "a"}, {Name: "a"}}, "family given twice"},
		{"bad type", []Family{{Name: "a", Type: "histogram"}}, "unsupported type"},
		{"duplicate sample", []Family{{Name: "a", Samples: []Sample{{Labels: L("x", "1", "y", "2")}, {Labels: L("y", "2", "x", "1")}}}}, "duplicate sample"},
		{"empty label is absent", []Family{{Name: "a", Samples: []Sample{{Labels: L("x", "")}, {}}}}, "duplicate sample"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.fams)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.want)
			}
			if err := Write(&bytes.Buffer{}, tc.fams); err == nil {
				t.Fatal("Write accepted invalid families")
			}
		})
	}
}

func TestWriteTextfile(t *testing.T) {
	dir := t.TempDir()
	if err := WriteTextfile(dir, "fireops_test.prom", sampleFamilies()); err != nil {
		t.Fatal(err)
	}
	// A second write replaces the file.
	fams := sampleFamilies()[:1]
	if err := WriteTextfile(dir, "fireops_test.prom", fams); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "fireops_test.prom")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v, want 0644", fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := Write(&want, fams); err != nil {
		t.Fatal(err)
	}
	if string(data) != want.String() {
		t.Errorf("file:\n%s\nwant:\n%s", data, want.String())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("folder holds %d entries, want only the .prom file (no temp files left)", len(entries))
	}
}

func TestWriteTextfileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"x.txt", "sub/x.prom", ".prom", ""} {
		if err := WriteTextfile(dir, name, nil); err == nil {
			t.Errorf("WriteTextfile(%q) accepted a bad name", name)
		}
	}
	if err := WriteTextfile(filepath.Join(dir, "missing"), "x.prom", nil); err == nil {
		t.Error("WriteTextfile into a missing folder succeeded")
	}
	if err := WriteTextfile(dir, "x.prom", []Family{{Name: "bad name"}}); err == nil {
		t.Error("WriteTextfile accepted an invalid family")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("failed writes left %d files behind", len(entries))
	}
}

// TestPromtoolAcceptsOutput checks the output with Prometheus' own linter.
func TestPromtoolAcceptsOutput(t *testing.T) {
	promtool := testenv.RequireTool(t, "promtool")
	dir := t.TempDir()
	if err := WriteTextfile(dir, "fireops_test.prom", sampleFamilies()); err != nil {
		t.Fatal(err)
	}
	if out, err := testenv.CheckMetrics(promtool, filepath.Join(dir, "fireops_test.prom")); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
