// Package helperimage builds, for tests that run containers, an image FROM
// scratch holding only the project's static stackhelper binary
// (internal/cmd/stackhelper) as its entrypoint: the test machine cannot
// pull images, so the image is imported as a one-file root filesystem.
//
// It is for tests only: nothing outside _test.go files imports it.
package helperimage

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"

	"github.com/firetech/fireops/internal/testenv"
)

// Stackhelper builds the stackhelper image, tagged repo:<random hex>,
// returns its reference and removes it when the test ends.
func Stackhelper(t testing.TB, cli *client.Client, repo string) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "stackhelper")
	cmd := exec.Command("go", "build", "-o", bin, "./internal/cmd/stackhelper")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build stackhelper: %v: %s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	if err := tw.WriteHeader(&tar.Header{Name: "stackhelper", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	tag := make([]byte, 4)
	if _, err := rand.Read(tag); err != nil {
		t.Fatal(err)
	}
	ref := repo + ":" + hex.EncodeToString(tag)
	rc, err := cli.ImageImport(context.Background(), image.ImportSource{Source: &tb, SourceName: "-"}, ref,
		image.ImportOptions{Changes: []string{`ENTRYPOINT ["/stackhelper"]`}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := cli.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true}); err != nil {
			t.Errorf("remove test image: %v", err)
		}
	})
	return ref
}

// Server describes a container made from the stackhelper image the way
// the stack's DockerSpawner makes a user's server, for [CreateServer].
type Server struct {
	// Name is the container's name.
	Name string
	// Labels are the container's labels (a Compose project's, say).
	Labels map[string]string
	// HomeVolume, when not "", is a volume mounted at /home/jovyan, as a
	// user server mounts the user's volume.
	HomeVolume string
	// Start starts the container once created.
	Start bool
}

// CreateServer creates the container s describes from img (a reference
// [Stackhelper] returned), serving HTTP on its loopback with no network,
// starts it if s.Start, removes it when the test ends (unless the test
// did) and returns its id.
func CreateServer(t testing.TB, cli *client.Client, img string, s Server) string {
	t.Helper()
	ctx := context.Background()
	hc := &container.HostConfig{NetworkMode: "none"}
	if s.HomeVolume != "" {
		hc.Mounts = []mount.Mount{{Type: mount.TypeVolume, Source: s.HomeVolume, Target: "/home/jovyan"}}
	}
	resp, err := cli.ContainerCreate(ctx,
		&container.Config{Image: img, Cmd: []string{"serve", "-listen", "127.0.0.1:8080"}, Labels: s.Labels},
		hc, nil, nil, s.Name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		err := cli.ContainerRemove(context.Background(), resp.ID, container.RemoveOptions{Force: true})
		if err != nil && !cerrdefs.IsNotFound(err) { // the test may have removed it
			t.Errorf("remove test container %s: %v", s.Name, err)
		}
	})
	if s.Start {
		if err := cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return resp.ID
}
