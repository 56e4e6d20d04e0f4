package main

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/firetech/fireops/pkg/snapshot"
)

// onTerminalCols is onTerminal on a terminal cols columns wide: it
// returns everything written to the terminal.
func onTerminalCols(t *testing.T, cols uint16, cfg string, args ...string) string {
	t.Helper()
	_, screen := onTerminalSized(t, 24, cols, cfg, args...)
	return screen
}

// TestProgressAt80Columns: on the classic 80 column terminal every line
// of a snapshot's display fits, with a bar: the part's last frame keeps
// its stored/reused bytes (dropping its rate), the total its "2/2 parts".
func TestProgressAt80Columns(t *testing.T) {
	t.Parallel()
	cfg := progressConfig(t, 24<<20)
	lines := screenLines(onTerminalCols(t, 80, cfg, "snapshot"))
	last := map[string]string{}
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > 80 {
			t.Errorf("a line of %d columns on an 80 column terminal: %q", n, l)
		}
		if strings.Contains(l, "…") {
			t.Errorf("a line cut short: %q", l)
		}
		for _, name := range []string{"files:big ", "total "} {
			if strings.HasPrefix(l, name) {
				last[name] = l
			}
		}
	}
	big, total := last["files:big "], last["total "]
	if !barRE.MatchString(big) || !regexp.MustCompile(`\] +(100% +)?24\.0 MiB +([0-9.]+ [KMG]?i?B/s +)?in \d+(s|m\d\ds) +new [0-9.]+ [KMG]?i?B stored, [0-9.]+ [KMG]?i?B reused$`).MatchString(big) {
		t.Errorf("at 80 columns the last frame of files:big lacks its bar or its bytes: %q", big)
	}
	if !barRE.MatchString(total) || !strings.HasSuffix(total, " 2/2 parts") {
		t.Errorf("at 80 columns the last frame of the total lacks its bar or its parts: %q", total)
	}
}

// TestFitColumns: the texts of a frame's lines are shortened, in order,
// until each line leaves a bar room at the width; a wide terminal keeps
// them all.
func TestFitColumns(t *testing.T) {
	t.Parallel()
	running := view{name: "files:big", unit: snapshot.Bytes, state: snapshot.TaskRunning, done: 10 << 20, total: 24 << 20,
		estimate: true, rateOK: true, rate: 93 << 20, stored: 10 << 20}
	done := view{name: "files:big", unit: snapshot.Bytes, state: snapshot.TaskDone, done: 24 << 20, total: 24 << 20,
		elapsed: 3e9, stored: 24 << 20}
	totalRunning := running
	totalRunning.name, totalRunning.parts = "total", "1/2 parts"
	totalDone := done
	totalDone.name, totalDone.parts = "total", "2/2 parts"
	fit := func(width int, vs ...view) []columns {
		rows := make([]row, len(vs))
		name := 0
		for i, v := range vs {
			rows[i] = row{v: v, c: v.columns()}
			name = max(name, len(v.name))
		}
		fitColumns(rows, width, name)
		out := make([]columns, len(rows))
		for i, r := range rows {
			out[i] = r.c
		}
		return out
	}
	full := func(vs ...view) []columns {
		out := make([]columns, len(vs))
		for i, v := range vs {
			out[i] = v.columns()
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		width int
		vs    []view
		check func(t *testing.T, got []columns)
	}{
		{"wide terminal keeps all", 200, []view{running, totalRunning}, func(t *testing.T, got []columns) {
			if want := full(running, totalRunning); !equalColumns(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		}},
		{"80 running: stored/reused of running lines go first", 80, []view{running, totalRunning}, func(t *testing.T, got []columns) {
			if got[0].extra != "" || got[1].extra != "1/2 parts" {
				t.Errorf("extras %q, %q", got[0].extra, got[1].extra)
			}
			if got[0].rate == "" || got[0].pct == "" || got[0].eta == "" {
				t.Errorf("more dropped than needed: %+v", got[0])
			}
		}},
		{"80 done: the rate goes, the part keeps its bytes", 80, []view{done, totalDone}, func(t *testing.T, got []columns) {
			if got[0].rate != "" {
				t.Errorf("rate kept: %+v", got[0])
			}
			if got[0].extra != full(done)[0].extra || got[0].pct != "100%" || got[0].eta == "" || got[0].amount == "" {
				t.Errorf("the part lost more than its rate: %+v", got[0])
			}
			if got[1].extra != "2/2 parts" {
				t.Errorf("total's extra %q", got[1].extra)
			}
		}},
		{"30: only name and bar are left", 30, []view{done}, func(t *testing.T, got []columns) {
			if c := got[0]; c.name != "files:big" || c.pct+c.amount+c.rate+c.eta+c.extra != "" {
				t.Errorf("got %+v", c)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, fit(tc.width, tc.vs...)) })
	}
}

// equalColumns reports whether a and b hold the same columns in order.
func equalColumns(a, b []columns) bool { return slices.Equal(a, b) }
