package gpuusage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/firetech/fireops/pkg/gpucheck"
)

// The metric families of the Collector (docs/metrics.md).
const (
	MetricMemory    = "fireops_gpu_container_memory_used_bytes"
	MetricSMUtil    = "fireops_gpu_container_sm_utilization_percent"
	MetricProcesses = "fireops_gpu_container_processes"
	MetricErrors    = "fireops_gpu_usage_errors_total"
)

// Error operations of the Collector besides OpCgroup and OpDocker: the
// NVML queries ("processes", "utilization": gpucheck.QueryError's Op) and
// these.
const (
	// OpDeviceCount: NVML could not count the GPUs (the gpu label is "").
	OpDeviceCount = "device_count"
	// OpHandle: NVML gave no handle for the GPU.
	OpHandle = "handle"
	// OpUUID: NVML gave no UUID for the GPU.
	OpUUID = "uuid"
	// OpPanic: a query panicked; the scrape went on without that GPU.
	OpPanic = "panic"
)

// initRetry is how long the Collector waits before it tries again to
// initialise NVML after a failure (a host without GPUs never succeeds;
// a driver installed later is picked up).
const initRetry = 5 * time.Minute

// CollectorOptions configure a Collector.
type CollectorOptions struct {
	// NVML is the NVML library; nil means the real one (gpucheck.Library()).
	NVML nvml.Interface
	// Resolver places the processes; nil means /proc and the Docker
	// Engine from the environment.
	Resolver *Resolver
	// Log receives the Collector's logs; nil discards them.
	Log *slog.Logger
	// Timeout bounds the Engine's answers in one scrape (default 5 s).
	Timeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Collector is a prometheus.Collector of GPU memory and SM utilisation per
// container and GPU, labelled with the hub user of a user server, for the
// daemon's /metrics. It queries NVML at each scrape (one scrape at a time)
// and keeps NVML initialised between scrapes; Close shuts it down.
type Collector struct {
	lib      nvml.Interface
	resolver *Resolver
	timeout  time.Duration
	now      func() time.Time
	closeFn  func() error

	mem, util, procs *prometheus.Desc
	errs             *prometheus.CounterVec

	mu       sync.Mutex
	log      onceLog
	inited   bool
	retryAt  time.Time
	lastSeen map[string]uint64 // newest utilisation sample per GPU UUID
}

// NewCollector returns a Collector; it loads nothing until the first
// scrape.
func NewCollector(o CollectorOptions) *Collector {
	c := &Collector{lib: o.NVML, resolver: o.Resolver, timeout: o.Timeout, now: o.Now, lastSeen: map[string]uint64{}}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c.log = onceLog{log: log, failing: map[string]bool{}}
	if c.lib == nil {
		c.lib = gpucheck.Library()
	}
	if c.timeout <= 0 {
		c.timeout = 5 * time.Second
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.resolver == nil {
		c.resolver = &Resolver{}
		if dc, err := NewDockerContainers(); err != nil {
			log.Warn("per-user GPU usage: no Docker client, containers stay unnamed", "err", err)
		} else {
			c.resolver.Containers, c.closeFn = dc, dc.Close
		}
	}
	if c.resolver.OnError == nil {
		c.resolver.OnError = c.resolverFailed
	}
	labels := []string{"gpu", "uuid", "container", "user"}
	c.mem = prometheus.NewDesc(MetricMemory,
		"GPU memory held by the processes of a container (container \"\": host processes) on a GPU; user is the hub user of a user server.", labels, nil)
	c.util = prometheus.NewDesc(MetricSMUtil,
		"SM (compute) utilisation of a GPU by the processes of a container, in percent, averaged over NVML's samples since the previous scrape.", labels, nil)
	c.procs = prometheus.NewDesc(MetricProcesses,
		"Compute processes of a container on a GPU.", labels, nil)
	c.errs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricErrors,
		Help: "Failures while measuring per-user GPU usage, by GPU (\"\" for host-wide) and operation (processes, utilization, handle, uuid, device_count, cgroup, docker, panic)."},
		[]string{"gpu", "op"})
	return c
}

// Describe sends the Collector's metric descriptions.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.mem
	ch <- c.util
	ch <- c.procs
	c.errs.Describe(ch)
}

// resolverFailed counts and logs a Resolver failure; called with c.mu held.
func (c *Collector) resolverFailed(op string, err error) {
	c.errs.WithLabelValues("", op).Inc()
	c.log.fail(op, slog.LevelWarn, "per-user GPU usage: cannot place a GPU process in its container", "op", op, "err", err)
}

// failed counts and logs a failure on GPU gpu ("" for host-wide).
func (c *Collector) failed(gpu, op string, err error) {
	c.errs.WithLabelValues(gpu, op).Inc()
	c.log.fail(gpu+"/"+op, slog.LevelWarn, "per-user GPU usage: NVML query failed", "gpu", gpu, "op", op, "err", err)
}

// recovered logs that the operations of GPU gpu answer again.
func (c *Collector) recovered(gpu string, ops ...string) {
	for _, op := range ops {
		c.log.ok(gpu+"/"+op, "per-user GPU usage: NVML query answers again", "gpu", gpu, "op", op)
	}
}

// Collect measures the GPU usage and sends it. A host without NVML sends
// nothing (logged once); an error on one GPU is counted and the others are
// still sent.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.errs.Collect(ch)
	defer func() {
		if r := recover(); r != nil {
			c.failed("", OpPanic, fmt.Errorf("%v", r))
		}
	}()
	if !c.initNVML() {
		return
	}
	procs := c.processes()
	if len(procs) == 0 {
		return
	}
	pids := make([]uint32, 0, len(procs))
	for _, p := range procs {
		pids = append(pids, p.PID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	owners := c.resolver.Owners(ctx, pids)
	cancel()

	type key struct{ gpu, uuid, container, user string }
	type sums struct {
		mem, util     float64
		hasMem, hasSM bool
		n             int
	}
	var keys []key
	by := map[key]*sums{}
	for _, p := range procs {
		o := owners[p.PID]
		name := o.Container
		if name == "" && o.ContainerID != "" {
			name = o.ContainerID[:min(12, len(o.ContainerID))]
		}
		k := key{strconv.Itoa(p.GPU), p.UUID, name, o.User}
		s := by[k]
		if s == nil {
			s = &sums{}
			by[k] = s
			keys = append(keys, k)
		}
		s.n++
		if p.MemoryUsedBytes != nil {
			s.mem += float64(*p.MemoryUsedBytes)
			s.hasMem = true
		}
		if p.SMUtilizationPercent != nil {
			s.util += *p.SMUtilizationPercent
			s.hasSM = true
		}
	}
	for _, k := range keys {
		s := by[k]
		lv := []string{k.gpu, k.uuid, k.container, k.user}
		ch <- prometheus.MustNewConstMetric(c.procs, prometheus.GaugeValue, float64(s.n), lv...)
		if s.hasMem {
			ch <- prometheus.MustNewConstMetric(c.mem, prometheus.GaugeValue, s.mem, lv...)
		}
		if s.hasSM {
			ch <- prometheus.MustNewConstMetric(c.util, prometheus.GaugeValue, s.util, lv...)
		}
	}
}

// initNVML initialises NVML once; after a failure it tries again after
// initRetry. It reports whether NVML is initialised.
func (c *Collector) initNVML() bool {
	if c.inited {
		return true
	}
	now := c.now()
	if now.Before(c.retryAt) {
		return false
	}
	c.retryAt = now.Add(initRetry)
	ret := c.lib.Init()
	if ret != nvml.SUCCESS {
		level := slog.LevelWarn
		if ret == nvml.ERROR_LIBRARY_NOT_FOUND {
			level = slog.LevelInfo // a host without NVIDIA GPUs
		}
		c.log.fail("init", level, "per-user GPU usage: NVML did not initialise, no GPU usage on /metrics (fireops gpu check says why)",
			"err", ret.Error(), "retry_every", initRetry.String())
		return false
	}
	c.log.ok("init", "per-user GPU usage: NVML initialised")
	c.inited = true
	return true
}

// processes lists the compute processes of every GPU. NVML errors are
// counted per GPU; a failed count shuts NVML down, to initialise it again
// at the next scrape (a driver reloaded under the daemon).
func (c *Collector) processes() []gpucheck.Process {
	n, ret := c.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		c.failed("", OpDeviceCount, ret)
		c.shutdown()
		c.retryAt = time.Time{}
		return nil
	}
	c.recovered("", OpDeviceCount)
	var all []gpucheck.Process
	seen := make(map[string]bool, n)
	for i := 0; i < n; i++ {
		all = append(all, c.device(i, seen)...)
	}
	for uuid := range c.lastSeen {
		if !seen[uuid] {
			delete(c.lastSeen, uuid)
		}
	}
	return all
}

// device lists the processes of GPU i; a panic in a query is counted and
// ends only this GPU's part of the scrape.
func (c *Collector) device(i int, seen map[string]bool) (procs []gpucheck.Process) {
	gpu := strconv.Itoa(i)
	defer func() {
		if r := recover(); r != nil {
			c.failed(gpu, OpPanic, fmt.Errorf("%v", r))
			procs = nil
		}
	}()
	dev, ret := c.lib.DeviceGetHandleByIndex(i)
	if ret != nvml.SUCCESS {
		c.failed(gpu, OpHandle, ret)
		return nil
	}
	uuid, ret := dev.GetUUID()
	if ret != nvml.SUCCESS {
		c.failed(gpu, OpUUID, ret)
		return nil
	}
	c.recovered(gpu, OpHandle, OpUUID)
	seen[uuid] = true
	procs, newest, err := gpucheck.ListProcesses(dev, i, uuid, c.lastSeen[uuid])
	c.lastSeen[uuid] = newest
	var qe *gpucheck.QueryError
	switch {
	case errors.As(err, &qe):
		c.failed(gpu, qe.Op, qe.Return)
		if qe.Op == "utilization" {
			c.recovered(gpu, "processes")
		}
	case err != nil:
		c.failed(gpu, "processes", err)
	default:
		c.recovered(gpu, "processes", "utilization")
	}
	c.log.log.Debug("GPU processes", "gpu", i, "processes", len(procs))
	return procs
}

// shutdown shuts NVML down if it is initialised.
func (c *Collector) shutdown() {
	if !c.inited {
		return
	}
	c.inited = false
	if ret := c.lib.Shutdown(); ret != nvml.SUCCESS {
		c.log.log.Debug("NVML shutdown failed", "err", ret.Error())
	}
}

// Close shuts NVML down and closes the Engine client the Collector made.
func (c *Collector) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shutdown()
	if c.closeFn != nil {
		return c.closeFn()
	}
	return nil
}
