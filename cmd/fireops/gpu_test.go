package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"

	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/gpucheck"
	"github.com/firetech/fireops/pkg/gpucheck/gpuchecktest"
	"github.com/firetech/fireops/pkg/gpuusage"
)

// gpuEngine is a Docker Engine stand-in with or without an nvidia runtime.
type gpuEngine struct{ runtimes []string }

func (e gpuEngine) RuntimeInfo(context.Context) (gpucheck.RuntimeInfo, error) {
	return gpucheck.RuntimeInfo{ServerVersion: "28.5.2", Runtimes: e.runtimes}, nil
}

func (e gpuEngine) RunGPUContainer(context.Context, string, []string) (string, error) {
	return "", nil
}

// TestGPUCheckExitCodes runs the command's logic on go-nvml's mock DGX A100
// with one fault at a time and checks the exit code and the output.
func TestGPUCheckExitCodes(t *testing.T) {
	intp := func(v int) *int { return &v }
	strp := func(v string) *string { return &v }
	for _, tc := range []struct {
		name   string
		lib    func() nvml.Interface
		opts   gpuCheckOptions
		config string
		code   int
		errRE  string
	}{
		{name: "healthy", lib: func() nvml.Interface { return gpuchecktest.HealthyDGXA100() }, code: exitcode.OK},
		{name: "hot GPU", lib: func() nvml.Interface {
			s := gpuchecktest.HealthyDGXA100()
			gpuchecktest.Device(s, 3).GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 95, nvml.SUCCESS }
			return s
		}, code: exitcode.CheckFailed, errRE: "temperature (gpu 3)"},
		{name: "hot GPU below a raised limit", lib: func() nvml.Interface {
			s := gpuchecktest.HealthyDGXA100()
			gpuchecktest.Device(s, 3).GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 95, nvml.SUCCESS }
			return s
		}, opts: gpuCheckOptions{maxTemperature: intp(100)}, code: exitcode.OK},
		{name: "missing GPU", lib: func() nvml.Interface {
			return gpuchecktest.Wire(dgxa100.NewWithGPUs(gpus.Multiple(7, gpus.A100_SXM4_40GB)...))
		}, config: "gpu: {expect_count: 8}\n", code: exitcode.CheckFailed, errRE: "gpu_count (host)"},
		{name: "old driver from the flag", lib: func() nvml.Interface { return gpuchecktest.HealthyDGXA100() },
			opts: gpuCheckOptions{minDriver: strp("560")}, code: exitcode.CheckFailed, errRE: "driver (host)"},
		{name: "persistence off warns", lib: func() nvml.Interface {
			s := gpuchecktest.HealthyDGXA100()
			gpuchecktest.Device(s, 0).GetPersistenceModeFunc = func() (nvml.EnableState, nvml.Return) { return nvml.FEATURE_DISABLED, nvml.SUCCESS }
			return s
		}, code: exitcode.OK},
		{name: "persistence off fails when strict", lib: func() nvml.Interface {
			s := gpuchecktest.HealthyDGXA100()
			gpuchecktest.Device(s, 0).GetPersistenceModeFunc = func() (nvml.EnableState, nvml.Return) { return nvml.FEATURE_DISABLED, nvml.SUCCESS }
			return s
		}, opts: gpuCheckOptions{strict: true}, code: exitcode.CheckFailed, errRE: "persistence_mode (gpu 0)"},
		{name: "NVML init failure", lib: func() nvml.Interface {
			return &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }}
		}, code: exitcode.CheckFailed, errRE: "nvml (host)"},
		{name: "bad threshold", lib: func() nvml.Interface { return &mock.Interface{} },
			opts: gpuCheckOptions{expectCount: intp(-2)}, code: exitcode.Usage, errRE: "negative"},
		{name: "bad config", lib: func() nvml.Interface { return &mock.Interface{} },
			config: "gpu: {no_such_key: 1}\n", code: exitcode.Usage, errRE: "no_such_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var stdout, stderr bytes.Buffer
			a := &app{
				configPath: filepath.Join(dir, "fireops.yaml"),
				stdout:     &stdout, stderr: &stderr,
				log: slog.New(slog.NewTextHandler(&stderr, nil)),
			}
			if tc.config != "" {
				if err := os.WriteFile(a.configPath, []byte(tc.config), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			opts := tc.opts
			opts.nvml = tc.lib()
			opts.engine = gpuEngine{runtimes: []string{"nvidia", "runc"}}
			err := a.runGPUCheck(context.Background(), opts)
			if got := exitcode.Code(err); got != tc.code {
				t.Fatalf("exit code %d (%v), want %d\n%s", got, err, tc.code, stdout.String())
			}
			if tc.errRE != "" && (err == nil || !strings.Contains(err.Error(), tc.errRE)) {
				t.Errorf("error %v does not mention %q", err, tc.errRE)
			}
			if exitcode.Code(err) == exitcode.CheckFailed && exitcode.Hint(err) == "" {
				t.Error("a failed check has no hint")
			}
			if exitcode.Code(err) != exitcode.Usage && !strings.HasPrefix(stdout.String(), "GPU check: ") {
				t.Errorf("no report printed:\n%s", stdout.String())
			}
		})
	}
}

func TestGPUCheckJSONAndMetrics(t *testing.T) {
	dir := t.TempDir()
	textfiles := filepath.Join(dir, "textfile")
	if err := os.Mkdir(textfiles, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "fireops.yaml")
	if err := os.WriteFile(cfgPath, []byte("gpu: {expect_count: 8}\nmetrics: {textfile_dir: textfile}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	a := &app{configPath: cfgPath, jsonOut: true, stdout: &stdout, stderr: &stderr, log: slog.New(slog.NewTextHandler(&stderr, nil))}
	err := a.runGPUCheck(context.Background(), gpuCheckOptions{
		nvml: gpuchecktest.HealthyDGXA100(), engine: gpuEngine{runtimes: []string{"runc"}},
	})
	if exitcode.Code(err) != exitcode.CheckFailed || !strings.Contains(exitcode.Hint(err), "nvidia-ctk") {
		t.Fatalf("err = %v (hint %q)", err, exitcode.Hint(err))
	}
	var rep gpucheck.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s", err, stdout.String())
	}
	if rep.OK || rep.Status != gpucheck.Fail || len(rep.GPUs) != 8 || rep.Thresholds.ExpectCount != 8 {
		t.Errorf("report: ok %v status %s gpus %d thresholds %+v", rep.OK, rep.Status, len(rep.GPUs), rep.Thresholds)
	}
	data, err := os.ReadFile(filepath.Join(textfiles, gpucheck.TextfileName))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `fireops_gpu_check_ok{check="container_runtime"} 0`) {
		t.Errorf("textfile:\n%s", data)
	}

	// An unwritable textfile folder fails a passing check with exit code 1.
	if err := os.WriteFile(cfgPath, []byte("metrics: {textfile_dir: missing}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	err = a.runGPUCheck(context.Background(), gpuCheckOptions{
		nvml: gpuchecktest.HealthyDGXA100(), engine: gpuEngine{runtimes: []string{"nvidia"}},
	})
	if exitcode.Code(err) != exitcode.Failure || !strings.Contains(err.Error(), "gpu check passed, but") {
		t.Errorf("err = %v, want exit code 1", err)
	}
}

// gpuContainers is a Docker Engine stand-in that names containers.
type gpuContainers map[string]gpuusage.Container

func (g gpuContainers) Inspect(_ context.Context, id string) (gpuusage.Container, error) {
	if c, ok := g[id]; ok {
		return c, nil
	}
	return gpuusage.Container{}, gpuusage.ErrNoContainer
}

// TestGPUCheckProcessesPerUser runs the check on go-nvml's mock DGX A100
// with processes of two hub users' servers and a host process, placed
// through their cgroup files (a stand-in /proc) and container names, and
// reads them per user in the JSON and the table.
func TestGPUCheckProcessesPerUser(t *testing.T) {
	const gib = 1 << 30
	s := gpuchecktest.HealthyDGXA100()
	proc := func(pid uint32, mem uint64) nvml.ProcessInfo {
		return nvml.ProcessInfo{Pid: pid, UsedGpuMemory: mem, GpuInstanceId: 0xFFFFFFFF, ComputeInstanceId: 0xFFFFFFFF}
	}
	gpuchecktest.SetProcesses(gpuchecktest.Device(s, 0), []nvml.ProcessInfo{proc(101, 3*gib), proc(300, gib)},
		[]nvml.ProcessUtilizationSample{{Pid: 101, TimeStamp: 1, SmUtil: 80}})
	gpuchecktest.SetProcesses(gpuchecktest.Device(s, 4), []nvml.ProcessInfo{proc(202, 2*gib)}, nil)
	procRoot := t.TempDir()
	aliceID, bobID := strings.Repeat("a", 64), strings.Repeat("b", 64)
	for pid, cg := range map[string]string{
		"101": "0::/system.slice/docker-" + aliceID + ".scope\n",
		"202": "4:memory:/docker/" + bobID + "\n0::/docker/" + bobID + "\n",
		"300": "0::/user.slice/user-0.slice/session-1.scope\n",
	} {
		if err := os.MkdirAll(filepath.Join(procRoot, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(procRoot, pid, "cgroup"), []byte(cg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	owners := &gpuusage.Resolver{ProcRoot: procRoot, Containers: gpuContainers{
		aliceID: {ID: aliceID, Name: "jupyter-alice"},
		bobID:   {ID: bobID, Name: "jupyter-bob-2dsmith--rl"},
	}}
	run := func(jsonOut bool) string {
		var stdout, stderr bytes.Buffer
		a := &app{configPath: filepath.Join(t.TempDir(), "none.yaml"), jsonOut: jsonOut, stdout: &stdout, stderr: &stderr,
			log: slog.New(slog.NewTextHandler(&stderr, nil))}
		err := a.runGPUCheck(context.Background(), gpuCheckOptions{nvml: s, engine: gpuEngine{runtimes: []string{"nvidia"}}, owners: owners})
		if err != nil {
			t.Fatalf("gpu check: %v\n%s", err, stderr.String())
		}
		return stdout.String()
	}

	var rep struct {
		Users []struct {
			User            string `json:"user"`
			MemoryUsedBytes uint64 `json:"memory_used_bytes"`
			Processes       []struct {
				PID       uint32   `json:"pid"`
				GPU       int      `json:"gpu"`
				UUID      string   `json:"uuid"`
				Memory    *uint64  `json:"memory_used_bytes"`
				SM        *float64 `json:"sm_utilization_percent"`
				Container string   `json:"container"`
				ID        string   `json:"container_id"`
				User      string   `json:"user"`
				Server    string   `json:"server"`
			} `json:"processes"`
		} `json:"users"`
	}
	out := run(true)
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	// Processes in containers decode into the type of docs/json.md too.
	decodeStrict(t, "gpu check with processes", out, &jGPUCheck{})
	var got []string
	for _, u := range rep.Users {
		for _, p := range u.Processes {
			sm := "-"
			if p.SM != nil {
				sm = fmt.Sprint(*p.SM)
			}
			got = append(got, fmt.Sprintf("%s(%d): pid %d gpu %d mem %d sm %s in %s/%.4s user %s server %s",
				u.User, u.MemoryUsedBytes, p.PID, p.GPU, *p.Memory, sm, p.Container, p.ID, p.User, p.Server))
		}
	}
	want := []string{
		"alice(3221225472): pid 101 gpu 0 mem 3221225472 sm 80 in jupyter-alice/aaaa user alice server ",
		"bob-smith(2147483648): pid 202 gpu 4 mem 2147483648 sm 0 in jupyter-bob-2dsmith--rl/bbbb user bob-smith server rl",
		"(1073741824): pid 300 gpu 0 mem 1073741824 sm 0 in / user  server ",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("users in JSON:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if rep.Users[0].Processes[0].UUID != gpuchecktest.Device(s, 0).UUID {
		t.Errorf("alice's process is on %s, want GPU 0's UUID", rep.Users[0].Processes[0].UUID)
	}

	table := run(false)
	for _, re := range []string{
		`(?m)^USER +GPU +PID +MEMORY +SM +CONTAINER$`,
		`(?m)^alice +0 +101 +3\.0 GiB +80% +jupyter-alice$`,
		`(?m)^bob-smith/rl +4 +202 +2\.0 GiB +0% +jupyter-bob-2dsmith--rl$`,
		`(?m)^- +0 +300 +1\.0 GiB +0% +-$`,
	} {
		if !regexp.MustCompile(re).MatchString(table) {
			t.Errorf("table does not match %s:\n%s", re, table)
		}
	}
}
