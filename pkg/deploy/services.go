package deploy

import (
	"fmt"
	"strings"
	"time"

	"github.com/firetech/fireops/pkg/config"
)

// proc is how one service runs: its image, command and healthcheck. The
// rest of a service (volumes, networks, ports, limits) is in
// templates/compose.yaml.tmpl.
type proc struct {
	Image      string
	Entrypoint []string
	Command    []string
	// Health is the healthcheck's test ("CMD", ...); nil when the image
	// has no way to report its health (no shell or HTTP client in it).
	Health      []string
	StartPeriod time.Duration
	// Port is the port the service listens on inside its container.
	Port int
}

// serviceProcs returns the processes of the services that run.
func (d *renderData) serviceProcs() map[string]proc {
	s := d.S
	cmd := func(args ...string) []string { return append([]string{"CMD"}, args...) }
	wget := func(url string) []string { return cmd("wget", "-q", "-O", "/dev/null", url) }
	// bash's /dev/tcp for images with bash but no HTTP client.
	bashGet := func(port int, p string) []string {
		return cmd("bash", "-c", fmt.Sprintf(`exec 3<>/dev/tcp/127.0.0.1/%d && printf 'GET %s HTTP/1.0\r\n\r\n' >&3 && head -n 1 <&3 | grep -q ' 200'`, port, p))
	}
	mongoHealth := mongoHealthScript(s.Mongo.ReplicaSet)

	procs := map[string]proc{
		"jupyterhub": {
			Image:       d.HubImage,
			Health:      cmd("python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/hub/health', timeout=5)"),
			StartPeriod: time.Minute, Port: 8000,
		},
		"mongodb": {
			Image:   s.Images.MongoDB,
			Command: []string{"mongod", "--replSet", s.Mongo.ReplicaSet, "--keyFile", "/run/secrets/mongo_keyfile", "--bind_ip_all"},
			// The healthcheck also initiates the single-node replica set,
			// once: rs.initiate runs only while rs.status says it is not.
			Health:      cmd("mongosh", "--quiet", "--norc", "--eval", mongoHealth),
			StartPeriod: time.Minute, Port: 27017,
		},
		"mongodb-exporter": {
			Image:   s.Images.MongoDBExporter,
			Command: []string{"--collect-all", "--compatible-mode", "--web.listen-address=:9216"},
			Port:    9216,
		},
		"prometheus": {
			Image: s.Images.Prometheus,
			Command: []string{
				"--config.file=/etc/prometheus/prometheus.yml",
				"--storage.tsdb.path=/prometheus",
				"--storage.tsdb.retention.time=" + promDuration(s.Monitoring.PrometheusRetention),
			},
			Health: wget("http://127.0.0.1:9090/-/healthy"), StartPeriod: 30 * time.Second, Port: 9090,
		},
		"alertmanager": {
			Image:   s.Images.Alertmanager,
			Command: []string{"--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"},
			Health:  wget("http://127.0.0.1:9093/-/healthy"), Port: 9093,
		},
		"grafana": {
			Image:  s.Images.Grafana,
			Health: wget("http://127.0.0.1:3000/api/health"), StartPeriod: time.Minute, Port: 3000,
		},
		"loki": {
			// The Loki image has no shell or HTTP client: no healthcheck;
			// Prometheus' MonitoringTargetDown covers it.
			Image:   s.Images.Loki,
			Command: []string{"-config.file=/etc/loki/loki.yaml"},
			Port:    3100,
		},
		"alloy": {
			Image: s.Images.Alloy,
			Command: []string{
				"run", "--server.http.listen-addr=0.0.0.0:12345", "--storage.path=/var/lib/alloy/data",
				"--disable-reporting", "/etc/alloy/config.alloy",
			},
			Health: bashGet(12345, "/-/ready"), StartPeriod: 30 * time.Second, Port: 12345,
		},
		"node-exporter": {
			Image: s.Images.NodeExporter,
			Command: []string{
				"--path.rootfs=/host",
				"--collector.textfile.directory=/textfile",
				"--collector.filesystem.mount-points-exclude=^/(dev|proc|run|sys|var/lib/docker/.+)($|/)",
				// Basic auth: it listens on every address of the host
				// (nodeexporter.go).
				"--web.config.file=" + NodeExporterWebConfig,
			},
			Health: nodeExporterHealth, Port: 9100,
		},
		"cadvisor": {
			Image: s.Images.CAdvisor,
			Command: []string{
				"--docker_only=true", "--housekeeping_interval=15s",
				"--disable_metrics=advtcp,cpu_topology,cpuset,hugetlb,memory_numa,percpu,process,referenced_memory,resctrl,sched,tcp,udp",
			},
			Health: wget("http://127.0.0.1:8080/healthz"), StartPeriod: 30 * time.Second, Port: 8080,
		},
	}
	if s.GPUs {
		g := proc{Image: s.Images.DCGMExporter, Port: d.GPU.Port}
		switch s.GPUExporter {
		case "dcgm":
			g.Command = []string{"-f", "/etc/dcgm-exporter/fireops-counters.csv"}
			g.Health, g.StartPeriod = bashGet(d.GPU.Port, "/health"), time.Minute
		case "nvidia-smi":
			g.Image = s.Images.NvidiaSMIExporter
		}
		procs["gpu-exporter"] = g
	}
	if prometheusAuth(s) {
		procs["prometheus"] = withPrometheusAuth(procs["prometheus"])
	}
	if d.stub.StubImage != "" {
		for name, p := range procs {
			if name == "node-exporter" && d.stub.StubHostPort != 0 {
				// In the host's network: a port of its own per test stack.
				p.Port = d.stub.StubHostPort
			}
			listen := fmt.Sprintf(":%d", p.Port)
			procs[name] = proc{
				Image:      d.stub.StubImage,
				Entrypoint: []string{d.stub.StubBinary, "serve", "-listen", listen},
				Health:     cmd(d.stub.StubBinary, "health", fmt.Sprintf("http://127.0.0.1:%d/health", p.Port)),
				Port:       p.Port,
			}
		}
	}
	return procs
}

// procYAML writes a service's image, entrypoint, command and healthcheck,
// indented for compose.yaml.
func (d *renderData) procYAML(svc string) (string, error) {
	p, ok := d.procs[svc]
	if !ok {
		return "", fmt.Errorf("no process for service %q", svc)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "    image: %s\n", jsonString(p.Image))
	if p.Entrypoint != nil {
		fmt.Fprintf(&b, "    entrypoint: %s\n", yamlList(p.Entrypoint))
	}
	if p.Command != nil {
		fmt.Fprintf(&b, "    command: %s\n", yamlList(p.Command))
	}
	if p.Health != nil {
		fmt.Fprintf(&b, "    healthcheck:\n      test: %s\n", yamlList(p.Health))
		fmt.Fprintf(&b, "      interval: %s\n      timeout: 10s\n      retries: 5\n", composeDuration(d.S.HealthInterval))
		if p.StartPeriod > 0 && d.stub.StubImage == "" {
			fmt.Fprintf(&b, "      start_period: %s\n", composeDuration(config.Duration(p.StartPeriod)))
		}
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// labelsYAML writes the label that hashes the config files a service
// mounts: Compose recreates the container when it changes.
func (d *renderData) labelsYAML(svc string) (string, error) {
	h, ok := d.labels[svc]
	if !ok {
		return "", fmt.Errorf("no config hash for service %q", svc)
	}
	return fmt.Sprintf("    labels:\n      %s: %s", ConfigHashLabel, jsonString(h)), nil
}

// ConfigHashLabel is the container label holding the hash of the config
// files a service mounts.
const ConfigHashLabel = "io.fireops.config-sha256"

// limit returns a service's limits, nil when it has none.
func (d *renderData) limit(svc string) *config.StackLimits {
	l, ok := d.S.Limits[svc]
	if !ok || (l.CPUs == 0 && l.Memory == 0) {
		return nil
	}
	return &l
}

// limitsYAML writes a service's resource limits (nothing when it has none).
func (d *renderData) limitsYAML(svc string) string {
	l := d.limit(svc)
	if l == nil {
		return "    # no resource limits (stack.limits)"
	}
	var b strings.Builder
	b.WriteString("    deploy:\n      resources:\n        limits:\n")
	if l.CPUs > 0 {
		fmt.Fprintf(&b, "          cpus: %s\n", jsonString(strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", l.CPUs), "0"), ".")))
	}
	if l.Memory > 0 {
		fmt.Fprintf(&b, "          memory: %s\n", jsonString(memString(l.Memory)))
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// yamlList writes strings as a YAML flow sequence of JSON strings.
func yamlList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		// Compose interpolates $ in the file: double it.
		q[i] = jsonString(strings.ReplaceAll(s, "$", "$$"))
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// composeDuration writes a duration as Compose reads it (90s, 1m, 2h).
func composeDuration(d config.Duration) string {
	td := time.Duration(d)
	switch {
	case td >= time.Hour && td%time.Hour == 0:
		return fmt.Sprintf("%dh", td/time.Hour)
	case td >= time.Minute && td%time.Minute == 0:
		return fmt.Sprintf("%dm", td/time.Minute)
	case td%time.Second == 0:
		return fmt.Sprintf("%ds", td/time.Second)
	}
	return fmt.Sprintf("%dms", td/time.Millisecond)
}

// promDuration writes a duration as Prometheus reads it (30d, 36h, 90m).
func promDuration(d config.Duration) string {
	td := time.Duration(d)
	switch {
	case td%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", td/(24*time.Hour))
	case td%time.Hour == 0:
		return fmt.Sprintf("%dh", td/time.Hour)
	case td%time.Minute == 0:
		return fmt.Sprintf("%dm", td/time.Minute)
	}
	return fmt.Sprintf("%ds", td/time.Second)
}
