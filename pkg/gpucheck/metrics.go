package gpucheck

import (
	"strconv"

	"github.com/firetech/fireops/pkg/metrics"
)

// TextfileName is the node-exporter textfile the gpu check writes.
const TextfileName = "fireops_gpu_check.prom"

// JobMetrics is what a gpu check run publishes: Metrics in TextfileName,
// on every run (it has no success file).
func (r *Report) JobMetrics() metrics.JobMetrics {
	return metrics.JobMetrics{Job: "gpu_check", RunFile: TextfileName, Run: r.Metrics()}
}

// Metrics returns the report as Prometheus metric families: the overall
// result, one 0/1 sample per check, and per-GPU temperature, memory and
// ECC counters. Checks about a GPU carry gpu (index) and uuid labels; host
// checks carry neither.
func (r *Report) Metrics() []metrics.Family {
	gpuLabels := func(g GPU) []metrics.Label {
		return metrics.L("gpu", strconv.Itoa(g.Index), "uuid", g.UUID, "name", g.Name)
	}
	ok := metrics.Family{
		Name: "fireops_gpu_check_ok", Type: metrics.Gauge,
		Help: "Whether a GPU check passed (1; warnings included) or failed (0), per check and GPU.",
	}
	warn := metrics.Family{
		Name: "fireops_gpu_check_warning", Type: metrics.Gauge,
		Help: "Whether a GPU check ended with a warning (1) or not (0), per check and GPU.",
	}
	for _, c := range r.Checks {
		ls := metrics.L("check", c.Name)
		if c.GPU != nil {
			ls = append(ls, metrics.L("gpu", strconv.Itoa(*c.GPU), "uuid", c.UUID)...)
		}
		ok.Samples = append(ok.Samples, metrics.Sample{Labels: ls, Value: metrics.Bool(c.Status != Fail)})
		warn.Samples = append(warn.Samples, metrics.Sample{Labels: ls, Value: metrics.Bool(c.Status == Warn)})
	}
	fams := []metrics.Family{
		{
			Name: "fireops_gpu_check_success", Type: metrics.Gauge,
			Help:    "Whether the last fireops gpu check passed as a whole (1) or not (0).",
			Samples: []metrics.Sample{{Value: metrics.Bool(r.OK)}},
		},
		{
			Name: "fireops_gpu_check_last_run_timestamp_seconds", Type: metrics.Gauge,
			Help:    "When the last fireops gpu check ran, in seconds since the Unix epoch.",
			Samples: []metrics.Sample{{Value: float64(r.Time.Unix())}},
		},
		ok, warn,
		{
			Name: "fireops_gpu_devices", Type: metrics.Gauge,
			Help:    "GPUs found by NVML in the last fireops gpu check.",
			Samples: []metrics.Sample{{Value: float64(len(r.GPUs))}},
		},
	}
	temp := metrics.Family{Name: "fireops_gpu_temperature_celsius", Type: metrics.Gauge, Help: "GPU core temperature."}
	memTotal := metrics.Family{Name: "fireops_gpu_memory_total_bytes", Type: metrics.Gauge, Help: "GPU memory in total."}
	memUsed := metrics.Family{Name: "fireops_gpu_memory_used_bytes", Type: metrics.Gauge, Help: "GPU memory in use."}
	ecc := metrics.Family{
		Name: "fireops_gpu_ecc_errors", Type: metrics.Gauge,
		Help: "GPU memory ECC errors by type (corrected, uncorrected) and counter (volatile: since boot, aggregate: lifetime).",
	}
	remap := metrics.Family{
		Name: "fireops_gpu_remapped_rows", Type: metrics.Gauge,
		Help: "GPU memory rows remapped, by cause (correctable, uncorrectable).",
	}
	// add appends a sample of v to f with the GPU's labels ls and the
	// extra pairs, on a copy of ls so samples never share a label array.
	add := func(f *metrics.Family, v float64, ls []metrics.Label, extra ...string) {
		l := append(append([]metrics.Label{}, ls...), metrics.L(extra...)...)
		f.Samples = append(f.Samples, metrics.Sample{Labels: l, Value: v})
	}
	for _, g := range r.GPUs {
		if g.UUID == "" {
			continue // a GPU NVML could not identify; its device check says so
		}
		ls := gpuLabels(g)
		if g.TemperatureC != nil {
			add(&temp, float64(*g.TemperatureC), ls)
		}
		add(&memTotal, float64(g.MemoryTotalBytes), ls)
		add(&memUsed, float64(g.MemoryUsedBytes), ls)
		if e := g.ECC; e != nil {
			add(&ecc, float64(e.VolatileCorrected), ls, "type", "corrected", "counter", "volatile")
			add(&ecc, float64(e.AggregateCorrected), ls, "type", "corrected", "counter", "aggregate")
			add(&ecc, float64(e.VolatileUncorrected), ls, "type", "uncorrected", "counter", "volatile")
			add(&ecc, float64(e.AggregateUncorrected), ls, "type", "uncorrected", "counter", "aggregate")
		}
		if rr := g.RemappedRows; rr != nil {
			add(&remap, float64(rr.Corrected), ls, "cause", "correctable")
			add(&remap, float64(rr.Uncorrected), ls, "cause", "uncorrectable")
		}
	}
	return append(fams, temp, memTotal, memUsed, ecc, remap)
}
