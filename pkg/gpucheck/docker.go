package gpucheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/firetech/fireops/pkg/engine"
)

// DockerEngine is the Engine backed by the Docker Engine API.
type DockerEngine struct {
	cli *client.Client
	// Log receives debug details; nil discards them.
	Log *slog.Logger
}

// NewDockerEngine returns an Engine client configured from the environment
// (DOCKER_HOST, DOCKER_API_VERSION, DOCKER_CERT_PATH, DOCKER_TLS_VERIFY),
// negotiating the API version with the Engine. Close it when done.
func NewDockerEngine() (*DockerEngine, error) {
	cli, err := engine.Open()
	if err != nil {
		return nil, err
	}
	return &DockerEngine{cli: cli}, nil
}

// Close releases the client's connections.
func (d *DockerEngine) Close() error { return d.cli.Close() }

func (d *DockerEngine) log() *slog.Logger {
	if d.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Log
}

// infoTimeout bounds the Engine's info call: a hung Engine must not hang a
// preflight that systemd or cron runs.
const infoTimeout = 15 * time.Second

// RuntimeInfo asks the Engine for its info and extracts the runtimes and
// CDI devices.
func (d *DockerEngine) RuntimeInfo(ctx context.Context) (RuntimeInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, infoTimeout)
	defer cancel()
	info, err := d.cli.Info(ctx)
	if err != nil {
		return RuntimeInfo{}, fmt.Errorf("docker info: %w", err)
	}
	return runtimeInfoFrom(info, d.log()), nil
}

// runtimeInfoFrom extracts the runtime facts from the Engine's info and
// reads the CDI spec folders it names.
func runtimeInfoFrom(info system.Info, log *slog.Logger) RuntimeInfo {
	ri := RuntimeInfo{
		ServerVersion:  info.ServerVersion,
		DefaultRuntime: info.DefaultRuntime,
		Runtimes:       make([]string, 0, len(info.Runtimes)),
		CDISpecDirs:    append([]string{}, info.CDISpecDirs...),
	}
	for name := range info.Runtimes {
		ri.Runtimes = append(ri.Runtimes, name)
	}
	sort.Strings(ri.Runtimes)
	var discovered []string
	for _, dev := range info.DiscoveredDevices {
		if dev.Source == "cdi" {
			discovered = append(discovered, dev.ID)
		}
	}
	ri.CDIDevices = cdiDevices(ri.CDISpecDirs, discovered, log)
	return ri
}

// RunGPUContainer creates a container of img with all GPUs and no network,
// runs cmd in it (as entrypoint, so an image's banner script is skipped),
// and removes it. A missing image is pulled first.
func (d *DockerEngine) RunGPUContainer(ctx context.Context, img string, cmd []string) (out string, err error) {
	if len(cmd) == 0 {
		return "", errors.New("no command given")
	}
	cfg := &container.Config{Image: img, Entrypoint: cmd[:1], Cmd: cmd[1:], Labels: map[string]string{"fireops.purpose": "gpu-smoke"}}
	host := &container.HostConfig{
		NetworkMode: "none",
		Resources: container.Resources{DeviceRequests: []container.DeviceRequest{
			{Count: -1, Capabilities: [][]string{{"gpu"}}},
		}},
	}
	created, err := d.cli.ContainerCreate(ctx, cfg, host, nil, nil, "")
	if cerrdefs.IsNotFound(err) {
		d.log().Debug("pulling smoke image", "image", img)
		if perr := d.pull(ctx, img); perr != nil {
			return "", perr
		}
		created, err = d.cli.ContainerCreate(ctx, cfg, host, nil, nil, "")
	}
	if err != nil {
		return "", fmt.Errorf("create container: %w", err)
	}
	defer func() {
		// Remove even when ctx is cancelled.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rerr := d.cli.ContainerRemove(rctx, created.ID, container.RemoveOptions{Force: true}); rerr != nil {
			d.log().Debug("cannot remove smoke container", "id", created.ID, "err", rerr)
		}
	}()
	waitC, errC := d.cli.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := d.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return "", fmt.Errorf("start container: %w", err)
	}
	var code int64
	select {
	case res := <-waitC:
		if res.Error != nil {
			return "", fmt.Errorf("wait for container: %s", res.Error.Message)
		}
		code = res.StatusCode
	case err := <-errC:
		return "", fmt.Errorf("wait for container: %w", err)
	}
	logs, err := d.cli.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return "", fmt.Errorf("container logs: %w", err)
	}
	defer logs.Close()
	var buf bytes.Buffer
	if _, err := stdcopy.StdCopy(&buf, &buf, logs); err != nil {
		return "", fmt.Errorf("container logs: %w", err)
	}
	out = buf.String()
	if code != 0 {
		return out, fmt.Errorf("%s exited with %d: %s", strings.Join(cmd, " "), code, lastLines(out, 5))
	}
	return out, nil
}

// pull pulls img and waits until the pull is done.
func (d *DockerEngine) pull(ctx context.Context, img string) error {
	rc, err := d.cli.ImagePull(ctx, img, image.PullOptions{})
	if err != nil {
		return fmt.Errorf("pull %s: %w", img, err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return fmt.Errorf("pull %s: %w", img, err)
	}
	return nil
}

// lastLines returns the last n non-empty lines of s joined by " | ".
func lastLines(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
