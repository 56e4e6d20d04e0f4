package gpucheck

import (
	"context"
	"os/exec"
	"strings"
	"testing"
)

// TestRealNVML runs the checks with the real go-nvml library. Without an
// NVIDIA driver (the test machine) NVML must report
// ERROR_LIBRARY_NOT_FOUND as a failing check, without crashing the test
// binary; a driver NVML cannot initialise is a failing check too. With a
// driver (scripts/gpu-smoke.sh on a GPU machine) NVML must initialise and
// give each GPU's facts, and see the GPUs nvidia-smi -L lists when
// nvidia-smi is there.
func TestRealNVML(t *testing.T) {
	r, err := Run(context.Background(), Options{
		Thresholds: Thresholds{MaxTemperatureC: 85},
		Engine:     &fakeEngine{info: RuntimeInfo{Runtimes: []string{"nvidia"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	first := r.Checks[0]
	if first.Name != CheckNVML {
		t.Fatalf("first check is %s, want nvml", first.Name)
	}
	smi, lookErr := exec.LookPath("nvidia-smi")
	if first.Status != Pass {
		if lookErr == nil {
			t.Fatalf("nvidia-smi is installed but NVML did not initialise: %+v", first)
		}
		if first.Status != Fail || !strings.HasPrefix(first.Value, "ERROR_") {
			t.Errorf("NVML did not initialise, and its check is %+v, want a failure naming NVML's error", first)
		}
		if len(r.Checks) != 2 || len(r.GPUs) != 0 {
			t.Errorf("after a failed Init: %d checks, %d GPUs", len(r.Checks), len(r.GPUs))
		}
		return
	}
	for i, g := range r.GPUs {
		if g.UUID == "" || g.Name == "" || !strings.Contains(g.BusID, ":") || g.MemoryTotalBytes == 0 {
			t.Errorf("gpu %d facts look empty: %+v", i, g)
		}
	}
	for _, c := range r.Checks {
		t.Logf("%-18s %-7s %-5s %s %s", c.Name, c.Subject(), c.Status, c.Value, c.Message)
	}
	if lookErr != nil {
		t.Logf("NVML initialised without nvidia-smi here (%v): its %d GPUs are not compared with nvidia-smi -L", lookErr, len(r.GPUs))
		return
	}
	out, err := exec.Command(smi, "-L").Output()
	if err != nil {
		t.Fatalf("nvidia-smi -L: %v", err)
	}
	uuids := parseSmokeList(string(out))
	if len(uuids) != len(r.GPUs) {
		t.Fatalf("nvidia-smi -L lists %d GPUs, NVML %d", len(uuids), len(r.GPUs))
	}
	for i, g := range r.GPUs {
		if g.UUID != uuids[i] {
			t.Errorf("gpu %d: NVML UUID %s, nvidia-smi %s", i, g.UUID, uuids[i])
		}
	}
}
