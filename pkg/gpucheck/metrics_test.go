package gpucheck

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/metrics"
)

func TestReportMetrics(t *testing.T) {
	s := healthyServer()
	dev(s, 3).GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 91, nvml.SUCCESS }
	dev(s, 5).GetTotalEccErrorsFunc = func(typ nvml.MemoryErrorType, c nvml.EccCounterType) (uint64, nvml.Return) {
		if typ == nvml.MEMORY_ERROR_TYPE_CORRECTED && c == nvml.AGGREGATE_ECC {
			return 12, nvml.SUCCESS
		}
		return 0, nvml.SUCCESS
	}
	r := run(t, s, nvidiaEngine(), defaultThresholds(), false)
	var b bytes.Buffer
	if err := metrics.Write(&b, r.Metrics()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	u3, _ := dev(s, 3).GetUUIDFunc()
	u5, _ := dev(s, 5).GetUUIDFunc()
	for _, want := range []string{
		"fireops_gpu_check_success 0\n",
		"fireops_gpu_check_last_run_timestamp_seconds 1.7723664e+09\n",
		`fireops_gpu_check_ok{check="nvml"} 1` + "\n",
		`fireops_gpu_check_ok{check="temperature",gpu="3",uuid="` + u3 + `"} 0` + "\n",
		`fireops_gpu_check_warning{check="ecc_corrected",gpu="5",uuid="` + u5 + `"} 1` + "\n",
		`fireops_gpu_check_ok{check="container_runtime"} 1` + "\n",
		"fireops_gpu_devices 8\n",
		`fireops_gpu_temperature_celsius{gpu="3",uuid="` + u3 + `",name="Mock NVIDIA A100-SXM4-40GB"} 91` + "\n",
		`fireops_gpu_ecc_errors{gpu="5",uuid="` + u5 + `",name="Mock NVIDIA A100-SXM4-40GB",type="corrected",counter="aggregate"} 12` + "\n",
		`fireops_gpu_remapped_rows{gpu="0",`,
		`fireops_gpu_memory_total_bytes{gpu="7",`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestReportJobMetrics: the gpu check's JobMetrics write Metrics to
// TextfileName and nothing else.
func TestReportJobMetrics(t *testing.T) {
	r := run(t, healthyServer(), nvidiaEngine(), defaultThresholds(), false)
	dir := t.TempDir()
	if err := r.JobMetrics().Write(dir); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != TextfileName {
		t.Fatalf("textfiles %v, want only %s", entries, TextfileName)
	}
	got, err := os.ReadFile(filepath.Join(dir, TextfileName))
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := metrics.Write(&want, r.Metrics()); err != nil {
		t.Fatal(err)
	}
	if string(got) != want.String() {
		t.Errorf("%s:\n%s\nwant:\n%s", TextfileName, got, want.String())
	}
}

// TestMetricsPassPromtool checks the textfile of a healthy run, a faulty
// run and a run without NVML with promtool check metrics.
func TestMetricsPassPromtool(t *testing.T) {
	promtool := testenv.RequireTool(t, "promtool")
	faulty := healthyServer()
	dev(faulty, 1).GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) { return 1, 2, true, false, nvml.SUCCESS }
	for name, lib := range map[string]nvml.Interface{
		"healthy": healthyServer(),
		"faulty":  faulty,
		"no-nvml": &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }},
	} {
		t.Run(name, func(t *testing.T) {
			r := run(t, lib, nvidiaEngine(), defaultThresholds(), false)
			dir := t.TempDir()
			if err := metrics.WriteTextfile(dir, TextfileName, r.Metrics()); err != nil {
				t.Fatal(err)
			}
			if out, err := testenv.CheckMetrics(promtool, filepath.Join(dir, TextfileName)); err != nil {
				t.Errorf("promtool check metrics: %v\n%s", err, out)
			}
		})
	}
}
