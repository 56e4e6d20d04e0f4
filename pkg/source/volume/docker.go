package volume

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	dockerengine "github.com/firetech/fireops/pkg/engine"
)

// HelperImage is the zero-byte image fireops imports (from an empty tar)
// for its helper containers. It holds no file and no program: the helpers
// are created, never started.
const HelperImage = "fireops-volume-helper:1"

// Labels fireops puts on what it creates in the Engine, so that tests and
// operators can find leftovers (`docker ps -a --filter label=...`).
const (
	// LabelHelper marks helper containers (value "read", "write") and the
	// helper image (value "image").
	LabelHelper = "org.firetech.fireops.helper"
	// LabelVolume names the volume a helper container mounts.
	LabelVolume = "org.firetech.fireops.volume"
	// LabelStaging marks a staging volume; its value is the restore target.
	LabelStaging = "org.firetech.fireops.staging"
	// LabelScratch marks a scratch volume of verify --level restore-test;
	// its value is the snapshot being tested.
	LabelScratch = "org.firetech.fireops.scratch"
)

// helperMount is where a helper container mounts its volume.
const helperMount = "/v"

// cleanupTimeout bounds the removal of a helper container or staging
// volume, which runs also after the caller's context was cancelled.
const cleanupTimeout = 30 * time.Second

// ErrEngine is wrapped by errors that mean the Docker Engine could not be
// reached at all: [dockerengine.ErrUnreachable].
var ErrEngine = dockerengine.ErrUnreachable

// Client talks to the Docker Engine named by the environment (DOCKER_HOST,
// by default the local socket). It is safe for concurrent use.
type Client struct {
	cli *client.Client
	log *slog.Logger
}

// NewClient returns a Client for the Engine of the environment; the API
// version is negotiated on first use. log may be nil.
func NewClient(log *slog.Logger) (*Client, error) {
	cli, err := dockerengine.Open()
	if err != nil {
		return nil, fmt.Errorf("volume: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{cli: cli, log: log}, nil
}

// Close releases the client's connections.
func (c *Client) Close() error { return c.cli.Close() }

// Host returns the Engine's address.
func (c *Client) Host() string { return c.cli.DaemonHost() }

// local reports whether the Engine is reached through a local socket, the
// precondition for its volumes' mountpoints to be folders of this host.
func (c *Client) local() bool { return strings.HasPrefix(c.Host(), "unix://") }

// wrap names the failed operation and turns a connection failure into an
// error wrapping ErrEngine.
func (c *Client) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if dockerengine.Unreachable(err) {
		return fmt.Errorf("volume: %s: %w at %s: %v", op, ErrEngine, c.Host(), err)
	}
	return fmt.Errorf("volume: %s: %w", op, err)
}

// Discover returns the names of the volumes matching one of the include
// globs and none of the exclude globs ([path.Match] syntax), sorted. The
// Engine's name filter (a regular expression search) gets each include
// glob translated to an anchored expression, so "jupyterhub-data" does not
// also bring "old-jupyterhub-data-2"; every name is then matched against
// the globs here, which have the last word.
func (c *Client) Discover(ctx context.Context, include, exclude []string) ([]string, error) {
	if len(include) == 0 {
		return nil, nil
	}
	args := filters.NewArgs()
	for _, g := range include {
		re, err := globRegexp(g)
		if err != nil {
			return nil, fmt.Errorf("volume: include pattern %q: %w", g, err)
		}
		args.Add("name", re)
	}
	for _, g := range exclude {
		if _, err := path.Match(g, ""); err != nil {
			return nil, fmt.Errorf("volume: exclude pattern %q: %w", g, err)
		}
	}
	resp, err := c.cli.VolumeList(ctx, volume.ListOptions{Filters: args})
	if err != nil {
		return nil, c.wrap("list volumes", err)
	}
	var names []string
	for _, v := range resp.Volumes {
		if v == nil || !matchAny(include, v.Name) || matchAny(exclude, v.Name) {
			continue
		}
		names = append(names, v.Name)
	}
	sort.Strings(names)
	return slices.Compact(names), nil
}

func matchAny(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// globRegexp translates a path.Match glob into an anchored regular
// expression for the Engine's name filter. A character class becomes "any
// one character": the expression may match more names than the glob (the
// globs are applied again to every name), never fewer.
func globRegexp(glob string) (string, error) {
	if _, err := path.Match(glob, ""); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(glob); i++ {
		switch ch := glob[i]; ch {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '\\':
			i++
			b.WriteString(regexp.QuoteMeta(glob[i : i+1]))
		case '[':
			for i < len(glob) && glob[i] != ']' {
				if glob[i] == '\\' {
					i++
				}
				i++
			}
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(ch)))
		}
	}
	b.WriteString("$")
	if _, err := regexp.Compile(b.String()); err != nil {
		return "", err
	}
	return b.String(), nil
}

// inspect returns a volume's facts; a missing volume is an error wrapping
// ErrGone.
func (c *Client) inspect(ctx context.Context, name string) (volume.Volume, error) {
	v, err := c.cli.VolumeInspect(ctx, name)
	if cerrdefs.IsNotFound(err) {
		return v, fmt.Errorf("volume: %s: %w", name, ErrGone)
	}
	return v, c.wrap("inspect "+name, err)
}

// Exists reports whether the volume exists.
func (c *Client) Exists(ctx context.Context, name string) (bool, error) {
	_, err := c.inspect(ctx, name)
	if errors.Is(err, ErrGone) {
		return false, nil
	}
	return err == nil, err
}

// Ensure creates the volume when it does not exist.
func (c *Client) Ensure(ctx context.Context, name string) error {
	ok, err := c.Exists(ctx, name)
	if err != nil || ok {
		return err
	}
	return c.createVolume(ctx, name, nil)
}

// hostFolder returns the volume's folder on this host, or why it cannot be
// read there: fireops must be root, the Engine local, the volume of the
// "local" driver without options (a volume with type/device options is an
// NFS or bind mount that is only mounted while a container uses it, so
// its Mountpoint would look empty) and its Mountpoint a folder here.
func (c *Client) hostFolder(v volume.Volume) (string, error) {
	switch {
	case os.Geteuid() != 0:
		return "", errors.New("fireops does not run as root")
	case !c.local():
		return "", fmt.Errorf("the Docker Engine at %s is not reached through a local socket", c.Host())
	case v.Driver != "local":
		return "", fmt.Errorf("volume %s uses the %q driver", v.Name, v.Driver)
	case len(v.Options) > 0:
		return "", fmt.Errorf("volume %s has driver options (%s): its data is mounted only while a container uses it", v.Name, optionKeys(v.Options))
	case v.Mountpoint == "":
		return "", fmt.Errorf("volume %s has no mountpoint", v.Name)
	}
	fi, err := os.Stat(v.Mountpoint)
	if err != nil {
		return "", fmt.Errorf("volume %s: mountpoint not reachable on this host: %w", v.Name, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("volume %s: mountpoint %s is not a folder", v.Name, v.Mountpoint)
	}
	return v.Mountpoint, nil
}

func optionKeys(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// HostPath returns the host path of file (relative, slash-separated)
// inside the volume, when fireops can reach the volume's folder directly
// (see the package documentation, "Read paths").
func (c *Client) HostPath(ctx context.Context, vol, file string) (string, error) {
	v, err := c.inspect(ctx, vol)
	if err != nil {
		return "", err
	}
	dir, err := c.hostFolder(v)
	if err != nil {
		return "", fmt.Errorf("volume: %s: its folder cannot be reached: %w", vol, err)
	}
	rel := path.Clean("/" + file)
	if rel == "/" {
		return "", fmt.Errorf("volume: %s: %q is not a file inside the volume", vol, file)
	}
	return dir + rel, nil
}

var (
	imageMu    sync.Mutex
	imageReady = map[string]bool{} // by Engine address
)

// helperImage makes sure HelperImage exists, importing it from an empty
// tar when it does not. Nothing is pulled.
func (c *Client) helperImage(ctx context.Context) error {
	imageMu.Lock()
	defer imageMu.Unlock()
	if imageReady[c.Host()] {
		return nil
	}
	_, err := c.cli.ImageInspect(ctx, HelperImage)
	if err == nil {
		imageReady[c.Host()] = true
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return c.wrap("inspect image "+HelperImage, err)
	}
	empty := bytes.NewReader(make([]byte, 1024)) // a tar holding nothing: its end marker
	rc, err := c.cli.ImageImport(ctx, image.ImportSource{Source: empty, SourceName: "-"}, HelperImage, image.ImportOptions{
		Message: "fireops: empty image for volume helper containers, which are never started",
		Changes: []string{"LABEL " + LabelHelper + "=image"},
	})
	if err != nil {
		return c.wrap("import the helper image "+HelperImage, err)
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			break
		} else if err != nil {
			return c.wrap("import the helper image "+HelperImage, err)
		}
		if msg.Error != "" {
			return fmt.Errorf("volume: import the helper image %s: %s", HelperImage, msg.Error)
		}
	}
	imageReady[c.Host()] = true
	c.log.Debug("helper image imported", "image", HelperImage)
	return nil
}

// helper is a created, never started container with one volume mounted at
// helperMount.
type helper struct {
	c  *Client
	id string
}

// newHelper creates a helper container for vol, read-only unless write.
// The container's User stays empty (root): the Engine then reads and
// writes files with their own owners. NoCopy keeps the Engine from
// copying image content into an empty volume (the image has none anyway).
//
// The Engine creates a volume that a container names and that does not
// exist: callers inspect the volume first, and this is why.
func (c *Client) newHelper(ctx context.Context, vol string, write bool) (*helper, error) {
	if err := c.helperImage(ctx); err != nil {
		return nil, err
	}
	role := "read"
	if write {
		role = "write"
	}
	resp, err := c.cli.ContainerCreate(ctx, &container.Config{
		Image:           HelperImage,
		Cmd:             []string{"/fireops-helper-is-never-started"},
		Labels:          map[string]string{LabelHelper: role, LabelVolume: vol},
		NetworkDisabled: true,
	}, &container.HostConfig{
		NetworkMode: "none",
		Mounts: []mount.Mount{{
			Type: mount.TypeVolume, Source: vol, Target: helperMount, ReadOnly: !write,
			VolumeOptions: &mount.VolumeOptions{NoCopy: true},
		}},
	}, nil, nil, "fireops-helper-"+randomHex(6))
	if err != nil {
		return nil, c.wrap("create helper container for "+vol, err)
	}
	c.log.Debug("helper container created", "container", resp.ID[:12], "volume", vol, "role", role)
	return &helper{c: c, id: resp.ID}, nil
}

// remove removes the helper container (never its volume), also after ctx
// was cancelled. It is safe on a nil helper.
func (h *helper) remove() error {
	if h == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	err := h.c.cli.ContainerRemove(ctx, h.id, container.RemoveOptions{Force: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return h.c.wrap("remove helper container "+h.id[:12], err)
	}
	return nil
}

// Users returns the names of the running (or paused) containers that mount
// the volume.
func (c *Client) Users(ctx context.Context, vol string) ([]string, error) {
	cs, err := c.running(ctx, vol)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(cs))
	for _, ct := range cs {
		names = append(names, containerName(ct))
	}
	sort.Strings(names)
	return names, nil
}

func (c *Client) running(ctx context.Context, vol string) ([]container.Summary, error) {
	cs, err := c.cli.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("volume", vol))})
	if err != nil {
		return nil, c.wrap("list the containers using "+vol, err)
	}
	var out []container.Summary
	for _, ct := range cs {
		for _, m := range ct.Mounts {
			if m.Type == mount.TypeVolume && m.Name == vol {
				out = append(out, ct)
				break
			}
		}
	}
	return out, nil
}

func containerName(ct container.Summary) string {
	if len(ct.Names) > 0 {
		return strings.TrimPrefix(ct.Names[0], "/")
	}
	return ct.ID[:12]
}

// pause pauses the running containers that use vol and returns the
// function that unpauses them again; resume runs with its own context, so
// it works after ctx was cancelled (SIGTERM) and must always be called.
// Containers that were paused already are left alone.
func (c *Client) pause(ctx context.Context, vol string) (resume func() error, err error) {
	cs, err := c.running(ctx, vol)
	if err != nil {
		return func() error { return nil }, err
	}
	var paused []container.Summary
	resume = func() error {
		rctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		var errs []error
		for _, ct := range paused {
			if err := c.cli.ContainerUnpause(rctx, ct.ID); err != nil {
				errs = append(errs, c.wrap("unpause "+containerName(ct), err))
				continue
			}
			c.log.Info("container unpaused", "container", containerName(ct), "volume", vol)
		}
		paused = nil
		return errors.Join(errs...)
	}
	for _, ct := range cs {
		if ct.State != container.StateRunning {
			continue
		}
		if err := c.cli.ContainerPause(ctx, ct.ID); err != nil {
			return resume, c.wrap("pause "+containerName(ct), err)
		}
		paused = append(paused, ct)
		c.log.Info("container paused while its volume is read", "container", containerName(ct), "volume", vol)
	}
	return resume, nil
}

// createVolume creates a volume with labels.
func (c *Client) createVolume(ctx context.Context, name string, labels map[string]string) error {
	_, err := c.cli.VolumeCreate(ctx, volume.CreateOptions{Name: name, Driver: "local", Labels: labels})
	return c.wrap("create volume "+name, err)
}

// Remove removes a volume; one that does not exist is not an error.
func (c *Client) Remove(name string) error { return c.removeVolume(name) }

// removeVolume removes a volume fireops created, also after ctx was
// cancelled; a volume already gone is not an error.
func (c *Client) removeVolume(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	err := c.cli.VolumeRemove(ctx, name, true)
	if err != nil && !cerrdefs.IsNotFound(err) {
		return c.wrap("remove volume "+name, err)
	}
	return nil
}

// NewScratchVolume creates an empty volume for verify --level restore-test
// and returns its name and the function that removes it (call it also when
// the restore failed).
func (c *Client) NewScratchVolume(ctx context.Context, snapshot string) (string, func() error, error) {
	name := "fireops-scratch-" + randomHex(6)
	if snapshot == "" {
		snapshot = "restore-test"
	}
	if err := c.createVolume(ctx, name, map[string]string{LabelScratch: snapshot}); err != nil {
		return "", nil, err
	}
	return name, func() error { return c.removeVolume(name) }, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
