package users

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
)

// TestDockerVolumes resolves hub.db_volume + hub.db_file through the real
// Docker Engine, and opens a database placed in that volume.
func TestDockerVolumes(t *testing.T) {
	t.Parallel()
	testenv.RequireDocker(t)
	ctx := context.Background()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	b := make([]byte, 4)
	rand.Read(b)
	name := "fireops-test-users-" + hex.EncodeToString(b)
	if _, err := cli.VolumeCreate(ctx, volume.CreateOptions{Name: name}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.VolumeRemove(context.Background(), name, true) })

	p, err := DBPath(ctx, config.Hub{DBVolume: name, DBFile: "jupyterhub.sqlite"}, DockerVolumes{})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(p) != "jupyterhub.sqlite" || !strings.Contains(p, name) {
		t.Errorf("DBPath = %s", p)
	}
	// The Engine runs on this host: the file is reachable there.
	if _, err := os.Stat(filepath.Dir(p)); err != nil {
		testenv.Unavailable(t, "the Docker Engine on this host (its volume folders)", err)
	}
	db := rawDB(t, p)
	if _, err := db.Exec(schema(t)); err != nil {
		t.Fatal(err)
	}
	signUp(t, db, "vol-user", "", false)
	s, err := OpenStore(ctx, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ch, err := s.SetApproved(ctx, []string{"vol-user"}, true); err != nil || !ch[0].Changed {
		t.Errorf("approve in the volume's database: %+v, %v", ch, err)
	}

	_, err = DBPath(ctx, config.Hub{DBVolume: name + "-missing", DBFile: "jupyterhub.sqlite"}, DockerVolumes{})
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(exitcode.Hint(err), "hub.db_volume") {
		t.Errorf("missing volume: %v (hint %q)", err, exitcode.Hint(err))
	}
}
