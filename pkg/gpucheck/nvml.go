package gpucheck

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Deprecated NVML entry points that this package calls only when the loaded
// library still exports them: a call to a missing symbol kills the process.
const (
	symTemperature      = "nvmlDeviceGetTemperature"
	symEventReasons     = "nvmlDeviceGetCurrentClocksEventReasons"
	symThrottleReasons  = "nvmlDeviceGetCurrentClocksThrottleReasons"
	throttleReasonsMask = nvml.ClocksThrottleReasonHwSlowdown | nvml.ClocksEventReasonSwThermalSlowdown |
		nvml.ClocksThrottleReasonHwThermalSlowdown | nvml.ClocksThrottleReasonHwPowerBrakeSlowdown
)

// throttleNames names the clock event reasons that warn, in bit order.
var throttleNames = []struct {
	bit  uint64
	name string
}{
	{nvml.ClocksThrottleReasonHwSlowdown, "hw_slowdown"},
	{nvml.ClocksEventReasonSwThermalSlowdown, "sw_thermal_slowdown"},
	{nvml.ClocksThrottleReasonHwThermalSlowdown, "hw_thermal_slowdown"},
	{nvml.ClocksThrottleReasonHwPowerBrakeSlowdown, "hw_power_brake_slowdown"},
}

// initHint tells the admin what to do about a failed nvmlInit.
func initHint(ret nvml.Return) string {
	switch ret {
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return "libnvidia-ml.so.1 was not found: install the NVIDIA driver (on a machine without NVIDIA GPUs this check cannot pass)"
	case nvml.ERROR_DRIVER_NOT_LOADED:
		return "the NVIDIA kernel module is not loaded: run `nvidia-smi`, check `dmesg` for NVRM errors, reboot after a driver install"
	case nvml.ERROR_NO_PERMISSION:
		return "no access to /dev/nvidia*: run as root or as a user in the group that owns the device files"
	case nvml.ERROR_LIB_RM_VERSION_MISMATCH:
		return "the driver library and the kernel module differ in version: reboot after a driver upgrade"
	}
	return "run `nvidia-smi` to see the driver's own error, and check `dmesg` for NVRM or Xid messages"
}

// gpuHint is the advice for a GPU whose queries fail.
const gpuHint = "run `nvidia-smi -q -i <index>` and check `dmesg` for Xid errors; a lost GPU needs a reset or a reboot"

// probe holds the state of one NVML session.
type probe struct {
	lib  nvml.Interface
	th   Thresholds
	r    *Report
	log  *slog.Logger
	syms map[string]bool
	// procs are the compute processes found on the GPUs so far.
	procs []Process
}

// hasSymbol reports whether the loaded library exports name. It must only
// be called after a successful Init.
func (p *probe) hasSymbol(name string) bool {
	if ok, seen := p.syms[name]; seen {
		return ok
	}
	err := p.lib.Extensions().LookupSymbol(name)
	p.syms[name] = err == nil
	if err != nil {
		p.log.Debug("NVML symbol missing", "symbol", name, "err", err)
	}
	return err == nil
}

// probeNVML initialises NVML and adds the driver, count and per-GPU checks;
// it returns the compute processes on the GPUs. After a failed Init it adds
// the nvml failure and makes no other call.
func probeNVML(ctx context.Context, lib nvml.Interface, th Thresholds, r *Report, log *slog.Logger) []Process {
	ret := lib.Init()
	if ret != nvml.SUCCESS {
		log.Debug("NVML init failed", "return", int(ret), "err", ret.Error())
		r.add(Check{
			Name: CheckNVML, Status: Fail, Value: ret.Error(),
			Message: "NVML did not initialise: " + ret.Error(),
			Hint:    initHint(ret),
		})
		return nil
	}
	defer func() {
		if ret := lib.Shutdown(); ret != nvml.SUCCESS {
			log.Debug("NVML shutdown failed", "err", ret.Error())
		}
	}()
	p := &probe{lib: lib, th: th, r: r, log: log, syms: map[string]bool{}}

	nvmlCheck := Check{Name: CheckNVML, Status: Pass, Value: "initialised"}
	if v, ret := lib.SystemGetNVMLVersion(); ret == nvml.SUCCESS {
		r.NVMLVersion = v
		nvmlCheck.Value = "NVML " + v
	}
	r.add(nvmlCheck)

	p.checkDriver()

	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		r.add(Check{
			Name: CheckGPUCount, Status: Fail, Value: ret.Error(), Threshold: countThreshold(th.ExpectCount),
			Message: "NVML could not count the GPUs: " + ret.Error(), Hint: initHint(ret),
		})
		return nil
	}
	r.add(countCheck(n, th.ExpectCount))

	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			break
		}
		p.checkGPU(i)
	}
	return p.procs
}

// checkDriver adds the driver version check.
func (p *probe) checkDriver() {
	c := Check{Name: CheckDriver, Threshold: "any"}
	if p.th.MinDriver != "" {
		c.Threshold = ">= " + p.th.MinDriver
	}
	v, ret := p.lib.SystemGetDriverVersion()
	if ret != nvml.SUCCESS {
		c.Status, c.Value = Fail, ret.Error()
		c.Message = "NVML did not report the driver version: " + ret.Error()
		c.Hint = initHint(ret)
		p.r.add(c)
		return
	}
	p.r.DriverVersion = v
	c.Value = v
	if cuda, ret := p.lib.SystemGetCudaDriverVersion(); ret == nvml.SUCCESS {
		p.r.CUDADriverVersion = fmt.Sprintf("%d.%d", cuda/1000, cuda%1000/10)
		c.Value += " (CUDA " + p.r.CUDADriverVersion + ")"
	}
	c.Status = Pass
	if p.th.MinDriver != "" {
		cmp, err := compareVersions(v, p.th.MinDriver)
		switch {
		case err != nil:
			c.Status = Fail
			c.Message = fmt.Sprintf("cannot compare driver version %q: %v", v, err)
			c.Hint = "set gpu.min_driver to \"\" to skip this check"
		case cmp < 0:
			c.Status = Fail
			c.Message = fmt.Sprintf("driver %s is older than the required %s", v, p.th.MinDriver)
			c.Hint = "upgrade the NVIDIA driver (and reboot), or lower gpu.min_driver"
		}
	}
	p.r.add(c)
}

func countThreshold(expect int) string {
	if expect == 0 {
		return ">= 1"
	}
	return "= " + strconv.Itoa(expect)
}

// countCheck holds the number of GPUs against expect_count.
func countCheck(n, expect int) Check {
	c := Check{Name: CheckGPUCount, Status: Pass, Value: strconv.Itoa(n), Threshold: countThreshold(expect)}
	switch {
	case expect == 0 && n == 0:
		c.Status = Fail
		c.Message = "NVML sees no GPU"
		c.Hint = "check `nvidia-smi` and `lspci | grep -i nvidia`; a GPU that fell off the bus needs a reboot"
	case expect > 0 && n < expect:
		c.Status = Fail
		c.Message = fmt.Sprintf("%d of %d expected GPUs are missing", expect-n, expect)
		c.Hint = "check `nvidia-smi` and `lspci | grep -i nvidia`, and `dmesg` for Xid 79 (fallen off the bus); a reboot brings a lost GPU back"
	case expect > 0 && n > expect:
		c.Status = Fail
		c.Message = fmt.Sprintf("found %d GPUs, %d more than gpu.expect_count", n, n-expect)
		c.Hint = "set gpu.expect_count (or --expect-count) to the number of GPUs in this host"
	}
	return c
}

// gpuCheck starts a check about GPU g.
func gpuCheck(name string, g *GPU) Check {
	idx := g.Index
	return Check{Name: name, GPU: &idx, UUID: g.UUID}
}

// failed turns a failed query into a failing check.
func failed(c Check, what string, ret nvml.Return) Check {
	c.Status, c.Value = Fail, ret.Error()
	c.Message = fmt.Sprintf("NVML could not read the %s: %s", what, ret.Error())
	c.Hint = gpuHint
	return c
}

// notSupported fills c for a query the GPU does not support.
func notSupported(c Check) Check {
	c.Status, c.Value = Pass, "not supported"
	return c
}

// checkGPU queries GPU i and adds its checks.
func (p *probe) checkGPU(i int) {
	g := GPU{Index: i}
	dev, ret := p.lib.DeviceGetHandleByIndex(i)
	if ret != nvml.SUCCESS {
		p.r.GPUs = append(p.r.GPUs, g)
		p.r.add(failed(gpuCheck(CheckDevice, &g), "device handle", ret))
		return
	}
	// Identity: failures here are reported by the device check.
	var idErr []string
	if v, ret := dev.GetName(); ret == nvml.SUCCESS {
		g.Name = v
	} else {
		idErr = append(idErr, "name: "+ret.Error())
	}
	if v, ret := dev.GetUUID(); ret == nvml.SUCCESS {
		g.UUID = v
	} else {
		idErr = append(idErr, "uuid: "+ret.Error())
	}
	if v, ret := dev.GetPciInfo(); ret == nvml.SUCCESS {
		g.BusID = busID(v)
	} else {
		idErr = append(idErr, "pci info: "+ret.Error())
	}
	if v, ret := dev.GetMemoryInfo(); ret == nvml.SUCCESS {
		g.MemoryTotalBytes, g.MemoryUsedBytes = v.Total, v.Used
	} else {
		idErr = append(idErr, "memory: "+ret.Error())
	}
	dc := gpuCheck(CheckDevice, &g)
	dc.Status, dc.Value = Pass, strings.TrimSpace(g.Name+" "+g.BusID)
	if len(idErr) > 0 {
		dc.Status = Fail
		dc.Message = "NVML could not identify the GPU: " + strings.Join(idErr, ", ")
		dc.Hint = gpuHint
	}
	p.r.add(dc)

	p.r.add(p.temperature(dev, &g))
	p.r.add(p.throttle(dev, &g))
	for _, c := range p.ecc(dev, &g) {
		p.r.add(c)
	}
	p.r.add(p.retiredPages(dev, &g))
	p.r.add(p.remappedRows(dev, &g))
	p.r.add(p.persistence(dev, &g))
	p.r.add(p.mig(dev, &g))
	procs, _, err := ListProcesses(dev, i, g.UUID, 0)
	if err != nil {
		g.ProcessesError = err.Error()
		p.log.Debug("NVML process query failed", "gpu", i, "err", err)
	}
	p.procs = append(p.procs, procs...)
	p.r.GPUs = append(p.r.GPUs, g)
}

// busID turns NVML's C string into a Go string, falling back to the
// numeric fields.
func busID(pi nvml.PciInfo) string {
	var b strings.Builder
	for _, c := range pi.BusId {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	if b.Len() > 0 {
		return b.String()
	}
	return fmt.Sprintf("%08x:%02x:%02x.0", pi.Domain, pi.Bus, pi.Device)
}

func (p *probe) temperature(dev nvml.Device, g *GPU) Check {
	c := gpuCheck(CheckTemperature, g)
	c.Threshold = fmt.Sprintf("<= %d°C", p.th.MaxTemperatureC)
	if !p.hasSymbol(symTemperature) {
		c.Status, c.Value = Warn, "unavailable"
		c.Message = "this driver's NVML has no " + symTemperature
		c.Hint = "check the temperature with `nvidia-smi -q -d TEMPERATURE`; report this so fireops can use the newer call"
		return c
	}
	t, ret := dev.GetTemperature(nvml.TEMPERATURE_GPU)
	switch ret {
	case nvml.SUCCESS:
	case nvml.ERROR_NOT_SUPPORTED:
		return notSupported(c)
	default:
		return failed(c, "temperature", ret)
	}
	ti := int(t)
	g.TemperatureC = &ti
	c.Status, c.Value = Pass, fmt.Sprintf("%d°C", ti)
	if ti > p.th.MaxTemperatureC {
		c.Status = Fail
		c.Message = fmt.Sprintf("GPU is at %d°C, above the limit of %d°C", ti, p.th.MaxTemperatureC)
		c.Hint = "check the fans and the airflow (`nvidia-smi -q -d TEMPERATURE,PERFORMANCE`), or raise gpu.max_temperature_c"
	}
	return c
}

func (p *probe) throttle(dev nvml.Device, g *GPU) Check {
	c := gpuCheck(CheckThrottle, g)
	c.Threshold = "no thermal, power-brake or hardware slowdown"
	var (
		reasons uint64
		ret     nvml.Return
	)
	switch {
	case p.hasSymbol(symEventReasons):
		reasons, ret = dev.GetCurrentClocksEventReasons()
	case p.hasSymbol(symThrottleReasons):
		reasons, ret = dev.GetCurrentClocksThrottleReasons()
	default:
		c.Status, c.Value = Warn, "unavailable"
		c.Message = "this driver's NVML reports no clock event reasons"
		c.Hint = "check with `nvidia-smi -q -d PERFORMANCE`"
		return c
	}
	switch ret {
	case nvml.SUCCESS:
	case nvml.ERROR_NOT_SUPPORTED:
		return notSupported(c)
	default:
		return failed(c, "clock event reasons", ret)
	}
	g.ThrottleReasons = []string{}
	for _, t := range throttleNames {
		if reasons&t.bit != 0 {
			g.ThrottleReasons = append(g.ThrottleReasons, t.name)
		}
	}
	c.Status, c.Value = Pass, "none"
	if reasons&throttleReasonsMask != 0 {
		c.Status, c.Value = Warn, strings.Join(g.ThrottleReasons, ",")
		c.Message = "the GPU is slowing its clocks down to protect itself: " + c.Value
		c.Hint = "check cooling and power (`nvidia-smi -q -d PERFORMANCE,TEMPERATURE,POWER`)"
	}
	return c
}

// ecc returns the uncorrected (fail) and corrected (warn) ECC checks.
func (p *probe) ecc(dev nvml.Device, g *GPU) []Check {
	unc, cor := gpuCheck(CheckECCUncorrected, g), gpuCheck(CheckECCCorrected, g)
	unc.Threshold, cor.Threshold = "0", "0"
	var counts ECCCounts
	for _, q := range []struct {
		errType nvml.MemoryErrorType
		counter nvml.EccCounterType
		dst     *uint64
		what    string
	}{
		{nvml.MEMORY_ERROR_TYPE_UNCORRECTED, nvml.VOLATILE_ECC, &counts.VolatileUncorrected, "volatile uncorrected ECC errors"},
		{nvml.MEMORY_ERROR_TYPE_UNCORRECTED, nvml.AGGREGATE_ECC, &counts.AggregateUncorrected, "aggregate uncorrected ECC errors"},
		{nvml.MEMORY_ERROR_TYPE_CORRECTED, nvml.VOLATILE_ECC, &counts.VolatileCorrected, "volatile corrected ECC errors"},
		{nvml.MEMORY_ERROR_TYPE_CORRECTED, nvml.AGGREGATE_ECC, &counts.AggregateCorrected, "aggregate corrected ECC errors"},
	} {
		v, ret := dev.GetTotalEccErrors(q.errType, q.counter)
		switch ret {
		case nvml.SUCCESS:
			*q.dst = v
		case nvml.ERROR_NOT_SUPPORTED:
			// ECC is off or the GPU has none (consumer GPUs).
			unc, cor = notSupported(unc), notSupported(cor)
			unc.Value, cor.Value = "ECC off or not supported", "ECC off or not supported"
			return []Check{unc, cor}
		default:
			return []Check{failed(unc, q.what, ret), failed(cor, q.what, ret)}
		}
	}
	g.ECC = &counts
	unc.Status = Pass
	unc.Value = fmt.Sprintf("volatile %d, aggregate %d", counts.VolatileUncorrected, counts.AggregateUncorrected)
	if counts.VolatileUncorrected > 0 || counts.AggregateUncorrected > 0 {
		unc.Status = Fail
		unc.Message = "the GPU memory had uncorrectable ECC errors"
		unc.Hint = "drain the GPU, check `nvidia-smi -q -d ECC,ROW_REMAPPER,PAGE_RETIREMENT` and `dmesg` for Xid 48/63/64; reset the GPU; replace it if errors return"
	}
	cor.Status = Pass
	cor.Value = fmt.Sprintf("volatile %d, aggregate %d", counts.VolatileCorrected, counts.AggregateCorrected)
	if counts.VolatileCorrected > 0 || counts.AggregateCorrected > 0 {
		cor.Status = Warn
		cor.Message = "the GPU memory had correctable ECC errors"
		cor.Hint = "watch the count (`nvidia-smi -q -d ECC`); a growing count announces a failing memory"
	}
	return []Check{unc, cor}
}

// retiredPages checks for pages retired and waiting for a reset (GPUs
// before Ampere; Ampere and newer remap rows instead).
func (p *probe) retiredPages(dev nvml.Device, g *GPU) Check {
	c := gpuCheck(CheckRetiredPages, g)
	c.Threshold = "none pending"
	st, ret := dev.GetRetiredPagesPendingStatus()
	switch ret {
	case nvml.SUCCESS:
	case nvml.ERROR_NOT_SUPPORTED:
		return notSupported(c)
	default:
		return failed(c, "retired pages status", ret)
	}
	pending := st == nvml.FEATURE_ENABLED
	g.RetiredPagesPending = &pending
	c.Status, c.Value = Pass, "none pending"
	if pending {
		c.Status, c.Value = Fail, "pending"
		c.Message = "retired memory pages take effect only after a GPU reset"
		c.Hint = "drain the GPU and reset it (`nvidia-smi -r -i <index>`) or reboot"
	}
	return c
}

// remappedRows checks row remapping (Ampere and newer).
func (p *probe) remappedRows(dev nvml.Device, g *GPU) Check {
	c := gpuCheck(CheckRemappedRows, g)
	c.Threshold = "no failure, none pending"
	cor, unc, pending, failure, ret := dev.GetRemappedRows()
	switch ret {
	case nvml.SUCCESS:
	case nvml.ERROR_NOT_SUPPORTED:
		return notSupported(c)
	default:
		return failed(c, "remapped rows", ret)
	}
	g.RemappedRows = &RemappedRows{Corrected: cor, Uncorrected: unc, Pending: pending, Failure: failure}
	c.Status = Pass
	c.Value = fmt.Sprintf("correctable %d, uncorrectable %d", cor, unc)
	switch {
	case failure:
		c.Status, c.Value = Fail, c.Value+", remapping failed"
		c.Message = "row remapping failed: the GPU ran out of spare rows"
		c.Hint = "take the GPU out of service and have it replaced (RMA)"
	case pending:
		c.Status, c.Value = Fail, c.Value+", remapping pending"
		c.Message = "a row remapping is pending and takes effect only after a GPU reset"
		c.Hint = "drain the GPU and reset it (`nvidia-smi -r -i <index>`) or reboot"
	}
	return c
}

func (p *probe) persistence(dev nvml.Device, g *GPU) Check {
	c := gpuCheck(CheckPersistence, g)
	c.Threshold = "enabled"
	st, ret := dev.GetPersistenceMode()
	switch ret {
	case nvml.SUCCESS:
	case nvml.ERROR_NOT_SUPPORTED:
		return notSupported(c)
	default:
		return failed(c, "persistence mode", ret)
	}
	on := st == nvml.FEATURE_ENABLED
	g.PersistenceMode = &on
	c.Status, c.Value = Pass, "enabled"
	if !on {
		c.Status, c.Value = Warn, "disabled"
		c.Message = "without persistence mode the driver unloads between jobs, so every start is slow"
		c.Hint = "enable the nvidia-persistenced service (`systemctl enable --now nvidia-persistenced`)"
	}
	return c
}

// mig reports the MIG mode; it passes, unless a mode change waits for a
// reset.
func (p *probe) mig(dev nvml.Device, g *GPU) Check {
	c := gpuCheck(CheckMIG, g)
	cur, pend, ret := dev.GetMigMode()
	switch ret {
	case nvml.SUCCESS:
	case nvml.ERROR_NOT_SUPPORTED:
		return notSupported(c)
	default:
		return failed(c, "MIG mode", ret)
	}
	name := func(m int) string {
		if m == nvml.DEVICE_MIG_ENABLE {
			return "enabled"
		}
		return "disabled"
	}
	g.MIGMode = name(cur)
	c.Status, c.Value = Pass, g.MIGMode
	if cur != pend {
		c.Status, c.Value = Warn, fmt.Sprintf("%s (%s after reset)", g.MIGMode, name(pend))
		c.Message = "a MIG mode change waits for a GPU reset"
		c.Hint = "drain the GPU and reset it (`nvidia-smi -r -i <index>`) or reboot"
	}
	return c
}
