package gpuusage

import (
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/gpucheck/gpuchecktest"
)

// logBuf is the collector's log sink: a testutil.SyncBuffer that counts
// its lines.
type logBuf struct{ testutil.SyncBuffer }

// count returns how many log lines contain every one of subs.
func (l *logBuf) count(subs ...string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		all := line != ""
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			n++
		}
	}
	return n
}

// gather registers c on a pedantic registry (which checks the collected
// metrics against their descriptions) and returns every sample as
// `name{label="value",...}` (labels sorted) -> value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			slices.Sort(ls)
			v := m.GetGauge().GetValue()
			if m.GetCounter() != nil {
				v = m.GetCounter().GetValue()
			}
			out[f.GetName()+"{"+strings.Join(ls, ",")+"}"] = v
		}
	}
	return out
}

func diffSamples(t *testing.T, step string, got, want map[string]float64) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok || g != want[k] {
			t.Errorf("%s: %s = %v (present %v), want %v", step, k, g, ok, want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected sample %s = %v", step, k, got[k])
		}
	}
}

func procInfo(pid uint32, mem uint64) nvml.ProcessInfo {
	return nvml.ProcessInfo{Pid: pid, UsedGpuMemory: mem, GpuInstanceId: 0xFFFFFFFF, ComputeInstanceId: 0xFFFFFFFF}
}

// TestCollector scrapes a mock DGX A100 on which alice's two servers, a
// host process and a container of another runtime use GPUs 0 and 3, GPU 5
// has fallen off the bus and a query on GPU 6 panics.
func TestCollector(t *testing.T) {
	const gib = 1 << 30
	s := gpuchecktest.HealthyDGXA100()
	gpu := func(i int) string { return gpuchecktest.Device(s, i).UUID }
	gpuchecktest.SetProcesses(gpuchecktest.Device(s, 0),
		[]nvml.ProcessInfo{procInfo(10, 2*gib), procInfo(11, gib)},
		[]nvml.ProcessUtilizationSample{{Pid: 10, TimeStamp: 5, SmUtil: 40}, {Pid: 10, TimeStamp: 6, SmUtil: 60}, {Pid: 11, TimeStamp: 7, SmUtil: 20}})
	gpuchecktest.SetProcesses(gpuchecktest.Device(s, 3),
		[]nvml.ProcessInfo{procInfo(20, gib/2), procInfo(30, 100), procInfo(40, ^uint64(0))}, nil)
	gpuchecktest.Device(s, 3).GetProcessUtilizationFunc = func(uint64) ([]nvml.ProcessUtilizationSample, nvml.Return) {
		return nil, nvml.ERROR_NOT_SUPPORTED
	}
	lost := func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.ERROR_GPU_IS_LOST }
	gpuchecktest.Device(s, 5).GetComputeRunningProcessesFunc = lost
	gpuchecktest.Device(s, 6).GetUUIDFunc = func() (string, nvml.Return) { panic("mock: GetUUID") }

	proc := newFakeProc(t)
	alice, aliceExp, foreign := hexID(1), hexID(2), hexID(4)
	proc.inContainer(t, 10, alice)
	proc.add(t, 11, "12:memory:/docker/"+alice+"\n")
	proc.inContainer(t, 20, aliceExp)
	proc.add(t, 30, "0::/init.scope\n")
	proc.inContainer(t, 40, foreign)
	cs := &fakeContainers{byID: map[string]Container{
		alice:    {ID: alice, Name: "jupyter-alice"},
		aliceExp: {ID: aliceExp, Name: "jupyter-alice--exp"},
	}}
	var logs logBuf
	c := NewCollector(CollectorOptions{NVML: s, Resolver: &Resolver{ProcRoot: string(proc), Containers: cs},
		Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	defer c.Close()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)

	ls := func(g int, container, user string) string {
		return fmt.Sprintf(`{container=%q,gpu="%d",user=%q,uuid=%q}`, container, g, user, gpu(g))
	}
	want := map[string]float64{
		MetricProcesses + ls(0, "jupyter-alice", "alice"):      2,
		MetricMemory + ls(0, "jupyter-alice", "alice"):         3 * gib,
		MetricSMUtil + ls(0, "jupyter-alice", "alice"):         50 + 20,
		MetricProcesses + ls(3, "jupyter-alice--exp", "alice"): 1,
		MetricMemory + ls(3, "jupyter-alice--exp", "alice"):    gib / 2,
		MetricProcesses + ls(3, "", ""):                        1,
		MetricMemory + ls(3, "", ""):                           100,
		MetricProcesses + ls(3, foreign[:12], ""):              1,
		MetricErrors + `{gpu="5",op="processes"}`:              1,
		MetricErrors + `{gpu="6",op="panic"}`:                  1,
	}
	diffSamples(t, "first scrape", gather(t, reg), want)

	// The second scrape averages only the samples NVML took since the
	// first; the errors are counted again but not logged again.
	gpuchecktest.SetProcesses(gpuchecktest.Device(s, 0),
		[]nvml.ProcessInfo{procInfo(10, 2*gib), procInfo(11, gib)},
		[]nvml.ProcessUtilizationSample{{Pid: 10, TimeStamp: 6, SmUtil: 60}, {Pid: 10, TimeStamp: 8, SmUtil: 90}})
	want[MetricSMUtil+ls(0, "jupyter-alice", "alice")] = 90
	want[MetricErrors+`{gpu="5",op="processes"}`] = 2
	want[MetricErrors+`{gpu="6",op="panic"}`] = 2
	diffSamples(t, "second scrape", gather(t, reg), want)
	if n := logs.count("level=WARN", "NVML query failed", "gpu=5", "op=processes", "ERROR_GPU_IS_LOST"); n != 1 {
		t.Errorf("GPU 5's failure logged %d times, want once:\n%s", n, logs.String())
	}
	if n := logs.count("level=WARN", "gpu=6", "op=panic", "mock: GetUUID"); n != 1 {
		t.Errorf("GPU 6's panic logged %d times, want once:\n%s", n, logs.String())
	}

	// GPU 5 answers again (logged once); alice's default server stops
	// using GPU 0: its series go, and nothing is kept about it.
	gpuchecktest.SetProcesses(gpuchecktest.Device(s, 5), nil, nil)
	gpuchecktest.SetProcesses(gpuchecktest.Device(s, 0), nil, nil)
	for _, k := range []string{MetricProcesses, MetricMemory, MetricSMUtil} {
		delete(want, k+ls(0, "jupyter-alice", "alice"))
	}
	want[MetricErrors+`{gpu="6",op="panic"}`] = 3
	diffSamples(t, "third scrape", gather(t, reg), want)
	if n := logs.count("level=INFO", "answers again", "gpu=5", "op=processes"); n != 1 {
		t.Errorf("GPU 5's recovery logged %d times, want once:\n%s", n, logs.String())
	}
	if _, kept := c.resolver.known[alice]; kept {
		t.Errorf("the collector still knows alice's container after it stopped using the GPUs")
	}
	if cs.asked[alice] != 1 {
		t.Errorf("the Engine was asked %d times about alice's container, want once", cs.asked[alice])
	}

	// The Engine down: the container is still there by id, without user;
	// the failures are counted (alice's container, and the other
	// runtime's container, which the Engine is asked about each time).
	gpuchecktest.SetProcesses(gpuchecktest.Device(s, 0), []nvml.ProcessInfo{procInfo(10, gib)}, nil)
	cs.err = fmt.Errorf("Cannot connect to the Docker daemon")
	got := gather(t, reg)
	if v, ok := got[MetricMemory+ls(0, alice[:12], "")]; !ok || v != gib {
		t.Errorf("Engine down: memory of alice's container by id = %v (present %v); samples %v", v, ok, got)
	}
	if got[MetricErrors+`{gpu="",op="docker"}`] != 2 {
		t.Errorf("Engine down: errors %v", got)
	}
}

// TestCollectorNoNVML: a host without NVML exports nothing, logs that
// once, and tries again only every initRetry; once NVML loads, it exports.
func TestCollectorNoNVML(t *testing.T) {
	s := gpuchecktest.HealthyDGXA100()
	inits := 0
	ret := nvml.ERROR_LIBRARY_NOT_FOUND
	s.InitFunc = func() nvml.Return { inits++; return ret }
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var logs logBuf
	c := NewCollector(CollectorOptions{NVML: s, Resolver: &Resolver{ProcRoot: t.TempDir()}, Now: func() time.Time { return now },
		Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	defer c.Close()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	for i := 0; i < 3; i++ {
		if got := gather(t, reg); len(got) != 0 {
			t.Fatalf("scrape %d without NVML: %v", i, got)
		}
	}
	now = now.Add(initRetry)
	if got := gather(t, reg); len(got) != 0 {
		t.Fatalf("scrape without NVML: %v", got)
	}
	if inits != 2 {
		t.Errorf("Init called %d times in one retry interval and the next, want 2", inits)
	}
	if n := logs.count("NVML did not initialise"); n != 1 || logs.count("level=INFO", "ERROR_LIBRARY_NOT_FOUND") != 1 {
		t.Errorf("logged %d times, want once at info:\n%s", n, logs.String())
	}

	// The driver is installed: the next try exports the GPU processes.
	ret = nvml.SUCCESS
	proc := fakeProc(c.resolver.ProcRoot)
	proc.add(t, 10, "0::/init.scope\n")
	gpuchecktest.SetProcesses(gpuchecktest.Device(s, 1), []nvml.ProcessInfo{procInfo(10, 42)}, nil)
	now = now.Add(initRetry)
	got := gather(t, reg)
	if len(got) != 3 || got[fmt.Sprintf(`%s{container="",gpu="1",user="",uuid=%q}`, MetricMemory, gpuchecktest.Device(s, 1).UUID)] != 42 {
		t.Errorf("after NVML loaded: %v", got)
	}
	if logs.count("level=INFO", "NVML initialised") != 1 {
		t.Errorf("recovery not logged:\n%s", logs.String())
	}
}

// TestCollectorDriverGone: when NVML cannot count the GPUs any more, the
// collector counts the failure, shuts NVML down and initialises it again
// at the next scrape.
func TestCollectorDriverGone(t *testing.T) {
	s := gpuchecktest.HealthyDGXA100()
	inits, shutdowns := 0, 0
	s.InitFunc = func() nvml.Return { inits++; return nvml.SUCCESS }
	s.ShutdownFunc = func() nvml.Return { shutdowns++; return nvml.SUCCESS }
	count := s.DeviceGetCountFunc
	s.DeviceGetCountFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_UNINITIALIZED }
	c := NewCollector(CollectorOptions{NVML: s, Resolver: &Resolver{ProcRoot: t.TempDir()}})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	got := gather(t, reg)
	if len(got) != 1 || got[MetricErrors+`{gpu="",op="device_count"}`] != 1 || inits != 1 || shutdowns != 1 {
		t.Errorf("samples %v, %d inits, %d shutdowns", got, inits, shutdowns)
	}
	s.DeviceGetCountFunc = count
	gather(t, reg)
	if inits != 2 {
		t.Errorf("NVML initialised %d times, want again after the failed count", inits)
	}
	c.Close()
	if shutdowns != 2 {
		t.Errorf("Close shut NVML down %d times in all, want 2", shutdowns)
	}
}

// TestMetricsDocumented: docs/metrics.md lists every family the Collector
// describes.
func TestMetricsDocumented(t *testing.T) {
	docs, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	c := NewCollector(CollectorOptions{NVML: gpuchecktest.HealthyDGXA100(), Resolver: &Resolver{}})
	ch := make(chan *prometheus.Desc, 10)
	c.Describe(ch)
	close(ch)
	n := 0
	for d := range ch {
		// Desc has no name accessor; its String() is `Desc{fqName: "name", ...`.
		_, rest, _ := strings.Cut(d.String(), `fqName: "`)
		name, _, _ := strings.Cut(rest, `"`)
		if name == "" {
			t.Fatalf("no name in %s", d)
		}
		n++
		if !strings.Contains(string(docs), "`"+name+"`") {
			t.Errorf("docs/metrics.md does not list %s", name)
		}
	}
	if n != 4 {
		t.Errorf("%d families described, want 4", n)
	}
}
