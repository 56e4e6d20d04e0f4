package gpuusage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firetech/fireops/pkg/metrics"
)

// TextfileName is the file in metrics.textfile_dir that holds the
// Collector's series for node-exporter's textfile collector.
const TextfileName = "fireops_gpu_usage.prom"

// TextfileInterval is how often the daemon measures and rewrites the
// textfile: at most one node-exporter scrape interval behind.
const TextfileInterval = 15 * time.Second

// Textfile writes the series of a Collector to a textfile, for a
// Prometheus that does not scrape the daemon's /metrics but reads
// node-exporter, which exposes the file. The file never holds stale
// values: it is removed when the Collector has no sample (no GPU process,
// no NVML) and when Run ends (the daemon stops).
type Textfile struct {
	dir, name string
	reg       *prometheus.Registry
	log       onceLog
}

// NewTextfile returns a Textfile that writes c's series to dir/name
// (name "" means TextfileName); log nil discards its logs.
func NewTextfile(c prometheus.Collector, dir, name string, log *slog.Logger) (*Textfile, error) {
	if dir == "" {
		return nil, errors.New("per-user GPU usage textfile: no folder given")
	}
	if name == "" {
		name = TextfileName
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		return nil, fmt.Errorf("per-user GPU usage textfile: %w", err)
	}
	return &Textfile{dir: dir, name: name, reg: reg, log: onceLog{log: log, failing: map[string]bool{}}}, nil
}

// Path is the textfile's path.
func (t *Textfile) Path() string { return filepath.Join(t.dir, t.name) }

// Write measures once and atomically replaces the textfile with the
// series (metrics.WriteTextfile: a temp file in the same folder, synced,
// renamed, mode 0644), or removes it when there is none. It returns the
// number of samples written.
func (t *Textfile) Write() (int, error) {
	fams, n, err := t.families()
	if err != nil {
		// Never leave the previous values behind when no new ones came.
		return 0, errors.Join(err, t.Remove())
	}
	if n == 0 {
		return 0, t.Remove()
	}
	if err := metrics.WriteTextfile(t.dir, t.name, fams); err != nil {
		return 0, fmt.Errorf("per-user GPU usage: %w", err)
	}
	return n, nil
}

// Remove removes the textfile; one that is not there is no error.
func (t *Textfile) Remove() error {
	if err := os.Remove(t.Path()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("per-user GPU usage: remove the stale textfile: %w", err)
	}
	return nil
}

// Run writes the textfile at once and then every interval (TextfileInterval
// when <= 0) until ctx is done, then removes it. A failure is logged once
// (and once more when writing works again); Run goes on.
func (t *Textfile) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = TextfileInterval
	}
	t.log.log.Info("per-user GPU usage: writing it for node-exporter's textfile collector",
		"file", t.Path(), "every", interval.String())
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		n, err := t.Write()
		if err != nil {
			t.log.fail("textfile", slog.LevelWarn, "per-user GPU usage: cannot write the textfile (check that metrics.textfile_dir exists and is writable)",
				"file", t.Path(), "err", err)
		} else {
			t.log.ok("textfile", "per-user GPU usage: the textfile is written again", "file", t.Path())
			t.log.log.Debug("per-user GPU usage textfile", "file", t.Path(), "samples", n)
		}
		select {
		case <-ctx.Done():
			if err := t.Remove(); err != nil {
				t.log.log.Warn("per-user GPU usage: the textfile stays behind, remove it by hand", "file", t.Path(), "err", err)
			}
			return
		case <-tick.C:
		}
	}
}

// families gathers the Collector and converts its families; n counts
// the samples.
func (t *Textfile) families() (fams []metrics.Family, n int, err error) {
	got, err := t.reg.Gather()
	if err != nil {
		return nil, 0, fmt.Errorf("per-user GPU usage: gather: %w", err)
	}
	for _, g := range got {
		f := metrics.Family{Name: g.GetName(), Help: g.GetHelp()}
		// The client_model types are read through their getters, so that
		// this package needs no import of them.
		switch g.GetType().String() {
		case "GAUGE":
			f.Type = metrics.Gauge
		case "COUNTER":
			f.Type = metrics.Counter
		default:
			f.Type = metrics.Untyped
		}
		for _, m := range g.GetMetric() {
			s := metrics.Sample{}
			for _, l := range m.GetLabel() {
				s.Labels = append(s.Labels, metrics.Label{Name: l.GetName(), Value: l.GetValue()})
			}
			switch {
			case m.GetGauge() != nil:
				s.Value = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				s.Value = m.GetCounter().GetValue()
			case m.GetUntyped() != nil:
				s.Value = m.GetUntyped().GetValue()
			default:
				return nil, 0, fmt.Errorf("per-user GPU usage: metric %s: neither gauge nor counter", f.Name)
			}
			f.Samples = append(f.Samples, s)
		}
		n += len(f.Samples)
		fams = append(fams, f)
	}
	return fams, n, nil
}
