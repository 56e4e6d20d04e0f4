package users

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/firetech/fireops/pkg/engine"
	"github.com/firetech/fireops/pkg/exitcode"
)

// TestDockerUnreachableHint: with no Engine at DOCKER_HOST, the hub
// database's volume lookup and the server container listing fail with
// exit 1 and the one Engine hint (the lookup adding its way out). Not
// parallel: it sets DOCKER_HOST.
func TestDockerUnreachableHint(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "no-docker.sock"))
	ctx := context.Background()

	_, err := DockerVolumes{}.Mountpoint(ctx, "hub-data")
	if want := engine.Hint + "; or set hub.db_path"; err == nil || exitcode.Code(err) != exitcode.Failure || exitcode.Hint(err) != want {
		t.Errorf("Mountpoint: %v (exit %d, hint %q), want exit 1, hint %q", err, exitcode.Code(err), exitcode.Hint(err), want)
	}

	d, err := NewDockerServers()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, err = d.List(ctx, "alice")
	if err == nil || exitcode.Code(err) != exitcode.Failure || exitcode.Hint(err) != engine.Hint {
		t.Errorf("List: %v (exit %d, hint %q), want exit 1, hint %q", err, exitcode.Code(err), exitcode.Hint(err), engine.Hint)
	}
}
