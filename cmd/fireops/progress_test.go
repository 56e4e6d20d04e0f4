package main

import (
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/firetech/fireops/pkg/snapshot"
)

// TestLogLevel: quiet by default on a terminal, as before without one;
// -v and -q move one step from there.
func TestLogLevel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		terminal, quiet bool
		verbose         int
		want            slog.Level
	}{
		{false, false, 0, slog.LevelInfo},
		{false, true, 0, slog.LevelWarn},
		{false, false, 1, slog.LevelDebug},
		{false, false, 2, slog.LevelDebug},
		{true, false, 0, slog.LevelWarn},
		{true, true, 0, slog.LevelError},
		{true, false, 1, slog.LevelInfo},
		{true, false, 2, slog.LevelDebug},
		{true, false, 5, slog.LevelDebug},
	} {
		if got := logLevel(tc.terminal, tc.quiet, tc.verbose); got != tc.want {
			t.Errorf("logLevel(terminal %v, quiet %v, verbose %d) = %v, want %v", tc.terminal, tc.quiet, tc.verbose, got, tc.want)
		}
	}
}

// TestMeter: the rate is the count over the last rateWindow, and none
// is given before the samples span rateMinSpan (the first sample, right
// after the start, would give an absurd rate).
func TestMeter(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	var m meter
	m.add(at(0), 0)
	if _, ok := m.rate(); ok {
		t.Fatal("a rate from one sample")
	}
	m.add(at(200*time.Millisecond), 50<<20) // a burst right at the start
	if r, ok := m.rate(); ok {
		t.Fatalf("a rate of %.0f/s from 200 ms of samples", r)
	}
	// Then 10 MiB/s for 10 s: the burst leaves the window.
	n := int64(50 << 20)
	for d := 400 * time.Millisecond; d <= 10*time.Second; d += 200 * time.Millisecond {
		n += 2 << 20
		m.add(at(d), n)
	}
	r, ok := m.rate()
	if !ok || math.Abs(r-10<<20) > 1 {
		t.Fatalf("rate %.0f/s (%v), want 10 MiB/s", r, ok)
	}
	if len(m.samples) > int(rateWindow/(200*time.Millisecond))+2 {
		t.Fatalf("%d samples kept for a %v window", len(m.samples), rateWindow)
	}
}

// TestColumns: what a line shows while a task runs and once it ended.
func TestColumns(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		v    view
		want columns
	}{
		{"no rate yet", view{name: "files:big", done: 10 << 20, total: 100 << 20, estimate: true},
			columns{name: "files:big", pct: " 10%", amount: "10.0 MiB / 100.0 MiB", rate: "--/s", eta: "ETA --"}},
		{"rate and ETA", view{name: "files:big", done: 40 << 20, total: 100 << 20, estimate: true, rate: 20 << 20, rateOK: true,
			stored: 30 << 20, reused: 10 << 20},
			columns{name: "files:big", pct: " 40%", amount: "40.0 MiB / 100.0 MiB", rate: "20.0 MiB/s", eta: "ETA 3s",
				extra: "new 30.0 MiB stored, 10.0 MiB reused"}},
		{"long ETA", view{name: "files:big", done: 0, total: 10 << 30, estimate: true, rate: 1 << 20, rateOK: true},
			columns{name: "files:big", pct: "  0%", amount: "0 B / 10.0 GiB", rate: "1.0 MiB/s", eta: "ETA 2h50m"}},
		{"estimate passed: held at 99%", view{name: "mongo:mongodb", done: 120 << 20, total: 100 << 20, estimate: true, rate: 1 << 20, rateOK: true},
			columns{name: "mongo:mongodb", pct: " 99%", amount: "120.0 MiB / 120.0 MiB", rate: "1.0 MiB/s", eta: "ETA --"}},
		{"unknown total", view{name: "volume:v", done: 5 << 20},
			columns{name: "volume:v", pct: "  ?%", amount: "5.0 MiB", rate: "--/s", eta: "ETA --"}},
		{"done", view{name: "files:big", where: "local", state: snapshot.TaskDone, done: 100 << 20, total: 100 << 20, elapsed: 4 * time.Second},
			columns{name: "files:big from local", pct: "100%", amount: "100.0 MiB", rate: "25.0 MiB/s", eta: "in 4s"}},
		{"reused", view{name: "files:stack", state: snapshot.TaskReused, total: 2 << 20},
			columns{name: "files:stack", pct: "  --", amount: "2.0 MiB", eta: "unchanged: reused, not read"}},
		{"stopped", view{name: "files:big", state: snapshot.TaskFailed, done: 1 << 20, total: 100 << 20, elapsed: 65 * time.Second},
			columns{name: "files:big", pct: "  --", amount: "1.0 MiB", eta: "stopped after 1m05s"}},
		{"sweep", view{name: "sweep", where: "yandex", unit: snapshot.Folders, done: 64, total: 256, rate: 32, rateOK: true, removed: 3, freed: 3 << 20},
			columns{name: "sweep yandex", pct: " 25%", amount: "64/256 folders", rate: "32.0/s", eta: "ETA 6s", extra: "3 objects removed, 3.0 MiB"}},
		{"total", view{name: "total", done: 1 << 20, total: 4 << 20, estimate: true, parts: "1/3 parts"},
			columns{name: "total", pct: " 25%", amount: "1.0 MiB / 4.0 MiB", rate: "--/s", eta: "ETA --", extra: "1/3 parts"}},
	} {
		if got := tc.v.columns(); got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}
