package gpuusage

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/gpucheck/gpuchecktest"
)

// textfileSamples returns the lines of a textfile but its HELP lines, and
// checks its mode and that no temp file is left beside it.
func textfileSamples(t *testing.T, path string) []string {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("the textfile: %v", err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("the textfile's mode is %v, want 0644", fi.Mode().Perm())
	}
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != filepath.Base(path) && e.Name() != "other.prom" {
			t.Errorf("left in the folder: %s", e.Name())
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n") {
		if !strings.HasPrefix(l, "# HELP ") {
			out = append(out, l)
		}
	}
	return out
}

func wantLines(t *testing.T, step string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: the textfile holds\n%s\nwant\n%s", step, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestTextfile: the textfile holds the Collector's series (alice's server
// on GPU 0, a host process on GPU 3, GPU 5's failure), replaces a stale
// file, loses a container's series once it stops using the GPU, and is
// removed when there is no sample at all.
func TestTextfile(t *testing.T) {
	const gib = 1 << 30
	s := gpuchecktest.HealthyDGXA100()
	uuid := func(i int) string { return gpuchecktest.Device(s, i).UUID }
	gpuchecktest.SetProcesses(gpuchecktest.Device(s, 0), []nvml.ProcessInfo{procInfo(10, 2*gib)},
		[]nvml.ProcessUtilizationSample{{Pid: 10, TimeStamp: 5, SmUtil: 40}, {Pid: 10, TimeStamp: 6, SmUtil: 60}})
	gpuchecktest.SetProcesses(gpuchecktest.Device(s, 3), []nvml.ProcessInfo{procInfo(30, 100)}, nil)
	gpuchecktest.Device(s, 3).GetProcessUtilizationFunc = func(uint64) ([]nvml.ProcessUtilizationSample, nvml.Return) {
		return nil, nvml.ERROR_NOT_SUPPORTED
	}
	gpuchecktest.Device(s, 5).GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.ERROR_GPU_IS_LOST }
	proc := newFakeProc(t)
	alice := hexID(1)
	proc.inContainer(t, 10, alice)
	proc.add(t, 30, "0::/init.scope\n")
	c := NewCollector(CollectorOptions{NVML: s, Resolver: &Resolver{ProcRoot: string(proc),
		Containers: &fakeContainers{byID: map[string]Container{alice: {ID: alice, Name: "jupyter-alice"}}}}})
	defer c.Close()

	dir := t.TempDir()
	// A file a killed daemon left, and another job's file that stays.
	if err := os.WriteFile(filepath.Join(dir, TextfileName), []byte(MetricProcesses+`{user="gone"} 1`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "other.prom"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tf, err := NewTextfile(c, dir, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if tf.Path() != filepath.Join(dir, "fireops_gpu_usage.prom") {
		t.Errorf("path %s", tf.Path())
	}
	n, err := tf.Write()
	if err != nil || n != 6 {
		t.Fatalf("first write: %d samples, %v", n, err)
	}
	aliceLabels := `{container="jupyter-alice",gpu="0",user="alice",uuid="` + uuid(0) + `"}`
	hostLabels := `{container="",gpu="3",user="",uuid="` + uuid(3) + `"}`
	wantLines(t, "first write", textfileSamples(t, tf.Path()), []string{
		"# TYPE fireops_gpu_container_memory_used_bytes gauge",
		"fireops_gpu_container_memory_used_bytes" + hostLabels + " 100",
		"fireops_gpu_container_memory_used_bytes" + aliceLabels + " 2.147483648e+09",
		"# TYPE fireops_gpu_container_processes gauge",
		"fireops_gpu_container_processes" + hostLabels + " 1",
		"fireops_gpu_container_processes" + aliceLabels + " 1",
		"# TYPE fireops_gpu_container_sm_utilization_percent gauge",
		"fireops_gpu_container_sm_utilization_percent" + aliceLabels + " 50",
		"# TYPE fireops_gpu_usage_errors_total counter",
		`fireops_gpu_usage_errors_total{gpu="5",op="processes"} 1`,
	})

	// Alice's server stops using GPU 0: its series are gone from the
	// file at the next write, GPU 5's failure is counted again.
	gpuchecktest.SetProcesses(gpuchecktest.Device(s, 0), nil, nil)
	if n, err := tf.Write(); err != nil || n != 3 {
		t.Fatalf("second write: %d samples, %v", n, err)
	}
	wantLines(t, "second write", textfileSamples(t, tf.Path()), []string{
		"# TYPE fireops_gpu_container_memory_used_bytes gauge",
		"fireops_gpu_container_memory_used_bytes" + hostLabels + " 100",
		"# TYPE fireops_gpu_container_processes gauge",
		"fireops_gpu_container_processes" + hostLabels + " 1",
		"# TYPE fireops_gpu_usage_errors_total counter",
		`fireops_gpu_usage_errors_total{gpu="5",op="processes"} 2`,
	})

	// No GPU process and no failure ever counted (a fresh collector): no
	// sample, no file; the other job's file stays.
	gpuchecktest.SetProcesses(gpuchecktest.Device(s, 3), nil, nil)
	gpuchecktest.SetProcesses(gpuchecktest.Device(s, 5), nil, nil)
	idle := NewCollector(CollectorOptions{NVML: s, Resolver: &Resolver{ProcRoot: string(proc)}})
	defer idle.Close()
	tf, err = NewTextfile(idle, dir, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := tf.Write(); err != nil || n != 0 {
		t.Fatalf("write without GPU processes: %d samples, %v", n, err)
	}
	if _, err := os.Stat(tf.Path()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the textfile is still there without GPU processes: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "other.prom")); err != nil {
		t.Errorf("another job's textfile: %v", err)
	}
	// Removing what is not there is no error.
	if err := tf.Remove(); err != nil {
		t.Errorf("Remove without a file: %v", err)
	}
}

// TestTextfileNoNVML: on a host without NVML a stale file is removed and
// none is written.
func TestTextfileNoNVML(t *testing.T) {
	s := gpuchecktest.HealthyDGXA100()
	s.InitFunc = func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }
	c := NewCollector(CollectorOptions{NVML: s, Resolver: &Resolver{ProcRoot: t.TempDir()}})
	defer c.Close()
	dir := t.TempDir()
	tf, err := NewTextfile(c, dir, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tf.Path(), []byte(MetricProcesses+`{user="gone"} 1`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := tf.Write(); err != nil || n != 0 {
		t.Fatalf("write without NVML: %d samples, %v", n, err)
	}
	if _, err := os.Stat(tf.Path()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the stale textfile is still there: %v", err)
	}
}

// TestTextfileRun: Run writes the file at once and removes it when its
// context ends (the daemon stops); a folder it cannot write to is an
// error of Write, and NewTextfile wants a folder.
func TestTextfileRun(t *testing.T) {
	s := gpuchecktest.HealthyDGXA100()
	gpuchecktest.SetProcesses(gpuchecktest.Device(s, 1), []nvml.ProcessInfo{procInfo(10, 42)}, nil)
	proc := newFakeProc(t)
	proc.add(t, 10, "0::/init.scope\n")
	c := NewCollector(CollectorOptions{NVML: s, Resolver: &Resolver{ProcRoot: string(proc)}})
	defer c.Close()
	tf, err := NewTextfile(c, t.TempDir(), "gpu.prom", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tf.Run(ctx, time.Hour)
	}()
	deadline := time.Now().Add(time.Minute) // a safety net
	for {
		if _, err := os.Stat(tf.Path()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run wrote no textfile")
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := textfileSamples(t, tf.Path())
	if !slices.Contains(got, `fireops_gpu_container_memory_used_bytes{container="",gpu="1",user="",uuid="`+gpuchecktest.Device(s, 1).UUID+`"} 42`) {
		t.Errorf("the textfile Run wrote:\n%s", strings.Join(got, "\n"))
	}
	cancel()
	<-done
	if _, err := os.Stat(tf.Path()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the textfile is still there after Run ended: %v", err)
	}

	// A second Textfile of the same collector: a collector may be
	// registered with several registries (the daemon's /metrics too).
	missing, err := NewTextfile(c, filepath.Join(t.TempDir(), "absent"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := missing.Write(); err == nil {
		t.Errorf("a write into a missing folder succeeded")
	}
	if _, err := NewTextfile(c, "", "", nil); err == nil {
		t.Errorf("NewTextfile without a folder succeeded")
	}
}

// TestTextfileNodeExporter: the textfile passes `promtool check metrics`
// and the real node-exporter's textfile collector serves its series.
func TestTextfileNodeExporter(t *testing.T) {
	s := gpuchecktest.HealthyDGXA100()
	gpuchecktest.SetProcesses(gpuchecktest.Device(s, 2), []nvml.ProcessInfo{procInfo(10, 1<<30)},
		[]nvml.ProcessUtilizationSample{{Pid: 10, TimeStamp: 5, SmUtil: 70}})
	gpuchecktest.Device(s, 5).GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.ERROR_GPU_IS_LOST }
	proc := newFakeProc(t)
	bob := hexID(2)
	proc.inContainer(t, 10, bob)
	c := NewCollector(CollectorOptions{NVML: s, Resolver: &Resolver{ProcRoot: string(proc),
		Containers: &fakeContainers{byID: map[string]Container{bob: {ID: bob, Name: "jupyter-bob-2dsmith"}}}}})
	defer c.Close()
	dir := t.TempDir()
	tf, err := NewTextfile(c, dir, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tf.Write(); err != nil {
		t.Fatal(err)
	}
	if promtool := testenv.RequireTool(t, "promtool"); promtool != "" {
		if out, err := testenv.CheckMetrics(promtool, tf.Path()); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	}
	page := testenv.NodeExporterTextfiles(t, dir)
	if page == "" {
		return
	}
	uuid := gpuchecktest.Device(s, 2).UUID
	for _, want := range []string{
		"node_textfile_scrape_error 0",
		`fireops_gpu_container_memory_used_bytes{container="jupyter-bob-2dsmith",gpu="2",user="bob-smith",uuid="` + uuid + `"} 1.073741824e+09`,
		`fireops_gpu_container_sm_utilization_percent{container="jupyter-bob-2dsmith",gpu="2",user="bob-smith",uuid="` + uuid + `"} 70`,
		`fireops_gpu_container_processes{container="jupyter-bob-2dsmith",gpu="2",user="bob-smith",uuid="` + uuid + `"} 1`,
		`fireops_gpu_usage_errors_total{gpu="5",op="processes"} 1`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("node-exporter does not serve %s", want)
		}
	}
	if t.Failed() {
		t.Log(page)
	}
}
