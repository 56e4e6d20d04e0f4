package gpucheck

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

var (
	libOnce sync.Once
	lib     nvml.Interface
)

// Library returns the process's one handle on the real NVML library.
// Every user in a process (the gpu check, the daemon's GPU usage
// collector) must share it: go-nvml counts Init and Shutdown per handle,
// and a second handle would load the library again and rewrite go-nvml's
// global symbol table while the first one is in use.
func Library() nvml.Interface {
	libOnce.Do(func() { lib = nvml.New() })
	return lib
}

// Process is one compute process on a GPU, as NVML lists it, and where it
// runs once an OwnerResolver has said so.
type Process struct {
	// PID is the process id in the host's PID namespace.
	PID uint32 `json:"pid"`
	// GPU is the NVML index of the GPU the process uses.
	GPU int `json:"gpu"`
	// UUID is that GPU's UUID.
	UUID string `json:"uuid"`
	// MemoryUsedBytes is the GPU memory the process holds; nil when NVML
	// cannot tell (it says "not available", e.g. for another user's
	// process without the rights to see it).
	MemoryUsedBytes *uint64 `json:"memory_used_bytes"`
	// SMUtilizationPercent is the process's share of the GPU's streaming
	// multiprocessors (compute), averaged over NVML's samples in the
	// window asked for; nil when the GPU cannot tell (MIG, older GPUs).
	// A process without samples in the window was idle: 0.
	SMUtilizationPercent *float64 `json:"sm_utilization_percent"`
	// GPUInstance and ComputeInstance are the MIG instance the process
	// runs in; nil when MIG is off.
	GPUInstance     *uint32 `json:"gpu_instance,omitempty"`
	ComputeInstance *uint32 `json:"compute_instance,omitempty"`
	Owner
}

// Owner is where a process runs: its container and, for a user server,
// the hub user. The zero Owner is a process outside any container (or one
// whose container could not be found).
type Owner struct {
	// ContainerID is the full id of the container the process runs in.
	ContainerID string `json:"container_id,omitempty"`
	// Container is the container's name, without Docker's leading "/";
	// empty when the Engine could not be asked.
	Container string `json:"container,omitempty"`
	// User is the hub user whose server the container is.
	User string `json:"user,omitempty"`
	// Server is the name of a named server of User ("" for the default one).
	Server string `json:"server,omitempty"`
}

// OwnerResolver says where processes run. pkg/gpuusage has the real one
// (cgroups and the Docker Engine); it must return soon after ctx ends.
type OwnerResolver interface {
	// Owners returns the owner of each pid it could place; a pid missing
	// from the map runs outside any container, or could not be placed.
	Owners(ctx context.Context, pids []uint32) map[uint32]Owner
}

// UserProcesses are the GPU processes of one hub user.
type UserProcesses struct {
	// User is the hub user; "" collects the processes outside user
	// servers (on the host, in other containers, or not placed).
	User string `json:"user"`
	// MemoryUsedBytes is the GPU memory the processes hold, over all GPUs
	// (the processes whose memory NVML could tell).
	MemoryUsedBytes uint64 `json:"memory_used_bytes"`
	// Processes are the user's processes, by GPU and pid.
	Processes []Process `json:"processes"`
}

// QueryError is a failed NVML query about one GPU.
type QueryError struct {
	// GPU is the GPU's NVML index.
	GPU int
	// Op names the query: "processes" or "utilization".
	Op string
	// Return is NVML's answer.
	Return nvml.Return
}

// Error says which query failed on which GPU.
func (e *QueryError) Error() string {
	return fmt.Sprintf("gpu %d: NVML %s query: %s", e.GPU, e.Op, e.Return.Error())
}

const (
	// invalidInstance is what NVML puts in a process's MIG instance ids
	// when MIG is off.
	invalidInstance = 0xFFFFFFFF
	// valueNotAvailable is NVML_VALUE_NOT_AVAILABLE in an unsigned long long.
	valueNotAvailable = ^uint64(0)
)

// ListProcesses lists the compute processes on dev (NVML index gpu, uuid)
// with the memory each holds and its SM utilisation averaged over NVML's
// samples newer than since (a timestamp in NVML's microseconds; 0: every
// sample NVML keeps). It also returns the newest sample's timestamp, to
// pass as since next time (since itself when there was none).
//
// A failed process query returns no processes and a *QueryError. A failed
// utilisation query (other than "not supported", which leaves the
// utilisation nil) returns the processes without utilisation and a
// *QueryError: the caller may use both.
func ListProcesses(dev nvml.Device, gpu int, uuid string, since uint64) ([]Process, uint64, error) {
	infos, ret := dev.GetComputeRunningProcesses()
	if ret != nvml.SUCCESS {
		return nil, since, &QueryError{GPU: gpu, Op: "processes", Return: ret}
	}
	procs := make([]Process, 0, len(infos))
	for _, pi := range infos {
		p := Process{PID: pi.Pid, GPU: gpu, UUID: uuid}
		if pi.UsedGpuMemory != valueNotAvailable {
			m := pi.UsedGpuMemory
			p.MemoryUsedBytes = &m
		}
		if pi.GpuInstanceId != invalidInstance {
			gi, ci := pi.GpuInstanceId, pi.ComputeInstanceId
			p.GPUInstance, p.ComputeInstance = &gi, &ci
		}
		procs = append(procs, p)
	}
	if len(procs) == 0 {
		return procs, since, nil
	}
	samples, ret := dev.GetProcessUtilization(since)
	switch ret {
	case nvml.SUCCESS, nvml.ERROR_NOT_FOUND:
		// NOT_FOUND: no sample newer than since, no process ran a kernel.
	case nvml.ERROR_NOT_SUPPORTED:
		return procs, since, nil
	default:
		return procs, since, &QueryError{GPU: gpu, Op: "utilization", Return: ret}
	}
	type acc struct {
		sum float64
		n   int
	}
	byPID := make(map[uint32]acc, len(procs))
	newest := since
	for _, s := range samples {
		if s.TimeStamp <= since {
			continue
		}
		a := byPID[s.Pid]
		a.sum += float64(s.SmUtil)
		a.n++
		byPID[s.Pid] = a
		newest = max(newest, s.TimeStamp)
	}
	for i := range procs {
		u := 0.0
		if a := byPID[procs[i].PID]; a.n > 0 {
			u = a.sum / float64(a.n)
		}
		procs[i].SMUtilizationPercent = &u
	}
	return procs, newest, nil
}

// GroupByUser groups processes by their owner's hub user: the users by
// name, then the processes outside user servers (user ""); each group's
// processes by GPU and pid. It never returns nil.
func GroupByUser(procs []Process) []UserProcesses {
	by := map[string]*UserProcesses{}
	for _, p := range procs {
		u := by[p.User]
		if u == nil {
			u = &UserProcesses{User: p.User}
			by[p.User] = u
		}
		if p.MemoryUsedBytes != nil {
			u.MemoryUsedBytes += *p.MemoryUsedBytes
		}
		u.Processes = append(u.Processes, p)
	}
	out := make([]UserProcesses, 0, len(by))
	for _, u := range by {
		slices.SortFunc(u.Processes, func(a, b Process) int {
			return cmp.Or(cmp.Compare(a.GPU, b.GPU), cmp.Compare(a.PID, b.PID))
		})
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b UserProcesses) int {
		// "" last: the users first, then the rest.
		if (a.User == "") != (b.User == "") {
			if a.User == "" {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.User, b.User)
	})
	return out
}

// resolveOwners fills in the owner of every process through r.
func resolveOwners(ctx context.Context, r OwnerResolver, procs []Process) {
	if r == nil || len(procs) == 0 {
		return
	}
	pids := make([]uint32, 0, len(procs))
	seen := make(map[uint32]bool, len(procs))
	for _, p := range procs {
		if !seen[p.PID] {
			seen[p.PID] = true
			pids = append(pids, p.PID)
		}
	}
	owners := r.Owners(ctx, pids)
	for i := range procs {
		procs[i].Owner = owners[procs[i].PID]
	}
}
