package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/gpucheck/gpuchecktest"
	"github.com/firetech/fireops/pkg/gpuusage"
)

// TestScheduleGPUUsageTextfile runs `fireops schedule` in this process on
// go-nvml's mock, with metrics.textfile_dir set and the default loopback
// metrics.listen (no scrape job): the daemon replaces a stale
// fireops_gpu_usage.prom with the GPU process's series, removes the file
// while no GPU process runs, writes it again when one does, and removes it
// when it stops.
//
// Not parallel: it sets the daemon's NVML and interval (package
// variables), and restores them before the parallel tests resume.
func TestScheduleGPUUsageTextfile(t *testing.T) {
	// Above the largest pid_max (2^22): never a process here, so the
	// resolver finds no cgroup and reports it outside any container.
	const pid = 1<<22 + 1
	s := gpuchecktest.HealthyDGXA100()
	var mu sync.Mutex
	running := true
	dev := gpuchecktest.Device(s, 2)
	dev.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		mu.Lock()
		defer mu.Unlock()
		if !running {
			return nil, nvml.SUCCESS
		}
		return []nvml.ProcessInfo{{Pid: pid, UsedGpuMemory: 3 << 30, GpuInstanceId: 0xFFFFFFFF, ComputeInstanceId: 0xFFFFFFFF}}, nvml.SUCCESS
	}
	dev.GetProcessUtilizationFunc = func(uint64) ([]nvml.ProcessUtilizationSample, nvml.Return) {
		return nil, nvml.ERROR_NOT_FOUND
	}
	setRunning := func(r bool) { mu.Lock(); running = r; mu.Unlock() }
	oldNVML, oldInterval := gpuUsageNVML, gpuUsageInterval
	gpuUsageNVML, gpuUsageInterval = s, 20*time.Millisecond
	defer func() { gpuUsageNVML, gpuUsageInterval = oldNVML, oldInterval }()

	cfg := idleConfig(t)
	textDir := t.TempDir()
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const listen = `metrics: {listen: "127.0.0.1:0"}`
	y := testutil.Replace(t, string(raw), listen, `metrics: {listen: "127.0.0.1:0", textfile_dir: "`+textDir+`"}`)
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(textDir, "fireops_gpu_usage.prom")
	if err := os.WriteFile(file, []byte(`fireops_gpu_container_memory_used_bytes{user="gone"} 1`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	read := func() string {
		b, err := os.ReadFile(file)
		if err != nil {
			return ""
		}
		return string(b)
	}
	gone := func() bool { _, err := os.Stat(file); return errors.Is(err, fs.ErrNotExist) }

	var logs testutil.SyncBuffer
	a := &app{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &logs}
	root := a.rootCommand()
	root.SetArgs([]string{"--config", cfg, "--log-format", "json", "schedule"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	want := `fireops_gpu_container_memory_used_bytes{container="",gpu="2",user="",uuid="` + dev.UUID + `"} 3.221225472e+09`
	waitFor(t, "the GPU process's series in the textfile", func() bool { return strings.Contains(read(), want) })
	if got := read(); strings.Contains(got, "gone") || !strings.Contains(got, "# TYPE fireops_gpu_container_processes gauge\n") {
		t.Errorf("the textfile:\n%s", got)
	}
	setRunning(false)
	waitFor(t, "the textfile to go with the GPU process", gone)
	setRunning(true)
	waitFor(t, "the textfile to come back", func() bool { return strings.Contains(read(), want) })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the daemon: %v\n%s", err, logs.String())
		}
	case <-time.After(2 * time.Minute): // a safety net
		t.Fatalf("the daemon did not stop:\n%s", logs.String())
	}
	if !gone() {
		t.Errorf("the textfile stays after the daemon stopped:\n%s", read())
	}
	if !strings.Contains(logs.String(), `"msg":"per-user GPU usage: writing it for node-exporter's textfile collector"`) {
		t.Errorf("no log line about the textfile:\n%s", logs.String())
	}
}

// TestGPUUsageTextfileDir: the daemon writes the per-user GPU usage
// textfile only when the stack's Prometheus does not scrape its /metrics
// (the series would count twice); then it removes an earlier daemon's file
// and writes none.
func TestGPUUsageTextfileDir(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		m       config.Metrics
		want    string
		whyPart string
	}{
		{config.Metrics{TextfileDir: "/tf", Listen: "127.0.0.1:9798"}, "/tf", ""},
		{config.Metrics{TextfileDir: "/tf", Listen: ""}, "/tf", ""},
		{config.Metrics{TextfileDir: "/tf", Listen: "localhost:9798"}, "/tf", ""},
		{config.Metrics{TextfileDir: "/tf", Listen: "[::1]:9798"}, "/tf", ""},
		{config.Metrics{TextfileDir: "", Listen: "127.0.0.1:9798"}, "", "textfile_dir is not set"},
		{config.Metrics{TextfileDir: "/tf", Listen: "0.0.0.0:9798"}, "", "scrapes /metrics at host.docker.internal:9798"},
		{config.Metrics{TextfileDir: "/tf", Listen: ":9798"}, "", "scrapes /metrics at host.docker.internal:9798"},
		{config.Metrics{TextfileDir: "/tf", Listen: "172.17.0.1:9798"}, "", "scrapes /metrics at 172.17.0.1:9798"},
	} {
		dir, why := gpuUsageTextfileDir(tc.m)
		if dir != tc.want || !strings.Contains(why, tc.whyPart) || (dir == "") == (why == "") {
			t.Errorf("%+v: %q (%q), want %q (%q)", tc.m, dir, why, tc.want, tc.whyPart)
		}
	}

	// Scraped: a file an earlier daemon left goes, no new one comes.
	s := gpuchecktest.HealthyDGXA100()
	gpuchecktest.SetProcesses(gpuchecktest.Device(s, 0), []nvml.ProcessInfo{{Pid: 1<<22 + 1, UsedGpuMemory: 1, GpuInstanceId: 0xFFFFFFFF, ComputeInstanceId: 0xFFFFFFFF}}, nil)
	c := gpuusage.NewCollector(gpuusage.CollectorOptions{NVML: s, Resolver: &gpuusage.Resolver{ProcRoot: t.TempDir()}})
	defer c.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, gpuusage.TextfileName)
	if err := os.WriteFile(file, []byte("fireops_gpu_container_processes 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &app{log: slog.New(slog.DiscardHandler)}
	stop := a.gpuUsageTextfile(context.Background(), config.Metrics{TextfileDir: dir, Listen: "0.0.0.0:9798"}, c)
	stop()
	if _, err := os.Stat(file); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an earlier daemon's textfile stays while Prometheus scrapes /metrics: %v", err)
	}
}
