package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/firetech/fireops/internal/mongotest"
	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/bootstrap"
	"github.com/firetech/fireops/pkg/restore"
	"github.com/firetech/fireops/pkg/source/volume/volumetest"
	"github.com/firetech/fireops/pkg/stack"
)

// proxyImage builds an image holding only testdata/tcpproxy (a static
// binary imported as a one-file root filesystem: nothing is pulled) and
// removes it when the test ends.
func proxyImage(t *testing.T, cli *client.Client) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	testutil.Must(t, err)
	bin := filepath.Join(t.TempDir(), "tcpproxy")
	cmd := exec.Command("go", "build", "-o", bin, "./pkg/backup/testdata/tcpproxy")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build tcpproxy: %v: %s", err, out)
	}
	data, err := os.ReadFile(bin)
	testutil.Must(t, err)
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	testutil.Must(t, tw.WriteHeader(&tar.Header{Name: "tcpproxy", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}))
	_, err = tw.Write(data)
	testutil.Must(t, err)
	testutil.Must(t, tw.Close())
	name := "fireops-test-tcpproxy:" + randomSuffix()
	rc, err := cli.ImageImport(context.Background(), image.ImportSource{Source: &tb, SourceName: "-"}, name, image.ImportOptions{})
	testutil.Must(t, err)
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	testutil.Must(t, err)
	t.Cleanup(func() {
		cli.ImageRemove(context.Background(), name, image.RemoveOptions{Force: true, PruneChildren: true})
	})
	return name
}

// composeContainer runs a container labelled as service of the Compose
// project (removed when the test ends) and returns its name.
func composeContainer(t *testing.T, cli *client.Client, project, service string, cfg *container.Config, hc *container.HostConfig) string {
	t.Helper()
	ctx := context.Background()
	cfg.Labels = map[string]string{"com.docker.compose.project": project, "com.docker.compose.service": service}
	name := project + "-" + service + "-1"
	resp, err := cli.ContainerCreate(ctx, cfg, hc, nil, nil, name)
	testutil.Must(t, err)
	t.Cleanup(func() {
		if err := cli.ContainerRemove(context.Background(), resp.ID, container.RemoveOptions{Force: true}); err != nil {
			t.Errorf("remove container: %v", err)
		}
	})
	testutil.Must(t, cli.ContainerStart(ctx, resp.ID, container.StartOptions{}))
	return name
}

func startedAt(t *testing.T, cli *client.Client, name string) (string, bool) {
	t.Helper()
	c, err := cli.ContainerInspect(context.Background(), name)
	testutil.Must(t, err)
	return c.State.StartedAt, c.State.Running
}

// TestRestoreAllStopStackKeepsMongoDB: MongoDB runs as the "mongodb"
// service of the Compose stack (deploy's compose.yaml), and the mongo part
// is restored through it. restore --all --force --stop-stack (the
// runbook's command) stops the other containers of the stack but leaves
// MongoDB's running, says so in the plan, restores the mongo part through
// it, and starts the others again.
func TestRestoreAllStopStackKeepsMongoDB(t *testing.T) {
	t.Parallel()
	cli := dockerClient(t)
	uri, db := testenv.RequireMongo(t)
	u, err := url.Parse(uri)
	testutil.Must(t, err)
	mc := mongotest.Connect(t, uri)
	mongotest.Seed(t, mc, db, "", mongotest.Small)
	ctx := context.Background()
	project := "fireops-stk-" + randomSuffix()

	// The stack's "mongodb": a proxy to the test server on a free port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testutil.Must(t, err)
	addr := ln.Addr().String()
	ln.Close()
	mongoName := composeContainer(t, cli, project, stack.MongoService,
		&container.Config{Image: proxyImage(t, cli), Cmd: []string{"/tcpproxy", addr, u.Host}},
		&container.HostConfig{NetworkMode: "host"})
	for deadline := time.Now().Add(time.Minute); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mongodb proxy does not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	hubName := composeContainer(t, cli, project, "jupyterhub", &container.Config{Image: volumetest.Image(t, cli)}, &container.HostConfig{NetworkMode: "none"})
	mongoStart, _ := startedAt(t, cli, mongoName)
	hubStart, _ := startedAt(t, cli, hubName)

	dir := t.TempDir()
	init, err := bootstrap.Init(bootstrap.Options{Dir: filepath.Join(dir, "etc"), Host: "gpu01"})
	testutil.Must(t, err)
	uriFile := writeURIFile(t, dir, "mongo-uri", "mongodb://"+addr+"/")
	cfg := loadTestConfig(t, dir, "fireops", init, fmt.Sprintf("sources:\n  mongo: {uri_file: %s, databases: [%s]}\nstack: {name: %s}\n", uriFile, db, project))
	if _, err := Snapshot(ctx, cfg, SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}

	rr, err := restore.Restore(ctx, cfg, restore.Options{Snapshot: "latest", All: true, Force: true, StopStack: true, DryRun: true})
	testutil.Must(t, err)
	if st := rr.Stack; st == nil || !slices.Equal(st.Containers, []string{hubName}) || !slices.Equal(st.Running, []string{mongoName}) ||
		!strings.Contains(st.RunningWhy, "mongo part") {
		t.Errorf("plan of the stack: %+v", rr.Stack)
	}

	rr, err = restore.Restore(ctx, cfg, restore.Options{Snapshot: "latest", All: true, Force: true, StopStack: true})
	if err != nil {
		var msgs []string
		for _, p := range rr.Parts {
			msgs = append(msgs, p.Part+": "+p.Status+" "+p.Error)
		}
		t.Fatalf("restore --all --force --stop-stack: %v\n%s\nstack: %+v", err, strings.Join(msgs, "\n"), rr.Stack)
	}
	if st := rr.Stack; !slices.Equal(st.Containers, []string{hubName}) || !slices.Equal(st.Started, []string{hubName}) || st.Error != "" {
		t.Errorf("stack: %+v", st)
	}
	if at, running := startedAt(t, cli, mongoName); at != mongoStart || !running {
		t.Errorf("mongodb was stopped (started %s, before %s; running %v)", at, mongoStart, running)
	}
	if at, running := startedAt(t, cli, hubName); at == hubStart || !running {
		t.Errorf("the hub was not stopped and started again (started %s, before %s; running %v)", at, hubStart, running)
	}
}
