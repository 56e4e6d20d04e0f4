package deploy

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/config"
)

// stubImageTag is the image the end-to-end tests build FROM scratch with
// internal/cmd/stackhelper in it.
const stubImageTag = "fireops-stackhelper:test"

var (
	stubOnce sync.Once
	stubErr  error
)

// stubImage builds (once per test run) the scratch image holding the
// static stackhelper binary.
func stubImage(t *testing.T) string {
	t.Helper()
	stubOnce.Do(func() { stubErr = buildStubImage() })
	if stubErr != nil {
		t.Fatalf("building %s: %v", stubImageTag, stubErr)
	}
	return stubImageTag
}

func buildStubImage() error {
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "stackhelper-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "stackhelper")
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", bin, "./internal/cmd/stackhelper")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build stackhelper: %v: %s", err, out)
	}
	helper, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY stackhelper /stackhelper\nENTRYPOINT [\"/stackhelper\"]\nCMD [\"serve\"]\n")},
		{"stackhelper", 0o755, helper},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	resp, err := cli.ImageBuild(context.Background(), &ctxTar, build.ImageBuildOptions{Tags: []string{stubImageTag}, Remove: true, ForceRemove: true})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		if msg.Error != "" {
			return errors.New(msg.Error)
		}
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// e2eConfig is a config whose project, networks, volumes and ports are
// unique to this test, with GPUs off (no GPU here) and no privileged
// containers (refused in this sandbox), health checked every second.
func e2eConfig(t *testing.T) *config.Config {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	id := "fireops-e2e-" + hex.EncodeToString(b)
	dir := t.TempDir()
	yaml := fmt.Sprintf(`host: e2e
metrics: {textfile_dir: %[2]s/textfile, listen: ""}
hub: {db_volume: %[1]s-hub}
stack:
  notebook: {image: %[1]s-notebook}
  dir: %[2]s/stack
  name: %[1]s
  gpus: false
  privileged_monitoring: false
  bind_address: 127.0.0.1
  ports: {hub: %[3]d, grafana: %[4]d, prometheus: %[5]d, mongodb: %[6]d}
  networks: {jupyter: %[1]s-jupyter, monitoring: %[1]s-monitoring}
  mongo: {volume: %[1]s-mongo}
  health_interval: 1s
  wait_timeout: 3m
  min_free_disk: 1MiB
  alerts: {email: {to: [ops@example.com], from: alerts@example.com, smarthost: "smtp.example.com:587", username: alerts, password_file: %[2]s/smtp-password}}
`, id, dir, freePort(t), freePort(t), freePort(t), freePort(t))
	if err := os.WriteFile(filepath.Join(dir, "smtp-password"), []byte("first-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(yaml), filepath.Join(dir, "fireops.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// cleanupStack removes the test's project with its volumes, whatever the
// test left.
func cleanupStack(t *testing.T, cfg *config.Config) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c, err := FindCompose(ctx, nil)
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := c.Down(ctx, cfg.Stack.Dir, cfg.Stack.Name, true, &out); err != nil {
			t.Logf("cleanup: %v\n%s", err, out.String())
		}
		if cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation()); err == nil {
			defer cli.Close()
			list, err := cli.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", cfg.Stack.Notebook.Image))})
			for _, im := range list {
				if _, err := cli.ImageRemove(ctx, im.ID, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
					t.Logf("cleanup: removing %s: %v", cfg.Stack.Notebook.Image, err)
				}
			}
			if err != nil {
				t.Logf("cleanup: listing images: %v", err)
			}
		}
	})
}

// requireEngineAndCompose skips (fails under CI) without both.
func requireEngineAndCompose(t *testing.T) {
	t.Helper()
	testenv.RequireDocker(t)
	if _, err := FindCompose(context.Background(), nil); err != nil {
		testenv.Unavailable(t, "Docker Compose plugin", err)
	}
}

// TestDeployEndToEnd deploys the whole stack (every service but the GPU
// exporter) on the real Engine, with every image replaced by the stub, and
// checks: up --wait succeeds, status says every service is healthy, a
// second deploy changes nothing (same containers), secrets are private,
// kept and never printed, and down keeps the volumes.
func TestDeployEndToEnd(t *testing.T) {
	requireEngineAndCompose(t)
	cfg := e2eConfig(t)
	cleanupStack(t, cfg)
	opts := Options{Render: RenderOptions{StubImage: stubImage(t)}}
	ctx := context.Background()

	var progress1 bytes.Buffer
	opts.Progress = &progress1
	res, err := Deploy(ctx, cfg, opts)
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, progress1.String())
	}
	if !res.Healthy || !res.Preflight.OK || len(res.Services) != 10 {
		t.Fatalf("deploy: healthy %v, preflight %+v, %d services", res.Healthy, res.Preflight, len(res.Services))
	}
	if len(res.Built) != 1 || !strings.HasPrefix(res.Built[0], cfg.Stack.Notebook.Image+":") {
		t.Errorf("first deploy built %v, want the notebook image", res.Built)
	}
	ids := map[string]string{}
	for _, s := range res.Services {
		if !s.OK || s.Health != "healthy" || s.State != "running" {
			t.Errorf("%s: %s %s", s.Service, s.State, s.Health)
		}
		ids[s.Service] = s.ID
	}
	statuses, ok, err := Status(ctx, cfg)
	if err != nil || !ok || len(statuses) != 10 {
		t.Fatalf("status: ok %v, %d services, %v", ok, len(statuses), err)
	}
	for _, s := range statuses {
		if s.Service == "jupyterhub" && (len(s.Ports) != 1 || !strings.HasPrefix(s.Ports[0], fmt.Sprintf("127.0.0.1:%d->8000/", cfg.Stack.Ports.Hub))) {
			t.Errorf("hub ports %v", s.Ports)
		}
		if s.Service == "mongodb" && (len(s.Ports) != 1 || !strings.HasPrefix(s.Ports[0], "127.0.0.1:")) {
			t.Errorf("mongodb ports %v: want 127.0.0.1 only", s.Ports)
		}
	}

	// Secrets: 0600 in a 0700 folder, and never printed.
	secrets := map[string][]byte{}
	for _, s := range res.Secrets {
		p := filepath.Join(cfg.Stack.Dir, SecretsDir, s.Name)
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o600 || s.Action != "generated" {
			t.Fatalf("secret %s: %v %v %s", s.Name, fi.Mode(), err, s.Action)
		}
		secrets[s.Name], _ = os.ReadFile(p)
	}

	// Second deploy: nothing changes.
	var progress2 bytes.Buffer
	opts.Progress = &progress2
	res2, err := Deploy(ctx, cfg, opts)
	if err != nil {
		t.Fatalf("second deploy: %v\n%s", err, progress2.String())
	}
	if Changed(res2.Files) {
		t.Errorf("second deploy changed files: %+v", res2.Files)
	}
	if len(res2.Built) != 0 {
		t.Errorf("second deploy built %v again", res2.Built)
	}
	for _, s := range res2.Secrets {
		now, _ := os.ReadFile(filepath.Join(cfg.Stack.Dir, SecretsDir, s.Name))
		if s.Action != "kept" || !bytes.Equal(now, secrets[s.Name]) {
			t.Errorf("secret %s: %s on the second deploy", s.Name, s.Action)
		}
	}
	for _, s := range res2.Services {
		if ids[s.Service] != s.ID {
			t.Errorf("%s: container %s replaced by %s", s.Service, ids[s.Service], s.ID)
		}
	}
	if len(res.Recreated)+len(res2.Recreated) != 0 {
		t.Errorf("recreated on the first or second deploy: %v, %v", res.Recreated, res2.Recreated)
	}

	// A changed SMTP password: alertmanager (which mounts it) is
	// recreated with it, nothing else.
	if err := os.WriteFile(cfg.Stack.Alerts.Email.PasswordFile, []byte("second-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res3, err := Deploy(ctx, cfg, opts)
	if err != nil {
		t.Fatalf("deploy after a password change: %v", err)
	}
	if fmt.Sprint(res3.Recreated) != "[alertmanager]" {
		t.Errorf("recreated %v, want [alertmanager]", res3.Recreated)
	}
	for _, s := range res3.Services {
		if replaced := ids[s.Service] != s.ID; replaced != (s.Service == "alertmanager") {
			t.Errorf("%s: container %s -> %s after the SMTP password changed", s.Service, ids[s.Service], s.ID)
		}
	}
	out, _ := json.Marshal([]any{res, res2})
	printed := progress1.String() + progress2.String() + string(out)
	for name, v := range secrets {
		for _, line := range strings.Split(strings.TrimSpace(string(v)), "\n") {
			if i := strings.IndexByte(line, '='); i >= 0 {
				line = line[i+1:]
			}
			if len(line) >= 8 && strings.Contains(printed, line) {
				t.Errorf("secret %s was printed", name)
			}
		}
	}

	// down keeps the volumes.
	if err := Down(ctx, cfg, DownOptions{}); err != nil {
		t.Fatal(err)
	}
	after, ok, err := Status(ctx, cfg)
	if err != nil || ok {
		t.Fatalf("status after down: ok %v, %v", ok, err)
	}
	for _, s := range after {
		if s.State != "missing" {
			t.Errorf("%s still there after down: %s", s.Service, s.State)
		}
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for _, v := range []string{cfg.Hub.DBVolume, cfg.Stack.Mongo.Volume, cfg.Stack.Name + "_prometheus-data"} {
		if _, err := cli.VolumeInspect(ctx, v); err != nil {
			t.Errorf("volume %s gone after down: %v", v, err)
		}
	}
}

// projectContainers counts the containers of a Compose project.
func projectContainers(t *testing.T, project string) int {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	list, err := cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", labelProject+"="+project))})
	if err != nil {
		t.Fatal(err)
	}
	return len(list)
}

// assertNothingStarted checks that a failed deploy wrote and started nothing.
func assertNothingStarted(t *testing.T, cfg *config.Config, res *Result, err error, check, want string) {
	t.Helper()
	var pe *PreflightError
	if !errors.As(err, &pe) {
		t.Fatalf("deploy: %v, want a preflight error", err)
	}
	if !strings.Contains(pe.Msg, check+": ") || !strings.Contains(pe.Msg, want) || pe.Hint == "" {
		t.Errorf("error %q (hint %q): want %s: ...%s... and a hint", pe.Msg, pe.Hint, check, want)
	}
	if res == nil || res.Preflight == nil || res.Preflight.OK || res.Files != nil || res.Services != nil {
		t.Errorf("result after a failed preflight: %+v", res)
	}
	if _, err := os.Stat(cfg.Stack.Dir); !os.IsNotExist(err) {
		t.Errorf("stack dir written after a failed preflight: %v", err)
	}
	if n := projectContainers(t, cfg.Stack.Name); n != 0 {
		t.Errorf("%d containers started after a failed preflight", n)
	}
}

func TestPreflightEngineDown(t *testing.T) {
	requireEngineAndCompose(t)
	cfg := e2eConfig(t)
	host := os.Getenv("DOCKER_HOST")
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "no-docker.sock"))
	res, err := Deploy(context.Background(), cfg, Options{Render: RenderOptions{StubImage: stubImageTag}})
	t.Setenv("DOCKER_HOST", host)
	assertNothingStarted(t, cfg, res, err, "engine", "does not answer")
	if !strings.Contains(err.Error(), "no-docker.sock") {
		t.Errorf("error does not name the Engine address: %v", err)
	}
}

func TestPreflightNoDockerClient(t *testing.T) {
	requireEngineAndCompose(t)
	cfg := e2eConfig(t)
	host := os.Getenv("DOCKER_HOST")
	t.Setenv("DOCKER_HOST", "not-a-docker-host")
	res, err := Deploy(context.Background(), cfg, Options{Render: RenderOptions{StubImage: stubImageTag}})
	t.Setenv("DOCKER_HOST", host)
	// The check names why there is no client, not only that there is none.
	assertNothingStarted(t, cfg, res, err, "engine", "no Docker client: ")
	if !strings.Contains(err.Error(), "not-a-docker-host") {
		t.Errorf("error does not say why the client failed: %v", err)
	}
}

func TestPreflightComposeMissing(t *testing.T) {
	requireEngineAndCompose(t)
	cfg := e2eConfig(t)
	empty := t.TempDir()
	t.Setenv("PATH", empty)
	res, err := Deploy(context.Background(), cfg, Options{
		Render:    RenderOptions{StubImage: stubImageTag},
		Preflight: PreflightOptions{PluginDirs: []string{empty}},
	})
	assertNothingStarted(t, cfg, res, err, "compose", "plugin not found")
	var pe *PreflightError
	if errors.As(err, &pe) && !strings.Contains(pe.Hint, "docker-compose-plugin") {
		t.Errorf("hint %q does not say what to install", pe.Hint)
	}
}

func TestPreflightPortTaken(t *testing.T) {
	requireEngineAndCompose(t)
	cfg := e2eConfig(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg.Stack.Ports.Grafana = l.Addr().(*net.TCPAddr).Port
	res, err := Deploy(context.Background(), cfg, Options{Render: RenderOptions{StubImage: stubImageTag}})
	assertNothingStarted(t, cfg, res, err, "ports", fmt.Sprintf("127.0.0.1:%d (stack.ports.grafana) is in use", cfg.Stack.Ports.Grafana))
}
