// Package volumetest runs containers that use Docker volumes, for the
// tests of the volume kind: the test machine cannot pull images, so the
// image holds only a static binary built from the project's own program
// pkg/source/volume/testdata/writer (imported as a one-file root
// filesystem: no build, no pull). The writer keeps rewriting a file in the
// volume until it is stopped.
package volumetest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/engine"
)

// NamePrefix starts the names of the writer containers.
const NamePrefix = "fireops-test-writer-"

var (
	once  sync.Once
	ref   string
	imErr error
)

// Image returns the writer image, building it once per test process, and
// removes it when the test process ends through Cleanup.
func Image(t testing.TB, cli *client.Client) string {
	t.Helper()
	once.Do(func() { ref, imErr = build(cli) })
	if imErr != nil {
		t.Fatal(imErr)
	}
	return ref
}

func build(cli *client.Client) (string, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "fireops-writer-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "writer")
	cmd := exec.Command("go", "build", "-o", bin, "./pkg/source/volume/testdata/writer")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build writer: %v: %s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	if err := tw.WriteHeader(&tar.Header{Name: "writer", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		return "", err
	}
	if _, err := tw.Write(data); err != nil {
		return "", err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "data/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
		return "", err
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	name := "fireops-test-writer:" + randomHex(4)
	rc, err := cli.ImageImport(context.Background(), image.ImportSource{Source: &tb, SourceName: "-"}, name,
		image.ImportOptions{Changes: []string{`CMD ["/writer", "/data"]`}})
	if err != nil {
		return "", err
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return "", err
	}
	return name, nil
}

// RemoveImage removes the writer image if one was built; call it from
// TestMain after the tests.
func RemoveImage() {
	if ref == "" {
		return
	}
	cli, err := engine.Open()
	if err != nil {
		return
	}
	defer cli.Close()
	cli.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true, PruneChildren: true})
}

// StartWriter runs a writer container with vol mounted at /data and
// returns its id and name; it is removed when the test ends.
func StartWriter(t testing.TB, cli *client.Client, vol string) (id, name string) {
	t.Helper()
	ctx := context.Background()
	name = NamePrefix + randomHex(4)
	resp, err := cli.ContainerCreate(ctx, &container.Config{Image: Image(t, cli)},
		&container.HostConfig{NetworkMode: "none", Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: "/data"}}},
		nil, nil, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cli.ContainerRemove(context.Background(), resp.ID, container.RemoveOptions{Force: true}); err != nil {
			t.Errorf("remove writer container: %v", err)
		}
	})
	if err := cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	return resp.ID, name
}

// State returns whether a container is running and whether it is paused.
func State(t testing.TB, cli *client.Client, id string) (running, paused bool) {
	t.Helper()
	ci, err := cli.ContainerInspect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return ci.State.Running, ci.State.Paused
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
