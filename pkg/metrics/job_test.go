package metrics

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestJobMetricsWrite: a run writes its run file and its extra files, the
// success file only when Success is set; no folder writes nothing.
func TestJobMetricsWrite(t *testing.T) {
	run := []Family{{Name: "fireops_test_last_run_success", Help: "h", Type: Gauge, Samples: []Sample{{Value: 0}}}}
	succ := []Family{{Name: "fireops_test_last_success_timestamp_seconds", Help: "h", Type: Gauge, Samples: []Sample{{Value: 1}}}}
	extra := []Textfile{{Name: "fireops_test_extra.prom", Families: succ}}
	for _, tc := range []struct {
		name string
		m    JobMetrics
		want []string
	}{
		{"failed run", JobMetrics{Job: "test", RunFile: "fireops_test.prom", SuccessFile: "fireops_test_success.prom", Run: run, Extra: extra},
			[]string{"fireops_test.prom", "fireops_test_extra.prom"}},
		{"successful run", JobMetrics{Job: "test", RunFile: "fireops_test.prom", SuccessFile: "fireops_test_success.prom", Run: run, Success: succ},
			[]string{"fireops_test.prom", "fireops_test_success.prom"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var names []string
			for _, f := range tc.m.Textfiles() {
				names = append(names, f.Name)
			}
			if !slices.Equal(names, tc.want) {
				t.Fatalf("Textfiles %v, want %v", names, tc.want)
			}
			if err := tc.m.Write(""); err != nil {
				t.Fatalf("Write without a folder: %v", err)
			}
			dir := t.TempDir()
			if err := tc.m.Write(dir); err != nil {
				t.Fatal(err)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range entries {
				got = append(got, e.Name())
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("files %v, want %v", got, tc.want)
			}
			b, err := os.ReadFile(filepath.Join(dir, "fireops_test.prom"))
			if err != nil {
				t.Fatal(err)
			}
			want := "# HELP fireops_test_last_run_success h\n# TYPE fireops_test_last_run_success gauge\nfireops_test_last_run_success 0\n"
			if string(b) != want {
				t.Fatalf("run file:\n%s\nwant:\n%s", b, want)
			}
		})
	}
}
