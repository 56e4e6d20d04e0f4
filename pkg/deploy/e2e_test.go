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

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/volume"
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
  hub: {image: %[1]s-hub}
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
			for _, repo := range []string{cfg.Stack.Notebook.Image, cfg.Stack.Hub.Image} {
				list, err := cli.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", repo))})
				for _, im := range list {
					if _, err := cli.ImageRemove(ctx, im.ID, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
						t.Logf("cleanup: removing %s: %v", repo, err)
					}
				}
				if err != nil {
					t.Logf("cleanup: listing images: %v", err)
				}
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
// kept and never printed, a user server outlives a redeploy that recreates
// the hub, prune removes old image tags and archived volumes of deleted
// users only, and down keeps the volumes.
func TestDeployEndToEnd(t *testing.T) {
	requireEngineAndCompose(t)
	cfg := e2eConfig(t)
	cleanupStack(t, cfg)
	// node-exporter's stub listens in the host's network: on a port of its
	// own, so that end-to-end deploys running at the same time do not
	// collide on 9100.
	opts := Options{Render: RenderOptions{StubImage: stubImage(t), StubHostPort: freePort(t)}}
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
	// A user server, started as DockerSpawner starts one, survives a
	// redeploy that recreates the hub.
	user := startUserServer(t, cfg)
	ids = map[string]string{}
	for _, s := range res3.Services {
		ids[s.Service] = s.ID
	}
	cfg.Stack.Hub.AdminUsers = append(cfg.Stack.Hub.AdminUsers, "carol")
	res4, err := Deploy(ctx, cfg, opts)
	if err != nil {
		t.Fatalf("deploy with a changed hub config: %v", err)
	}
	for _, s := range res4.Services {
		if replaced := ids[s.Service] != s.ID; replaced != (s.Service == "jupyterhub") {
			t.Errorf("%s: container %s -> %s after the hub config changed", s.Service, ids[s.Service], s.ID)
		}
	}
	user.checkSurvived(t)

	e2ePrune(t, cfg, opts.Render, user)
	user.remove(t)

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

// userServer is a container started the way DockerSpawner starts a user's
// server: not a Compose container, from the notebook image, on the
// jupyter network, with the user's volume.
type userServer struct {
	cli     *client.Client
	id      string
	name    string
	volume  string
	started string
}

// startUserServer starts a user server from the notebook image deploy
// built.
func startUserServer(t *testing.T, cfg *config.Config) *userServer {
	t.Helper()
	ctx := context.Background()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	st, err := Render(cfg, RenderOptions{StubImage: stubImageTag})
	if err != nil {
		t.Fatal(err)
	}
	u := &userServer{cli: cli, name: "jupyter-" + cfg.Stack.Name, volume: UserVolumePrefix + cfg.Stack.Name}
	t.Cleanup(func() { u.remove(t) })
	created, err := cli.ContainerCreate(ctx,
		&container.Config{Image: st.NotebookImage, Entrypoint: []string{"/stackhelper", "serve", "-listen", ":8888"}},
		&container.HostConfig{NetworkMode: container.NetworkMode(cfg.Stack.Networks.Jupyter), Binds: []string{u.volume + ":" + cfg.Stack.Hub.NotebookDir}},
		nil, nil, u.name)
	if err != nil {
		t.Fatalf("create the user server: %v", err)
	}
	u.id = created.ID
	if err := cli.ContainerStart(ctx, u.id, container.StartOptions{}); err != nil {
		t.Fatalf("start the user server: %v", err)
	}
	insp, err := cli.ContainerInspect(ctx, u.id)
	if err != nil || insp.State == nil || !insp.State.Running {
		t.Fatalf("user server not running: %v", err)
	}
	u.started = insp.State.StartedAt
	return u
}

// checkSurvived fails unless the same container still runs, never
// restarted.
func (u *userServer) checkSurvived(t *testing.T) {
	t.Helper()
	insp, err := u.cli.ContainerInspect(context.Background(), u.name)
	switch {
	case err != nil:
		t.Errorf("user server %s gone after the redeploy: %v", u.name, err)
	case insp.ID != u.id:
		t.Errorf("user server %s replaced: %s -> %s", u.name, u.id[:12], insp.ID[:12])
	case insp.State == nil || !insp.State.Running || insp.State.StartedAt != u.started:
		t.Errorf("user server %s not running since %s: %+v", u.name, u.started, insp.State)
	}
}

// remove removes the user server and its volume.
func (u *userServer) remove(t *testing.T) {
	ctx := context.Background()
	if err := u.cli.ContainerRemove(ctx, u.name, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		t.Logf("remove %s: %v", u.name, err)
	}
	if err := u.cli.VolumeRemove(ctx, u.volume, true); err != nil && !cerrdefs.IsNotFound(err) {
		t.Logf("remove %s: %v", u.volume, err)
	}
}

// buildTag builds a tiny image FROM the stub (a label of its own makes it
// a new image) and tags it ref.
func buildTag(t *testing.T, cli *client.Client, ref string) string {
	t.Helper()
	ctx := context.Background()
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	df := []byte("FROM " + stubImageTag + "\nLABEL io.fireops.test.tag=" + jsonString(ref) + "\n")
	if err := tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(df)), ModTime: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	tw.Write(df)
	tw.Close()
	resp, err := cli.ImageBuild(ctx, &ctxTar, build.ImageBuildOptions{Tags: []string{ref}, Remove: true, ForceRemove: true})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	insp, err := cli.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatalf("build %s: %v", ref, err)
	}
	return insp.ID
}

// e2eArchive holds the volumes whose names are in held.
type e2eArchive struct{ held map[string]bool }

func (a e2eArchive) Find(_ context.Context, part string) (ArchiveRef, error) {
	if a.held[strings.TrimPrefix(part, "volume:")] {
		return ArchiveRef{Destination: "local", Snapshot: "20261101T030000Z-e2e000", Level: "hashes"}, nil
	}
	return ArchiveRef{}, errors.New("not held")
}

// e2ePrune checks deploy prune on the real Engine: old hub and notebook
// tags go, the current, the previous and one a stopped container uses
// stay; a deleted user's archived volume goes, the running user server's
// volume stays, and nothing else on the Engine is touched.
func e2ePrune(t *testing.T, cfg *config.Config, render RenderOptions, user *userServer) {
	t.Helper()
	ctx := context.Background()
	cli := user.cli
	nb, hub := cfg.Stack.Notebook.Image, cfg.Stack.Hub.Image
	st, err := Render(cfg, render)
	if err != nil {
		t.Fatal(err)
	}
	current := st.NotebookImage
	// Oldest first: nb:old1 (a stopped container uses it), nb:old2
	// (removed), nb:old3 (the previous); hub:a (removed), hub:b (the
	// previous: the stub runs the hub, so no hub tag is current).
	old1 := buildTag(t, cli, nb+":old1")
	buildTag(t, cli, nb+":old2")
	buildTag(t, cli, nb+":old3")
	buildTag(t, cli, hub+":a")
	buildTag(t, cli, hub+":b")
	stopped, err := cli.ContainerCreate(ctx, &container.Config{Image: old1}, nil, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.ContainerRemove(context.Background(), stopped.ID, container.RemoveOptions{Force: true}) })
	gone := UserVolumePrefix + cfg.Stack.Name + "-gone"
	if _, err := cli.VolumeCreate(ctx, volume.CreateOptions{Name: gone}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.VolumeRemove(context.Background(), gone, true) })

	opts := PruneOptions{
		Volumes: true, Render: render, DryRun: true,
		Users:      func(context.Context) ([]string, error) { return []string{"someone-else"}, nil },
		VolumeName: func(u string) string { return UserVolumePrefix + u },
		// Only this test's volumes are archived: other volumes on the
		// Engine must stay whatever their users.
		Archive: e2eArchive{held: map[string]bool{gone: true, user.volume: true}},
	}
	want := map[string]string{
		current: PruneKept, nb + ":old3": PruneKept, nb + ":old1": PruneKept, nb + ":old2": PruneRemoved,
		hub + ":b": PruneKept, hub + ":a": PruneRemoved,
		gone: PruneRemoved, user.volume: PruneKept,
	}
	got := func(r *PruneResult) map[string]string {
		out := map[string]string{}
		for _, im := range r.Images {
			out[im.Ref] = im.Action
		}
		for _, v := range r.Volumes {
			if v.Name == gone || v.Name == user.volume {
				out[v.Name] = v.Action
			}
		}
		return out
	}
	dry, err := Prune(ctx, cfg, opts)
	if err != nil {
		t.Fatalf("prune --dry-run: %v", err)
	}
	wantDry := dryRunActions(want)
	if g := got(dry); fmt.Sprint(g) != fmt.Sprint(wantDry) {
		t.Errorf("prune --dry-run: %v\nwant %v", g, wantDry)
	}
	if _, err := cli.ImageInspect(ctx, nb+":old2"); err != nil {
		t.Errorf("the dry run removed %s: %v", nb+":old2", err)
	}
	opts.DryRun = false
	pr, err := Prune(ctx, cfg, opts)
	if err != nil {
		t.Fatalf("prune: %v", err)
	}
	if g := got(pr); fmt.Sprint(g) != fmt.Sprint(want) {
		t.Errorf("prune: %v\nwant %v", g, want)
	}
	for ref, action := range want {
		_, ierr := cli.ImageInspect(ctx, ref)
		if strings.HasPrefix(ref, UserVolumePrefix) {
			_, ierr = cli.VolumeInspect(ctx, ref)
		}
		if exists := ierr == nil; exists != (action == PruneKept) {
			t.Errorf("%s: exists %v after prune (%v), want %s", ref, exists, ierr, action)
		}
	}
	for _, v := range pr.Volumes {
		if v.Name == user.volume && !strings.Contains(v.Reason, "mounted by container "+user.name) {
			t.Errorf("user volume kept for %q, want: mounted by %s", v.Reason, user.name)
		}
	}
	user.checkSurvived(t)
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
