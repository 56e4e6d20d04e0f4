package config

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestStackDefaults(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg, err := f.parse(t, "")
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Stack
	checks := []struct {
		name string
		ok   bool
	}{
		{"dir", s.Dir == "/opt/firetech"},
		{"name", s.Name == "firetech"},
		{"gpus on, dcgm", s.GPUs && s.GPUExporter == "dcgm"},
		{"ports of design.md", s.Ports == StackPorts{Hub: 8000, Grafana: 3000, Prometheus: 9090, MongoDB: 27017}},
		{"networks of design.md", s.Networks == StackNetworks{Jupyter: "jupyter-network", Monitoring: "monitoring-network"}},
		{"notebook image name", s.Notebook.Image == "my-custom-jupyter-notebook"},
		{"packages pinned", len(s.Notebook.Packages) == 6 && len(s.Hub.Packages) == 3},
		{"sign-up closed", !s.Hub.OpenSignup},
		{"idle culler 1h", time.Duration(s.Hub.IdleTimeout) == time.Hour},
		{"mongo volume", s.Mongo.Volume == "mongo-data" && s.Mongo.ReplicaSet == "rs0"},
		{"limits for every service", len(s.Limits) == len(StackServices)},
		{"privileged monitoring", s.PrivilegedMonitoring},
		{"thresholds", s.Alerts.DiskFreePercent == 10 && s.Alerts.MemoryFreePercent == 10},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("default %s: got %+v", c.name, s)
		}
	}
}

func TestStackOverrides(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if err := os.WriteFile(filepath.Join(f.dir, "smtp"), []byte("pw"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.parse(t, `
stack:
  dir: stack
  gpus: false
  limits: {mongodb: {memory: 8GiB}}
  notebook: {packages: ["torch[cuda]==2.7.1", "optuna==4.4.0"]}
  alerts:
    email: {to: [ops@example.org], from: f@example.org, smarthost: "smtp.example.org:587", username: u, password_file: smtp}
`)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Stack
	if s.Dir != filepath.Join(f.dir, "stack") || s.Alerts.Email.PasswordFile != filepath.Join(f.dir, "smtp") {
		t.Errorf("relative paths not resolved: %q %q", s.Dir, s.Alerts.Email.PasswordFile)
	}
	if s.GPUs || s.Limits["mongodb"] != (StackLimits{Memory: 8 * GiB}) || s.Limits["prometheus"].Memory != 2*GiB {
		t.Errorf("overrides: %+v", s)
	}
	// config check lists the SMTP password file with the other secrets.
	want := FileStatus{Key: "stack.alerts.email.password_file", Path: s.Alerts.Email.PasswordFile, Status: "ok (0600)"}
	if files := cfg.Check().Files; !slices.Contains(files, want) {
		t.Errorf("config check files = %+v, want %+v among them", files, want)
	}
}

func TestStackErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, yaml, want string }{
		{"unknown key", "stack: {gpu: true}\n", `unknown key "gpu" in stack`},
		{"unknown nested key", "stack: {hub: {admins: [a]}}\n", `unknown key "admins" in stack.hub`},
		{"project name", "stack: {name: Fire Tech}\n", "stack.name"},
		{"exporter", "stack: {gpu_exporter: nvml}\n", "stack.gpu_exporter"},
		{"bind address", "stack: {bind_address: localhost}\n", "stack.bind_address"},
		{"shm too small", "stack: {hub: {shm_size: 1MiB}}\n", "stack.hub.shm_size"},
		{"port range", "stack: {ports: {grafana: 70000}}\n", "stack.ports.grafana"},
		{"port twice", "stack: {ports: {grafana: 8000}}\n", "stack.ports.grafana: 8000 is also stack.ports.hub"},
		{"hub port off", "stack: {ports: {hub: 0}}\n", "stack.ports.hub"},
		{"same networks", "stack: {networks: {jupyter: n, monitoring: n}}\n", "stack.networks.monitoring"},
		{"bad network", "stack: {networks: {jupyter: 'a b'}}\n", "stack.networks.jupyter"},
		{"same volumes", "hub: {db_volume: data}\nstack: {mongo: {volume: data}}\n", "stack.mongo.volume"},
		{"internal volume", "stack: {mongo: {volume: grafana-data}}\n", "stack.mongo.volume"},
		{"unpinned image", "stack: {images: {grafana: grafana/grafana}}\n", "stack.images.grafana"},
		{"latest image", "stack: {images: {loki: 'grafana/loki:latest'}}\n", "stack.images.loki"},
		{"image with tag", "stack: {notebook: {image: 'nb:1'}}\n", "stack.notebook.image"},
		{"unpinned package", "stack: {notebook: {packages: [torch]}}\n", "stack.notebook.packages[0]"},
		{"range package", "stack: {hub: {packages: ['dockerspawner>=13']}}\n", "stack.hub.packages[0]"},
		{"admin name", "stack: {hub: {admin_users: [Alice]}}\n", "stack.hub.admin_users[0]"},
		{"notebook dir", "stack: {hub: {notebook_dir: work}}\n", "stack.hub.notebook_dir"},
		{"idle timeout", "stack: {hub: {idle_timeout: 10s}}\n", "stack.hub.idle_timeout"},
		{"health interval", "stack: {health_interval: 0s}\n", "stack.health_interval"},
		{"retention", "stack: {monitoring: {loki_retention: 1h}}\n", "stack.monitoring.loki_retention"},
		{"root url", "stack: {monitoring: {grafana_root_url: example.org}}\n", "stack.monitoring.grafana_root_url"},
		{"disk percent", "stack: {alerts: {disk_free_percent: 0}}\n", "stack.alerts.disk_free_percent"},
		{"webhook", "stack: {alerts: {webhook_url: 'ftp://x'}}\n", "stack.alerts.webhook_url"},
		{"email without to", "stack: {alerts: {email: {from: a@b.c}}}\n", "stack.alerts.email.to"},
		{"smarthost", "stack: {alerts: {email: {to: [a@b.c], from: a@b.c, smarthost: smtp}}}\n", "stack.alerts.email.smarthost"},
		{"password file missing", "stack: {alerts: {email: {to: [a@b.c], from: a@b.c, smarthost: 'h:25', username: u, password_file: nope}}}\n", "stack.alerts.email.password_file"},
		{"unknown limit", "stack: {limits: {postgres: {cpus: 1}}}\n", "stack.limits.postgres"},
		{"tiny memory", "stack: {limits: {grafana: {memory: 1KiB}}}\n", "stack.limits.grafana.memory"},
	}
	newFixture(t).refuseAll(t, tests)
}
