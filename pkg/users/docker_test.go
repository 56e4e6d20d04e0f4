package users

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/firetech/fireops/internal/helperimage"
	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
)

// dockerClient returns a client of the test Docker Engine, closed when
// the test ends; without an Engine the test is unavailable.
func dockerClient(t *testing.T) *client.Client {
	t.Helper()
	testenv.RequireDocker(t)
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestDockerVolumes resolves hub.db_volume + hub.db_file through the real
// Docker Engine, and opens a database placed in that volume.
func TestDockerVolumes(t *testing.T) {
	t.Parallel()
	cli := dockerClient(t)
	ctx := context.Background()
	name := "fireops-test-users-" + randomHex(t)
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

// randomHex returns 4 random bytes in hex: a name unique to this run.
func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestDeleteRemovesStoppedServer: the user's server containers as the
// stack's DockerSpawner leaves them on the real Engine (a stopped default
// server that mounts the volume, a named one): delete refuses while one
// runs, then removes both, and only them; the volume stays, and nothing
// holds it any more.
func TestDeleteRemovesStoppedServer(t *testing.T) {
	cli := dockerClient(t)
	ctx := context.Background()
	img := helperimage.Stackhelper(t, cli, "fireops-users-test")
	user := "del.test-" + randomHex(t)
	esc := EscapeUsername(user)
	vol := VolumeName(user)
	if _, err := cli.VolumeCreate(ctx, volume.CreateOptions{Name: vol}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.VolumeRemove(context.Background(), vol, true) })
	create := func(name string, labels map[string]string, start bool) string {
		t.Helper()
		s := helperimage.Server{Name: name, Labels: labels, Start: start}
		if _, ok := ServerContainerUser(name); ok && labels == nil && !strings.HasPrefix(name, ServerContainerPrefix+esc+"0") {
			s.HomeVolume = vol
		}
		return helperimage.CreateServer(t, cli, img, s)
	}
	// The user's servers mount their volume, as DockerSpawner's do.
	create(ServerContainerPrefix+esc, nil, false)                 // stopped default server
	named := create(ServerContainerPrefix+esc+"--gpu", nil, true) // running named server
	// Not this user's servers: another user whose escaped name starts the
	// same, and a Compose service.
	other := create(ServerContainerPrefix+esc+"0", nil, false)
	svc := create(ServerContainerPrefix+esc+"--svc", map[string]string{"com.docker.compose.project": "t"}, false)

	ds, err := NewDockerServers()
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	list, err := ds.List(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(list); !strings.Contains(got, ServerContainerPrefix+esc+" created}") || !strings.Contains(got, ServerContainerPrefix+esc+"--gpu running}") || len(list) != 2 {
		t.Fatalf("List = %v", got)
	}

	path, db := tempDB(t)
	signUp(t, db, user, "", true)
	m := hubManager(t, path, noHubUsers)
	m.SetContainers(ds)

	if _, err := m.Delete(ctx, user); exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "server is running") {
		t.Fatalf("delete while the named server runs: %v", err)
	}
	if n, _ := approvedRows(t, db, user); n != 1 {
		t.Fatal("the sign-up was deleted although a server runs")
	}
	timeout := 10
	if err := cli.ContainerStop(ctx, named, container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	res, err := m.Delete(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(res.Containers) != "["+ServerContainerPrefix+esc+" "+ServerContainerPrefix+esc+"--gpu]" || res.Rows != 1 {
		t.Errorf("delete: %+v", res)
	}
	if list, err := ds.List(ctx, user); err != nil || len(list) != 0 {
		t.Errorf("after delete: %v %v", list, err)
	}
	for _, id := range []string{other, svc} {
		if _, err := cli.ContainerInspect(ctx, id); err != nil {
			t.Errorf("another container was removed: %v", err)
		}
	}
	// The volume stays, and nothing holds it: delete's hint, docker volume
	// rm, works.
	if _, err := cli.VolumeInspect(ctx, vol); err != nil {
		t.Fatalf("delete removed the volume: %v", err)
	}
	if err := cli.VolumeRemove(ctx, vol, false); err != nil {
		t.Errorf("docker volume rm after delete: %v", err)
	}
}
