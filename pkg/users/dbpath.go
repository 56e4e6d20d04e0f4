package users

import (
	"context"
	"fmt"
	"path"
	"path/filepath"
	"strings"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/engine"
	"github.com/firetech/fireops/pkg/exitcode"
)

// VolumeLocator finds where a Docker volume's data lies on this host.
type VolumeLocator interface {
	// Mountpoint returns the host folder of the named volume.
	Mountpoint(ctx context.Context, volume string) (string, error)
}

// DBPath returns the hub database file named by the config: hub.db_path
// when set, otherwise hub.db_file inside the volume hub.db_volume, found
// through vl (the Docker Engine's VolumeInspect). vl is only used, and may
// only then be nil, in the second case.
func DBPath(ctx context.Context, hub config.Hub, vl VolumeLocator) (string, error) {
	if hub.DBPath != "" {
		return hub.DBPath, nil
	}
	if hub.DBVolume == "" || hub.DBFile == "" {
		return "", exitcode.Usagef("set hub.db_path, or hub.db_volume and hub.db_file",
			"the config names no hub database")
	}
	clean := path.Clean("/" + filepath.ToSlash(hub.DBFile))
	if strings.Contains(hub.DBFile, "..") || clean == "/" {
		return "", exitcode.Usagef("give hub.db_file as a path inside the volume, like jupyterhub.sqlite",
			"invalid hub.db_file %q", hub.DBFile)
	}
	if vl == nil {
		return "", fmt.Errorf("hub database in volume %s: no Docker client", hub.DBVolume)
	}
	mp, err := vl.Mountpoint(ctx, hub.DBVolume)
	if err != nil {
		return "", err
	}
	return filepath.Join(mp, filepath.FromSlash(clean)), nil
}

// DockerVolumes is a VolumeLocator that asks the Docker Engine (the one
// DOCKER_HOST names, or the local socket).
type DockerVolumes struct{}

// Mountpoint returns the Mountpoint of VolumeInspect.
func (DockerVolumes) Mountpoint(ctx context.Context, volume string) (string, error) {
	cli, err := engine.Open()
	if err != nil {
		return "", err
	}
	defer cli.Close()
	v, err := cli.VolumeInspect(ctx, volume)
	switch {
	case cerrdefs.IsNotFound(err):
		return "", exitcode.New(exitcode.Usage, fmt.Errorf("hub database volume %q does not exist", volume),
			"check hub.db_volume (docker volume ls), or set hub.db_path")
	case engine.Unreachable(err):
		return "", engine.Error(fmt.Errorf("inspect volume %s: %w", volume, err), "; or set hub.db_path")
	case err != nil:
		return "", exitcode.New(exitcode.Failure, fmt.Errorf("inspect volume %s: %w", volume, err),
			"run as root or as a member of the docker group, or set hub.db_path")
	case v.Mountpoint == "":
		return "", exitcode.New(exitcode.Failure, fmt.Errorf("volume %s has no mountpoint on this host (driver %s)", volume, v.Driver),
			"set hub.db_path to the database file")
	}
	return v.Mountpoint, nil
}
