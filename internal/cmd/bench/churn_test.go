package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestSummarizeChurn(t *testing.T) {
	// night builds one night: sizes in MiB, -1 for a tool left out.
	night := func(fAdd, rAdd, fTot, rTot int64, fWall time.Duration) churnNight {
		n := churnNight{change: "c", fireops: sample{out: -1}, restic: sample{out: -1}, fireopsTotal: -1, resticTotal: -1}
		if fAdd >= 0 {
			n.fireops = sample{out: fAdd * mib, wall: fWall, cpu: 2 * fWall}
			n.fireopsTotal = fTot * mib
		}
		if rAdd >= 0 {
			n.restic = sample{out: rAdd * mib, wall: time.Second, cpu: time.Second}
			n.resticTotal = rTot * mib
		}
		return n
	}
	for _, tc := range []struct {
		name                      string
		rounds                    [][]churnNight
		median, worst, total      float64
		worstNight, rows          int
		firstWall, firstResticCPU time.Duration
	}{
		{
			name:   "no rounds",
			median: -1, worst: -1, total: -1,
		},
		{
			name: "one round",
			rounds: [][]churnNight{{
				night(100, 100, 100, 100, time.Second),
				night(4, 2, 104, 102, time.Second),
				night(6, 2, 110, 104, time.Second),
				night(2, 2, 112, 106, time.Second),
			}},
			median: 2, worst: 3, worstNight: 2, total: 112.0 / 106, rows: 4,
			firstWall: time.Second, firstResticCPU: time.Second,
		},
		{
			name: "medians over three rounds",
			rounds: [][]churnNight{
				{night(100, 100, 100, 100, 1*time.Second), night(10, 2, 110, 102, time.Second)},
				{night(100, 100, 100, 100, 3*time.Second), night(4, 2, 104, 102, time.Second)},
				{night(100, 100, 100, 100, 2*time.Second), night(6, 2, 106, 102, time.Second)},
			},
			median: 3, worst: 3, worstNight: 1, total: 106.0 / 102, rows: 2,
			firstWall: 2 * time.Second, firstResticCPU: time.Second,
		},
		{
			name: "restic left out",
			rounds: [][]churnNight{{
				night(100, -1, 100, 0, time.Second),
				night(5, -1, 105, 0, time.Second),
			}},
			median: -1, worst: -1, total: -1, rows: 2,
			firstWall: time.Second, firstResticCPU: -1,
		},
		{
			name: "a shorter round counts up to its last night",
			rounds: [][]churnNight{
				{night(100, 100, 100, 100, time.Second), night(4, 2, 104, 102, time.Second), night(8, 2, 112, 104, time.Second)},
				{night(100, 100, 100, 100, time.Second), night(4, 2, 104, 102, time.Second)},
			},
			median: 2, worst: 2, worstNight: 1, total: 104.0 / 102, rows: 2,
			firstWall: time.Second, firstResticCPU: time.Second,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sum := summarizeChurn(tc.rounds)
			near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
			if !near(sum.medianRatio, tc.median) || !near(sum.worstRatio, tc.worst) || !near(sum.totalRatio, tc.total) ||
				sum.worstNight != tc.worstNight || len(sum.rows) != tc.rows {
				t.Fatalf("got median %v worst %v (night %d) total %v, %d rows; want %v %v (%d) %v, %d rows",
					sum.medianRatio, sum.worstRatio, sum.worstNight, sum.totalRatio, len(sum.rows), tc.median, tc.worst, tc.worstNight, tc.total, tc.rows)
			}
			if tc.rows == 0 {
				return
			}
			if r := sum.rows[0]; r.fireopsWall != tc.firstWall || r.fireopsCPU != 2*tc.firstWall || r.resticCPU != tc.firstResticCPU {
				t.Errorf("night 0: %+v", r)
			}
			targets := churnTargets(sum)
			if len(targets) != 3 {
				t.Fatalf("targets %q", targets)
			}
			if tc.median < 0 && !strings.HasPrefix(targets[0], "SKIP") {
				t.Errorf("target without restic: %s", targets[0])
			}
		})
	}
}
