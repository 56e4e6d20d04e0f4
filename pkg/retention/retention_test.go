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
	fmt.Fprintln(w, "ACTION\tID\tTIME (UTC)\tSTATE\tREASONS")
	kept, removed := 0, 0
	for _, d := range ds {
		if d.Keep {
			kept++
		} else {
			removed++
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", d.Action(), d.ID, d.Time.Format("2006-01-02 15:04:05 Mon"), d.State, strings.Join(d.Reasons, ", "))
	}
	w.Flush()
	fmt.Fprintf(&b, "summary: %d kept, %d removed\n", kept, removed)
	return b.String()
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
					snaps = append(snaps, Snapshot{ID: id(ts, n), Time: ts, State: Complete})
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
