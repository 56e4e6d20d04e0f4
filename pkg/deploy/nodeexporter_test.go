package deploy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/firetech/fireops/internal/testenv"
)

// TestNodeExporterBasicAuth: node-exporter listens on every address of the
// host (user servers reach it through their network's gateway), so it
// requires basic auth from its web config, a secret derived from the
// generated password; Prometheus' node job scrapes with that password.
// Debian's prometheus-node-exporter loads the rendered web config and
// answers 401 without the password (what the healthcheck looks for) and
// the metrics with it.
func TestNodeExporterBasicAuth(t *testing.T) {
	t.Parallel()
	st := render(t, "cpu", RenderOptions{})

	// compose.yaml: node-exporter reads its web config, Prometheus the
	// password; both from the secrets folder.
	var compose struct {
		Services map[string]struct {
			Command     []string `yaml:"command"`
			Secrets     []string `yaml:"secrets"`
			NetworkMode string   `yaml:"network_mode"`
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
		Secrets map[string]struct {
			File string `yaml:"file"`
		} `yaml:"secrets"`
	}
	if err := yaml.Unmarshal(st.File("compose.yaml"), &compose); err != nil {
		t.Fatal(err)
	}
	ne := compose.Services["node-exporter"]
	if ne.NetworkMode != "host" || !slices.Contains(ne.Command, "--web.config.file=/run/secrets/node_exporter_web_config") ||
		!slices.Equal(ne.Secrets, []string{"node_exporter_web_config"}) {
		t.Errorf("node-exporter: network %q, command %v, secrets %v: want the web config", ne.NetworkMode, ne.Command, ne.Secrets)
	}
	if !slices.Equal(ne.Healthcheck.Test, nodeExporterHealth) {
		t.Errorf("node-exporter's healthcheck %v", ne.Healthcheck.Test)
	}
	if !slices.Contains(compose.Services["prometheus"].Secrets, "node_exporter_password") {
		t.Errorf("prometheus does not mount node_exporter_password: %v", compose.Services["prometheus"].Secrets)
	}
	for name, file := range map[string]string{"node_exporter_web_config": "./secrets/node-exporter-web.yml", "node_exporter_password": "./secrets/node-exporter-password"} {
		if got := compose.Secrets[name].File; got != file {
			t.Errorf("secret %s: file %q, want %q", name, got, file)
		}
	}
	if svcs, err := servicesMounting(st.File("compose.yaml"), []string{"node-exporter-web.yml", "node-exporter-password"}); err != nil || !slices.Equal(svcs, []string{"node-exporter", "prometheus"}) {
		t.Errorf("services mounting node-exporter's secrets: %v, %v (a new password must recreate both)", svcs, err)
	}

	// prometheus.yml: the node job authenticates.
	var prom struct {
		ScrapeConfigs []struct {
			JobName   string `yaml:"job_name"`
			BasicAuth struct {
				Username     string `yaml:"username"`
				PasswordFile string `yaml:"password_file"`
			} `yaml:"basic_auth"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(st.File("prometheus/prometheus.yml"), &prom); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, j := range prom.ScrapeConfigs {
		if j.JobName == "node" {
			found = true
			if j.BasicAuth.Username != NodeExporterUser || j.BasicAuth.PasswordFile != "/run/secrets/node_exporter_password" {
				t.Errorf("node job's basic auth %+v", j.BasicAuth)
			}
		}
	}
	if !found {
		t.Fatal("no node job in prometheus.yml")
	}

	// The secrets: the web config holds the password's hash, and stays as
	// it is while the password does (bcrypt salts every hash).
	res, err := EnsureSecrets(st.Dir, st.Secrets)
	if err != nil {
		t.Fatal(err)
	}
	sdir := filepath.Join(st.Dir, SecretsDir)
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(sdir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	actions := map[string]string{}
	for _, r := range res {
		actions[r.Name] = r.Action
	}
	if actions["node-exporter-password"] != "generated" || actions["node-exporter-web.yml"] != "generated" {
		t.Fatalf("node-exporter's secrets on the first deploy: %v", actions)
	}
	pw := bytes.TrimSpace(read("node-exporter-password"))
	web := read("node-exporter-web.yml")
	var wc webConfig
	if err := yaml.Unmarshal(web, &wc); err != nil {
		t.Fatal(err)
	}
	if len(wc.BasicAuthUsers) != 1 || bcrypt.CompareHashAndPassword([]byte(wc.BasicAuthUsers[NodeExporterUser]), pw) != nil {
		t.Fatalf("web config %v does not hold the password's hash", wc)
	}
	res, err = EnsureSecrets(st.Dir, st.Secrets)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if strings.HasPrefix(r.Name, "node-exporter") && r.Action != "kept" {
			t.Errorf("%s: %s on the second deploy", r.Name, r.Action)
		}
	}
	if !bytes.Equal(read("node-exporter-web.yml"), web) {
		t.Error("node-exporter-web.yml rewritten although the password is the same")
	}

	// Debian's node-exporter with the rendered web config.
	bin := testenv.RequireTool(t, "prometheus-node-exporter")
	textfiles := t.TempDir()
	if err := os.WriteFile(filepath.Join(textfiles, "fireops.prom"), []byte("fireops_test_value 42\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	var out bytes.Buffer
	cmd := exec.Command(bin, "--web.listen-address="+addr, "--web.config.file="+filepath.Join(sdir, "node-exporter-web.yml"),
		"--collector.disable-defaults", "--collector.textfile", "--collector.textfile.directory="+textfiles)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	get := func(user, pass string) (*http.Response, string, error) {
		req, err := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
		if err != nil {
			return nil, "", err
		}
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp, string(body), err
	}
	// Until it answers, or exits (a web config it refuses).
	for deadline := time.Now().Add(30 * time.Second); ; {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("prometheus-node-exporter exited: %v\n%s", err, out.String())
		default:
		}
		if _, _, err := get("", ""); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("prometheus-node-exporter does not answer on %s: %v\n%s", addr, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, c := range []struct{ user, pass string }{{"", ""}, {NodeExporterUser, "wrong"}, {"admin", string(pw)}} {
		resp, body, err := get(c.user, c.pass)
		if err != nil {
			t.Fatal(err)
		}
		// The healthcheck's grep: busybox wget prints the status line.
		if resp.Status != "401 Unauthorized" || strings.Contains(body, "fireops_test_value") {
			t.Errorf("user %q: %s without the right password, want 401 Unauthorized", c.user, resp.Status)
		}
	}
	resp, body, err := get(NodeExporterUser, string(pw))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "fireops_test_value 42") {
		t.Errorf("with the password: %s, textfile metric missing\n%.500s", resp.Status, body)
	}
}
