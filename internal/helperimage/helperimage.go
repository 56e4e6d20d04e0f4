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

	"github.com/docker/docker/api/types/image"
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
