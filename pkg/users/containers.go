package users

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/engine"
)

// ServerContainerPrefix starts the name of every user server's container:
// DockerSpawner's default name_template, "{prefix}-{username}" ("{prefix}-
// {username}--{servername}" for a named server), with its default prefix
// "jupyter". The stack's hub keeps a stopped server's container
// (DockerSpawner's remove = False), and DockerSpawner has no
// delete_forever, so the hub's user delete leaves it: `users delete`
// removes it.
const ServerContainerPrefix = "jupyter-"

// composeProjectLabel is on every container of a Compose project (the
// stack's own services): never a user's server.
const composeProjectLabel = "com.docker.compose.project"

// ServerContainerUser returns the escaped username (EscapeUsername) of the
// user whose server the container called name is, or ok false for any
// other name. An escaped name never holds "--" (its '-' is always followed
// by two hex digits), so the first "--" starts a server's name.
func ServerContainerUser(name string) (escaped string, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimPrefix(name, "/"), ServerContainerPrefix)
	if !found {
		return "", false
	}
	escaped, _, _ = strings.Cut(rest, "--")
	if !validEscaped(escaped) {
		return "", false
	}
	return escaped, true
}

// ParseServerContainer returns the hub user, and the server name (""
// for the default server), whose server the container called name is; ok
// is false for any other name, and for one whose parts do not decode
// (UnescapeUsername) to non-empty UTF-8.
func ParseServerContainer(name string) (user, server string, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimPrefix(name, "/"), ServerContainerPrefix)
	if !found {
		return "", "", false
	}
	escUser, escServer, named := strings.Cut(rest, "--")
	user, ok = UnescapeUsername(escUser)
	if !ok || user == "" {
		return "", "", false
	}
	if named {
		if server, ok = UnescapeUsername(escServer); !ok || server == "" {
			return "", "", false
		}
	}
	return user, server, true
}

// UnescapeUsername reverses EscapeUsername; ok is false for a string it
// cannot have returned, or one that does not decode to valid UTF-8.
func UnescapeUsername(s string) (string, bool) {
	out, ok := unescapeBytes(s)
	return out, ok && utf8.ValidString(out)
}

// validEscaped reports whether s is a non-empty string EscapeUsername can
// have returned: [a-z0-9], and '-' followed by two lowercase hex digits.
func validEscaped(s string) bool {
	_, ok := unescapeBytes(s)
	return s != "" && ok
}

// unescapeBytes decodes [a-z0-9] as itself and '-' followed by two
// lowercase hex digits as that byte; ok is false for anything else.
func unescapeBytes(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
			b.WriteByte(c)
		case c == '-' && i+2 < len(s) && isLowerHex(s[i+1]) && isLowerHex(s[i+2]):
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		default:
			return "", false
		}
	}
	return b.String(), true
}

func isLowerHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}

// ServerContainer is one container of a user's servers.
type ServerContainer struct {
	// ID is the container's id.
	ID string `json:"id"`
	// Name is its name, without Docker's leading "/".
	Name string `json:"name"`
	// State is the Engine's state: created, running, paused, restarting,
	// removing, exited or dead.
	State string `json:"state"`
}

// Stopped reports whether nothing runs in the container: created, exited
// or dead. Any other state counts as a running server.
func (c ServerContainer) Stopped() bool {
	switch c.State {
	case "created", "exited", "dead":
		return true
	}
	return false
}

// ServerContainers finds and removes the containers of users' servers.
type ServerContainers interface {
	// List returns the containers of the user's servers (the default one
	// and named ones), running or not, sorted by name.
	List(ctx context.Context, user string) ([]ServerContainer, error)
	// Remove removes a stopped container, never forced: the Engine
	// refuses a running one. The volumes it mounts stay.
	Remove(ctx context.Context, c ServerContainer) error
}

// DockerServers is ServerContainers on the Docker Engine (the one
// DOCKER_HOST names, or the local socket).
type DockerServers struct {
	cli *client.Client
}

// NewDockerServers connects to the Docker Engine; nothing is sent before
// the first call.
func NewDockerServers() (*DockerServers, error) {
	cli, err := engine.Open()
	if err != nil {
		return nil, err
	}
	return &DockerServers{cli: cli}, nil
}

// Close closes the connection.
func (d *DockerServers) Close() error { return d.cli.Close() }

// List returns the containers named like user's servers that no Compose
// project owns.
func (d *DockerServers) List(ctx context.Context, user string) ([]ServerContainer, error) {
	esc := EscapeUsername(user)
	// The Engine's name filter is a pattern that matches anywhere in the
	// name: the names are checked again below.
	list, err := d.cli.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("name", ServerContainerPrefix+esc))})
	if err != nil {
		return nil, engine.Error(fmt.Errorf("list the server containers of %s: %w", user, err), "")
	}
	var out []ServerContainer
	for _, c := range list {
		if _, compose := c.Labels[composeProjectLabel]; compose {
			continue
		}
		for _, n := range c.Names {
			n = strings.TrimPrefix(n, "/")
			if got, ok := ServerContainerUser(n); ok && got == esc {
				out = append(out, ServerContainer{ID: c.ID, Name: n, State: c.State})
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Remove removes c, never forced: a container that was started again
// meanwhile stays. The volumes it mounts stay too.
func (d *DockerServers) Remove(ctx context.Context, c ServerContainer) error {
	if err := d.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{}); err != nil {
		return fmt.Errorf("remove container %s: %w", c.Name, err)
	}
	return nil
}

// StackContainers returns the DockerServers of the stack that `fireops
// deploy` runs in cfg.Stack.Dir (it holds its compose.yaml), and a
// function that closes it. Without a deployed stack it returns nil: a hub
// fireops did not deploy may name and keep its servers otherwise.
func StackContainers(cfg *config.Config) (ServerContainers, func(), error) {
	if !stackDeployed(cfg) {
		return nil, func() {}, nil
	}
	d, err := NewDockerServers()
	if err != nil {
		return nil, nil, err
	}
	return d, func() { d.Close() }, nil
}
