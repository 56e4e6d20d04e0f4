package main

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/davtest"
)

// TestScheduleGPUUsage: `fireops schedule` serves the per-user GPU usage
// on /metrics. On a host without NVIDIA's library (the test machine) that
// is no series at all, and one log line however often it is scraped; with
// a driver, no such line.
func TestScheduleGPUUsage(t *testing.T) {
	t.Parallel()
	dav := davtest.Start(t)
	cfg, _ := davConfig(t, dav, `metrics: {listen: "127.0.0.1:0"}
schedule: {snapshot: "", rotate: "", verify: "", gpu_check: ""}`)
	d := startDaemon(t, cfg)
	waitFor(t, "the metrics server", func() bool { return len(d.find("serving metrics")) > 0 })
	url := "http://" + d.find("serving metrics")[0]["addr"].(string) + "/metrics"
	for i := 0; i < 3; i++ {
		for name := range scrape(t, url) {
			if strings.HasPrefix(name, "fireops_gpu_container_") || strings.HasPrefix(name, "fireops_gpu_usage_") {
				t.Errorf("scrape %d: %s on a host without GPUs", i, name)
			}
		}
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("daemon exit: %v\n%s", err, d.log())
		}
	case <-time.After(2 * time.Minute): // a safety net
		t.Fatalf("the daemon did not exit after SIGTERM:\n%s", d.log())
	}
	var lines []string
	for _, l := range d.find("per-user GPU usage: NVML did not initialise, no GPU usage on /metrics (fireops gpu check says why)") {
		lines = append(lines, fmt.Sprint(l["level"], " ", l["err"]))
	}
	want := []string{"INFO ERROR_LIBRARY_NOT_FOUND"}
	if _, err := exec.LookPath("nvidia-smi"); err == nil {
		want = nil // a GPU host: NVML initialises
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("NVML log lines after 3 scrapes: %q, want %q\n%s", lines, want, d.log())
	}
}
