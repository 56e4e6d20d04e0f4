package deploy

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/firetech/fireops/pkg/config"
)

//go:embed templates
var templatesFS embed.FS

// MongoRootUser is the MongoDB root user the stack creates; its password
// is the generated secret mongo-root-password.
const MongoRootUser = "root"

// DefaultTextfileDir is node-exporter's textfile folder on the host when
// metrics.textfile_dir is not set (Debian's prometheus-node-exporter uses it).
const DefaultTextfileDir = "/var/lib/prometheus/node-exporter"

// pseudoFS are the filesystem types that are not real disks: the disk
// alerts and dashboards leave them out.
const pseudoFS = "tmpfs|devtmpfs|overlay|squashfs|ramfs|nsfs|proc|sysfs|cgroup2?|fuse\\\\.lxcfs|autofs|tracefs|rpc_pipefs|nfsd"

// File is one rendered file, relative to stack.dir.
type File struct {
	// Path is slash-separated and relative to stack.dir.
	Path string
	// Data is the file's content.
	Data []byte
}

// Port is one port the stack publishes on the host.
type Port struct {
	// Key is the config key that sets it (stack.ports.hub).
	Key string `json:"key"`
	// Service is the Compose service that publishes it.
	Service string `json:"service"`
	// HostIP is the address it is bound to; empty means every interface.
	HostIP string `json:"host_ip,omitempty"`
	// Port is the host port.
	Port int `json:"port"`
}

// String formats the port as IP:port or :port.
func (p Port) String() string {
	return net.JoinHostPort(p.HostIP, strconv.Itoa(p.Port))
}

// RenderOptions change what Render produces, for tests.
type RenderOptions struct {
	// StubImage, when set, replaces the image, entrypoint, command and
	// healthcheck of every service with this image running
	// internal/cmd/stackhelper (serve on the service's port; health
	// argument for the healthcheck), and the notebook image's Dockerfile
	// with one built FROM it: the end-to-end test deploys the real compose
	// file, networks, volumes, secrets and ports, and builds the notebook
	// image, on an Engine that cannot pull images.
	StubImage string
	// StubBinary is the helper's path inside StubImage (default /stackhelper).
	StubBinary string
	// StubHostPort is the port node-exporter's stub listens on in the
	// host's network namespace (default 9100, node-exporter's): end-to-end
	// tests that run at the same time each take a free one.
	StubHostPort int
}

// Stack is a rendered stack: the files to write into stack.dir and what
// deploy needs to know about them.
type Stack struct {
	// Dir is stack.dir.
	Dir string
	// Project is the Compose project name.
	Project string
	// Files are every rendered file but the secrets, sorted by path.
	Files []File
	// Services are the Compose services that run, sorted.
	Services []string
	// HubImage and NotebookImage are the two images deploy builds, tagged
	// with a hash of their Dockerfiles.
	HubImage, NotebookImage string
	// Ports are the ports the stack publishes.
	Ports []Port
	// Secrets are the secret files the stack needs in Dir/secrets/.
	Secrets []SecretSpec

	cfg *config.Config
}

// gpuMetrics names, per GPU exporter, the metrics the alerts and the GPU
// dashboard use.
type gpuMetrics struct {
	Port                                 int
	Label                                string // the label that names a GPU
	Temp, Util, MemUsed, Power, ECC, XID string // XID: empty when the exporter has none
}

var gpuExporters = map[string]gpuMetrics{
	"dcgm": {
		Port: 9400, Label: "gpu",
		Temp: "DCGM_FI_DEV_GPU_TEMP", Util: "DCGM_FI_DEV_GPU_UTIL",
		MemUsed: "DCGM_FI_DEV_FB_USED * 1048576", Power: "DCGM_FI_DEV_POWER_USAGE",
		ECC: "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", XID: "DCGM_FI_DEV_XID_ERRORS",
	},
	"nvidia-smi": {
		Port: 9835, Label: "uuid",
		Temp: "nvidia_smi_temperature_gpu", Util: "nvidia_smi_utilization_gpu_ratio * 100",
		MemUsed: "nvidia_smi_memory_used_bytes", Power: "nvidia_smi_power_draw_watts",
		ECC: "nvidia_smi_ecc_errors_uncorrected_volatile_total",
	},
}

// DefaultMonitoringIP is the host address Grafana's and Prometheus' ports
// are published on when stack.bind_address is empty.
const DefaultMonitoringIP = "127.0.0.1"

// renderData is what the templates see.
type renderData struct {
	Cfg           *config.Config
	S             *config.Stack
	ConfigFile    string
	Host          string
	HubImage      string
	NotebookImage string
	MongoRootUser string
	TextfileDir   string
	FireopsTarget string // where Prometheus scrapes `fireops schedule`; "": no scrape job
	SMTPPassword  bool
	Telegram      bool // stack.alerts.telegram is set: a telegram_configs receiver and its token secret
	Receiver      string
	GPU           gpuMetrics
	PseudoFS      string
	ShmSize       config.ByteSize
	HubIP         string // host address of the hub's port; "": every interface
	MonitoringIP  string // host address of Grafana's and Prometheus' ports
	procs         map[string]proc
	stub          RenderOptions
	labels        map[string]string // service -> config hash
}

// Render renders the stack from the config's stack: section. It touches
// nothing: Stack.Write and EnsureSecrets do.
func Render(cfg *config.Config, opts RenderOptions) (*Stack, error) {
	s := &cfg.Stack
	d := &renderData{
		Cfg: cfg, S: s, Host: cfg.Host,
		MongoRootUser: MongoRootUser, TextfileDir: cfg.Metrics.TextfileDir,
		SMTPPassword: s.Alerts.Email.PasswordFile != "",
		Telegram:     s.Alerts.Telegram.BotTokenFile != "" && s.Alerts.Telegram.ChatID != 0,
		GPU:          gpuExporters[s.GPUExporter], PseudoFS: pseudoFS, stub: opts,
		// /dev/shm of user servers (stack.hub.shm_size): PyTorch's
		// DataLoader workers pass batches through it, and Docker's default
		// of 64 MB makes them fail with "bus error".
		labels: map[string]string{}, ShmSize: s.Hub.ShmSize,
		HubIP: s.BindAddress, MonitoringIP: s.BindAddress,
	}
	if d.MonitoringIP == "" {
		// Grafana and Prometheus speak plain HTTP, and Prometheus has no
		// authentication: only the host reaches them unless bind_address
		// says otherwise.
		d.MonitoringIP = DefaultMonitoringIP
	}
	// Rendered files name the config by its file name only: the same
	// config renders the same bytes wherever it lives.
	d.ConfigFile = "the fireops config"
	if cfg.File != "" {
		d.ConfigFile = filepath.Base(cfg.File)
	}
	if d.TextfileDir == "" {
		d.TextfileDir = DefaultTextfileDir
	}
	d.FireopsTarget = FireopsScrapeTarget(cfg.Metrics.Listen)
	switch {
	case HasReceiver(cfg):
		d.Receiver = "operators"
	default:
		d.Receiver = "ui-only"
	}
	if opts.StubImage != "" && opts.StubBinary == "" {
		d.stub.StubBinary = "/stackhelper"
	}

	st := &Stack{Dir: s.Dir, Project: s.Name, cfg: cfg}
	add := func(p string, data []byte) { st.Files = append(st.Files, File{Path: p, Data: data}) }

	// The two built images are tagged with a hash of their Dockerfiles
	// (which name their base images and pinned packages), so a change
	// makes deploy build and roll out a new image, and nothing else does.
	hubDockerfile, err := d.exec("hub/Dockerfile.tmpl")
	if err != nil {
		return nil, err
	}
	nbDockerfile, err := d.exec("notebook/Dockerfile.tmpl")
	if err != nil {
		return nil, err
	}
	if opts.StubImage != "" {
		// Tests: the notebook image is built FROM the stub (deploy's
		// build-when-missing path runs for real); the hub runs the stub.
		nbDockerfile = []byte("# Stub notebook image for fireops' tests.\nFROM " + opts.StubImage + "\n")
	}
	st.HubImage = s.Hub.Image + ":" + shortHash(hubDockerfile)
	st.NotebookImage = s.Notebook.Image + ":" + shortHash(nbDockerfile)
	d.HubImage, d.NotebookImage = st.HubImage, st.NotebookImage
	if opts.StubImage != "" {
		d.HubImage, st.HubImage = opts.StubImage, opts.StubImage
	} else {
		// The Dockerfiles mention the image tags in comments: render
		// again now that the tags are known (they hash the first render).
		if hubDockerfile, err = d.exec("hub/Dockerfile.tmpl"); err != nil {
			return nil, err
		}
		if nbDockerfile, err = d.exec("notebook/Dockerfile.tmpl"); err != nil {
			return nil, err
		}
	}
	add("hub/Dockerfile", hubDockerfile)
	add("notebook/Dockerfile", nbDockerfile)
	if s.GPUs {
		check, err := cudaCheck()
		if err != nil {
			return nil, err
		}
		add(CUDACheckFile, check)
	}

	plain := []struct{ tmpl, out string }{
		{"hub/jupyterhub_config.py.tmpl", "hub/jupyterhub_config.py"},
		{"prometheus/prometheus.yml.tmpl", "prometheus/prometheus.yml"},
		{"prometheus/stack.rules.yml.tmpl", "prometheus/rules/stack.yml"},
		{"alertmanager/alertmanager.yml.tmpl", "alertmanager/alertmanager.yml"},
		{"loki/loki.yaml.tmpl", "loki/loki.yaml"},
		{"alloy/config.alloy.tmpl", "alloy/config.alloy"},
		{"grafana/datasources.yml.tmpl", "grafana/provisioning/datasources/fireops.yml"},
		{"grafana/dashboards.yml.tmpl", "grafana/provisioning/dashboards/fireops.yml"},
	}
	if prometheusAuth(s) {
		plain = append(plain, struct{ tmpl, out string }{"prometheus/healthcheck.yml.tmpl", "prometheus/healthcheck.yml"})
	}
	if s.GPUs {
		plain = append(plain, struct{ tmpl, out string }{"prometheus/gpu.rules.yml.tmpl", "prometheus/rules/gpu.yml"})
		if s.GPUExporter == "dcgm" {
			plain = append(plain, struct{ tmpl, out string }{"gpu/counters.csv.tmpl", "gpu-exporter/counters.csv"})
		}
	}
	for _, p := range plain {
		data, err := d.exec(p.tmpl)
		if err != nil {
			return nil, err
		}
		add(p.out, data)
	}
	// Alertmanager's notification templates, as they are: Alertmanager
	// expands them (the same {{ }} as text/template).
	notify, err := fs.ReadFile(templatesFS, "templates/"+NotificationTemplates)
	if err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	add(NotificationTemplates, notify)
	for _, rf := range ExtraRuleFiles(cfg) {
		if !validRuleFileName(rf.Name) {
			return nil, fmt.Errorf("render: extra rule file name %q: want a plain name ending in .yml", rf.Name)
		}
		add("prometheus/rules/"+rf.Name, rf.Data)
	}
	dashboards, err := d.dashboards()
	if err != nil {
		return nil, err
	}
	st.Files = append(st.Files, dashboards...)

	// compose.yaml comes last: its labels hash the files each service
	// mounts, so that a changed config file recreates that service.
	sort.Slice(st.Files, func(i, j int) bool { return st.Files[i].Path < st.Files[j].Path })
	for svc, prefix := range map[string]string{
		"jupyterhub": "hub/jupyterhub_config.py", "prometheus": "prometheus/", "alertmanager": "alertmanager/",
		"grafana": "grafana/", "loki": "loki/", "alloy": "alloy/", "gpu-exporter": "gpu-exporter/",
	} {
		h := sha256.New()
		for _, f := range st.Files {
			if strings.HasPrefix(f.Path, prefix) {
				fmt.Fprintf(h, "%s\x00%d\x00", f.Path, len(f.Data))
				h.Write(f.Data)
			}
		}
		d.labels[svc] = hex.EncodeToString(h.Sum(nil))
	}
	d.procs = d.serviceProcs()
	compose, err := d.exec("compose.yaml.tmpl")
	if err != nil {
		return nil, err
	}
	add("compose.yaml", compose)
	sort.Slice(st.Files, func(i, j int) bool { return st.Files[i].Path < st.Files[j].Path })

	for name := range d.procs {
		st.Services = append(st.Services, name)
	}
	sort.Strings(st.Services)
	for _, p := range []struct {
		key, svc, ip string
		port         int
	}{
		{"stack.ports.hub", "jupyterhub", d.HubIP, s.Ports.Hub},
		{"stack.ports.grafana", "grafana", d.MonitoringIP, s.Ports.Grafana},
		{"stack.ports.prometheus", "prometheus", d.MonitoringIP, s.Ports.Prometheus},
		{"stack.ports.mongodb", "mongodb", "127.0.0.1", s.Ports.MongoDB},
	} {
		if p.port != 0 {
			st.Ports = append(st.Ports, Port{Key: p.key, Service: p.svc, HostIP: p.ip, Port: p.port})
		}
	}
	st.Secrets = secretSpecs(cfg)
	return st, nil
}

// File returns the rendered file at p, or nil.
func (st *Stack) File(p string) []byte {
	for _, f := range st.Files {
		if f.Path == p {
			return f.Data
		}
	}
	return nil
}

// NotificationTemplates is the file, relative to stack.dir, of the
// Alertmanager templates the receivers' messages use (the Telegram message,
// in Russian); alertmanager.yml names it relative to itself.
const NotificationTemplates = "alertmanager/notifications.tmpl"

// HasReceiver reports whether stack.alerts sends alerts anywhere: e-mail,
// a webhook or Telegram. Without one, alerts are only in Alertmanager's and
// Grafana's UIs.
func HasReceiver(cfg *config.Config) bool {
	a := cfg.Stack.Alerts
	return len(a.Email.To) > 0 || a.WebhookURL != "" || (a.Telegram.BotTokenFile != "" && a.Telegram.ChatID != 0)
}

// FireopsScrapeTarget returns the address the stack's Prometheus (in a
// container) scrapes `fireops schedule`'s /metrics at, for metrics.listen:
// host.docker.internal:PORT when it listens on every address,
// the address itself when it is another host address, and "" (no scrape
// job) when it is off or on loopback (the default, 127.0.0.1:9798), which
// no container reaches: a job for it would be down for ever. The job
// results reach Prometheus through the textfiles either way.
func FireopsScrapeTarget(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if listen == "" || err != nil || port == "" || port == "0" {
		return ""
	}
	if host == "localhost" {
		return ""
	}
	if host == "" {
		return net.JoinHostPort("host.docker.internal", port)
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return net.JoinHostPort(host, port) // a host name
	case ip.IsLoopback():
		return ""
	case ip.IsUnspecified():
		return net.JoinHostPort("host.docker.internal", port)
	}
	return net.JoinHostPort(host, port)
}

// shortHash is the first 12 hex digits of data's SHA-256.
func shortHash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:6])
}

func validRuleFileName(name string) bool {
	return name != "" && path.Base(name) == name && strings.HasSuffix(name, ".yml") &&
		name != "stack.yml" && name != "gpu.yml" && !strings.HasPrefix(name, ".")
}

// exec renders one embedded template.
func (d *renderData) exec(name string) ([]byte, error) {
	src, err := fs.ReadFile(templatesFS, "templates/"+name)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	t, err := template.New(name).Option("missingkey=error").Funcs(d.funcs()).Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// funcs are the template helpers.
func (d *renderData) funcs() template.FuncMap {
	m := template.FuncMap{
		// q quotes a string for YAML (and Alloy): a JSON string is both.
		"q": jsonString,
		// sq quotes a string for a PromQL or LogQL label matcher inside a
		// single-quoted YAML scalar.
		"sq":      func(s string) string { return strings.ReplaceAll(jsonString(s), "'", "''") },
		"promdur": promDuration,
		"py":      pyLiteral,
		"pyset":   pySet,
		"mem":     memString,
		"cpus":    func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) },
		"seconds": func(d config.Duration) int {
			return int(time.Duration(d) / time.Second)
		},
		"hours": func(d config.Duration) string {
			return strconv.Itoa(int(time.Duration(d)/time.Hour)) + "h"
		},
		"port": func(ip string, host, container int) string {
			return jsonString(publish(ip, host, container))
		},
		"proc":   d.procYAML,
		"labels": d.labelsYAML,
		"limits": d.limitsYAML,
		"limit":  d.limit,
	}
	for name, f := range d.gpuFuncs() {
		m[name] = f
	}
	return m
}

// publish formats a Compose port mapping.
func publish(ip string, host, container int) string {
	if ip == "" {
		return fmt.Sprintf("%d:%d", host, container)
	}
	if strings.Contains(ip, ":") {
		ip = "[" + ip + "]"
	}
	return fmt.Sprintf("%s:%d:%d", ip, host, container)
}

func jsonString(s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(buf.String(), "\n")
}

// pyLiteral writes a Go value as a Python literal.
func pyLiteral(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return jsonString(x), nil // a JSON string is a valid Python string
	case bool:
		if x {
			return "True", nil
		}
		return "False", nil
	case int:
		return strconv.Itoa(x), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	}
	return "", fmt.Errorf("no Python literal for %T", v)
}

// pySet writes a list of strings as a Python set (set() when empty).
func pySet(items []string) string {
	if len(items) == 0 {
		return "set()"
	}
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = jsonString(s)
	}
	return "{" + strings.Join(q, ", ") + "}"
}

// memString writes a size the way Docker and DockerSpawner read it.
func memString(b config.ByteSize) string {
	switch {
	case b%config.GiB == 0:
		return fmt.Sprintf("%dG", b/config.GiB)
	case b%config.MiB == 0:
		return fmt.Sprintf("%dM", b/config.MiB)
	case b%config.KiB == 0:
		return fmt.Sprintf("%dK", b/config.KiB)
	}
	return strconv.FormatInt(int64(b), 10)
}
