package runner

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/gpucheck"
	"github.com/firetech/fireops/pkg/gpucheck/gpuchecktest"
	"github.com/firetech/fireops/pkg/metrics"
)

// engine is a Docker Engine stand-in with the given runtimes.
type engine struct{ runtimes []string }

func (e engine) RuntimeInfo(context.Context) (gpucheck.RuntimeInfo, error) {
	return gpucheck.RuntimeInfo{ServerVersion: "28.5.2", Runtimes: e.runtimes}, nil
}

func (e engine) RunGPUContainer(context.Context, string, []string) (string, error) { return "", nil }

// TestGPUCheck runs the check on go-nvml's mock DGX A100: its exit code,
// its report, and what it records (the textfile and Publish).
func TestGPUCheck(t *testing.T) {
	t.Parallel()
	negative := -1
	for _, tc := range []struct {
		name      string
		runtimes  []string
		o         GPUCheckOptions
		noDir     bool
		code      int
		report    bool
		published int
		textfile  bool
	}{
		{name: "passing", runtimes: []string{"nvidia", "runc"}, code: exitcode.OK, report: true, published: 1, textfile: true},
		{name: "failing", runtimes: []string{"runc"}, code: exitcode.CheckFailed, report: true, published: 1, textfile: true},
		{name: "no metrics", runtimes: []string{"nvidia"}, o: GPUCheckOptions{NoMetrics: true}, code: exitcode.OK, report: true, published: 1},
		{name: "textfile folder missing", runtimes: []string{"nvidia"}, noDir: true, code: exitcode.Failure, report: true, published: 1},
		{name: "bad threshold", runtimes: []string{"nvidia"}, o: GPUCheckOptions{ExpectCount: &negative}, code: exitcode.Usage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t)
			if tc.noDir {
				cfg.Metrics.TextfileDir = filepath.Join(cfg.Metrics.TextfileDir, "missing")
			}
			var published []metrics.JobMetrics
			r := &Runner{Publish: func(m metrics.JobMetrics) { published = append(published, m) }}
			o := tc.o
			o.NVML, o.Engine = gpuchecktest.HealthyDGXA100(), engine{runtimes: tc.runtimes}
			rep, err := r.GPUCheck(context.Background(), cfg, o)
			if exitcode.Code(err) != tc.code {
				t.Fatalf("exit code %d (%v), want %d", exitcode.Code(err), err, tc.code)
			}
			if (rep != nil) != tc.report {
				t.Errorf("report %v, want one: %v", rep != nil, tc.report)
			}
			if len(published) != tc.published || tc.published > 0 && published[0].RunFile != gpucheck.TextfileName {
				t.Errorf("published %+v, want %d of %s", published, tc.published, gpucheck.TextfileName)
			}
			_, statErr := os.Stat(filepath.Join(cfg.Metrics.TextfileDir, gpucheck.TextfileName))
			if (statErr == nil) != tc.textfile {
				t.Errorf("textfile written: %v, want %v", statErr == nil, tc.textfile)
			}
		})
	}
}
