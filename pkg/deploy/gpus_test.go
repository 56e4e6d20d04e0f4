package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/config"
)

// gpuGoldenFiles are the files of testdata/configs/gpu-shared.yaml that the
// GPU policy shapes, kept as golden files in testdata/golden/gpu-shared
// (the other files render as in the gpu golden stack).
var gpuGoldenFiles = []string{"hub/jupyterhub_config.py", "notebook/Dockerfile"}

// TestRenderGPUPolicyGolden renders a shared-GPU policy (pool with MIG
// instances, per-user and per-group grants, profiles, exclusive).
func TestRenderGPUPolicyGolden(t *testing.T) {
	st := render(t, "gpu-shared", RenderOptions{})
	dir := filepath.Join("testdata", "golden", "gpu-shared")
	for _, name := range gpuGoldenFiles {
		path := filepath.Join(dir, filepath.FromSlash(name))
		got := st.File(name)
		if got == nil {
			t.Fatalf("%s not rendered", name)
		}
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./pkg/deploy -run TestRenderGPUPolicyGolden -update)", err)
		}
		if !bytes.Equal(want, got) {
			t.Errorf("%s differs from %s (run go test ./pkg/deploy -update and review the diff)", name, path)
		}
	}
}

// TestRenderGPUPolicy checks what stack.gpus and stack.hub.gpus render.
func TestRenderGPUPolicy(t *testing.T) {
	t.Parallel()
	gpu := render(t, "gpu", RenderOptions{})
	cpu := render(t, "cpu", RenderOptions{})
	hub := string(gpu.File("hub/jupyterhub_config.py"))
	cpuHub := string(cpu.File("hub/jupyterhub_config.py"))
	checks := []struct {
		name string
		ok   bool
	}{
		{"no GPU for every server", !strings.Contains(hub, `"count": -1, "capabilities"`) && !strings.Contains(hub, `"device_requests": [`)},
		{"one GPU each by default", strings.Contains(hub, "GPU_POLICY = {\n    \"pool\": [],\n    \"default\": {\"count\": 1},\n")},
		{"hook and form", strings.Contains(hub, "\nc.Spawner.pre_spawn_hook = gpu_pre_spawn_hook\n") &&
			strings.Contains(hub, "\nc.DockerSpawner.options_form = gpu_options_form\n")},
		{"shm size kept", strings.Contains(hub, `"shm_size": "2G",`)},
		{"no policy without GPUs", !strings.Contains(cpuHub, "GPU_POLICY") && !strings.Contains(cpuHub, "pre_spawn_hook") && !strings.Contains(cpuHub, "device_requests")},
		{"check script only with GPUs", gpu.File(CUDACheckFile) != nil && cpu.File(CUDACheckFile) == nil},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: not as expected", c.name)
		}
	}
}

func TestGPUPolicyPy(t *testing.T) {
	t.Parallel()
	got := gpuPolicyPy(config.StackHubGPUs{
		Pool:      []string{"0", "MIG-4f4b5a4e-1c2d"},
		Default:   config.GPUGrant{},
		Exclusive: true,
		Users:     map[string]config.GPUGrant{"zoe": {Count: config.GPUAll}, "al": {Devices: []string{"1"}}},
		Groups:    map[string]config.GPUGroup{"rl": {GPUs: config.GPUGrant{Count: 2}}},
		Profiles:  []config.GPUProfile{{Name: "cpu", Description: `No "GPU"`}},
	})
	want := `{
    "pool": ["0", "MIG-4f4b5a4e-1c2d"],
    "default": {"count": 0},
    "exclusive": True,
    "users": {
        "al": {"devices": ["1"]},
        "zoe": {"count": -1},
    },
    "groups": {
        "rl": {"members": [], "gpus": {"count": 2}},
    },
    "profiles": [
        {"name": "cpu", "description": "No \"GPU\"", "gpus": {"count": 0}},
    ],
}`
	if got != want {
		t.Errorf("GPU_POLICY =\n%s\nwant\n%s", got, want)
	}
}

// TestRenderNotebookCUDA checks the notebook Dockerfile: TensorFlow with
// its CUDA extra installed before the rest, and the CUDA check, with GPUs.
func TestRenderNotebookCUDA(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t, "gpu")
	for _, tc := range []struct {
		name     string
		gpus     bool
		packages []string
		want     []string
		not      []string
	}{
		{"gpu", true, []string{"torch==2.7.1", "tensorflow==2.19.0", "optuna==4.4.0"},
			[]string{"RUN pip install --no-cache-dir \\\n        \"tensorflow[and-cuda]==2.19.0\" && \\\n",
				"RUN pip install --no-cache-dir \\\n        \"torch==2.7.1\" \\\n        \"optuna==4.4.0\" && \\\n",
				"COPY fireops-cuda-check.py /opt/fireops/cuda-check.py\nRUN python /opt/fireops/cuda-check.py --torch --tensorflow\n"},
			[]string{"\"tensorflow==2.19.0\""}},
		{"extra kept", true, []string{"TensorFlow[and-cuda]==2.19.0", "torch==2.7.1"},
			[]string{"\"TensorFlow[and-cuda]==2.19.0\" && \\\n"}, []string{"[and-cuda][and-cuda]"}},
		{"torch only", true, []string{"torch==2.7.1"},
			[]string{"RUN python /opt/fireops/cuda-check.py --torch\n"}, []string{"\"tensorflow", "--torch --tensorflow\n"}},
		{"no frameworks", true, []string{"optuna==4.4.0"},
			[]string{"RUN python /opt/fireops/cuda-check.py\n"}, []string{"RUN python /opt/fireops/cuda-check.py --"}},
		{"cpu", false, []string{"torch==2.7.1", "tensorflow==2.19.0"},
			[]string{"RUN pip install --no-cache-dir \\\n        \"torch==2.7.1\" \\\n        \"tensorflow==2.19.0\" && \\\n"},
			[]string{"and-cuda", "cuda-check"}},
	} {
		cfg.Stack.GPUs = tc.gpus
		cfg.Stack.Notebook.Packages = tc.packages
		st, err := Render(cfg, RenderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		df := string(st.File("notebook/Dockerfile"))
		for _, w := range tc.want {
			if !strings.Contains(df, w) {
				t.Errorf("%s: Dockerfile lacks %q:\n%s", tc.name, w, df)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(df, n) {
				t.Errorf("%s: Dockerfile has %q:\n%s", tc.name, n, df)
			}
		}
	}
}

// TestRenderCUDACheckTag: the notebook image's tag follows the check
// script, which the Dockerfile names by hash.
func TestRenderCUDACheckTag(t *testing.T) {
	t.Parallel()
	st := render(t, "gpu", RenderOptions{})
	script := st.File(CUDACheckFile)
	if !bytes.Contains(st.File("notebook/Dockerfile"), []byte("(fireops-cuda-check.py, "+shortHash(script)+")")) {
		t.Errorf("the notebook Dockerfile does not name the check script's hash %s", shortHash(script))
	}
}

// TestHubGPUPolicy runs the rendered hub config's GPU policy with
// Debian's JupyterHub (its Spawner class and traitlets config loading)
// and a fake Docker Engine: testdata/hub_gpu_policy.py.
func TestHubGPUPolicy(t *testing.T) {
	t.Parallel()
	py := debianPython(t)
	if out, err := exec.Command(py, "-c", "import jupyterhub.spawner, traitlets").CombinedOutput(); err != nil {
		testenv.Unavailable(t, "Debian's jupyterhub for python3", &buildError{err: err, out: string(out)})
	}
	st := render(t, "gpu-shared", RenderOptions{})
	path := filepath.Join(t.TempDir(), "jupyterhub_config.py")
	if err := os.WriteFile(path, st.File("hub/jupyterhub_config.py"), 0o600); err != nil {
		t.Fatal(err)
	}
	harness, err := filepath.Abs(filepath.Join("testdata", "hub_gpu_policy.py"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, harness, path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", harness, err, out)
	}
	if !strings.Contains(string(out), "\nOK") {
		t.Errorf("no OK from the harness:\n%s", out)
	}
	t.Logf("%s", out)
}

// fakeSite is a site-packages folder for the CUDA check: shared libraries
// built with gcc under nvidia/<pkg>/lib, Python modules standing in for
// torch and tensorflow, and dist-info folders with versions.
type fakeSite struct {
	t   *testing.T
	dir string
	gcc string
}

func newFakeSite(t *testing.T, gcc string) *fakeSite {
	return &fakeSite{t: t, dir: t.TempDir(), gcc: gcc}
}

// lib builds nvidia/<pkg>/lib/<soname>, linked against the libraries of
// needs (sonames of libraries built with lib, or of stubs in a folder
// that is not on the loader's path at run time).
func (s *fakeSite) lib(pkg, soname string, needs ...string) {
	s.t.Helper()
	dir := filepath.Join(s.dir, "nvidia", pkg, "lib")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.t.Fatal(err)
	}
	src := filepath.Join(s.t.TempDir(), "lib.c")
	if err := os.WriteFile(src, []byte("int fireops_"+strings.NewReplacer(".", "_", "-", "_").Replace(soname)+"(void) { return 1; }\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
	args := []string{"-shared", "-fPIC", "-o", filepath.Join(dir, soname), "-Wl,-soname," + soname, src, "-Wl,--no-as-needed"}
	for _, n := range needs {
		// A library of the site is linked where it is; any other through
		// a stub that is gone at run time (the driver, a missing one).
		if m, _ := filepath.Glob(filepath.Join(s.dir, "nvidia", "*", "lib", n)); len(m) == 1 {
			args = append(args, m[0])
			continue
		}
		stub := filepath.Join(s.t.TempDir(), n)
		if out, err := exec.Command(s.gcc, "-shared", "-fPIC", "-o", stub, "-Wl,-soname,"+n, src).CombinedOutput(); err != nil {
			s.t.Fatalf("gcc stub %s: %v\n%s", n, err, out)
		}
		args = append(args, stub)
	}
	if out, err := exec.Command(s.gcc, args...).CombinedOutput(); err != nil {
		s.t.Fatalf("gcc %s: %v\n%s", soname, err, out)
	}
}

// file writes a file of the site.
func (s *fakeSite) file(rel, data string) {
	s.t.Helper()
	p := filepath.Join(s.dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// dist records an installed distribution and its version.
func (s *fakeSite) dist(name, version string) {
	s.file(strings.ReplaceAll(name, "-", "_")+"-"+version+".dist-info/METADATA",
		"Metadata-Version: 2.1\nName: "+name+"\nVersion: "+version+"\n")
}

// torch stands in for PyTorch: its CUDA version ("" a CPU build), cuDNN.
func (s *fakeSite) torch(cuda string, cudnn string) {
	c := "None"
	if cuda != "" {
		c = `"` + cuda + `"`
	}
	s.file("torch/__init__.py", `__version__ = "2.7.1"
class version:
    cuda = `+c+`
class _cudnn:
    @staticmethod
    def version():
        `+cudnn+`
class backends:
    cudnn = _cudnn
`)
}

// tensorflow stands in for TensorFlow with its build info.
func (s *fakeSite) tensorflow(cudaBuild bool, cuda, cudnn string) {
	b := "False"
	if cudaBuild {
		b = "True"
	}
	s.file("tensorflow/__init__.py", `__version__ = "2.19.0"
class sysconfig:
    @staticmethod
    def get_build_info():
        return {"is_cuda_build": `+b+`, "cuda_version": "`+cuda+`", "cudnn_version": "`+cudnn+`"}
`)
}

// TestCUDACheck runs the notebook image's CUDA check (as rendered) on fake
// sites: what a GPU-less build passes and what fails it.
func TestCUDACheck(t *testing.T) {
	t.Parallel()
	py := debianPython(t)
	gcc := testenv.RequireTool(t, "gcc")
	script := filepath.Join(t.TempDir(), "cuda-check.py")
	if err := os.WriteFile(script, render(t, "gpu", RenderOptions{}).File(CUDACheckFile), 0o600); err != nil {
		t.Fatal(err)
	}
	// good: the libraries load (libcublas needs libcublasLt, found once
	// it is loaded; libcufile needs only the driver), the frameworks are
	// CUDA builds and the runtime and cuDNN are new enough.
	good := func(s *fakeSite) {
		s.lib("cublas", "libcublasLt.so.12")
		s.lib("cublas", "libcublas.so.12", "libcublasLt.so.12")
		s.lib("cudnn", "libcudnn.so.9")
		s.lib("cufile", "libcufile.so.0", "libcuda.so.1")
		s.dist("nvidia-cuda-runtime-cu12", "12.6.77")
		s.dist("nvidia-cudnn-cu12", "9.5.1.17")
		s.torch("12.6", "return 90501")
		s.tensorflow(true, "12.5.1", "9")
	}
	for _, tc := range []struct {
		name  string
		setup func(s *fakeSite)
		args  []string
		fail  bool
		want  []string
	}{
		{"good", good, []string{"--torch", "--tensorflow"}, false, []string{
			"ok: no GPU (an image build)",
			"ok: 3 of 4 CUDA libraries load; 1 need the driver (libcuda.so.1)",
			"ok: torch 2.7.1 built for CUDA 12.6",
			"ok: torch loads cuDNN 90501",
			"ok: tensorflow: CUDA runtime 12.6.77 serves its 12.5.1",
			"ok: tensorflow: cuDNN 9.5.1.17 serves its 9",
			"fireops-cuda-check: passed",
		}},
		{"missing library", func(s *fakeSite) {
			good(s)
			s.lib("nccl", "libnccl.so.2", "libmissing.so.7")
		}, []string{"--torch"}, true, []string{"FAIL: cannot load ", "libnccl.so.2: libmissing.so.7: cannot open shared object file", "fireops-cuda-check: 1 failed"}},
		{"cpu torch", func(s *fakeSite) {
			good(s)
			s.torch("", "return None")
		}, []string{"--torch"}, true, []string{"FAIL: torch 2.7.1 is a CPU-only build"}},
		{"torch refuses cudnn", func(s *fakeSite) {
			good(s)
			s.torch("12.6", `raise RuntimeError("cuDNN version incompatibility: PyTorch was compiled against (9, 5, 1) but found runtime version (9, 3, 0)")`)
		}, []string{"--torch"}, true, []string{"FAIL: torch cannot use the image's cuDNN: cuDNN version incompatibility"}},
		{"torch import", func(s *fakeSite) {
			good(s)
			s.file("torch/__init__.py", `raise OSError("libcudnn_graph.so.9: cannot open shared object file")`+"\n")
		}, []string{"--torch"}, true, []string{"FAIL: import torch: libcudnn_graph.so.9"}},
		{"tensorflow not a CUDA build", func(s *fakeSite) {
			good(s)
			s.tensorflow(false, "", "")
		}, []string{"--tensorflow"}, true, []string{"FAIL: tensorflow 2.19.0 is not a CUDA build"}},
		{"runtime older than tensorflow's", func(s *fakeSite) {
			good(s)
			s.tensorflow(true, "12.8.0", "9.8")
		}, []string{"--tensorflow"}, true, []string{
			"FAIL: tensorflow was built for CUDA runtime 12.8.0 but the image has 12.6.77",
			"FAIL: tensorflow was built for cuDNN 9.8 but the image has 9.5.1.17",
		}},
		{"no CUDA libraries", func(s *fakeSite) {
			s.torch("12.6", "return 90501")
		}, []string{"--torch"}, true, []string{"FAIL: no CUDA libraries (nvidia-* wheels)"}},
		{"no framework, no libraries", func(s *fakeSite) {}, nil, false, []string{"passed"}},
		{"gpu required", good, []string{"--require-gpu"}, true, []string{"FAIL: no GPU: libcuda.so.1 does not load or sees none"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFakeSite(t, gcc)
			tc.setup(s)
			cmd := exec.Command(py, append([]string{script, "--site", s.dir}, tc.args...)...)
			cmd.Env = append(os.Environ(), "PYTHONPATH="+s.dir, "PYTHONDONTWRITEBYTECODE=1")
			out, err := cmd.CombinedOutput()
			if failed := err != nil; failed != tc.fail {
				t.Errorf("failed = %v (%v), want %v\n%s", failed, err, tc.fail, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
