// Package gpuusage says which hub user uses the GPUs: it places the compute
// processes NVML lists (pkg/gpucheck.ListProcesses) in their Docker
// containers through their cgroups (/proc/<pid>/cgroup), and the
// containers in the hub users' servers through DockerSpawner's container
// names ("jupyter-<escaped user>", "jupyter-<escaped user>--<server>").
//
// The Resolver serves `fireops gpu check` (its processes per user); the
// Collector serves the `fireops schedule` daemon's /metrics (GPU memory
// and utilisation per container, labelled with the hub user); Textfile
// writes its series for node-exporter's textfile collector.
//
// It must never crash or flood the daemon's log: an NVML error on one GPU
// is counted and logged once, the others are still reported; a host
// without NVML exports no series and says so once. Memory is bounded by
// the processes and containers using the GPUs at one scrape: nothing is
// kept for a process or container after it stops using them.
package gpuusage

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/firetech/fireops/pkg/gpucheck"
	"github.com/firetech/fireops/pkg/users"
)

// Container is what the Engine says about one container.
type Container struct {
	// ID is the full container id.
	ID string
	// Name is the container's name without Docker's leading "/".
	Name string
	// Labels are the container's labels.
	Labels map[string]string
}

// Containers looks containers up by id; DockerContainers is the real one.
type Containers interface {
	// Inspect returns the container with that id; ErrNoContainer when
	// the Engine has none (a container of another runtime).
	Inspect(ctx context.Context, id string) (Container, error)
}

// ErrNoContainer is what Containers.Inspect returns for an unknown id.
var ErrNoContainer = errors.New("no such container")

// ServerPrefix starts the name of every user server's container: the
// DockerSpawner default name_template "{prefix}-{username}" (named
// servers: "{prefix}-{username}--{servername}") with the default prefix.
const ServerPrefix = users.ServerContainerPrefix

// composeProjectLabel is set on every container of a Compose project (the
// stack's own services): they are never user servers.
const composeProjectLabel = "com.docker.compose.project"

// HubUser returns the hub user, and the server name ("" for the default
// server), whose DockerSpawner server c is; ok is false for any other
// container. DockerSpawner (12 and later) escapes names into
// [a-z0-9] with '-' and two lowercase hex digits for any other byte
// (pkg/users.EscapeUsername), so the name decodes back exactly
// (users.ParseServerContainer).
func HubUser(c Container) (user, server string, ok bool) {
	if _, compose := c.Labels[composeProjectLabel]; compose {
		return "", "", false
	}
	return users.ParseServerContainer(c.Name)
}

// Error operations, as passed to Resolver.OnError and counted in the op
// label of fireops_gpu_usage_errors_total.
const (
	// OpCgroup: /proc/<pid>/cgroup could not be read.
	OpCgroup = "cgroup"
	// OpDocker: the Engine could not say which container an id is.
	OpDocker = "docker"
)

// Resolver places processes in containers and user servers; it is a
// gpucheck.OwnerResolver. It is safe for concurrent use.
type Resolver struct {
	// ProcRoot is where the host's /proc is; "" means /proc.
	ProcRoot string
	// Containers names the containers; nil leaves them unnamed (and
	// therefore without user).
	Containers Containers
	// OnError, when set, is called for each failure: op is OpCgroup or
	// OpDocker. A process that exited meanwhile is no failure.
	OnError func(op string, err error)

	mu    sync.Mutex
	known map[string]Container // the containers of the last call, by id
}

// Owners returns the owner of each pid that runs in a container. The
// Engine is asked once per container (and not again while the container
// keeps using a GPU); what it said about containers that no longer run a
// GPU process is forgotten.
func (r *Resolver) Owners(ctx context.Context, pids []uint32) map[uint32]gpucheck.Owner {
	root := r.ProcRoot
	if root == "" {
		root = "/proc"
	}
	out := make(map[uint32]gpucheck.Owner, len(pids))
	ids := map[string]bool{}
	for _, pid := range pids {
		id, err := cgroupContainer(root, pid)
		if err != nil {
			if !errors.Is(err, errGone) {
				r.fail(OpCgroup, err)
			}
			continue
		}
		if id == "" {
			continue // a host process
		}
		out[pid] = gpucheck.Owner{ContainerID: id}
		ids[id] = true
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	known := make(map[string]Container, len(ids))
	for id := range ids {
		if c, ok := r.known[id]; ok {
			known[id] = c
			continue
		}
		if r.Containers == nil || ctx.Err() != nil {
			continue
		}
		c, err := r.Containers.Inspect(ctx, id)
		switch {
		case err == nil:
			known[id] = c
		case errors.Is(err, ErrNoContainer):
			// Another runtime's container: known by id only, asked again
			// next time (cheap, and rare).
		default:
			r.fail(OpDocker, err)
		}
	}
	r.known = known
	for pid, o := range out {
		c, ok := known[o.ContainerID]
		if !ok {
			continue
		}
		o.Container = c.Name
		o.User, o.Server, _ = HubUser(c)
		out[pid] = o
	}
	return out
}

func (r *Resolver) fail(op string, err error) {
	if r.OnError != nil {
		r.OnError(op, err)
	}
}

// onceLog logs a failing condition once, when it starts failing (warn, or
// info for expected ones such as a host without GPUs), and once more when
// it recovers; repeats go to debug. The daemon's log stays readable
// however often Prometheus scrapes. Its memory is bounded by the number
// of distinct keys (operations per GPU).
type onceLog struct {
	log     *slog.Logger
	failing map[string]bool
}

// fail logs msg at level when key starts failing, at debug after that.
func (l *onceLog) fail(key string, level slog.Level, msg string, args ...any) {
	if l.failing[key] {
		l.log.Debug(msg, args...)
		return
	}
	l.failing[key] = true
	l.log.Log(context.Background(), level, msg, args...)
}

// ok logs msg at info when key was failing.
func (l *onceLog) ok(key, msg string, args ...any) {
	if l.failing[key] {
		delete(l.failing, key)
		l.log.Info(msg, args...)
	}
}
