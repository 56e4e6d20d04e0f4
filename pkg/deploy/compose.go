package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MinComposeVersion is the oldest Docker Compose deploy accepts: `up
// --wait` with --wait-timeout, top-level name:, profiles.
const MinComposeVersion = "2.20.0"

// DefaultPluginDirs are the folders the docker CLI looks for CLI plugins
// in, after $DOCKER_CONFIG/cli-plugins (~/.docker/cli-plugins).
var DefaultPluginDirs = []string{
	"/usr/local/lib/docker/cli-plugins",
	"/usr/local/libexec/docker/cli-plugins",
	"/usr/lib/docker/cli-plugins",
	"/usr/libexec/docker/cli-plugins",
}

// Compose runs the Docker Compose CLI plugin's binary for one project.
type Compose struct {
	// Path is the plugin binary (docker-compose); it is run directly, as
	// a standalone binary, with the environment (DOCKER_HOST) passed on.
	Path string
	// Version is what `docker-compose version --short` said (5.6.0).
	Version string
	// Env is the environment of every run; nil means os.Environ().
	Env []string
}

// hintCompose tells how to get the compose plugin.
const hintCompose = "install the Docker Compose v2+ CLI plugin (Docker's docker-compose-plugin package, or its binary as /usr/local/lib/docker/cli-plugins/docker-compose); Debian's docker-compose 1.x cannot deploy the stack"

// FindCompose looks for the compose plugin: in pluginDirs when not nil,
// else in $DOCKER_CONFIG/cli-plugins (or ~/.docker/cli-plugins) and
// DefaultPluginDirs, then for a docker-compose v2+ in PATH. It runs
// `version --short` and checks MinComposeVersion.
func FindCompose(ctx context.Context, pluginDirs []string) (*Compose, error) {
	dirs := pluginDirs
	if dirs == nil {
		cfgDir := os.Getenv("DOCKER_CONFIG")
		if cfgDir == "" {
			if home, err := os.UserHomeDir(); err == nil {
				cfgDir = filepath.Join(home, ".docker")
			}
		}
		if cfgDir != "" {
			dirs = append(dirs, filepath.Join(cfgDir, "cli-plugins"))
		}
		dirs = append(dirs, DefaultPluginDirs...)
	}
	var candidates []string
	for _, d := range dirs {
		p := filepath.Join(d, "docker-compose")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			candidates = append(candidates, p)
		}
	}
	if p, err := exec.LookPath("docker-compose"); err == nil {
		candidates = append(candidates, p)
	}
	if len(candidates) == 0 {
		return nil, fmt.Errorf("docker compose plugin not found (looked in %s and PATH)", strings.Join(dirs, ", "))
	}
	var firstErr error
	for _, p := range candidates {
		c := &Compose{Path: p}
		v, err := c.version(ctx)
		if err == nil {
			c.Version = v
			if versionLess(v, MinComposeVersion) {
				err = fmt.Errorf("%s is Docker Compose %s; deploy needs %s or newer", p, v, MinComposeVersion)
			}
		}
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

var versionRE = regexp.MustCompile(`v?(\d+)\.(\d+)\.(\d+)`)

// version runs `docker-compose version --short`.
func (c *Compose) version(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := c.run(ctx, "", &out, &out, "version", "--short"); err != nil {
		return "", fmt.Errorf("%s version: %w: %s", c.Path, err, lastLine(out.String()))
	}
	m := versionRE.FindStringSubmatch(out.String())
	if m == nil {
		return "", fmt.Errorf("%s version: cannot read a version in %q", c.Path, lastLine(out.String()))
	}
	return m[1] + "." + m[2] + "." + m[3], nil
}

// versionLess compares two x.y.z versions.
func versionLess(a, b string) bool {
	pa, pb := versionRE.FindStringSubmatch(a), versionRE.FindStringSubmatch(b)
	if pa == nil || pb == nil {
		return a < b
	}
	for i := 1; i <= 3; i++ {
		x, _ := strconv.Atoi(pa[i])
		y, _ := strconv.Atoi(pb[i])
		if x != y {
			return x < y
		}
	}
	return false
}

// run runs the plugin with args in dir, output to stdout and stderr.
func (c *Compose) run(ctx context.Context, dir string, stdout, stderr io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, c.Path, args...)
	cmd.Dir = dir
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = c.Env
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	// Compose must not take settings from the caller's COMPOSE_* variables
	// (another file, project or profile) or from a .env of the stack dir.
	env := cmd.Env[:0:0]
	for _, kv := range cmd.Env {
		if !strings.HasPrefix(kv, "COMPOSE_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "COMPOSE_DISABLE_ENV_FILE=1")
	cmd.WaitDelay = 10 * time.Second
	return cmd.Run()
}

// projectArgs are the global flags that select the stack in dir.
func projectArgs(dir string) []string {
	return []string{"--project-directory", dir, "--file", filepath.Join(dir, "compose.yaml"), "--progress", "plain"}
}

// Config runs `config --quiet` on the stack in dir: Compose's own
// validation of the file.
func (c *Compose) Config(ctx context.Context, dir string) error {
	var out bytes.Buffer
	args := append(projectArgs(dir), "config", "--quiet")
	if err := c.run(ctx, dir, &out, &out, args...); err != nil {
		return fmt.Errorf("docker compose config: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Build builds one service's image (profile build, for the notebook image).
func (c *Compose) Build(ctx context.Context, dir, service string, out io.Writer) error {
	args := append(projectArgs(dir), "--profile", "build", "build", service)
	if err := c.run(ctx, dir, out, out, args...); err != nil {
		return fmt.Errorf("docker compose build %s: %w", service, err)
	}
	return nil
}

// Up runs `up -d --wait --remove-orphans` with a timeout, progress to out.
func (c *Compose) Up(ctx context.Context, dir string, wait time.Duration, out io.Writer) error {
	args := append(projectArgs(dir), "up", "--detach", "--wait", "--wait-timeout", strconv.Itoa(int(wait.Seconds())), "--remove-orphans")
	if err := c.run(ctx, dir, out, out, args...); err != nil {
		return fmt.Errorf("docker compose up: %w", err)
	}
	return nil
}

// RemoveServices stops and removes the containers of the given services
// that exist (volumes stay) and returns those services, so that the next
// up creates them again.
func (c *Compose) RemoveServices(ctx context.Context, dir string, services []string, out io.Writer) ([]string, error) {
	var ps bytes.Buffer
	args := append(projectArgs(dir), "ps", "--all", "--format", "{{.Service}}")
	if err := c.run(ctx, dir, &ps, out, args...); err != nil {
		return nil, fmt.Errorf("docker compose ps: %w", err)
	}
	var present []string
	for _, line := range strings.Fields(ps.String()) {
		if slices.Contains(services, line) && !slices.Contains(present, line) {
			present = append(present, line)
		}
	}
	if len(present) == 0 {
		return nil, nil
	}
	slices.Sort(present)
	args = append(append(projectArgs(dir), "rm", "--stop", "--force"), present...)
	if err := c.run(ctx, dir, out, out, args...); err != nil {
		return nil, fmt.Errorf("docker compose rm %s: %w", strings.Join(present, " "), err)
	}
	return present, nil
}

// Down runs `down --remove-orphans`, with --volumes when asked. Without a
// compose.yaml in dir it stops the project by name.
func (c *Compose) Down(ctx context.Context, dir, project string, volumes bool, out io.Writer) error {
	args := projectArgs(dir)
	if _, err := os.Stat(filepath.Join(dir, "compose.yaml")); errors.Is(err, fs.ErrNotExist) {
		args = []string{"--project-name", project, "--progress", "plain"}
		dir = ""
	}
	args = append(args, "down", "--remove-orphans")
	if volumes {
		args = append(args, "--volumes")
	}
	if err := c.run(ctx, dir, out, out, args...); err != nil {
		return fmt.Errorf("docker compose down: %w", err)
	}
	return nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
