package deploy

import (
	"bytes"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenConfigs are rendered into testdata/golden/<name>/.
var goldenConfigs = []string{"gpu", "cpu"}

func TestRenderGolden(t *testing.T) {
	for _, name := range goldenConfigs {
		t.Run(name, func(t *testing.T) {
			st := render(t, name, RenderOptions{})
			dir := filepath.Join("testdata", "golden", name)
			if *update {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				if err := st.WriteTo(dir); err != nil {
					t.Fatal(err)
				}
				return
			}
			var golden []string
			err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				rel, _ := filepath.Rel(dir, p)
				golden = append(golden, filepath.ToSlash(rel))
				return nil
			})
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/deploy -run TestRenderGolden -update)", err)
			}
			var got []string
			for _, f := range st.Files {
				got = append(got, f.Path)
				want, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Path)))
				if err != nil {
					t.Errorf("%s: not in the golden files (run go test ./pkg/deploy -update)", f.Path)
					continue
				}
				if !bytes.Equal(want, f.Data) {
					t.Errorf("%s differs from %s (run go test ./pkg/deploy -update and review the diff)", f.Path, filepath.Join(dir, f.Path))
				}
			}
			slices.Sort(golden)
			if !slices.Equal(golden, got) {
				t.Errorf("rendered files %v, golden files %v", got, golden)
			}
		})
	}
}

func TestRenderDeterministic(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t, "gpu")
	a, err := Render(cfg, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Render(cfg, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Files) != len(b.Files) {
		t.Fatalf("%d files, then %d", len(a.Files), len(b.Files))
	}
	for i := range a.Files {
		if a.Files[i].Path != b.Files[i].Path || !bytes.Equal(a.Files[i].Data, b.Files[i].Data) {
			t.Errorf("%s: two renders differ", a.Files[i].Path)
		}
	}
}

func TestRenderFacts(t *testing.T) {
	t.Parallel()
	gpu := render(t, "gpu", RenderOptions{})
	cpu := render(t, "cpu", RenderOptions{})
	compose := string(gpu.File("compose.yaml"))
	hub := string(gpu.File("hub/jupyterhub_config.py"))
	checks := []struct {
		name string
		ok   bool
	}{
		{"top-level name", strings.HasPrefix(strings.SplitN(compose, "\nname: ", 2)[1], `"firetech"`)},
		{"mongo on loopback only", strings.Contains(compose, `"127.0.0.1:27017:27017"`)},
		{"networks by design name", strings.Contains(compose, `name: "jupyter-network"`) && strings.Contains(compose, `name: "monitoring-network"`)},
		{"gpu exporter with GPUs", slices.Contains(gpu.Services, "gpu-exporter") && !slices.Contains(cpu.Services, "gpu-exporter")},
		{"gpu rules only with GPUs", gpu.File("prometheus/rules/gpu.yml") != nil && cpu.File("prometheus/rules/gpu.yml") == nil},
		{"gpu dashboard only with GPUs", gpu.File("grafana/dashboards/gpu.json") != nil && cpu.File("grafana/dashboards/gpu.json") == nil},
		{"device requests with GPUs", strings.Contains(hub, `"device_requests"`) && !strings.Contains(string(cpu.File("hub/jupyterhub_config.py")), "device_requests")},
		{"signup closed by default", strings.Contains(hub, "open_signup = False")},
		{"user volumes", strings.Contains(hub, `{"jupyterhub-user-{username}": "/home/jovyan/work"}`)},
		{"notebook image tagged", strings.HasPrefix(gpu.NotebookImage, "my-custom-jupyter-notebook:") && strings.Contains(hub, gpu.NotebookImage)},
		{"idle culler", strings.Contains(hub, "jupyterhub_idle_culler") && !strings.Contains(string(cpu.File("hub/jupyterhub_config.py")), "jupyterhub_idle_culler")},
		{"bind address", strings.Contains(string(cpu.File("compose.yaml")), `"127.0.0.1:8080:8000"`)},
		{"no secret in rendered files", !strings.Contains(string(cpu.File("alertmanager/alertmanager.yml")), "smtp-s3cret")},
		{"user servers survive the hub", strings.Contains(hub, "c.JupyterHub.cleanup_servers = False") && strings.Contains(hub, "c.DockerSpawner.remove = False")},
		{"shm size", strings.Contains(hub, `"shm_size": "2G",`) && strings.Contains(string(cpu.File("hub/jupyterhub_config.py")), `"shm_size": "2G",`)},
		{"GPU memory growth", strings.Contains(hub, `"TF_FORCE_GPU_ALLOW_GROWTH": "true"`) && strings.Contains(hub, `"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"`)},
		{"nativeauthenticator templates", strings.Contains(hub, "import nativeauthenticator\n") && strings.Contains(hub, `c.JupyterHub.template_paths = [f"{os.path.dirname(nativeauthenticator.__file__)}/templates/"]`)},
		{"admin users", strings.Contains(hub, `c.Authenticator.admin_users = {"alice"}`) && strings.Contains(string(cpu.File("hub/jupyterhub_config.py")), `c.Authenticator.admin_users = {"alice", "bob"}`)},
		{"node-exporter in the host's namespaces", strings.Contains(compose, "  node-exporter:\n") && strings.Contains(strings.SplitN(strings.SplitN(compose, "  node-exporter:\n", 2)[1], "\n\n", 2)[0], "    network_mode: host\n    pid: host\n") &&
			strings.Contains(string(gpu.File("prometheus/prometheus.yml")), `targets: ["host.docker.internal:9100"]`) && strings.Contains(compose, `"host.docker.internal:host-gateway"`)},
		{"pinned packages", strings.Contains(string(gpu.File("notebook/Dockerfile")), `"optuna==`)},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: not as expected", c.name)
		}
	}
	if want := []string{"alertmanager", "alloy", "cadvisor", "gpu-exporter", "grafana", "jupyterhub", "loki", "mongodb", "mongodb-exporter", "node-exporter", "prometheus"}; !slices.Equal(gpu.Services, want) {
		t.Errorf("services %v, want %v", gpu.Services, want)
	}
}

// TestRenderImageTags checks that the built images' tags follow their
// Dockerfiles: a pinned version change gives a new tag, nothing else does.
func TestRenderImageTags(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t, "gpu")
	a, err := Render(cfg, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Stack.Hub.AdminUsers = append(cfg.Stack.Hub.AdminUsers, "carol")
	b, err := Render(cfg, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.NotebookImage != b.NotebookImage || a.HubImage != b.HubImage {
		t.Errorf("an admin user changed the image tags: %s %s -> %s %s", a.HubImage, a.NotebookImage, b.HubImage, b.NotebookImage)
	}
	if bytes.Equal(a.File("compose.yaml"), b.File("compose.yaml")) {
		t.Error("compose.yaml did not change with the hub config: the hub would not be recreated")
	}
	cfg.Stack.Notebook.Packages = append(cfg.Stack.Notebook.Packages, "rich==14.0.0")
	c, err := Render(cfg, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.NotebookImage == b.NotebookImage || c.HubImage != b.HubImage {
		t.Errorf("a notebook package changed tags %s %s -> %s %s", b.HubImage, b.NotebookImage, c.HubImage, c.NotebookImage)
	}
}

// TestRenderBindAddress checks where the ports are published: by default
// the hub on every interface and Grafana and Prometheus on the loopback
// only; stack.bind_address puts all three on that address.
func TestRenderBindAddress(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t, "gpu")
	for _, tc := range []struct {
		bind string
		want []string
		ips  map[string]string
	}{
		{"", []string{`"8000:8000"`, `"127.0.0.1:3000:3000"`, `"127.0.0.1:9090:9090"`},
			map[string]string{"jupyterhub": "", "grafana": "127.0.0.1", "prometheus": "127.0.0.1", "mongodb": "127.0.0.1"}},
		{"0.0.0.0", []string{`"0.0.0.0:8000:8000"`, `"0.0.0.0:3000:3000"`, `"0.0.0.0:9090:9090"`},
			map[string]string{"jupyterhub": "0.0.0.0", "grafana": "0.0.0.0", "prometheus": "0.0.0.0", "mongodb": "127.0.0.1"}},
		{"10.1.2.3", []string{`"10.1.2.3:8000:8000"`, `"10.1.2.3:3000:3000"`, `"10.1.2.3:9090:9090"`},
			map[string]string{"jupyterhub": "10.1.2.3", "grafana": "10.1.2.3", "prometheus": "10.1.2.3", "mongodb": "127.0.0.1"}},
	} {
		cfg.Stack.BindAddress = tc.bind
		st, err := Render(cfg, RenderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		compose := string(st.File("compose.yaml"))
		for _, w := range tc.want {
			if !strings.Contains(compose, "      - "+w+"\n") {
				t.Errorf("bind_address %q: compose.yaml does not publish %s", tc.bind, w)
			}
		}
		for _, p := range st.Ports {
			if p.HostIP != tc.ips[p.Service] {
				t.Errorf("bind_address %q: %s published on %q, want %q", tc.bind, p.Service, p.HostIP, tc.ips[p.Service])
			}
		}
	}
}

// TestRenderShmSize: stack.hub.shm_size reaches the user servers' /dev/shm.
func TestRenderShmSize(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t, "gpu")
	cfg.Stack.Hub.ShmSize = 8 << 30
	st, err := Render(cfg, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if hub := string(st.File("hub/jupyterhub_config.py")); !strings.Contains(hub, `"shm_size": "8G",`) {
		t.Errorf("jupyterhub_config.py does not give user servers an 8G /dev/shm")
	}
}
