// Package gpuchecktest wires go-nvml's own mock servers so that every NVML
// call pkg/gpucheck makes gets a healthy answer. go-nvml's server mock
// pre-wires only names, UUIDs, memory, PCI and MIG, and panics on any other
// call whose ...Func field is not set; tests start from a healthy server
// and then replace one Func to inject one fault.
//
// It is for tests only and must never be imported by production code.
package gpuchecktest

import (
	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// HealthyDevice sets every Func gpucheck calls on d to a healthy answer:
// 40+index °C, only benign clock event reasons, no ECC errors, nothing
// retired or remapped (retired pages unsupported from Ampere on, row
// remapping unsupported before), persistence mode on, 1 GiB used, no
// compute process. The bus id comes from d.PciBusID.
func HealthyDevice(d *server.Device) {
	d.MemoryInfo.Used = 1 << 30
	d.MemoryInfo.Free = d.MemoryInfo.Total - d.MemoryInfo.Used
	d.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) {
		var pi nvml.PciInfo
		for i, c := range []byte(d.PciBusID) {
			pi.BusId[i] = int8(c)
		}
		return pi, nvml.SUCCESS
	}
	d.GetTemperatureFunc = func(s nvml.TemperatureSensors) (uint32, nvml.Return) {
		if s != nvml.TEMPERATURE_GPU {
			return 0, nvml.ERROR_INVALID_ARGUMENT
		}
		return uint32(40 + d.Index), nvml.SUCCESS
	}
	d.GetCurrentClocksEventReasonsFunc = func() (uint64, nvml.Return) {
		return nvml.ClocksEventReasonGpuIdle | nvml.ClocksEventReasonSwPowerCap, nvml.SUCCESS
	}
	d.GetTotalEccErrorsFunc = func(nvml.MemoryErrorType, nvml.EccCounterType) (uint64, nvml.Return) {
		return 0, nvml.SUCCESS
	}
	ampere := d.Config.Architecture >= nvml.DEVICE_ARCH_AMPERE
	d.GetRetiredPagesPendingStatusFunc = func() (nvml.EnableState, nvml.Return) {
		if ampere {
			return 0, nvml.ERROR_NOT_SUPPORTED
		}
		return nvml.FEATURE_DISABLED, nvml.SUCCESS
	}
	d.GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) {
		if !ampere {
			return 0, 0, false, false, nvml.ERROR_NOT_SUPPORTED
		}
		return 0, 0, false, false, nvml.SUCCESS
	}
	d.GetPersistenceModeFunc = func() (nvml.EnableState, nvml.Return) {
		return nvml.FEATURE_ENABLED, nvml.SUCCESS
	}
	SetProcesses(d, nil, nil)
}

// SetProcesses makes d list procs as its compute processes, and samples
// as their utilisation samples: GetProcessUtilization(since) answers the
// samples newer than since, or ERROR_NOT_FOUND when there is none, as
// NVML does.
func SetProcesses(d *server.Device, procs []nvml.ProcessInfo, samples []nvml.ProcessUtilizationSample) {
	d.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		return append([]nvml.ProcessInfo{}, procs...), nvml.SUCCESS
	}
	d.GetProcessUtilizationFunc = func(since uint64) ([]nvml.ProcessUtilizationSample, nvml.Return) {
		var out []nvml.ProcessUtilizationSample
		for _, s := range samples {
			if s.TimeStamp > since {
				out = append(out, s)
			}
		}
		if len(out) == 0 {
			return nil, nvml.ERROR_NOT_FOUND
		}
		return out, nvml.SUCCESS
	}
}

// Wire makes every device of s healthy and returns s.
func Wire(s *server.Server) *server.Server {
	for _, d := range s.Devices {
		HealthyDevice(d.(*server.Device))
	}
	return s
}

// HealthyDGXA100 returns go-nvml's mock DGX A100 (8 A100-SXM4-40GB, driver
// 550.54.15, CUDA 12.4), healthy.
func HealthyDGXA100() *server.Server {
	return Wire(dgxa100.New())
}

// Device returns GPU i of s as the mock device type, to set its Funcs.
func Device(s *server.Server, i int) *server.Device {
	return s.Devices[i].(*server.Device)
}
