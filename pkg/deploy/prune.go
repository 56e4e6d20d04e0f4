package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/volume"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/users"
)

// Prune actions.
const (
	PruneRemoved     = "removed"
	PruneWouldRemove = "would remove"
	PruneKept        = "kept"
	PruneFailed      = "failed"
)

// Archive tells whether a verified snapshot holds a volume.
type Archive interface {
	// Find returns where a verified snapshot holds part
	// ("volume:jupyterhub-user-ada"), or an error that says why none does.
	Find(ctx context.Context, part string) (ArchiveRef, error)
}

// ArchiveRef names the verified snapshot that holds a volume.
type ArchiveRef struct {
	Destination string `json:"destination"`
	Snapshot    string `json:"snapshot"`
	Level       string `json:"level"`
}

// PruneOptions configure Prune.
type PruneOptions struct {
	// DryRun lists what would go and removes nothing.
	DryRun bool
	// Volumes also removes the volumes of deleted users (needs Users and
	// Archive).
	Volumes bool
	// Users returns the names of every user the hub knows (its users and
	// NativeAuthenticator's sign-ups, pending ones included).
	Users func(ctx context.Context) ([]string, error)
	// VolumeName maps a user name to their volume's name (pkg/users'
	// VolumeName: DockerSpawner's escaping).
	VolumeName func(user string) string
	// Archive finds the verified snapshot holding a volume.
	Archive Archive
	// Log receives what prune does; nil discards it.
	Log *slog.Logger
	// Render changes the render that says which tags are current (tests:
	// the stub images of the end-to-end test).
	Render RenderOptions
}

// PrunedImage is what prune did (or would do) with one image tag.
type PrunedImage struct {
	// Ref is the tag (firetech-jupyterhub:0123456789ab).
	Ref     string    `json:"ref"`
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Size    int64     `json:"size"`
	// Action is removed, would remove, kept or failed.
	Action string `json:"action"`
	// Reason says why it is kept (current, previous, used by a container)
	// or why its removal failed.
	Reason string `json:"reason,omitempty"`
}

// PrunedVolume is what prune did (or would do) with one deleted user's
// volume.
type PrunedVolume struct {
	Name   string `json:"name"`
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
	// Archive is the verified snapshot that holds it, when one does.
	Archive *ArchiveRef `json:"archive,omitempty"`
	// Containers are the deleted user's stopped server containers that
	// mount it: removed with it (or, in a dry run, that would be).
	Containers []string `json:"containers,omitempty"`
}

// PruneResult is what Prune did.
type PruneResult struct {
	DryRun  bool           `json:"dry_run"`
	Images  []PrunedImage  `json:"images"`
	Volumes []PrunedVolume `json:"volumes,omitempty"`
}

// pruneEngine is what Prune needs from the Engine (a fake in tests).
type pruneEngine interface {
	images(ctx context.Context, repo string) ([]imageInfo, error)
	containers(ctx context.Context) ([]containerInfo, error)
	volumes(ctx context.Context, prefix string) ([]string, error)
	removeImage(ctx context.Context, ref string) error
	removeVolume(ctx context.Context, name string) error
	removeContainer(ctx context.Context, id string) error
}

// imageInfo is one tag of a repository.
type imageInfo struct {
	Ref     string
	ID      string
	Created time.Time
	Size    int64
}

// containerInfo is one container, running or not.
type containerInfo struct {
	ID      string
	Name    string
	ImageID string
	Volumes []string
	// Running is true unless the container is created, exited or dead.
	Running bool
	// Compose says a Compose project owns it (the stack's services).
	Compose bool
}

// serverOf reports whether c is a stopped-or-running server container of
// the user whose escaped name is esc (DockerSpawner's "jupyter-<esc>",
// "jupyter-<esc>--<server>"), not a Compose service.
func (c containerInfo) serverOf(esc string) bool {
	got, ok := users.ServerContainerUser(c.Name)
	return ok && !c.Compose && got == esc
}

// Prune removes the tags of the hub and notebook images (stack.hub.image,
// stack.notebook.image) that are neither the current one (what the config
// renders now), nor the previous one (the newest other tag, to roll back
// to), nor used by any container (running or stopped: DockerSpawner keeps
// stopped user servers). With Volumes it also removes the volumes of
// users the hub no longer knows, once a verified snapshot holds them and
// no container mounts them but that user's stopped server containers
// (which the hub keeps after its user was deleted): those go first, and
// the image tags they alone used go in the same run. It never forces a
// removal.
//
// The error is nil when everything that could go went; a removal that
// failed is exit code 1, a verify that found a snapshot holding a volume
// damaged is exit code 3. The result lists everything looked at.
func Prune(ctx context.Context, cfg *config.Config, opts PruneOptions) (*PruneResult, error) {
	if opts.Volumes && (opts.Users == nil || opts.Archive == nil || opts.VolumeName == nil) {
		return nil, errors.New("prune: volumes need Users, VolumeName and Archive")
	}
	st, err := Render(cfg, opts.Render)
	if err != nil {
		return nil, err
	}
	eng, err := NewEngine()
	if err != nil {
		return nil, &PreflightError{Msg: "no Docker client: " + oneLine(err), Hint: hintEngine}
	}
	defer eng.Close()
	if _, err := eng.Info(ctx); err != nil {
		msg, hint := engineInfoFailed(eng.Host(), err)
		return nil, &PreflightError{Msg: msg, Hint: hint}
	}
	current := map[string]string{
		cfg.Stack.Hub.Image:      st.HubImage,
		cfg.Stack.Notebook.Image: st.NotebookImage,
	}
	return prune(ctx, eng, current, opts)
}

// prune is Prune on an engine; current maps each repository to its
// current tag.
func prune(ctx context.Context, eng pruneEngine, current map[string]string, opts PruneOptions) (*PruneResult, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res := &PruneResult{DryRun: opts.DryRun, Images: []PrunedImage{}}
	ctrs, err := eng.containers(ctx)
	if err != nil {
		return nil, err
	}
	// Users first: an unreachable hub must stop prune before it removed
	// anything.
	var known map[string]bool
	if opts.Volumes {
		names, err := opts.Users(ctx)
		if err != nil {
			return nil, fmt.Errorf("prune --volumes: list the hub's users: %w", err)
		}
		if len(names) == 0 {
			return nil, exitcode.New(exitcode.Failure, errors.New("prune --volumes: the hub knows no users"),
				"refusing to treat every user's volume as a deleted user's: check hub.db_volume/hub.db_path and that `fireops users list` shows the users")
		}
		known = map[string]bool{}
		for _, n := range names {
			known[opts.VolumeName(n)] = true
		}
	}
	var failures, checks []string

	// Volumes first: a deleted user's stopped server container that goes
	// with its volume no longer keeps its image tag.
	gone := map[string]bool{} // containers removed (dry run: that would be)
	if opts.Volumes {
		vols, err := pruneVolumes(ctx, eng, ctrs, known, opts, log, gone)
		res.Volumes = vols.list
		failures, checks = append(failures, vols.failures...), append(checks, vols.checks...)
		if err != nil {
			return res, err
		}
	}

	repos := make([]string, 0, len(current))
	for r := range current {
		repos = append(repos, r)
	}
	sort.Strings(repos)
	usedBy := map[string][]string{}
	for _, c := range ctrs {
		if !gone[c.Name] {
			usedBy[c.ImageID] = append(usedBy[c.ImageID], c.Name)
		}
	}
	for _, repo := range repos {
		imgs, err := eng.images(ctx, repo)
		if err != nil {
			return res, err
		}
		for _, p := range planImages(current[repo], imgs, usedBy) {
			if p.Action == PruneWouldRemove && !opts.DryRun {
				if err := eng.removeImage(ctx, p.Ref); err != nil {
					p.Action, p.Reason = PruneFailed, oneLine(err)
					failures = append(failures, p.Ref)
				} else {
					p.Action = PruneRemoved
					log.Info("removed image", "image", p.Ref)
				}
			}
			res.Images = append(res.Images, p)
		}
	}

	switch {
	case len(failures) > 0:
		return res, exitcode.New(exitcode.Failure, fmt.Errorf("prune: could not remove %s", strings.Join(failures, ", ")),
			"see the reason in the listing; a volume or image that a container took meanwhile stays")
	case len(checks) > 0:
		return res, exitcode.New(exitcode.CheckFailed, fmt.Errorf("prune: the snapshots holding %s (their data damaged, or the newest one gone from a destination: a rollback) failed their verify: kept", strings.Join(checks, ", ")),
			"run `fireops verify --all --level hashes` and see docs/backup.md; take a new snapshot of the volume with `fireops snapshot --only volume:NAME`")
	}
	return res, nil
}

// prunedVolumes is what pruneVolumes did.
type prunedVolumes struct {
	list             []PrunedVolume
	failures, checks []string
}

// pruneVolumes decides about, and unless opts.DryRun removes, the volumes
// of users the hub does not know (known holds the volume names of those
// it does). A volume mounted by a running container, or by any container
// but its user's stopped servers, stays; otherwise it goes once a verified
// snapshot holds it, after its user's stopped server containers, whose
// names it adds to gone.
func pruneVolumes(ctx context.Context, eng pruneEngine, ctrs []containerInfo, known map[string]bool,
	opts PruneOptions, log *slog.Logger, gone map[string]bool) (prunedVolumes, error) {
	var out prunedVolumes
	names, err := eng.volumes(ctx, UserVolumePrefix)
	if err != nil {
		return out, err
	}
	mountedBy := map[string][]containerInfo{}
	for _, c := range ctrs {
		for _, v := range c.Volumes {
			mountedBy[v] = append(mountedBy[v], c)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		if known[name] {
			continue
		}
		v := PrunedVolume{Name: name, Action: PruneKept}
		esc := strings.TrimPrefix(name, UserVolumePrefix)
		var holders []string
		var servers []containerInfo
		for _, c := range mountedBy[name] {
			switch {
			case c.Running:
				holders = append(holders, c.Name+" (running)")
			case c.serverOf(esc):
				servers = append(servers, c)
			default:
				holders = append(holders, c.Name)
			}
		}
		if len(holders) > 0 {
			v.Reason = "mounted by container " + strings.Join(holders, ", ")
			out.list = append(out.list, v)
			continue
		}
		sort.Slice(servers, func(i, j int) bool { return servers[i].Name < servers[j].Name })
		var serverNames []string
		for _, c := range servers {
			serverNames = append(serverNames, c.Name)
		}
		ref, err := opts.Archive.Find(ctx, "volume:"+name)
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		if err != nil {
			v.Reason = oneLine(err)
			if len(servers) > 0 {
				v.Reason += "; the deleted user's stopped server container " + strings.Join(serverNames, ", ") + " stays with it"
			}
			if exitcode.Code(err) == exitcode.CheckFailed || isCheckFailed(err) {
				out.checks = append(out.checks, name)
			}
			out.list = append(out.list, v)
			continue
		}
		v.Archive = &ref
		v.Containers = serverNames
		v.Action, v.Reason = PruneWouldRemove, fmt.Sprintf("user deleted; snapshot %s on %s holds it (verify --level %s passed)", ref.Snapshot, ref.Destination, ref.Level)
		if len(servers) > 0 {
			v.Reason += "; with the deleted user's stopped server container " + strings.Join(serverNames, ", ")
		}
		if opts.DryRun {
			for _, c := range servers {
				gone[c.Name] = true
			}
			out.list = append(out.list, v)
			continue
		}
		failed := false
		for _, c := range servers {
			if err := eng.removeContainer(ctx, c.ID); err != nil {
				v.Action, v.Reason, failed = PruneFailed, oneLine(err), true
				out.failures = append(out.failures, name)
				break
			}
			gone[c.Name] = true
			log.Info("removed a deleted user's stopped server container", "container", c.Name, "volume", name)
		}
		if !failed {
			if err := eng.removeVolume(ctx, name); err != nil {
				v.Action, v.Reason = PruneFailed, oneLine(err)
				out.failures = append(out.failures, name)
			} else {
				v.Action = PruneRemoved
				log.Info("removed volume", "volume", name, "snapshot", ref.Snapshot, "destination", ref.Destination)
			}
		}
		out.list = append(out.list, v)
	}
	return out, nil
}

// checkFailed is implemented by errors that say a verify found damage
// (pkg/backup's NotHeldError).
type checkFailed interface{ IsCheckFailed() bool }

func isCheckFailed(err error) bool {
	var cf checkFailed
	return errors.As(err, &cf) && cf.IsCheckFailed()
}

// planImages decides about every tag of one repository: the current tag,
// the previous one (the newest other tag) and every tag whose image a
// container uses are kept; the others would be removed.
func planImages(current string, imgs []imageInfo, usedBy map[string][]string) []PrunedImage {
	sorted := slices.Clone(imgs)
	// Newest first; the tag breaks ties so the order is stable.
	slices.SortFunc(sorted, func(a, b imageInfo) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Ref, b.Ref)
	})
	previous := ""
	for _, im := range sorted {
		if im.Ref != current {
			previous = im.Ref
			break
		}
	}
	out := make([]PrunedImage, 0, len(sorted))
	for _, im := range sorted {
		p := PrunedImage{Ref: im.Ref, ID: im.ID, Created: im.Created, Size: im.Size, Action: PruneKept}
		switch by := usedBy[im.ID]; {
		case im.Ref == current:
			p.Reason = "current"
		case im.Ref == previous:
			p.Reason = "previous"
		case len(by) > 0:
			p.Reason = "used by container " + strings.Join(by, ", ")
		default:
			p.Action = PruneWouldRemove
		}
		out = append(out, p)
	}
	return out
}

// images lists the tags of repo ("name" or "registry/name") with their
// image's id and creation time.
func (e *Engine) images(ctx context.Context, repo string) ([]imageInfo, error) {
	list, err := e.cli.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", repo))})
	if err != nil {
		return nil, fmt.Errorf("list images of %s: %w", repo, err)
	}
	var out []imageInfo
	for _, im := range list {
		created := time.Unix(im.Created, 0).UTC()
		// The inspect's creation time has nanoseconds: two builds in one
		// second still order.
		if insp, err := e.cli.ImageInspect(ctx, im.ID); err == nil {
			if t, err := time.Parse(time.RFC3339Nano, insp.Created); err == nil {
				created = t.UTC()
			}
		} else if !cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("inspect image %s: %w", im.ID, err)
		}
		for _, tag := range im.RepoTags {
			if strings.HasPrefix(tag, repo+":") {
				out = append(out, imageInfo{Ref: tag, ID: im.ID, Created: created, Size: im.Size})
			}
		}
	}
	return out, nil
}

// containers lists every container, running or not, with the volumes it
// mounts.
func (e *Engine) containers(ctx context.Context) ([]containerInfo, error) {
	list, err := e.cli.ContainerList(ctx, container.ListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]containerInfo, 0, len(list))
	for _, c := range list {
		_, compose := c.Labels[labelProject]
		ci := containerInfo{ID: c.ID, Name: c.ID[:12], ImageID: c.ImageID, Compose: compose,
			Running: !(users.ServerContainer{State: c.State}).Stopped()}
		if len(c.Names) > 0 {
			ci.Name = strings.TrimPrefix(c.Names[0], "/")
		}
		for _, m := range c.Mounts {
			if m.Type == "volume" && m.Name != "" {
				ci.Volumes = append(ci.Volumes, m.Name)
			}
		}
		out = append(out, ci)
	}
	return out, nil
}

// volumes lists the volumes whose names start with prefix.
func (e *Engine) volumes(ctx context.Context, prefix string) ([]string, error) {
	// The Engine's name filter matches anywhere in the name: filter again.
	list, err := e.cli.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("name", prefix))})
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	var out []string
	for _, v := range list.Volumes {
		if strings.HasPrefix(v.Name, prefix) {
			out = append(out, v.Name)
		}
	}
	return out, nil
}

// removeImage removes one tag (the image goes with its last tag), never
// forced: an image a container uses stays.
func (e *Engine) removeImage(ctx context.Context, ref string) error {
	if _, err := e.cli.ImageRemove(ctx, ref, image.RemoveOptions{PruneChildren: true}); err != nil {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	return nil
}

// removeContainer removes a stopped container, never forced: one that
// runs stays. The volumes it mounts stay too.
func (e *Engine) removeContainer(ctx context.Context, id string) error {
	if err := e.cli.ContainerRemove(ctx, id, container.RemoveOptions{}); err != nil {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	return nil
}

// removeVolume removes a volume, never forced: a volume in use stays.
func (e *Engine) removeVolume(ctx context.Context, name string) error {
	if err := e.cli.VolumeRemove(ctx, name, false); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	return nil
}
