package gpuusage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/docker/docker/client"

	"github.com/firetech/fireops/internal/helperimage"
	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/gpucheck"
	"github.com/firetech/fireops/pkg/users"
)

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestResolverRealContainer starts a user server's stand-in (a container
// named the way DockerSpawner names a hub user's server), reads its
// process's real /proc/<pid>/cgroup and expects the Resolver to find the
// container through the Engine and the hub user through its name; a
// process of this test (outside any container) has no owner.
func TestResolverRealContainer(t *testing.T) {
	testenv.RequireDocker(t)
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() }) // after the container's and the image's removal
	ctx := context.Background()
	user := "gpuusage-test." + randomHex(t, 3)
	name := ServerPrefix + users.EscapeUsername(user)
	id := helperimage.CreateServer(t, cli, helperimage.Stackhelper(t, cli, "fireops-gpuusage-test"), helperimage.Server{Name: name, Start: true})
	ci, err := cli.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !ci.State.Running || ci.State.Pid <= 0 {
		t.Fatalf("test container not running: %+v", ci.State)
	}
	pid := uint32(ci.State.Pid)
	cgroup, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(ci.State.Pid), "cgroup"))
	if errors.Is(err, fs.ErrNotExist) {
		testenv.Unavailable(t, "a Docker Engine in this PID namespace",
			fmt.Errorf("the container's pid %d is not in /proc here (a remote DOCKER_HOST?)", pid))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("/proc/%d/cgroup:\n%s", pid, cgroup)
	if got := ContainerIDFromCgroup(cgroup); got != id {
		t.Fatalf("ContainerIDFromCgroup = %q, want the container's id %s", got, id)
	}

	dc, err := NewDockerContainers()
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	var failures []string
	r := &Resolver{Containers: dc, OnError: func(op string, err error) { failures = append(failures, op+": "+err.Error()) }}
	self := uint32(os.Getpid())
	got := r.Owners(ctx, []uint32{pid, self})
	want := gpucheck.Owner{ContainerID: id, Container: name, User: user}
	if got[pid] != want {
		t.Errorf("owner of the container's pid = %+v, want %+v", got[pid], want)
	}
	// This test runs on the host here; in a CI container it runs in one.
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if ownID := ContainerIDFromCgroup(own); got[self].ContainerID != ownID {
		t.Errorf("this test's own process placed in %+v, want container %q", got[self], ownID)
	}
	if len(failures) != 0 {
		t.Errorf("failures: %v", failures)
	}

	// An id the Engine does not know is ErrNoContainer, not a failure.
	if _, err := dc.Inspect(ctx, hexID(0xe)); !errors.Is(err, ErrNoContainer) {
		t.Errorf("Inspect of an unknown id: %v, want ErrNoContainer", err)
	}
}
