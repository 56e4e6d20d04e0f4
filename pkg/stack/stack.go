// Package stack stops and starts the running containers of the Compose
// project `fireops deploy` runs, around a whole-server restore (restore
// --all --stop-stack).
package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/firetech/fireops/pkg/snapshot"
	"github.com/firetech/fireops/pkg/source/mongo"
)

// MongoService is the Compose service MongoDB runs as in the stack that
// `fireops deploy` renders (pkg/deploy/templates/compose.yaml.tmpl).
const MongoService = "mongodb"

// KeepRunning returns the Compose service whose containers --stop-stack
// leaves running: MongoDB when a mongo part is restored (through it), or
// "" to stop every container.
func KeepRunning(parts []snapshot.Part) string {
	if slices.ContainsFunc(parts, func(p snapshot.Part) bool { return p.Kind == mongo.Kind }) {
		return MongoService
	}
	return ""
}

// Containers lists the running containers of the Compose project: the
// names and ids of those to stop, and the names of those of the Compose
// service keep (when not "") to leave running.
func Containers(ctx context.Context, eng *client.Client, project, keep string) (names, ids, kept []string, err error) {
	cs, err := eng.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.compose.project="+project))})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("list the containers of stack %s: %w", project, err)
	}
	sort.Slice(cs, func(i, j int) bool { return containerName(cs[i]) < containerName(cs[j]) })
	for _, c := range cs {
		if keep != "" && c.Labels["com.docker.compose.service"] == keep {
			kept = append(kept, containerName(c))
			continue
		}
		names = append(names, containerName(c))
		ids = append(ids, c.ID)
	}
	return names, ids, kept, nil
}

// containerName is the container's first name without Docker's leading
// "/", or its short id when it has none.
func containerName(c container.Summary) string {
	if len(c.Names) > 0 {
		return strings.TrimPrefix(c.Names[0], "/")
	}
	return c.ID[:12]
}

// Stop stops the containers (the Engine's default grace period), in
// order, and returns at the first that fails. log may be nil.
func Stop(ctx context.Context, eng *client.Client, ids []string, log *slog.Logger) error {
	for _, id := range ids {
		if log != nil {
			log.Info("stopping a container of the stack", "container", id[:min(12, len(id))])
		}
		if err := eng.ContainerStop(ctx, id, container.StopOptions{}); err != nil {
			return fmt.Errorf("stop container %s: %w", id[:min(12, len(id))], err)
		}
	}
	return nil
}

// Start starts the named containers again; it tries every one and returns
// those started with the errors of the others. log may be nil.
func Start(ctx context.Context, eng *client.Client, names []string, log *slog.Logger) ([]string, error) {
	var started []string
	var errs []error
	for _, n := range names {
		if err := eng.ContainerStart(ctx, n, container.StartOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("start container %s: %w", n, err))
			continue
		}
		started = append(started, n)
		if log != nil {
			log.Info("started a container of the stack again", "container", n)
		}
	}
	return started, errors.Join(errs...)
}
