package schedule

import (
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestCollectorsServed: Options.Collectors (the per-user GPU usage) are
// collected at each scrape of /metrics.
func TestCollectorsServed(t *testing.T) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fireops_test_collected", Help: "A test collector."}, []string{"user"})
	g.WithLabelValues("alice").Set(42)
	addr, stop := startDaemon(t, Options{Hangup: make(chan os.Signal),
		Collectors: []prometheus.Collector{g},
		Load:       func() (*Config, error) { return &Config{Listen: "127.0.0.1:0"}, nil }})
	body := get(t, "http://"+addr+"/metrics")
	if !strings.Contains(body, "\nfireops_test_collected{user=\"alice\"} 42\n") {
		t.Errorf("/metrics lacks the collector's sample:\n%s", body)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
