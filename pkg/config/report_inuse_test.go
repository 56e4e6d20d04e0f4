package config

import (
	"slices"
	"testing"
)

// TestReportHidden: the optional sections config check leaves out are
// the ones nothing uses: gpu: is in use while schedule runs the GPU check
// (by default), hub: and stack: only on a stack host or when set.
func TestReportHidden(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tc := range []struct {
		name, extra string
		hidden      []string
	}{
		{"backup-only host, default schedule", "", []string{"hub", "stack"}},
		{"backup-only host, gpu_check off", "schedule: {gpu_check: \"\"}\n", []string{"hub", "gpu", "stack"}},
		{"gpu_check at another time", "schedule: {gpu_check: \"0 * * * *\"}\n", []string{"hub", "stack"}},
		{"gpu: set, gpu_check off", "schedule: {gpu_check: \"\"}\ngpu: {expect_count: 2}\n", []string{"hub", "stack"}},
		{"hub: set, gpu_check off", "schedule: {gpu_check: \"\"}\nhub: {db_volume: hubdb}\n", []string{"gpu", "stack"}},
		{"stack host, gpu_check off", "schedule: {gpu_check: \"\"}\nstack: {dir: stack}\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := f.parse(t, minimal+tc.extra)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Check().Hidden(); !slices.Equal(got, tc.hidden) {
				t.Errorf("Hidden() = %v, want %v", got, tc.hidden)
			}
		})
	}
}
