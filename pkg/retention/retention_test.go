package retention

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from the planner's output")

// input is one golden case: testdata/NAME.json.
type input struct {
	Comment string `json:"comment"`
	Policy  struct {
		KeepLast    int    `json:"keep_last"`
		KeepHourly  int    `json:"keep_hourly"`
		KeepDaily   int    `json:"keep_daily"`
		KeepWeekly  int    `json:"keep_weekly"`
		KeepMonthly int    `json:"keep_monthly"`
		KeepYearly  int    `json:"keep_yearly"`
		KeepWithin  string `json:"keep_within"`
	} `json:"policy"`
	Now   time.Time `json:"now"`
	Grace string    `json:"grace"`
	// Snapshots are listed one by one; an empty id is derived from the
	// time. Series add one complete snapshot every Every from From to To.
	Snapshots []Snapshot `json:"snapshots"`
	Series    []struct {
		From  time.Time `json:"from"`
		To    time.Time `json:"to"`
		Every string    `json:"every"`
		// Parts, Only and FailedParts are those of every snapshot of the
		// series (none: snapshots that record no parts).
		Parts       []string `json:"parts"`
		Only        bool     `json:"only"`
		FailedParts int      `json:"failed_parts"`
	} `json:"series"`
}

func parseDur(t *testing.T, s string) time.Duration {
	t.Helper()
	if s == "" {
		return 0
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var d int
		if _, err := fmt.Sscanf(n, "%d", &d); err != nil {
			t.Fatalf("bad duration %q", s)
		}
		return time.Duration(d) * 24 * time.Hour
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func id(t time.Time, n int) string {
	return t.UTC().Format("20060102T150405Z") + fmt.Sprintf("-%06x", n)
}

// render writes the plan as the golden text: one line per snapshot,
// newest first, then a summary.
func render(in input, p Policy, grace time.Duration, ds []Decision, err error) string {
	var b strings.Builder
	if in.Comment != "" {
		fmt.Fprintf(&b, "# %s\n", in.Comment)
	}
	fmt.Fprintf(&b, "policy: %s\nnow: %s  grace: %s\n", p, in.Now.UTC().Format(time.RFC3339), FormatDuration(grace))
	if err != nil {
		fmt.Fprintf(&b, "error: %v\n", err)
		return b.String()
	}
	w := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ACTION\tID\tTIME (UTC)\tSTATE\tPARTS\tREASONS")
	kept, removed := 0, 0
	for _, d := range ds {
		if d.Keep {
			kept++
		} else {
			removed++
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Action(), d.ID, d.Time.Format("2006-01-02 15:04:05.000 Mon"), d.State, renderParts(d.Snapshot), strings.Join(d.Reasons, ", "))
	}
	w.Flush()
	fmt.Fprintf(&b, "summary: %d kept, %d removed\n", kept, removed)
	var snaps []Snapshot
	for _, d := range ds {
		snaps = append(snaps, d.Snapshot)
	}
	if parts, retired := PartCounts(snaps); parts > 0 {
		fmt.Fprintf(&b, "parts: %d, %d retired\n", parts, retired)
	}
	return b.String()
}

// renderParts writes a snapshot's parts: "-" when it records none, else
// the tags joined with "+", and whether it was an --only run or had
// failed parts.
func renderParts(s Snapshot) string {
	if s.State != Complete {
		return ""
	}
	if s.Parts == nil {
		return "-"
	}
	out := strings.Join(s.Parts, "+")
	if s.Only {
		out += " only"
	}
	if s.FailedParts > 0 {
		out += fmt.Sprintf(" (%d failed)", s.FailedParts)
	}
	return out
}

// TestGolden runs every testdata/*.json through Plan and compares with
// testdata/*.golden; `go test ./pkg/retention -update` rewrites them.
func TestGolden(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var in input
			dec := json.NewDecoder(strings.NewReader(string(raw)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&in); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			p := Policy{KeepLast: in.Policy.KeepLast, KeepHourly: in.Policy.KeepHourly, KeepDaily: in.Policy.KeepDaily,
				KeepWeekly: in.Policy.KeepWeekly, KeepMonthly: in.Policy.KeepMonthly, KeepYearly: in.Policy.KeepYearly,
				KeepWithin: parseDur(t, in.Policy.KeepWithin)}
			grace := parseDur(t, in.Grace)
			snaps := append([]Snapshot(nil), in.Snapshots...)
			n := 0
			for i := range snaps {
				if snaps[i].ID == "" {
					snaps[i].ID = id(snaps[i].Time, 0xf00000+i)
				}
			}
			for _, s := range in.Series {
				every := parseDur(t, s.Every)
				for ts := s.From; !ts.After(s.To); ts = ts.Add(every) {
					snaps = append(snaps, Snapshot{ID: id(ts, n), Time: ts, State: Complete, Parts: s.Parts, Only: s.Only, FailedParts: s.FailedParts})
					n++
				}
			}
			ds, err := Plan(p, snaps, in.Now, grace)
			got := render(in, p, grace, ds, err)
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run: go test ./pkg/retention -update)", err)
			}
			if got != string(want) {
				t.Errorf("plan differs from %s (run with -update to accept):\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}

// TestSafetyNets checks the promises independent of any golden file.
func TestSafetyNets(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	snaps := []Snapshot{
		{ID: "a", Time: now.Add(-72 * time.Hour), State: Complete},
		{ID: "b", Time: now.Add(-48 * time.Hour), State: Complete},
		{ID: "c", Time: now.Add(-time.Hour), State: Incomplete},
		{ID: "d", Time: now.Add(-30 * time.Hour), State: Incomplete, Activity: now.Add(-time.Minute)},
		{ID: "e", Time: now.Add(-200 * time.Hour), State: Damaged},
	}
	if _, err := Plan(Policy{}, snaps, now, time.Hour); err != ErrEmptyPolicy {
		t.Fatalf("empty policy: %v, want ErrEmptyPolicy", err)
	}
	if _, err := Plan(Policy{KeepLast: -1, KeepDaily: 1}, snaps, now, time.Hour); err == nil {
		t.Fatal("a negative count was accepted")
	}
	if _, err := Plan(Policy{KeepLast: 1}, snaps, now, -time.Hour); err == nil {
		t.Fatal("a negative grace was accepted")
	}
	ds, err := Plan(Policy{KeepYearly: 1}, snaps, now, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, d := range ds {
		got[d.ID] = d.Keep
	}
	want := map[string]bool{"a": false, "b": true, "c": true, "d": true, "e": true}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("snapshot %s: keep=%v, want %v (%+v)", k, got[k], v, ds)
		}
	}
	// Shuffled input gives the same plan.
	rev := []Snapshot{snaps[4], snaps[3], snaps[2], snaps[1], snaps[0]}
	ds2, _ := Plan(Policy{KeepYearly: 1}, rev, now, 2*time.Hour)
	for i := range ds {
		if ds[i].ID != ds2[i].ID || ds[i].Keep != ds2[i].Keep {
			t.Fatalf("order-dependent plan: %+v vs %+v", ds, ds2)
		}
	}
}

// TestOnlyRunsNeverStandIn: adding `snapshot --only` runs (of one part, at
// any time of day) to a history of full runs never changes which full runs
// a policy keeps: a snapshot never stands in for parts it does not hold.
func TestOnlyRunsNeverStandIn(t *testing.T) {
	t.Parallel()
	policies := []Policy{
		{KeepLast: 3, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 6},
		{KeepLast: 1},
		{KeepHourly: 24, KeepDaily: 3},
		{KeepDaily: 1},
		{KeepWeekly: 2, KeepYearly: 1},
		{KeepWithin: 3 * 24 * time.Hour, KeepDaily: 2},
	}
	start := time.Date(2026, 9, 1, 3, 0, 0, 0, time.UTC)
	now := start.AddDate(0, 3, 0)
	full := []string{"files", "sqlite", "vol-a", "vol-b"}
	var fulls, mixed []Snapshot
	var x uint32 = 12345
	n := 0
	for ts := start; ts.Before(now); ts = ts.Add(24 * time.Hour) {
		s := Snapshot{ID: id(ts, n), Time: ts, State: Complete, Parts: full}
		n++
		fulls = append(fulls, s)
		mixed = append(mixed, s)
		// One to three --only runs of vol-a later that day.
		x = x*1664525 + 1013904223
		for k := uint32(0); k <= x%3; k++ {
			at := ts.Add(time.Duration(1+k*7+x%5) * time.Hour)
			mixed = append(mixed, Snapshot{ID: id(at, n), Time: at, State: Complete, Parts: []string{"vol-a"}, Only: true})
			n++
		}
	}
	for _, p := range policies {
		want := keptIDs(t, p, fulls, now)
		got := keptIDs(t, p, mixed, now)
		for id := range want {
			if !got[id] {
				t.Errorf("%s: the full run %s is kept without the --only runs, removed with them", p, id)
			}
		}
		for _, s := range fulls {
			if got[s.ID] && !want[s.ID] {
				t.Errorf("%s: the full run %s is kept only because of the --only runs", p, s.ID)
			}
		}
	}
}

func keptIDs(t *testing.T, p Policy, snaps []Snapshot, now time.Time) map[string]bool {
	t.Helper()
	ds, err := Plan(p, snaps, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, d := range ds {
		if d.Keep {
			out[d.ID] = true
		}
	}
	return out
}
