package gpucheck

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	"github.com/firetech/fireops/pkg/gpucheck/gpuchecktest"
)

// fakeEngine is an Engine with canned answers.
type fakeEngine struct {
	info     RuntimeInfo
	infoErr  error
	smokeOut string
	smokeErr error
	smokeRan []string
}

func (f *fakeEngine) RuntimeInfo(context.Context) (RuntimeInfo, error) { return f.info, f.infoErr }
func (f *fakeEngine) RunGPUContainer(_ context.Context, image string, cmd []string) (string, error) {
	f.smokeRan = append([]string{image}, cmd...)
	return f.smokeOut, f.smokeErr
}

func nvidiaEngine() *fakeEngine {
	return &fakeEngine{info: RuntimeInfo{ServerVersion: "28.5.2", Runtimes: []string{"io.containerd.runc.v2", "nvidia", "runc"}, DefaultRuntime: "runc"}}
}

// healthyServer returns go-nvml's mock DGX A100 (8 GPUs, driver 550.54.15)
// with every call gpucheck makes answered healthily.
func healthyServer() *server.Server { return gpuchecktest.HealthyDGXA100() }

func wire(s *server.Server) *server.Server { return gpuchecktest.Wire(s) }

func dev(s *server.Server, i int) *server.Device { return gpuchecktest.Device(s, i) }

func defaultThresholds() Thresholds {
	return Thresholds{ExpectCount: 8, MinDriver: "550", MaxTemperatureC: 85, RequireContainerRuntime: true}
}

func run(t *testing.T, lib nvml.Interface, e Engine, th Thresholds, strict bool) *Report {
	t.Helper()
	r, err := Run(context.Background(), Options{
		Thresholds: th, Strict: strict, NVML: lib, Engine: e,
		Now: func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ids returns "name@subject" for the checks with status s.
func ids(r *Report, s Status) []string {
	var out []string
	for _, c := range r.Checks {
		if c.Status == s {
			out = append(out, c.Name+"@"+c.Subject())
		}
	}
	return out
}

func TestHealthyDGXA100Passes(t *testing.T) {
	r := run(t, healthyServer(), nvidiaEngine(), defaultThresholds(), true)
	if !r.OK || r.Status != Pass {
		t.Fatalf("healthy server: ok=%v status=%s; failed: %v; warned: %v", r.OK, r.Status, ids(r, Fail), ids(r, Warn))
	}
	if len(r.GPUs) != 8 {
		t.Fatalf("found %d GPUs, want 8", len(r.GPUs))
	}
	if r.DriverVersion != "550.54.15" || r.CUDADriverVersion != "12.4" || r.NVMLVersion != "12.550.54.15" {
		t.Errorf("versions: driver %q cuda %q nvml %q", r.DriverVersion, r.CUDADriverVersion, r.NVMLVersion)
	}
	g := r.GPUs[3]
	if g.Index != 3 || g.Name != gpus.A100_SXM4_40GB.Name || !strings.HasPrefix(g.UUID, "GPU-") || g.BusID != "0000:03:00.0" {
		t.Errorf("gpu 3 = %+v", g)
	}
	if g.MemoryTotalBytes != gpus.A100_SXM4_40GB.MemoryMB<<20 || g.MemoryUsedBytes != 1<<30 {
		t.Errorf("gpu 3 memory total %d used %d", g.MemoryTotalBytes, g.MemoryUsedBytes)
	}
	if g.TemperatureC == nil || *g.TemperatureC != 43 || g.ECC == nil || g.RemappedRows == nil || g.RetiredPagesPending != nil ||
		g.PersistenceMode == nil || !*g.PersistenceMode || g.MIGMode != "disabled" || len(g.ThrottleReasons) != 0 {
		t.Errorf("gpu 3 facts = %+v", g)
	}
	// 3 host checks, 9 per GPU, the container runtime.
	if want := 3 + 8*9 + 1; len(r.Checks) != want {
		t.Errorf("%d checks, want %d", len(r.Checks), want)
	}
	for _, c := range r.Checks {
		if c.Value == "" {
			t.Errorf("check %s@%s has no value", c.Name, c.Subject())
		}
	}
	if got := r.Summary(); !strings.HasPrefix(got, "all 76 checks passed") {
		t.Errorf("summary = %q", got)
	}
}

// TestOneFaultAtATime injects one fault into an otherwise healthy DGX A100
// and expects exactly the named checks to fail (or warn).
func TestOneFaultAtATime(t *testing.T) {
	for _, tc := range []struct {
		name     string
		server   func() *server.Server
		th       func(*Thresholds)
		engine   func(*fakeEngine)
		fail     []string
		warn     []string
		wantHint string
	}{
		{
			name: "hot GPU",
			server: func() *server.Server {
				s := healthyServer()
				dev(s, 3).GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 91, nvml.SUCCESS }
				return s
			},
			fail: []string{"temperature@gpu 3"}, wantHint: "airflow",
		},
		{
			name: "temperature at the limit passes",
			server: func() *server.Server {
				s := healthyServer()
				dev(s, 3).GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 85, nvml.SUCCESS }
				return s
			},
		},
		{
			name: "uncorrected ECC errors",
			server: func() *server.Server {
				s := healthyServer()
				dev(s, 5).GetTotalEccErrorsFunc = func(typ nvml.MemoryErrorType, c nvml.EccCounterType) (uint64, nvml.Return) {
					if typ == nvml.MEMORY_ERROR_TYPE_UNCORRECTED && c == nvml.VOLATILE_ECC {
						return 2, nvml.SUCCESS
					}
					return 0, nvml.SUCCESS
				}
				return s
			},
			fail: []string{"ecc_uncorrected@gpu 5"}, wantHint: "Xid",
		},
		{
			name: "aggregate uncorrected ECC errors",
			server: func() *server.Server {
				s := healthyServer()
				dev(s, 0).GetTotalEccErrorsFunc = func(typ nvml.MemoryErrorType, c nvml.EccCounterType) (uint64, nvml.Return) {
					if typ == nvml.MEMORY_ERROR_TYPE_UNCORRECTED && c == nvml.AGGREGATE_ECC {
						return 1, nvml.SUCCESS
					}
					return 0, nvml.SUCCESS
				}
				return s
			},
			fail: []string{"ecc_uncorrected@gpu 0"},
		},
		{
			name: "corrected ECC errors warn",
			server: func() *server.Server {
				s := healthyServer()
				dev(s, 2).GetTotalEccErrorsFunc = func(typ nvml.MemoryErrorType, c nvml.EccCounterType) (uint64, nvml.Return) {
					if typ == nvml.MEMORY_ERROR_TYPE_CORRECTED {
						return 17, nvml.SUCCESS
					}
					return 0, nvml.SUCCESS
				}
				return s
			},
			warn: []string{"ecc_corrected@gpu 2"},
		},
		{
			name: "ECC not supported passes",
			server: func() *server.Server {
				s := healthyServer()
				dev(s, 2).GetTotalEccErrorsFunc = func(nvml.MemoryErrorType, nvml.EccCounterType) (uint64, nvml.Return) {
					return 0, nvml.ERROR_NOT_SUPPORTED
				}
				return s
			},
		},
		{
			name: "pending row remap",
			server: func() *server.Server {
				s := healthyServer()
				dev(s, 1).GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) { return 0, 1, true, false, nvml.SUCCESS }
				return s
			},
			fail: []string{"remapped_rows@gpu 1"}, wantHint: "reset",
		},
		{
			name: "row remap failure",
			server: func() *server.Server {
				s := healthyServer()
				dev(s, 6).GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) { return 3, 512, false, true, nvml.SUCCESS }
				return s
			},
			fail: []string{"remapped_rows@gpu 6"}, wantHint: "RMA",
		},
		{
			name: "retired pages pending on a pre-Ampere GPU",
			server: func() *server.Server {
				v100 := gpus.Config{Name: "Tesla V100-SXM2-32GB", Architecture: nvml.DEVICE_ARCH_VOLTA, MemoryMB: 32768}
				s := wire(dgxa100.NewWithGPUs(gpus.Multiple(8, v100)...))
				dev(s, 4).GetRetiredPagesPendingStatusFunc = func() (nvml.EnableState, nvml.Return) { return nvml.FEATURE_ENABLED, nvml.SUCCESS }
				return s
			},
			fail: []string{"retired_pages@gpu 4"},
		},
		{
			name: "missing GPU against expect_count",
			server: func() *server.Server {
				return wire(dgxa100.NewWithGPUs(gpus.Multiple(7, gpus.A100_SXM4_40GB)...))
			},
			fail: []string{"gpu_count@host"}, wantHint: "Xid 79",
		},
		{
			name:   "more GPUs than expected",
			server: func() *server.Server { return healthyServer() },
			th:     func(th *Thresholds) { th.ExpectCount = 4 },
			fail:   []string{"gpu_count@host"},
		},
		{
			name:   "any number of GPUs when expect_count is 0",
			server: func() *server.Server { return healthyServer() },
			th:     func(th *Thresholds) { th.ExpectCount = 0 },
		},
		{
			name:   "no GPU at all",
			server: func() *server.Server { return wire(dgxa100.NewWithGPUs()) },
			th:     func(th *Thresholds) { th.ExpectCount = 0 },
			fail:   []string{"gpu_count@host"},
		},
		{
			name:   "old driver",
			server: func() *server.Server { return healthyServer() },
			th:     func(th *Thresholds) { th.MinDriver = "555.42" },
			fail:   []string{"driver@host"}, wantHint: "upgrade",
		},
		{
			name:   "driver equal to the minimum passes",
			server: func() *server.Server { return healthyServer() },
			th:     func(th *Thresholds) { th.MinDriver = "550.54.15" },
		},
		{
			name: "lost GPU",
			server: func() *server.Server {
				s := healthyServer()
				get := s.DeviceGetHandleByIndexFunc
				s.DeviceGetHandleByIndexFunc = func(i int) (nvml.Device, nvml.Return) {
					if i == 2 {
						return nil, nvml.ERROR_GPU_IS_LOST
					}
					return get(i)
				}
				return s
			},
			fail: []string{"device@gpu 2"}, wantHint: "Xid",
		},
		{
			name: "thermal slowdown warns",
			server: func() *server.Server {
				s := healthyServer()
				dev(s, 7).GetCurrentClocksEventReasonsFunc = func() (uint64, nvml.Return) {
					return nvml.ClocksThrottleReasonHwThermalSlowdown | nvml.ClocksEventReasonSwPowerCap, nvml.SUCCESS
				}
				return s
			},
			warn: []string{"throttle@gpu 7"},
		},
		{
			name: "power brake warns",
			server: func() *server.Server {
				s := healthyServer()
				dev(s, 0).GetCurrentClocksEventReasonsFunc = func() (uint64, nvml.Return) {
					return nvml.ClocksThrottleReasonHwPowerBrakeSlowdown, nvml.SUCCESS
				}
				return s
			},
			warn: []string{"throttle@gpu 0"},
		},
		{
			name: "persistence mode off warns",
			server: func() *server.Server {
				s := healthyServer()
				dev(s, 2).GetPersistenceModeFunc = func() (nvml.EnableState, nvml.Return) { return nvml.FEATURE_DISABLED, nvml.SUCCESS }
				return s
			},
			warn: []string{"persistence_mode@gpu 2"},
		},
		{
			name: "MIG change pending warns",
			server: func() *server.Server {
				s := healthyServer()
				dev(s, 5).GetMigModeFunc = func() (int, int, nvml.Return) { return 0, nvml.DEVICE_MIG_ENABLE, nvml.SUCCESS }
				return s
			},
			warn: []string{"mig_mode@gpu 5"},
		},
		{
			name: "MIG enabled is reported and passes",
			server: func() *server.Server {
				s := healthyServer()
				dev(s, 5).SetMigModeFunc(nvml.DEVICE_MIG_ENABLE)
				return s
			},
		},
		{
			name:   "no nvidia container runtime",
			server: func() *server.Server { return healthyServer() },
			engine: func(e *fakeEngine) { e.info.Runtimes = []string{"io.containerd.runc.v2", "runc"} },
			fail:   []string{"container_runtime@host"}, wantHint: "nvidia-ctk",
		},
		{
			name:   "no nvidia container runtime, not required",
			server: func() *server.Server { return healthyServer() },
			th:     func(th *Thresholds) { th.RequireContainerRuntime = false },
			engine: func(e *fakeEngine) { e.info.Runtimes = []string{"runc"} },
			warn:   []string{"container_runtime@host"},
		},
		{
			name:   "Docker Engine unreachable",
			server: func() *server.Server { return healthyServer() },
			engine: func(e *fakeEngine) {
				e.infoErr = errors.New("dial unix /var/run/docker.sock: connect: no such file or directory")
			},
			fail: []string{"container_runtime@host"}, wantHint: "systemctl start docker",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			th := defaultThresholds()
			if tc.th != nil {
				tc.th(&th)
			}
			e := nvidiaEngine()
			if tc.engine != nil {
				tc.engine(e)
			}
			r := run(t, tc.server(), e, th, false)
			if got := ids(r, Fail); !slices.Equal(got, tc.fail) {
				t.Errorf("failed checks = %v, want %v", got, tc.fail)
			}
			if got := ids(r, Warn); !slices.Equal(got, tc.warn) {
				t.Errorf("warned checks = %v, want %v", got, tc.warn)
			}
			if r.OK != (len(tc.fail) == 0) {
				t.Errorf("OK = %v with failures %v", r.OK, tc.fail)
			}
			for _, c := range r.Checks {
				if c.Status != Pass && (c.Message == "" || c.Hint == "") {
					t.Errorf("%s@%s is %s without message or hint: %+v", c.Name, c.Subject(), c.Status, c)
				}
				if c.Status == Fail && tc.wantHint != "" && !strings.Contains(c.Hint, tc.wantHint) {
					t.Errorf("hint %q does not mention %q", c.Hint, tc.wantHint)
				}
			}
			// Strict mode fails on warnings too.
			rs := run(t, tc.server(), e, th, true)
			if rs.OK != (len(tc.fail) == 0 && len(tc.warn) == 0) {
				t.Errorf("strict OK = %v with failures %v and warnings %v", rs.OK, tc.fail, tc.warn)
			}
		})
	}
}

// strictMock is a bare NVML mock: any call whose Func is not set panics,
// which proves that nothing is called after a failed Init.
func TestNVMLInitFailureMakesNoOtherCall(t *testing.T) {
	for _, tc := range []struct {
		ret  nvml.Return
		hint string
	}{
		{nvml.ERROR_LIBRARY_NOT_FOUND, "install the NVIDIA driver"},
		{nvml.ERROR_DRIVER_NOT_LOADED, "kernel module"},
		{nvml.ERROR_NO_PERMISSION, "/dev/nvidia"},
		{nvml.ERROR_LIB_RM_VERSION_MISMATCH, "reboot"},
		{nvml.ERROR_UNKNOWN, "nvidia-smi"},
	} {
		t.Run(tc.ret.Error(), func(t *testing.T) {
			lib := &mock.Interface{InitFunc: func() nvml.Return { return tc.ret }}
			r := run(t, lib, nvidiaEngine(), defaultThresholds(), false)
			if got := ids(r, Fail); !slices.Equal(got, []string{"nvml@host"}) {
				t.Fatalf("failed checks = %v, want only nvml@host", got)
			}
			if len(r.Checks) != 2 || r.OK || len(r.GPUs) != 0 {
				t.Errorf("checks %d ok %v gpus %d", len(r.Checks), r.OK, len(r.GPUs))
			}
			c := r.Checks[0]
			if !strings.Contains(c.Hint, tc.hint) || c.Value != tc.ret.Error() {
				t.Errorf("nvml check = %+v, want hint about %q", c, tc.hint)
			}
			if len(lib.InitCalls()) != 1 || len(lib.ShutdownCalls()) != 0 {
				t.Errorf("Init called %d times, Shutdown %d", len(lib.InitCalls()), len(lib.ShutdownCalls()))
			}
		})
	}
}

func TestShutdownAfterSuccessfulInit(t *testing.T) {
	s := healthyServer()
	shut := 0
	s.ShutdownFunc = func() nvml.Return { shut++; return nvml.SUCCESS }
	run(t, s, nvidiaEngine(), defaultThresholds(), false)
	if shut != 1 {
		t.Errorf("Shutdown called %d times, want 1", shut)
	}
}

// TestDeprecatedCallsAreGated: a driver that no longer exports the
// deprecated calls must not get them (the call would kill the process).
func TestDeprecatedCallsAreGated(t *testing.T) {
	s := healthyServer()
	s.LookupSymbolFunc = func(sym string) error {
		if sym == symTemperature || sym == symEventReasons {
			return fmt.Errorf("%s: undefined symbol", sym)
		}
		return nil
	}
	for i := range s.Devices {
		d := dev(s, i)
		d.GetTemperatureFunc = nil
		d.GetCurrentClocksEventReasonsFunc = nil
		d.GetCurrentClocksThrottleReasonsFunc = func() (uint64, nvml.Return) { return 0, nvml.SUCCESS }
	}
	r := run(t, s, nvidiaEngine(), defaultThresholds(), false)
	if !r.OK {
		t.Fatalf("failed: %v", ids(r, Fail))
	}
	var want []string
	for i := 0; i < 8; i++ {
		want = append(want, fmt.Sprintf("temperature@gpu %d", i))
	}
	if got := ids(r, Warn); !slices.Equal(got, want) {
		t.Errorf("warned = %v, want %v", got, want)
	}
	if got := len(dev(s, 0).GetCurrentClocksThrottleReasonsCalls()); got != 1 {
		t.Errorf("fallback GetCurrentClocksThrottleReasons called %d times, want 1", got)
	}
}

func TestQueryErrorsFailTheGPU(t *testing.T) {
	s := healthyServer()
	dev(s, 1).GetPersistenceModeFunc = func() (nvml.EnableState, nvml.Return) { return 0, nvml.ERROR_UNKNOWN }
	dev(s, 1).GetUUIDFunc = func() (string, nvml.Return) { return "", nvml.ERROR_GPU_IS_LOST }
	r := run(t, s, nvidiaEngine(), defaultThresholds(), false)
	want := []string{"device@gpu 1", "persistence_mode@gpu 1"}
	if got := ids(r, Fail); !slices.Equal(got, want) {
		t.Errorf("failed = %v, want %v", got, want)
	}
}

func TestThresholdsValidate(t *testing.T) {
	for _, th := range []Thresholds{
		{ExpectCount: -1, MaxTemperatureC: 85},
		{MaxTemperatureC: 0},
		{MaxTemperatureC: 200},
		{MaxTemperatureC: 85, MinDriver: "550.x"},
	} {
		if _, err := Run(context.Background(), Options{Thresholds: th, NVML: &mock.Interface{}, Engine: nvidiaEngine()}); err == nil {
			t.Errorf("Run accepted %+v", th)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"550.54.15", "550.54", 1},
		{"550.54", "550.54.0", 0},
		{"550.54.15", "550.100", -1},
		{"535.183.01", "535.183.1", 0},
		{"570", "550.54.15", 1},
	} {
		got, err := compareVersions(tc.a, tc.b)
		if err != nil || got != tc.want {
			t.Errorf("compareVersions(%q, %q) = %d, %v; want %d", tc.a, tc.b, got, err, tc.want)
		}
	}
	if _, err := compareVersions("550.54-beta", "1"); err == nil {
		t.Error("accepted a non-numeric version")
	}
}
