package config

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// StackServices are the names of the services of the rendered Compose
// stack, the keys of stack.limits. gpu-exporter runs only with stack.gpus.
var StackServices = []string{
	"jupyterhub", "mongodb", "mongodb-exporter", "prometheus", "alertmanager", "grafana",
	"loki", "alloy", "node-exporter", "cadvisor", "gpu-exporter",
}

// defaultStack returns the documented defaults of the stack: section:
// every image pinned, the ports and networks of design.md §1.
func defaultStack() Stack {
	return Stack{
		Dir:            "/opt/firetech",
		Name:           "firetech",
		GPUs:           true,
		GPUExporter:    "dcgm",
		Ports:          StackPorts{Hub: 8000, Grafana: 3000, Prometheus: 9090, MongoDB: 27017},
		Networks:       StackNetworks{Jupyter: "jupyter-network", Monitoring: "monitoring-network"},
		HealthInterval: Duration(15 * time.Second),
		WaitTimeout:    Duration(10 * time.Minute),
		MinFreeDisk:    20 * GiB,

		PrivilegedMonitoring: true,
		Images: StackImages{
			Hub:               "quay.io/jupyterhub/jupyterhub:6.1.1",
			Notebook:          "quay.io/jupyter/base-notebook:python-3.11",
			MongoDB:           "mongo:7.0.16",
			MongoDBExporter:   "percona/mongodb_exporter:0.52.0",
			Prometheus:        "prom/prometheus:v3.16.0",
			Alertmanager:      "prom/alertmanager:v0.28.1",
			Grafana:           "grafana/grafana:13.2.1",
			Loki:              "grafana/loki:3.7.3",
			Alloy:             "grafana/alloy:v1.19.1",
			NodeExporter:      "prom/node-exporter:v1.12.0",
			CAdvisor:          "gcr.io/cadvisor/cadvisor:v0.60.3",
			DCGMExporter:      "nvcr.io/nvidia/k8s/dcgm-exporter:4.6.0-4.8.3-ubuntu22.04",
			NvidiaSMIExporter: "utkuozdemir/nvidia_gpu_exporter:1.3.1",
		},
		Hub: StackHub{
			Image: "firetech-jupyterhub",
			Packages: []string{
				"dockerspawner==14.0.0",
				"jupyterhub-nativeauthenticator==1.3.0",
				"jupyterhub-idle-culler==2.0.0",
			},
			IdleTimeout: Duration(time.Hour),
			CPULimit:    4,
			MemLimit:    16 * GiB,
			ShmSize:     2 * GiB,
			NotebookDir: "/home/jovyan/work",
			// One GPU per user server, from the host's GPUs, the least
			// used first (docs/deploy.md, "GPU sharing").
			GPUs: StackHubGPUs{Default: GPUGrant{Count: 1}},
		},
		Notebook: StackNotebook{
			Image: "my-custom-jupyter-notebook",
			Packages: []string{
				"gymnasium==1.1.1",
				"stable-baselines3==2.6.0",
				"torch==2.7.1",
				"tensorflow==2.19.0",
				"optuna==4.4.0",
				"pymongo==4.13.2",
			},
		},
		Mongo: StackMongo{Volume: "mongo-data", ReplicaSet: "rs0"},
		Monitoring: StackMonitoring{
			PrometheusRetention: Duration(30 * 24 * time.Hour),
			LokiRetention:       Duration(30 * 24 * time.Hour),
			ScrapeInterval:      Duration(15 * time.Second),
		},
		Alerts: StackAlerts{
			Email:             StackEmail{RequireTLS: true},
			DiskFreePercent:   10,
			MemoryFreePercent: 10,
		},
		Limits: map[string]StackLimits{
			"jupyterhub":       {CPUs: 2, Memory: 2 * GiB},
			"mongodb":          {CPUs: 2, Memory: 4 * GiB},
			"mongodb-exporter": {CPUs: 0.5, Memory: 128 * MiB},
			"prometheus":       {CPUs: 1, Memory: 2 * GiB},
			"alertmanager":     {CPUs: 0.5, Memory: 256 * MiB},
			"grafana":          {CPUs: 1, Memory: 512 * MiB},
			"loki":             {CPUs: 1, Memory: 1 * GiB},
			"alloy":            {CPUs: 0.5, Memory: 512 * MiB},
			"node-exporter":    {CPUs: 0.5, Memory: 128 * MiB},
			"cadvisor":         {CPUs: 1, Memory: 512 * MiB},
			"gpu-exporter":     {CPUs: 0.5, Memory: 512 * MiB},
		},
	}
}

var (
	// projectRE is what Compose accepts as a project name.
	projectRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	// dockerNameRE is what the Engine accepts as a network or volume name.
	dockerNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	// imageNameRE is an image name without a tag (repository path).
	imageNameRE = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$`)
	// imageRefRE is an image reference with a tag or digest.
	imageRefRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._/:-]*(:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})$`)
	// pinnedRE is a pip requirement pinned to one version: name[extras]==version.
	pinnedRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?==[A-Za-z0-9.+!-]+$`)
	// hubUserRE is a user name the hub and DockerSpawner's volume names accept.
	hubUserRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._@-]*$`)
	// smarthostRE is host:port.
	smarthostRE = regexp.MustCompile(`^[A-Za-z0-9.-]+:[0-9]+$`)
)

// validateStack checks the stack: section.
func (c *Config) validateStack(p *problems) {
	s := &c.Stack
	if !projectRE.MatchString(s.Name) {
		p.add("stack.name", "use lowercase letters, digits, '_' and '-', starting with a letter or digit", "%q is not a valid Compose project name", s.Name)
	}
	switch s.GPUExporter {
	case "dcgm", "nvidia-smi":
	default:
		p.add("stack.gpu_exporter", "use dcgm or nvidia-smi", "unknown exporter %q", s.GPUExporter)
	}
	if s.BindAddress != "" && net.ParseIP(s.BindAddress) == nil {
		p.add("stack.bind_address", "use an IP address such as 0.0.0.0 or 127.0.0.1, or leave it empty", "%q is not an IP address", s.BindAddress)
	}
	ports := map[int]string{}
	for _, pt := range []struct {
		key  string
		port int
	}{{"hub", s.Ports.Hub}, {"grafana", s.Ports.Grafana}, {"prometheus", s.Ports.Prometheus}, {"mongodb", s.Ports.MongoDB}} {
		switch {
		case pt.port < 0 || pt.port > 65535:
			p.add("stack.ports."+pt.key, "use a port from 1 to 65535, or 0 to publish nothing", "%d is out of range", pt.port)
		case pt.port != 0 && ports[pt.port] != "":
			p.add("stack.ports."+pt.key, "give every service its own port", "%d is also stack.ports.%s", pt.port, ports[pt.port])
		case pt.port != 0:
			ports[pt.port] = pt.key
		}
	}
	if s.Ports.Hub == 0 {
		p.add("stack.ports.hub", "publish the hub, e.g. on 8000", "must not be 0: users reach the hub through it")
	}
	for key, name := range map[string]string{"stack.networks.jupyter": s.Networks.Jupyter, "stack.networks.monitoring": s.Networks.Monitoring, "stack.mongo.volume": s.Mongo.Volume} {
		if !dockerNameRE.MatchString(name) {
			p.add(key, "use letters, digits, '_', '.' and '-'", "%q is not a valid Docker name", name)
		}
	}
	internal := []string{"mongo-config", "prometheus-data", "alertmanager-data", "grafana-data", "loki-data", "alloy-data"}
	switch {
	case c.Hub.DBVolume == s.Mongo.Volume:
		p.add("stack.mongo.volume", "give MongoDB and the hub their own volumes", "is the same as hub.db_volume")
	case slices.Contains(internal, c.Hub.DBVolume):
		p.add("hub.db_volume", "choose another name, e.g. jupyterhub-data", "%q is the name of one of the stack's own volumes", c.Hub.DBVolume)
	case slices.Contains(internal, s.Mongo.Volume):
		p.add("stack.mongo.volume", "choose another name, e.g. mongo-data", "%q is the name of one of the stack's own volumes", s.Mongo.Volume)
	}
	if s.Networks.Jupyter == s.Networks.Monitoring {
		p.add("stack.networks.monitoring", "give the two networks different names", "is the same as stack.networks.jupyter")
	}
	if !dockerNameRE.MatchString(c.Hub.DBVolume) {
		p.add("hub.db_volume", "use letters, digits, '_', '.' and '-'", "%q is not a valid Docker volume name (the stack mounts it into the hub)", c.Hub.DBVolume)
	}
	if !dockerNameRE.MatchString(s.Mongo.ReplicaSet) {
		p.add("stack.mongo.replica_set", "use letters, digits, '_', '.' and '-', e.g. rs0", "%q is not a valid replica set name", s.Mongo.ReplicaSet)
	}
	if d := time.Duration(s.HealthInterval); d < time.Second || d > 10*time.Minute {
		p.add("stack.health_interval", "use 1s to 10m, e.g. 15s", "%s is out of range", s.HealthInterval)
	}
	if d := time.Duration(s.WaitTimeout); d < 10*time.Second {
		p.add("stack.wait_timeout", "use at least 10s, e.g. 10m (pulling and building images takes a while)", "%s is too short", s.WaitTimeout)
	}
	if s.MinFreeDisk < 0 {
		p.add("stack.min_free_disk", "use a size such as 20GiB, or 0 to skip the check", "must not be negative")
	}
	images := []struct{ key, ref string }{
		{"hub", s.Images.Hub}, {"notebook", s.Images.Notebook}, {"mongodb", s.Images.MongoDB},
		{"mongodb_exporter", s.Images.MongoDBExporter}, {"prometheus", s.Images.Prometheus},
		{"alertmanager", s.Images.Alertmanager}, {"grafana", s.Images.Grafana}, {"loki", s.Images.Loki},
		{"alloy", s.Images.Alloy}, {"node_exporter", s.Images.NodeExporter}, {"cadvisor", s.Images.CAdvisor},
		{"dcgm_exporter", s.Images.DCGMExporter}, {"nvidia_smi_exporter", s.Images.NvidiaSMIExporter},
	}
	for _, im := range images {
		if !imageRefRE.MatchString(im.ref) || strings.HasSuffix(im.ref, ":latest") {
			p.add("stack.images."+im.key, "pin the image with a version tag or a digest, e.g. prom/prometheus:v3.4.1", "%q is not a pinned image reference", im.ref)
		}
	}
	for key, name := range map[string]string{"stack.hub.image": s.Hub.Image, "stack.notebook.image": s.Notebook.Image} {
		if !imageNameRE.MatchString(name) {
			p.add(key, "give an image name without a tag (deploy tags it with a hash of its Dockerfile)", "%q is not a valid image name", name)
		}
	}
	checkPinned(p, "stack.hub.packages", s.Hub.Packages)
	checkPinned(p, "stack.notebook.packages", s.Notebook.Packages)
	for i, u := range s.Hub.AdminUsers {
		if !hubUserRE.MatchString(u) {
			p.add(fmt.Sprintf("stack.hub.admin_users[%d]", i), "use a lowercase user name as the hub stores it", "%q is not a valid hub user name", u)
		}
	}
	if s.Hub.CPULimit < 0 {
		p.add("stack.hub.cpu_limit", "use a number of CPUs such as 4, or 0 for no limit", "must not be negative")
	}
	if s.Hub.ShmSize < 64*MiB || s.Hub.ShmSize > 1024*GiB {
		p.add("stack.hub.shm_size", "use a size from 64MiB, such as 2GiB (it counts against mem_limit as it is used)", "%s is out of range", s.Hub.ShmSize)
	}
	if s.Hub.MemLimit < 0 || (s.Hub.MemLimit > 0 && s.Hub.MemLimit < 256*MiB) {
		p.add("stack.hub.mem_limit", "use a size such as 16GiB, or 0 for no limit", "%s is out of range", s.Hub.MemLimit)
	}
	if !strings.HasPrefix(s.Hub.NotebookDir, "/") || strings.ContainsAny(s.Hub.NotebookDir, `"'\`) {
		p.add("stack.hub.notebook_dir", "use an absolute path inside the user's container, e.g. /home/jovyan/work", "%q is not an absolute path", s.Hub.NotebookDir)
	}
	if d := time.Duration(s.Hub.IdleTimeout); d != 0 && d < time.Minute {
		p.add("stack.hub.idle_timeout", "use at least 1m, or 0 to never stop idle servers", "%s is too short", s.Hub.IdleTimeout)
	}
	m := s.Monitoring
	if time.Duration(m.PrometheusRetention) < time.Hour {
		p.add("stack.monitoring.prometheus_retention", "use a duration such as 30d", "%s is too short", m.PrometheusRetention)
	}
	if time.Duration(m.LokiRetention) < 24*time.Hour {
		p.add("stack.monitoring.loki_retention", "use a duration of at least 1d, such as 30d", "%s is too short", m.LokiRetention)
	}
	if d := time.Duration(m.ScrapeInterval); d < time.Second || d > 5*time.Minute {
		p.add("stack.monitoring.scrape_interval", "use 1s to 5m, e.g. 15s", "%s is out of range", m.ScrapeInterval)
	}
	if m.GrafanaRootURL != "" && !strings.HasPrefix(m.GrafanaRootURL, "http://") && !strings.HasPrefix(m.GrafanaRootURL, "https://") {
		p.add("stack.monitoring.grafana_root_url", "use the URL users open, e.g. https://gpu01.example.org/grafana/", "%q is not an http(s) URL", m.GrafanaRootURL)
	}
	c.validateHubGPUs(p)
	c.validateAlerts(p)
	c.validateTLS(p)
	names := make([]string, 0, len(s.Limits))
	for name := range s.Limits {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		l := s.Limits[name]
		key := "stack.limits." + name
		if !slices.Contains(StackServices, name) {
			p.add(key, "use one of: "+strings.Join(StackServices, ", "), "unknown service %q", name)
			continue
		}
		if l.CPUs < 0 {
			p.add(key+".cpus", "use a number of CPUs such as 0.5, or 0 for no limit", "must not be negative")
		}
		if l.Memory < 0 || (l.Memory > 0 && l.Memory < 6*MiB) {
			p.add(key+".memory", "use a size such as 512MiB, or 0 for no limit", "%s is out of range (Docker needs at least 6MiB)", l.Memory)
		}
	}
}

func (c *Config) validateAlerts(p *problems) {
	a := c.Stack.Alerts
	if a.DiskFreePercent < 1 || a.DiskFreePercent > 99 {
		p.add("stack.alerts.disk_free_percent", "use a percentage from 1 to 99, e.g. 10", "%d is out of range", a.DiskFreePercent)
	}
	if a.MemoryFreePercent < 1 || a.MemoryFreePercent > 99 {
		p.add("stack.alerts.memory_free_percent", "use a percentage from 1 to 99, e.g. 10", "%d is out of range", a.MemoryFreePercent)
	}
	if a.WebhookURL != "" && !strings.HasPrefix(a.WebhookURL, "http://") && !strings.HasPrefix(a.WebhookURL, "https://") {
		p.add("stack.alerts.webhook_url", "use an http(s) URL", "%q is not an http(s) URL", a.WebhookURL)
	}
	if tg := a.Telegram; tg.BotTokenFile != "" || tg.ChatID != 0 {
		if tg.BotTokenFile == "" {
			p.add("stack.alerts.telegram.bot_token_file", "name the file with the bot's token (from @BotFather), mode 0600", "is empty but chat_id is set")
		} else {
			checkSecretFile(p, "stack.alerts.telegram.bot_token_file", tg.BotTokenFile, true)
		}
		if tg.ChatID == 0 {
			p.add("stack.alerts.telegram.chat_id", "set the chat's id (a group's is negative, e.g. -1001234567890)", "is empty but bot_token_file is set")
		}
	}
	e := a.Email
	if len(e.To) == 0 {
		if e.From != "" || e.Smarthost != "" || e.Username != "" || e.PasswordFile != "" {
			p.add("stack.alerts.email.to", "list the addresses alerts go to, or remove the email: settings", "is empty but other email settings are set")
		}
		return
	}
	for i, to := range e.To {
		if !strings.Contains(to, "@") || strings.ContainsAny(to, " \"'\n") {
			p.add(fmt.Sprintf("stack.alerts.email.to[%d]", i), "use an address such as ops@example.org", "%q is not an e-mail address", to)
		}
	}
	if !strings.Contains(e.From, "@") || strings.ContainsAny(e.From, "\"'\n") {
		p.add("stack.alerts.email.from", "use the sender address, e.g. fireops@example.org", "%q is not an e-mail address", e.From)
	}
	if !smarthostRE.MatchString(e.Smarthost) {
		p.add("stack.alerts.email.smarthost", "use host:port of the SMTP server, e.g. smtp.example.org:587", "%q is not host:port", e.Smarthost)
	}
	if e.PasswordFile != "" {
		checkSecretFile(p, "stack.alerts.email.password_file", e.PasswordFile, true)
		if e.Username == "" {
			p.add("stack.alerts.email.username", "set the SMTP user name that goes with password_file", "is empty")
		}
	}
}

// checkPinned refuses pip requirements that are not pinned to one version.
func checkPinned(p *problems, key string, reqs []string) {
	for i, r := range reqs {
		if !pinnedRE.MatchString(r) {
			p.add(fmt.Sprintf("%s[%d]", key, i), "pin every package to one version, e.g. optuna==4.4.0", "%q is not pinned with ==", r)
		}
	}
}
