package deploy

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/firetech/fireops/pkg/engine"
)

// Compose's container labels.
const (
	labelProject = "com.docker.compose.project"
	labelService = "com.docker.compose.service"
	labelOneoff  = "com.docker.compose.oneoff"
)

// Engine is the Docker Engine API client deploy uses for the preflight,
// the health report and `deploy status`.
type Engine struct {
	cli *client.Client
}

// NewEngine returns a client configured like the docker CLI (DOCKER_HOST,
// DOCKER_TLS_VERIFY, ...), negotiating the API version. Close it.
func NewEngine() (*Engine, error) {
	cli, err := engine.Open()
	if err != nil {
		return nil, err
	}
	return &Engine{cli: cli}, nil
}

// Close releases the client.
func (e *Engine) Close() error { return e.cli.Close() }

// Host is the Engine's address.
func (e *Engine) Host() string { return e.cli.DaemonHost() }

// EngineInfo is what the preflight learns about the Engine.
type EngineInfo struct {
	Version    string `json:"version"`
	APIVersion string `json:"api_version"`
	RootDir    string `json:"root_dir"`
}

// Info asks the Engine for its version and data root, within 15 seconds.
func (e *Engine) Info(ctx context.Context) (EngineInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	v, err := e.cli.ServerVersion(ctx)
	if err != nil {
		return EngineInfo{}, err
	}
	info, err := e.cli.Info(ctx)
	if err != nil {
		return EngineInfo{}, err
	}
	return EngineInfo{Version: v.Version, APIVersion: v.APIVersion, RootDir: info.DockerRootDir}, nil
}

// ImageExists reports whether the Engine has the image.
func (e *Engine) ImageExists(ctx context.Context, ref string) (bool, error) {
	_, err := e.cli.ImageInspect(ctx, ref)
	switch {
	case err == nil:
		return true, nil
	case cerrdefs.IsNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("inspect image %s: %w", ref, err)
}

// ServiceStatus is one service of the stack as the Engine sees it.
type ServiceStatus struct {
	Service   string `json:"service"`
	Container string `json:"container,omitempty"`
	ID        string `json:"id,omitempty"`
	Image     string `json:"image,omitempty"`
	// State is the container's state (running, exited, restarting, ...),
	// or "missing" when the service has no container.
	State string `json:"state"`
	// Health is healthy, unhealthy or starting; empty without a healthcheck.
	Health   string   `json:"health,omitempty"`
	Restarts int      `json:"restarts"`
	Ports    []string `json:"ports,omitempty"`
	// OK is true when the container runs and is healthy (or has no
	// healthcheck).
	OK bool `json:"ok"`
}

// Status lists the containers of the Compose project with their state,
// health, restart count and published ports; every service in services
// without a container is reported as missing. Sorted by service.
func (e *Engine) Status(ctx context.Context, project string, services []string) ([]ServiceStatus, error) {
	f := filters.NewArgs(filters.Arg("label", labelProject+"="+project))
	list, err := e.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers of %s: %w", project, err)
	}
	seen := map[string]bool{}
	var out []ServiceStatus
	for _, c := range list {
		if c.Labels[labelOneoff] == "True" {
			continue
		}
		insp, err := e.cli.ContainerInspect(ctx, c.ID)
		if err != nil {
			if cerrdefs.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("inspect container %s: %w", c.ID[:12], err)
		}
		s := ServiceStatus{
			Service: c.Labels[labelService], ID: c.ID[:12], Image: c.Image,
			Container: strings.TrimPrefix(insp.Name, "/"), Restarts: insp.RestartCount,
		}
		if insp.State != nil {
			s.State = insp.State.Status
			if insp.State.Health != nil {
				s.Health = insp.State.Health.Status
			}
		}
		for _, p := range c.Ports {
			if p.PublicPort == 0 {
				continue
			}
			s.Ports = append(s.Ports, fmt.Sprintf("%s:%d->%d/%s", p.IP, p.PublicPort, p.PrivatePort, p.Type))
		}
		sort.Strings(s.Ports)
		s.Ports = compactStrings(s.Ports)
		s.OK = s.State == "running" && (s.Health == "" || s.Health == "healthy")
		seen[s.Service] = true
		out = append(out, s)
	}
	for _, svc := range services {
		if !seen[svc] {
			out = append(out, ServiceStatus{Service: svc, State: "missing"})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].Container < out[j].Container
	})
	return out, nil
}

// publishedPorts returns the host ports the project's containers publish,
// as "port" strings, so that the preflight does not count the stack's own
// ports as taken.
func (e *Engine) publishedPorts(ctx context.Context, project string) (map[int]bool, error) {
	f := filters.NewArgs(filters.Arg("label", labelProject+"="+project))
	list, err := e.cli.ContainerList(ctx, container.ListOptions{Filters: f})
	if err != nil {
		return nil, err
	}
	out := map[int]bool{}
	for _, c := range list {
		for _, p := range c.Ports {
			if p.PublicPort != 0 {
				out[int(p.PublicPort)] = true
			}
		}
	}
	return out, nil
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
