package deploy

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestFireopsScrapeTarget: Prometheus, in a container, scrapes the daemon
// only at an address it reaches; a loopback metrics.listen (the default)
// gets no scrape job, which would be down for ever (issue 15).
func TestFireopsScrapeTarget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ listen, want string }{
		{"", ""},
		{"127.0.0.1:9798", ""},
		{"127.0.1.1:9798", ""},
		{"[::1]:9798", ""},
		{"localhost:9798", ""},
		{"0.0.0.0:9798", "host.docker.internal:9798"},
		{"[::]:9798", "host.docker.internal:9798"},
		{":9798", "host.docker.internal:9798"},
		{"172.17.0.1:9798", "172.17.0.1:9798"},
		{"[fd00::5]:9798", "[fd00::5]:9798"},
		{"gpu01.lan:9798", "gpu01.lan:9798"},
		{"0.0.0.0:0", ""},
	} {
		if got := FireopsScrapeTarget(tc.listen); got != tc.want {
			t.Errorf("metrics.listen %q: target %q, want %q", tc.listen, got, tc.want)
		}
	}
}

// scrapeJobs returns the rendered prometheus.yml's jobs and their targets.
func scrapeJobs(t *testing.T, st *Stack) map[string][]string {
	t.Helper()
	var doc struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(st.File("prometheus/prometheus.yml"), &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, j := range doc.ScrapeConfigs {
		for _, s := range j.StaticConfigs {
			out[j.JobName] = append(out[j.JobName], s.Targets...)
		}
	}
	return out
}

// TestRenderMetricsPaths: the job results reach Prometheus by default:
// node-exporter mounts metrics.textfile_dir (or node-exporter's own folder,
// the one `fireops init` writes, when it is empty), and the daemon is
// scraped only where containers reach it.
func TestRenderMetricsPaths(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, textfile, listen string
		mount, target          string
	}{
		{"defaults", "", "127.0.0.1:9798", "/var/lib/prometheus/node-exporter:/textfile:ro", ""},
		{"init", "/var/lib/prometheus/node-exporter", "127.0.0.1:9798", "/var/lib/prometheus/node-exporter:/textfile:ro", ""},
		{"elsewhere", "/srv/textfile", "0.0.0.0:9798", "/srv/textfile:/textfile:ro", "host.docker.internal:9798"},
	} {
		cfg := loadConfig(t, "gpu")
		cfg.Stack.Dir = t.TempDir()
		cfg.Metrics.TextfileDir, cfg.Metrics.Listen = tc.textfile, tc.listen
		st, err := Render(cfg, RenderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var compose struct {
			Services map[string]struct {
				Volumes []string `yaml:"volumes"`
			} `yaml:"services"`
		}
		if err := yaml.Unmarshal(st.File("compose.yaml"), &compose); err != nil {
			t.Fatal(err)
		}
		if vols := compose.Services["node-exporter"].Volumes; !strings.Contains(strings.Join(vols, " "), tc.mount) {
			t.Errorf("%s: node-exporter mounts %v, want %s", tc.name, vols, tc.mount)
		}
		jobs := scrapeJobs(t, st)
		if got := strings.Join(jobs["fireops"], " "); got != tc.target {
			t.Errorf("%s: fireops scrape targets %q, want %q", tc.name, got, tc.target)
		}
		if got := strings.Join(jobs["node"], " "); got != "host.docker.internal:9100" {
			t.Errorf("%s: node targets %q", tc.name, got)
		}
	}
}
