package gpuusage

import (
	"strings"
	"testing"
)

const (
	idA = "74acf8cfb5efb17995b6993b2cc0f7c2863546c8a00d18224c9405b33f8ba426"
	idB = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

// TestContainerIDFromCgroup reads the /proc/<pid>/cgroup forms Docker
// gives a container's processes, and the forms of processes in none.
func TestContainerIDFromCgroup(t *testing.T) {
	for _, tc := range []struct {
		name, cgroup, want string
	}{
		{"v1 cgroupfs", "12:memory:/docker/" + idA + "\n11:cpu,cpuacct:/docker/" + idA + "\n1:name=systemd:/docker/" + idA + "\n0::/docker/" + idA + "\n", idA},
		{"v1 systemd driver", "12:pids:/system.slice/docker-" + idA + ".scope\n1:name=systemd:/system.slice/docker-" + idA + ".scope\n", idA},
		{"v2 systemd driver", "0::/system.slice/docker-" + idA + ".scope\n", idA},
		{"v2 cgroupfs driver", "0::/docker/" + idA + "\n", idA},
		{"v2 process in a sub-cgroup", "0::/system.slice/docker-" + idA + ".scope/init.scope\n", idA},
		{"rootless, systemd", "0::/user.slice/user-1000.slice/user@1000.service/user.slice/docker-" + idA + ".scope\n", idA},
		{"cgroup parent", "0::/gpu-users.slice/docker-" + idA + ".scope\n", idA},
		{"cgroup parent, cgroupfs", "4:memory:/gpu-users/" + idA + "\n", idA},
		{"nested: the outer container", "0::/docker/" + idA + "/docker/" + idB + "\n", idA},
		{"no trailing newline", "0::/docker/" + idA, idA},
		{"v1 with the controllers not in the container first", "13:misc:/\n12:memory:/docker/" + idA + "\n", idA},
		{"host process, v2", "0::/user.slice/user-1000.slice/session-3.scope\n", ""},
		{"host process, v1", "12:memory:/user.slice\n1:name=systemd:/init.scope\n0::/init.scope\n", ""},
		{"docker daemon itself", "0::/system.slice/docker.service\n", ""},
		{"short id", "0::/docker/" + idA[:12] + "\n", ""},
		{"upper case is no id", "0::/docker/" + strings.ToUpper(idA) + "\n", ""},
		{"not a scope", "0::/system.slice/docker-" + idA + ".service\n", ""},
		{"65 hex digits", "0::/docker/" + idA + "0\n", ""},
		{"other runtime's scope", "0::/kubepods.slice/cri-containerd-" + idA + ".scope\n", ""},
		{"path with a colon", "0::/odd:name/docker-" + idA + ".scope\n", idA},
		{"garbage", "not a cgroup line\n\n:::\n", ""},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ContainerIDFromCgroup([]byte(tc.cgroup)); got != tc.want {
				t.Errorf("ContainerIDFromCgroup(%q) = %q, want %q", tc.cgroup, got, tc.want)
			}
		})
	}
}
