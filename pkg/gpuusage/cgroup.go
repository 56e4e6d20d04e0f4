package gpuusage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// maxCgroupFile bounds what is read of /proc/<pid>/cgroup (a few hundred
// bytes in practice).
const maxCgroupFile = 64 << 10

// ContainerIDFromCgroup returns the id of the Docker container a process
// runs in, from the contents of its /proc/<pid>/cgroup, or "" when it runs
// in none. Every line is "hierarchy:controllers:path", cgroup v1 (one line
// per hierarchy) or v2 ("0::path"). Docker puts a container in
//
//	/docker/<id>                                   cgroupfs driver (v1 and v2)
//	/system.slice/docker-<id>.scope                systemd driver (v1 and v2)
//	<parent>/<id>, <parent>/docker-<id>.scope      with --cgroup-parent
//	/user.slice/.../docker-<id>.scope              rootless Docker
//
// with <id> the 64 hex digits of the container id. The first path element,
// from the root, that is such an id wins: in nested containers that is the
// outer one, the container the host's Engine knows.
func ContainerIDFromCgroup(data []byte) string {
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		// hierarchy-ID:controller-list:cgroup-path; the path may hold ':'.
		parts := bytes.SplitN(line, []byte(":"), 3)
		if len(parts) != 3 {
			continue
		}
		for _, elem := range bytes.Split(parts[2], []byte("/")) {
			if id := containerIDElem(elem); id != "" {
				return id
			}
		}
	}
	return ""
}

// containerIDElem returns the container id a cgroup path element names:
// "<id>" or "docker-<id>.scope".
func containerIDElem(elem []byte) string {
	if rest, ok := bytes.CutPrefix(elem, []byte("docker-")); ok {
		if id, ok := bytes.CutSuffix(rest, []byte(".scope")); ok && isID(id) {
			return string(id)
		}
		return ""
	}
	if isID(elem) {
		return string(elem)
	}
	return ""
}

// isID reports whether b is a full container id: 64 lowercase hex digits.
func isID(b []byte) bool {
	if len(b) != 64 {
		return false
	}
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// errGone is returned for a process that exited before its cgroup was read.
var errGone = errors.New("process gone")

// cgroupContainer reads procRoot/<pid>/cgroup and returns the container id
// of the process ("" for none); errGone when the process has exited.
func cgroupContainer(procRoot string, pid uint32) (string, error) {
	path := filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10), "cgroup")
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", errGone
	}
	if err != nil {
		return "", fmt.Errorf("read cgroup of pid %d: %w", pid, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCgroupFile))
	if err != nil {
		// ESRCH: the process exited between open and read.
		if _, serr := os.Stat(filepath.Dir(path)); errors.Is(serr, fs.ErrNotExist) {
			return "", errGone
		}
		return "", fmt.Errorf("read cgroup of pid %d: %w", pid, err)
	}
	return ContainerIDFromCgroup(data), nil
}
