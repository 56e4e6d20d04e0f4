package gpucheck

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/system"

	"github.com/firetech/fireops/internal/testenv"
)

var discard = slog.New(slog.DiscardHandler)

func TestRuntimeCheckDecision(t *testing.T) {
	for _, tc := range []struct {
		name    string
		info    RuntimeInfo
		err     error
		require bool
		want    Status
		value   string
		hint    string
	}{
		{name: "nvidia runtime", info: RuntimeInfo{Runtimes: []string{"nvidia", "runc"}, DefaultRuntime: "runc"}, require: true, want: Pass, value: "runtime nvidia (default runc)"},
		{name: "nvidia is the default", info: RuntimeInfo{Runtimes: []string{"nvidia", "runc"}, DefaultRuntime: "nvidia"}, require: true, want: Pass, value: "runtime nvidia (default nvidia)"},
		{name: "toolkit's other runtimes", info: RuntimeInfo{Runtimes: []string{"nvidia-cdi", "nvidia-legacy", "runc"}}, require: true, want: Pass, value: "runtime nvidia-cdi,nvidia-legacy"},
		{name: "a runtime merely containing nvidia", info: RuntimeInfo{Runtimes: []string{"not-nvidia", "runc"}}, require: true, want: Fail, hint: "nvidia-ctk"},
		{name: "CDI only", info: RuntimeInfo{Runtimes: []string{"runc"}, CDISpecDirs: []string{"/etc/cdi"}, CDIDevices: []string{"nvidia.com/gpu=0", "nvidia.com/gpu=all"}}, require: true, want: Pass, value: "CDI nvidia.com/gpu=0,nvidia.com/gpu=all"},
		{name: "CDI on, no nvidia spec", info: RuntimeInfo{Runtimes: []string{"runc"}, CDISpecDirs: []string{"/etc/cdi", "/var/run/cdi"}}, require: true, want: Fail, value: "runtimes runc; no nvidia.com/gpu CDI spec in /etc/cdi,/var/run/cdi", hint: "nvidia-ctk"},
		{name: "plain engine", info: RuntimeInfo{Runtimes: []string{"io.containerd.runc.v2", "runc"}}, require: true, want: Fail, value: "runtimes io.containerd.runc.v2,runc; CDI off", hint: "nvidia-ctk"},
		{name: "plain engine, not required", info: RuntimeInfo{Runtimes: []string{"runc"}}, require: false, want: Warn, hint: "nvidia-ctk"},
		{name: "engine unreachable", err: errors.New("connection refused"), require: true, want: Fail, value: "engine unreachable", hint: "systemctl start docker"},
		{name: "engine unreachable, not required", err: errors.New("connection refused"), require: false, want: Warn, hint: "DOCKER_HOST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := runtimeCheck(tc.info, tc.err, tc.require)
			if c.Name != CheckContainerRuntime || c.Status != tc.want {
				t.Fatalf("check = %+v, want status %s", c, tc.want)
			}
			if tc.value != "" && c.Value != tc.value {
				t.Errorf("value = %q, want %q", c.Value, tc.value)
			}
			if !strings.Contains(c.Hint, tc.hint) {
				t.Errorf("hint = %q, want it to mention %q", c.Hint, tc.hint)
			}
			if c.Status != Pass && c.Message == "" {
				t.Error("no message")
			}
		})
	}
}

func loadInfo(t *testing.T, name string) system.Info {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var info system.Info
	if err := json.Unmarshal(data, &info); err != nil {
		t.Fatal(err)
	}
	return info
}

// TestRuntimeInfoFromEngineAnswers parses the Engine's /info answers
// (testdata/README.md says where they come from).
func TestRuntimeInfoFromEngineAnswers(t *testing.T) {
	nv := runtimeInfoFrom(loadInfo(t, "docker-info-nvidia.json"), discard)
	if !slices.Equal(nv.Runtimes, []string{"io.containerd.runc.v2", "nvidia", "runc"}) || nv.ServerVersion != "28.5.2" {
		t.Errorf("runtimes %v version %q", nv.Runtimes, nv.ServerVersion)
	}
	if !slices.Equal(nv.CDIDevices, []string{"nvidia.com/gpu=0", "nvidia.com/gpu=1", "nvidia.com/gpu=all"}) {
		t.Errorf("CDI devices %v", nv.CDIDevices)
	}
	if c := runtimeCheck(nv, nil, true); c.Status != Pass {
		t.Errorf("nvidia host: %+v", c)
	}

	plain := runtimeInfoFrom(loadInfo(t, "docker-info-plain.json"), discard)
	if len(plain.CDISpecDirs) != 0 || len(plain.CDIDevices) != 0 || len(plain.NVIDIARuntimes()) != 0 {
		t.Errorf("plain host: %+v", plain)
	}
	if c := runtimeCheck(plain, nil, true); c.Status != Fail || !strings.Contains(c.Hint, "nvidia-ctk") {
		t.Errorf("plain host: %+v", c)
	}
}

func TestCDISpecFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The shape `nvidia-ctk cdi generate` writes (YAML), trimmed.
	write("nvidia.yaml", `cdiVersion: 0.5.0
kind: nvidia.com/gpu
devices:
- name: "0"
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
- name: all
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
containerEdits:
  env:
  - NVIDIA_VISIBLE_DEVICES=void
`)
	write("other.json", `{"cdiVersion":"0.6.0","kind":"vendor.com/fpga","devices":[{"name":"0"}]}`)
	write("broken.yaml", "kind: [\n")
	write("notes.txt", "kind: nvidia.com/gpu\n")
	got := cdiDevices([]string{dir, filepath.Join(dir, "missing")}, []string{"vendor.com/fpga=1", "nvidia.com/gpu=0"}, discard)
	if want := []string{"nvidia.com/gpu=0", "nvidia.com/gpu=all"}; !slices.Equal(got, want) {
		t.Errorf("cdiDevices = %v, want %v", got, want)
	}
	info := system.Info{Runtimes: map[string]system.RuntimeWithStatus{"runc": {}}, CDISpecDirs: []string{dir}}
	if c := runtimeCheck(runtimeInfoFrom(info, discard), nil, true); c.Status != Pass || !strings.HasPrefix(c.Value, "CDI ") {
		t.Errorf("CDI spec on disk: %+v", c)
	}
}

const smokeOutput = `GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-aaaaaaaa-1111-2222-3333-444444444444)
  MIG 1g.5gb      Device  0: (UUID: MIG-bbbbbbbb-1111-2222-3333-444444444444)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-cccccccc-1111-2222-3333-444444444444)
`

func TestSmokeComparison(t *testing.T) {
	host := func(uuids ...string) *Report {
		r := &Report{}
		for i, u := range uuids {
			r.GPUs = append(r.GPUs, GPU{Index: i, UUID: u})
		}
		return r
	}
	a, c := "GPU-aaaaaaaa-1111-2222-3333-444444444444", "GPU-cccccccc-1111-2222-3333-444444444444"
	if got := parseSmokeList(smokeOutput); !slices.Equal(got, []string{a, c}) {
		t.Fatalf("parseSmokeList = %v", got)
	}
	for _, tc := range []struct {
		name   string
		out    string
		err    error
		report *Report
		want   Status
		msg    string
	}{
		{"same GPUs", smokeOutput, nil, host(c, a), Pass, ""},
		{"one missing in the container", smokeOutput, nil, host(a, c, "GPU-dddd"), Fail, "missing in the container: GPU-dddd"},
		{"one unknown on the host", smokeOutput, nil, host(a), Fail, "unknown to NVML on the host: " + c},
		{"container failed", "", errors.New("could not select device driverwith capabilities: [[gpu]]"), host(a), Fail, "could not select device driver"},
		{"no NVML, container sees GPUs", smokeOutput, nil, host(), Pass, ""},
		{"no NVML, container sees none", "No devices found.\n", nil, host(), Fail, "sees no GPU"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := smokeCheck("nvidia/cuda:12.4.1-base-ubuntu22.04", tc.out, tc.err, tc.report)
			if ch.Status != tc.want || !strings.Contains(ch.Message, tc.msg) {
				t.Errorf("smokeCheck = %+v, want %s with message containing %q", ch, tc.want, tc.msg)
			}
		})
	}
}

func TestSmokeRunsThroughTheEngine(t *testing.T) {
	s := healthyServer()
	var out strings.Builder
	for i := range s.Devices {
		u, _ := dev(s, i).GetUUIDFunc()
		out.WriteString("GPU " + string(rune('0'+i)) + ": NVIDIA A100-SXM4-40GB (UUID: " + u + ")\n")
	}
	e := nvidiaEngine()
	e.smokeOut = out.String()
	r, err := Run(context.Background(), Options{Thresholds: defaultThresholds(), NVML: s, Engine: e, SmokeImage: "cuda:test"})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK || r.Checks[len(r.Checks)-1].Name != CheckSmoke {
		t.Fatalf("ok=%v failed=%v last=%+v", r.OK, ids(r, Fail), r.Checks[len(r.Checks)-1])
	}
	if !slices.Equal(e.smokeRan, []string{"cuda:test", "nvidia-smi", "-L"}) {
		t.Errorf("smoke ran %v", e.smokeRan)
	}
}

// TestRealEngineHasNoNVIDIARuntime asks the test machine's Docker Engine
// (design §10), which has no NVIDIA runtime: the check must fail with the
// toolkit hint, and the smoke container must fail cleanly. On an Engine
// with GPU support the check must pass instead; the rest is the same.
func TestRealEngineHasNoNVIDIARuntime(t *testing.T) {
	host := testenv.RequireDocker(t)
	t.Setenv("DOCKER_HOST", host)
	e, err := NewDockerEngine()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	info, err := e.RuntimeInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Runtimes) == 0 || info.ServerVersion == "" {
		t.Fatalf("engine info looks empty: %+v", info)
	}
	// On a GPU machine (scripts/gpu-smoke.sh) the Engine has GPU support:
	// the runtime check passes there, and everything else below holds.
	gpuEngine := len(info.NVIDIARuntimes()) > 0 || len(info.CDIDevices) > 0
	c := runtimeCheck(info, nil, true)
	switch {
	case gpuEngine && c.Status != Pass:
		t.Errorf("an engine with GPU support (%+v): check = %+v, want pass", info, c)
	case !gpuEngine && (c.Status != Fail || !strings.Contains(c.Hint, "nvidia-ctk runtime configure")):
		t.Errorf("check = %+v", c)
	}
	// Through Run, with the Engine built from the environment and the
	// mock's healthy GPUs.
	r, err := Run(ctx, Options{Thresholds: defaultThresholds(), NVML: healthyServer()})
	if err != nil {
		t.Fatal(err)
	}
	wantFailed := []string{"container_runtime@host"}
	if gpuEngine {
		wantFailed = nil
	}
	if got := ids(r, Fail); !slices.Equal(got, wantFailed) {
		t.Errorf("failed = %v, want %v", got, wantFailed)
	}
	if r.ContainerRuntime == nil || r.ContainerRuntime.ServerVersion != info.ServerVersion {
		t.Errorf("report runtime = %+v", r.ContainerRuntime)
	}

	// A smoke image that does not exist and cannot be pulled fails the
	// smoke check with an error, not a crash or a hang.
	out, err := e.RunGPUContainer(ctx, "fireops.invalid/no-such-image:0", []string{"nvidia-smi", "-L"})
	if err == nil {
		t.Fatalf("smoke run succeeded: %q", out)
	}
	sc := smokeCheck("fireops.invalid/no-such-image:0", out, err, r)
	if sc.Status != Fail || !strings.Contains(sc.Hint, "docker run --rm --gpus all") {
		t.Errorf("smoke check = %+v", sc)
	}

	// An image that exists (an empty one, imported from an empty tar):
	// the Engine refuses to start a container asking for GPUs, and the
	// container is removed again.
	img := fmt.Sprintf("fireops-test-empty:gpucheck-%d", time.Now().UnixNano())
	var tarball bytes.Buffer
	if err := tar.NewWriter(&tarball).Close(); err != nil {
		t.Fatal(err)
	}
	rc, err := e.cli.ImageImport(ctx, image.ImportSource{Source: &tarball, SourceName: "-"}, img, image.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, rc)
	rc.Close()
	t.Cleanup(func() {
		_, _ = e.cli.ImageRemove(context.Background(), img, image.RemoveOptions{Force: true})
	})
	_, err = e.RunGPUContainer(ctx, img, []string{"nvidia-smi", "-L"})
	t.Logf("smoke run: %v", err)
	if err == nil || !strings.Contains(err.Error(), "start container") {
		t.Fatalf("smoke run with GPUs on an engine without them: %v", err)
	}
	left, err := e.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("ancestor", img))})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("smoke container left behind: %+v", left)
	}
}
