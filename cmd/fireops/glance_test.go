package main

import (
	"testing"
	"time"
)

// TestGlanceFormats: the snapshots table's time, age, parts and share
// cells.
func TestGlanceFormats(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 2, 14, 5, 0, 0, time.UTC)
	for _, tc := range []struct {
		since time.Duration
		want  string
	}{
		{0, "just now"},
		{59 * time.Second, "just now"},
		{-30 * time.Second, "just now"},
		{-2 * time.Minute, "in the future"},
		{time.Minute, "1 min ago"},
		{59*time.Minute + 59*time.Second, "59 min ago"},
		{time.Hour, "1 h ago"},
		{3*time.Hour + 40*time.Minute, "3 h ago"},
		{47 * time.Hour, "47 h ago"},
		{48 * time.Hour, "2 d ago"},
		{400 * 24 * time.Hour, "400 d ago"},
	} {
		if got := ago(at.Add(-tc.since), at); got != tc.want {
			t.Errorf("ago(%v) = %q, want %q", tc.since, got, tc.want)
		}
	}
	if got := ago(time.Time{}, at); got != "-" {
		t.Errorf("ago(zero) = %q", got)
	}

	ist := time.FixedZone("IST", 5*3600+1800)
	if got := timeIn(at, ist); got != "2026-12-02 19:35" {
		t.Errorf("timeIn = %q, want the time in its zone", got)
	}
	if got := timeIn(time.Time{}, ist); got != "-" {
		t.Errorf("timeIn(zero) = %q", got)
	}

	for _, tc := range []struct {
		ids  []string
		want string
	}{
		{nil, "none"},
		{[]string{"files:stack"}, "files:stack"},
		{[]string{"files:stack", "sqlite:hub", "mongo:mongodb"}, "files:stack, sqlite:hub, mongo:mongodb"},
		{[]string{"a:1", "a:2", "a:3", "a:4", "a:5"}, "a:1, a:2, +3 more"},
	} {
		if got := shortParts(tc.ids); got != tc.want {
			t.Errorf("shortParts(%v) = %q, want %q", tc.ids, got, tc.want)
		}
	}

	for _, tc := range []struct {
		share float64
		want  string
	}{
		{0, "0%"}, {0.001, "1%"}, {0.5, "50%"}, {0.926, "93%"}, {0.999, "99%"}, {1, "100%"},
	} {
		if got := percent(tc.share); got != tc.want {
			t.Errorf("percent(%v) = %q, want %q", tc.share, got, tc.want)
		}
	}
}

// TestTypedDetails: the parts' details come out of --json typed: known
// counts as numbers, known lists as lists, the rest (and what does not
// parse as its key says) as strings.
func TestTypedDetails(t *testing.T) {
	t.Parallel()
	got := typedDetails(map[string]string{
		"bytes": "200027", "files": "3", "rows.users": "12", "count:db.c": "7", "bytes:db.c": "1024",
		"roots": `["/srv/data"]`, "left_out": `[]`, "integrity_check": "ok", "source_path": "123",
		"page_size": "not a number", "docsum:db.c": "abc", "roots_bad": `["x"]`,
	})
	want := map[string]any{
		"bytes": int64(200027), "files": int64(3), "rows.users": int64(12), "count:db.c": int64(7), "bytes:db.c": int64(1024),
		"roots": []string{"/srv/data"}, "left_out": []string{}, "integrity_check": "ok", "source_path": "123",
		"page_size": "not a number", "docsum:db.c": "abc", "roots_bad": `["x"]`,
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s missing", k)
			continue
		}
		switch w := w.(type) {
		case []string:
			l, ok := g.([]string)
			if !ok || len(l) != len(w) || (len(w) > 0 && l[0] != w[0]) {
				t.Errorf("%s = %#v, want %#v", k, g, w)
			}
		default:
			if g != w {
				t.Errorf("%s = %#v (%T), want %#v (%T)", k, g, g, w, w)
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d details, want %d", len(got), len(want))
	}
	if typedDetails(nil) != nil {
		t.Error("no details must stay absent")
	}
}
