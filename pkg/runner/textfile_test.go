package runner

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firetech/fireops/pkg/metrics"
)

// TestTextfileNotWrittenSaysFix: a job whose metrics textfile cannot be
// written (metrics.textfile_dir missing: node-exporter's folder before
// the stack is deployed) still ends as it ended, and its warning names
// the key to fix, as gpu check's hint does, besides the cause. (Before,
// the line gave only the temp file's open error: a cron job exited 0 and
// no alert ever saw its runs.)
func TestTextfileNotWrittenSaysFix(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Metrics.TextfileDir = filepath.Join(cfg.Metrics.TextfileDir, "missing")
	var logs bytes.Buffer
	var published []metrics.JobMetrics
	r := &Runner{Log: slog.New(slog.NewTextHandler(&logs, nil)), Publish: func(m metrics.JobMetrics) { published = append(published, m) }}
	r.record(cfg, rotateMetrics(time.Now(), time.Second, nil, nil, []string{"local"}))
	line := logs.String()
	for _, want := range []string{"metrics textfile not written", "job=rotate", "no such file or directory", "metrics.textfile_dir " + cfg.Metrics.TextfileDir, "exists"} {
		if !strings.Contains(line, want) {
			t.Errorf("warning lacks %q:\n%s", want, line)
		}
	}
	if len(published) != 1 {
		t.Errorf("published %d times, want once (the daemon's /metrics still gets the run)", len(published))
	}
}
