package deploy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/firetech/fireops/internal/testenv"
)

// writeTestTLS writes a self-signed certificate NAME.crt and its key
// NAME.key (0600) into dir, for configs with stack.tls.
func writeTestTLS(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hub.example.org"},
		DNSNames:  []string{"hub.example.org"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestRenderTLS: stack.tls makes the hub's proxy serve HTTPS with the
// copied certificate and key, mounted as secrets, and Prometheus scrape
// the hub directly; without it the hub speaks HTTP on 8000.
func TestRenderTLS(t *testing.T) {
	t.Parallel()
	cpu := render(t, "cpu", RenderOptions{}) // stack.tls set
	gpu := render(t, "gpu", RenderOptions{})
	hub, plain := string(cpu.File("hub/jupyterhub_config.py")), string(gpu.File("hub/jupyterhub_config.py"))
	compose := string(cpu.File("compose.yaml"))
	hubSvc := strings.SplitN(strings.SplitN(compose, "\n  jupyterhub:\n", 2)[1], "\n\n", 2)[0]
	checks := []struct {
		name string
		ok   bool
	}{
		{"https bind url", strings.Contains(hub, `c.JupyterHub.bind_url = "https://:8000"`) && !strings.Contains(hub, `"http://:8000"`)},
		{"cert and key", strings.Contains(hub, `c.JupyterHub.ssl_cert = "/run/secrets/hub_tls_cert"`) && strings.Contains(hub, `c.JupyterHub.ssl_key = "/run/secrets/hub_tls_key"`)},
		{"hub mounts them", strings.Contains(hubSvc, "      - hub_tls_cert\n      - hub_tls_key\n")},
		{"secret files", strings.Contains(compose, "  hub_tls_cert:\n    file: ./secrets/hub-tls-cert\n  hub_tls_key:\n    file: ./secrets/hub-tls-key\n")},
		{"scraped on 8081", strings.Contains(string(cpu.File("prometheus/prometheus.yml")), `targets: ["jupyterhub:8081"]`)},
		{"no TLS: http", strings.Contains(plain, `c.JupyterHub.bind_url = "http://:8000"`) && !strings.Contains(plain, "ssl_cert") &&
			!strings.Contains(string(gpu.File("compose.yaml")), "hub_tls") && strings.Contains(string(gpu.File("prometheus/prometheus.yml")), `targets: ["jupyterhub:8000"]`)},
		{"secret specs", slices.ContainsFunc(cpu.Secrets, func(s SecretSpec) bool { return s.Name == "hub-tls-key" && s.Derived }) &&
			!slices.ContainsFunc(gpu.Secrets, func(s SecretSpec) bool { return strings.HasPrefix(s.Name, "hub-tls") })},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: not as expected", c.name)
		}
	}
}

// TestRenderPrometheusAuth: a published Prometheus (gpu: port 9090) runs
// with a web config, its healthcheck, its scrape of itself and Grafana's
// data source authenticate; an unpublished one (cpu: port 0) has none of
// it.
func TestRenderPrometheusAuth(t *testing.T) {
	t.Parallel()
	gpu := render(t, "gpu", RenderOptions{})
	cpu := render(t, "cpu", RenderOptions{})
	compose := string(gpu.File("compose.yaml"))
	promSvc := strings.SplitN(strings.SplitN(compose, "\n  prometheus:\n", 2)[1], "\n\n", 2)[0]
	grafanaSvc := strings.SplitN(strings.SplitN(compose, "\n  grafana:\n", 2)[1], "\n\n", 2)[0]
	ds := string(gpu.File("grafana/provisioning/datasources/fireops.yml"))
	checks := []struct {
		name string
		ok   bool
	}{
		{"web config flag", strings.Contains(promSvc, `"--web.config.file=/run/secrets/prometheus_web_config"`)},
		{"healthcheck authenticates", strings.Contains(promSvc, `test: ["CMD", "promtool", "check", "healthy", "--url=http://127.0.0.1:9090", "--http.config.file=/etc/prometheus/healthcheck.yml"]`)},
		{"prometheus mounts its secrets", strings.Contains(promSvc, "      - prometheus_password\n      - prometheus_web_config\n")},
		{"grafana mounts its copy", strings.Contains(grafanaSvc, "      - grafana_prometheus_password\n")},
		{"healthcheck file", strings.Contains(string(gpu.File("prometheus/healthcheck.yml")), "password_file: /run/secrets/prometheus_password")},
		{"self-scrape", strings.Contains(string(gpu.File("prometheus/prometheus.yml")), "    basic_auth:\n      username: \"prometheus\"\n      password_file: /run/secrets/prometheus_password\n")},
		{"grafana data source", strings.Contains(ds, "    basicAuth: true\n    basicAuthUser: \"prometheus\"\n") &&
			strings.Contains(ds, `basicAuthPassword: "$__file{/run/secrets/grafana_prometheus_password}"`)},
		{"unpublished: none", !strings.Contains(string(cpu.File("compose.yaml")), "prometheus_web_config") && cpu.File("prometheus/healthcheck.yml") == nil &&
			!strings.Contains(string(cpu.File("grafana/provisioning/datasources/fireops.yml")), "basicAuth") &&
			// (the node job authenticates to node-exporter in any case)
			!strings.Contains(string(cpu.File("prometheus/prometheus.yml")), "/run/secrets/prometheus_password")},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: not as expected", c.name)
		}
	}
	// Every secret the compose file names is one deploy generates.
	for _, st := range []*Stack{gpu, cpu} {
		var doc struct {
			Secrets map[string]struct {
				File string `yaml:"file"`
			} `yaml:"secrets"`
		}
		if err := yaml.Unmarshal(st.File("compose.yaml"), &doc); err != nil {
			t.Fatal(err)
		}
		for name, s := range doc.Secrets {
			if !slices.ContainsFunc(st.Secrets, func(sp SecretSpec) bool { return "./secrets/"+sp.Name == s.File }) {
				t.Errorf("%s: compose secret %s (%s) is not generated by deploy", st.Project, name, s.File)
			}
		}
	}
}

// TestExposureSecrets: deploy generates Prometheus' password and a web
// config whose bcrypt hash matches it, keeps both (same bytes, although
// bcrypt salts) while the password stays, and renews the hash when the
// password is replaced; Grafana gets its own copy; the hub's certificate
// and key are copied, and a renewed certificate recreates the hub.
func TestExposureSecrets(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t, "gpu")
	cfg.Stack.TLS.CertFile, cfg.Stack.TLS.KeyFile = writeTestTLS(t, t.TempDir(), "hub")
	st, err := Render(cfg, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sdir := filepath.Join(dir, SecretsDir)
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(sdir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	actions := func(res []SecretResult) map[string]string {
		out := map[string]string{}
		for _, r := range res {
			out[r.Name] = r.Action
		}
		return out
	}
	checkHash := func() {
		t.Helper()
		var wc webConfig
		if err := yaml.Unmarshal(read("prometheus-web.yml"), &wc); err != nil {
			t.Fatal(err)
		}
		pw := bytes.TrimSpace(read("prometheus-password"))
		if err := bcrypt.CompareHashAndPassword([]byte(wc.BasicAuthUsers[PrometheusUser]), pw); err != nil || len(wc.BasicAuthUsers) != 1 {
			t.Errorf("web config %v does not hold the password's hash: %v", wc, err)
		}
		if !bytes.Equal(read("grafana-prometheus-password"), pw) {
			t.Error("grafana's copy differs from prometheus-password")
		}
	}

	res, err := EnsureSecrets(dir, st.Secrets)
	if err != nil {
		t.Fatal(err)
	}
	a := actions(res)
	for _, n := range []string{"prometheus-password", "prometheus-web.yml", "grafana-prometheus-password", "hub-tls-cert", "hub-tls-key"} {
		if a[n] != "generated" {
			t.Errorf("%s: %q on the first deploy", n, a[n])
		}
	}
	checkHash()
	web := read("prometheus-web.yml")
	if cert, _ := os.ReadFile(cfg.Stack.TLS.CertFile); !bytes.Equal(read("hub-tls-cert"), cert) {
		t.Error("hub-tls-cert is not a copy of stack.tls.cert_file")
	}
	if key, _ := os.ReadFile(cfg.Stack.TLS.KeyFile); !bytes.Equal(read("hub-tls-key"), key) {
		t.Error("hub-tls-key is not a copy of stack.tls.key_file")
	}

	// Again: nothing changes, the salted hash included.
	res, err = EnsureSecrets(dir, st.Secrets)
	if err != nil {
		t.Fatal(err)
	}
	for n, act := range actions(res) {
		if act != "kept" {
			t.Errorf("%s: %q on the second deploy", n, act)
		}
	}
	if !bytes.Equal(read("prometheus-web.yml"), web) {
		t.Error("prometheus-web.yml rewritten although the password is the same")
	}

	// A new password (the old file deleted by hand) renews the hash; a
	// renewed certificate is copied and recreates the hub.
	if err := os.Remove(filepath.Join(sdir, "prometheus-password")); err != nil {
		t.Fatal(err)
	}
	writeTestTLS(t, filepath.Dir(cfg.Stack.TLS.CertFile), "hub")
	res, err = EnsureSecrets(dir, st.Secrets)
	if err != nil {
		t.Fatal(err)
	}
	a = actions(res)
	want := map[string]string{"prometheus-password": "generated", "prometheus-web.yml": "updated", "grafana-prometheus-password": "updated", "hub-tls-cert": "updated", "hub-tls-key": "updated"}
	for n, act := range want {
		if a[n] != act {
			t.Errorf("%s: %q after a new password and certificate, want %q", n, a[n], act)
		}
	}
	checkHash()
	svcs, err := servicesMounting(st.File("compose.yaml"), []string{"hub-tls-cert", "prometheus-web.yml", "grafana-prometheus-password"})
	if err != nil || !slices.Equal(svcs, []string{"grafana", "jupyterhub", "prometheus"}) {
		t.Errorf("services mounting the changed secrets: %v, %v", svcs, err)
	}

	// Prometheus' own validator accepts the web config.
	promtool := testenv.RequireTool(t, "promtool")
	run(t, sdir, promtool, "check", "web-config", "prometheus-web.yml")
}
