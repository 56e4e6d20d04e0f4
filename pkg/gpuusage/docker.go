package gpuusage

import (
	"context"
	"fmt"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"github.com/firetech/fireops/pkg/engine"
)

// DockerContainers is Containers backed by the Docker Engine API.
type DockerContainers struct {
	cli *client.Client
}

// NewDockerContainers returns a client configured from the environment
// (DOCKER_HOST and friends, like the docker CLI), negotiating the API
// version. It connects on first use; Close it when done.
func NewDockerContainers() (*DockerContainers, error) {
	cli, err := engine.Open()
	if err != nil {
		return nil, err
	}
	return &DockerContainers{cli: cli}, nil
}

// Inspect asks the Engine about container id.
func (d *DockerContainers) Inspect(ctx context.Context, id string) (Container, error) {
	ci, err := d.cli.ContainerInspect(ctx, id)
	if cerrdefs.IsNotFound(err) {
		return Container{}, fmt.Errorf("container %.12s: %w", id, ErrNoContainer)
	}
	if err != nil {
		return Container{}, fmt.Errorf("inspect container %.12s: %w", id, err)
	}
	c := Container{ID: ci.ID, Name: strings.TrimPrefix(ci.Name, "/")}
	if ci.Config != nil {
		c.Labels = ci.Config.Labels
	}
	return c, nil
}

// Close releases the client's connections.
func (d *DockerContainers) Close() error { return d.cli.Close() }
