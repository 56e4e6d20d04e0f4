package schedule

import (
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firetech/fireops/pkg/metrics"
)

// Results holds the latest metric families each job published, keyed like
// the textfiles (one key per file), and serves them on /metrics exactly as
// the textfiles hold them. It is safe for concurrent use.
type Results struct {
	mu   sync.Mutex
	byID map[string][]metrics.Family
}

// NewResults returns an empty Results.
func NewResults() *Results { return &Results{byID: map[string][]metrics.Family{}} }

// Set replaces the families published under key (a textfile name).
func (r *Results) Set(key string, fams []metrics.Family) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byID[key] = slices.Clone(fams)
}

// Describe sends nothing: the families change with every run, so Results
// is an unchecked collector.
func (r *Results) Describe(chan<- *prometheus.Desc) {}

// Collect sends every sample of every family as a constant metric.
func (r *Results) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	keys := make([]string, 0, len(r.byID))
	for k := range r.byID {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var fams []metrics.Family
	for _, k := range keys {
		fams = append(fams, r.byID[k]...)
	}
	r.mu.Unlock()
	for _, f := range fams {
		vt := prometheus.UntypedValue
		switch f.Type {
		case metrics.Gauge:
			vt = prometheus.GaugeValue
		case metrics.Counter:
			vt = prometheus.CounterValue
		}
		for _, s := range f.Samples {
			names := make([]string, len(s.Labels))
			values := make([]string, len(s.Labels))
			for i, l := range s.Labels {
				names[i], values[i] = l.Name, l.Value
			}
			desc := prometheus.NewDesc(f.Name, f.Help, names, nil)
			m, err := prometheus.NewConstMetric(desc, vt, s.Value, values...)
			if err != nil {
				m = prometheus.NewInvalidMetric(desc, err)
			}
			ch <- m
		}
	}
}
