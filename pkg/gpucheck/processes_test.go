package gpucheck

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"

	"github.com/firetech/fireops/pkg/gpucheck/gpuchecktest"
)

func u64(v uint64) *uint64      { return &v }
func f64(v float64) *float64    { return &v }
func u32p(v uint32) *uint32     { return &v }
func procJSON(p Process) string { b, _ := json.Marshal(p); return string(b) }

// TestListProcesses runs ListProcesses on one GPU of go-nvml's mock DGX
// A100 with the process list and utilisation samples NVML could answer.
func TestListProcesses(t *testing.T) {
	const gib = 1 << 30
	for _, tc := range []struct {
		name    string
		procs   []nvml.ProcessInfo
		samples []nvml.ProcessUtilizationSample
		since   uint64
		// utilRet, when set, replaces the utilisation answer.
		utilRet nvml.Return
		procRet nvml.Return
		want    []Process
		newest  uint64
		errOp   string
	}{
		{name: "no process", want: []Process{}},
		{
			name: "memory and averaged utilisation",
			procs: []nvml.ProcessInfo{
				{Pid: 100, UsedGpuMemory: 2 * gib, GpuInstanceId: invalidInstance, ComputeInstanceId: invalidInstance},
				{Pid: 200, UsedGpuMemory: gib, GpuInstanceId: invalidInstance, ComputeInstanceId: invalidInstance},
			},
			samples: []nvml.ProcessUtilizationSample{
				{Pid: 100, TimeStamp: 10, SmUtil: 90}, // older than since: not counted
				{Pid: 100, TimeStamp: 20, SmUtil: 40},
				{Pid: 100, TimeStamp: 30, SmUtil: 60},
				{Pid: 999, TimeStamp: 40, SmUtil: 5}, // a process gone since
			},
			since: 10,
			want: []Process{
				{PID: 100, GPU: 2, UUID: "GPU-x", MemoryUsedBytes: u64(2 * gib), SMUtilizationPercent: f64(50)},
				{PID: 200, GPU: 2, UUID: "GPU-x", MemoryUsedBytes: u64(gib), SMUtilizationPercent: f64(0)},
			},
			newest: 40,
		},
		{
			name:  "memory not available, MIG instance",
			procs: []nvml.ProcessInfo{{Pid: 7, UsedGpuMemory: valueNotAvailable, GpuInstanceId: 1, ComputeInstanceId: 0}},
			// MIG: per-process utilisation is not supported.
			utilRet: nvml.ERROR_NOT_SUPPORTED,
			since:   5,
			want:    []Process{{PID: 7, GPU: 2, UUID: "GPU-x", GPUInstance: u32p(1), ComputeInstance: u32p(0)}},
			newest:  5,
		},
		{
			name:    "no sample since: idle",
			procs:   []nvml.ProcessInfo{{Pid: 7, UsedGpuMemory: 5, GpuInstanceId: invalidInstance}},
			samples: []nvml.ProcessUtilizationSample{{Pid: 7, TimeStamp: 3, SmUtil: 80}},
			since:   3,
			want:    []Process{{PID: 7, GPU: 2, UUID: "GPU-x", MemoryUsedBytes: u64(5), SMUtilizationPercent: f64(0)}},
			newest:  3,
		},
		{
			name:    "utilisation query fails: processes without it",
			procs:   []nvml.ProcessInfo{{Pid: 7, UsedGpuMemory: 5, GpuInstanceId: invalidInstance}},
			utilRet: nvml.ERROR_UNKNOWN,
			since:   9,
			want:    []Process{{PID: 7, GPU: 2, UUID: "GPU-x", MemoryUsedBytes: u64(5)}},
			newest:  9,
			errOp:   "utilization",
		},
		{name: "process query fails", procRet: nvml.ERROR_GPU_IS_LOST, since: 9, newest: 9, errOp: "processes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := gpuchecktest.HealthyDGXA100()
			d := gpuchecktest.Device(s, 2)
			gpuchecktest.SetProcesses(d, tc.procs, tc.samples)
			if tc.utilRet != 0 {
				d.GetProcessUtilizationFunc = func(uint64) ([]nvml.ProcessUtilizationSample, nvml.Return) { return nil, tc.utilRet }
			}
			if tc.procRet != 0 {
				d.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, tc.procRet }
			}
			got, newest, err := ListProcesses(d, 2, "GPU-x", tc.since)
			var qe *QueryError
			switch {
			case tc.errOp == "" && err != nil:
				t.Fatalf("err = %v", err)
			case tc.errOp != "" && (!errors.As(err, &qe) || qe.Op != tc.errOp || qe.GPU != 2):
				t.Fatalf("err = %v, want a %s QueryError on gpu 2", err, tc.errOp)
			}
			if newest != tc.newest {
				t.Errorf("newest = %d, want %d", newest, tc.newest)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d processes, want %d: %v", len(got), len(tc.want), got)
			}
			for i := range got {
				if !reflect.DeepEqual(got[i], tc.want[i]) {
					t.Errorf("process %d = %s, want %s", i, procJSON(got[i]), procJSON(tc.want[i]))
				}
			}
		})
	}
}

// fakeOwners places pids by a table.
type fakeOwners map[uint32]Owner

func (f fakeOwners) Owners(_ context.Context, pids []uint32) map[uint32]Owner {
	out := map[uint32]Owner{}
	for _, p := range pids {
		if o, ok := f[p]; ok {
			out[p] = o
		}
	}
	return out
}

// TestRunListsProcessesPerUser: the report of a run groups the processes
// of every GPU by hub user, users by name first, then the rest; a GPU
// whose process query fails says so and does not hide the others.
func TestRunListsProcessesPerUser(t *testing.T) {
	s := healthyServer()
	proc := func(pid uint32, mem uint64) nvml.ProcessInfo {
		return nvml.ProcessInfo{Pid: pid, UsedGpuMemory: mem, GpuInstanceId: invalidInstance, ComputeInstanceId: invalidInstance}
	}
	gpuchecktest.SetProcesses(dev(s, 0), []nvml.ProcessInfo{proc(30, 300), proc(10, 100)},
		[]nvml.ProcessUtilizationSample{{Pid: 30, TimeStamp: 1, SmUtil: 70}})
	gpuchecktest.SetProcesses(dev(s, 5), []nvml.ProcessInfo{proc(20, 200), proc(40, 400)}, nil)
	dev(s, 6).GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.ERROR_UNKNOWN }
	owners := fakeOwners{
		10: {ContainerID: "c-bob", Container: "jupyter-bob", User: "bob"},
		20: {ContainerID: "c-alice", Container: "jupyter-alice--exp", User: "alice", Server: "exp"},
		30: {ContainerID: "c-bob", Container: "jupyter-bob", User: "bob"},
		// 40: a host process
	}
	r, err := Run(context.Background(), Options{Thresholds: defaultThresholds(), NVML: s, Engine: nvidiaEngine(), Owners: owners})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		user string
		mem  uint64
		pids []uint32
	}
	var got []row
	for _, u := range r.Users {
		rw := row{user: u.User, mem: u.MemoryUsedBytes}
		for _, p := range u.Processes {
			rw.pids = append(rw.pids, p.PID)
		}
		got = append(got, rw)
	}
	want := []row{{"alice", 200, []uint32{20}}, {"bob", 400, []uint32{10, 30}}, {"", 400, []uint32{40}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("users = %+v, want %+v", got, want)
	}
	bob := r.Users[1].Processes[1]
	if bob.GPU != 0 || bob.UUID != r.GPUs[0].UUID || bob.Container != "jupyter-bob" || bob.SMUtilizationPercent == nil || *bob.SMUtilizationPercent != 70 {
		t.Errorf("bob's pid 30 = %s", procJSON(bob))
	}
	if r.GPUs[6].ProcessesError != "gpu 6: NVML processes query: ERROR_UNKNOWN" || r.GPUs[5].ProcessesError != "" {
		t.Errorf("processes errors: gpu 6 %q, gpu 5 %q", r.GPUs[6].ProcessesError, r.GPUs[5].ProcessesError)
	}
	if !r.OK {
		t.Errorf("a failed process query failed the check: %s", r.Summary())
	}

	// Without NVML there is no process and users is [] in JSON.
	r, err = Run(context.Background(), Options{Thresholds: defaultThresholds(), NVML: &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }}, Engine: nvidiaEngine(), Owners: owners})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(r)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if users, ok := m["users"].([]any); !ok || len(users) != 0 {
		t.Errorf(`"users" = %#v, want []`, m["users"])
	}
}
