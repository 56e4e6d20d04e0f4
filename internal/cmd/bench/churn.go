package main

// The churn benchmark (-churn, -only churn): a volume-like tree
// (internal/churn) is snapshotted by fireops and backed up by restic, then
// changed a little each night (a training log grows by 1.3 MB, two
// notebooks get a cell edited, a small file appears) and snapshotted again,
// with the same fireops state_dir and destination and the same restic
// repository every night. It reports how much each night adds to the
// destination and to the repository, and what both store in the end.

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/firetech/fireops/internal/churn"
)

// churnNight is what one night of one round measured; a tool that was
// left out has out == -1.
type churnNight struct {
	change          string
	fireops, restic sample // out: how much the destination or repository grew
	// fireopsTotal and resticTotal are the destination's and the
	// repository's size after the night.
	fireopsTotal, resticTotal int64
}

type churnResult struct {
	stats  churn.Stats
	rounds [][]churnNight // per round, nights 0 (first snapshot) to -churn-nights
}

func (b *bench) churnBench() error {
	if b.opt.skipFireops && b.opt.skipRestic {
		b.warnf("churn benchmark: nothing to measure with -skip-fireops and -skip-restic")
		return nil
	}
	dir := filepath.Join(b.work, "churn")
	b.churnRes = &churnResult{}
	for r := 1; r <= b.opt.runs; r++ {
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		data := filepath.Join(dir, "data")
		b.logf("churn, round %d of %d: generating a %s volume-like tree (seed %d)", r, b.opt.runs, fmtBytes(b.opt.churnSize), b.opt.seed)
		t := time.Now()
		st, err := churn.Generate(b.ctx, data, b.opt.churnSize, b.opt.seed)
		if err != nil {
			return err
		}
		b.logf("generated %d files, %s in %s", st.Files, fmtBytes(st.Bytes), fmtDur(time.Since(t)))
		b.churnRes.stats = st
		nights, err := b.churnRound(r, dir, data)
		if err != nil {
			return err
		}
		b.churnRes.rounds = append(b.churnRes.rounds, nights)
	}
	return os.RemoveAll(dir)
}

// churnRound snapshots the fresh tree in data (night 0), then changes it
// and snapshots it again each night, the tools' order alternating.
func (b *bench) churnRound(r int, dir, data string) ([]churnNight, error) {
	dest, state, repo := filepath.Join(dir, "fireops-dest"), filepath.Join(dir, "fireops-state"), filepath.Join(dir, "restic-repo")
	cfg, err := b.fireopsConfig("churn", data, []string{dest}, state)
	if err != nil {
		return nil, err
	}
	if !b.opt.skipRestic {
		if _, err := output(b.ctx, b.resticEnv, "restic", "-q", "init", "--repo", repo); err != nil {
			return nil, err
		}
	}
	var nights []churnNight
	for n := 0; n <= b.opt.churnNights; n++ {
		night := churnNight{change: "first snapshot", fireops: sample{out: -1}, restic: sample{out: -1}, fireopsTotal: -1, resticTotal: -1}
		if n > 0 {
			c, err := churn.ApplyNight(data, b.opt.seed, n)
			if err != nil {
				return nil, fmt.Errorf("night %d: %w", n, err)
			}
			night.change = c.String()
		}
		steps := []func() error{
			func() (err error) {
				if b.opt.skipFireops {
					return nil
				}
				var res *snapResult
				night.fireops, err = growth(dest, func() (s sample, err error) {
					s, res, err = b.fireopsSnapshot(cfg)
					return s, err
				})
				night.fireops.note = uploadNote(res)
				if err == nil {
					night.fireopsTotal, _, err = treeSize(dest)
				}
				return err
			},
			func() (err error) {
				if b.opt.skipRestic {
					return nil
				}
				night.restic, err = growth(repo, func() (sample, error) { return b.restic("--repo", repo, "backup", data) })
				if err == nil {
					night.resticTotal, _, err = treeSize(repo)
				}
				return err
			},
		}
		if (r+n)%2 == 0 {
			slices.Reverse(steps)
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return nil, fmt.Errorf("night %d: %w", n, err)
			}
		}
		op := fmt.Sprintf("churn round %d night %d", r, n)
		if !b.opt.skipFireops {
			b.logSample(op, toolFireops, night.fireops)
		}
		if !b.opt.skipRestic {
			b.logSample(op, toolRestic, night.restic)
		}
		nights = append(nights, night)
	}
	return nights, nil
}

// churnRow is one night of the report: medians over the rounds.
type churnRow struct {
	night                     int
	change                    string
	fireopsAdds, resticAdds   int64 // -1: not measured
	ratio                     float64
	fireopsTotal, resticTotal int64
	fireopsWall, fireopsCPU   time.Duration
	resticWall, resticCPU     time.Duration
	other                     float64 // the most other processes used in a run, as a share of the machine
}

type churnSummary struct {
	rows []churnRow
	// median and worst of fireops adds / restic adds over nights 1 to N
	// (-1 when not measured), and the night of the worst.
	medianRatio, worstRatio float64
	worstNight              int
	// totalRatio is fireops' stored size / restic's after the last night.
	totalRatio float64
}

// summarizeChurn takes the medians of each night over the rounds.
func summarizeChurn(rounds [][]churnNight) churnSummary {
	sum := churnSummary{medianRatio: -1, worstRatio: -1, totalRatio: -1}
	if len(rounds) == 0 {
		return sum
	}
	nights := len(rounds[0])
	for _, rs := range rounds {
		nights = min(nights, len(rs))
	}
	var ratios []float64
	for n := 0; n < nights; n++ {
		med := func(f func(churnNight) int64) int64 {
			var xs []int64
			for _, rs := range rounds {
				if v := f(rs[n]); v >= 0 {
					xs = append(xs, v)
				}
			}
			return median(xs)
		}
		row := churnRow{
			night:        n,
			change:       rounds[0][n].change,
			fireopsAdds:  med(func(c churnNight) int64 { return c.fireops.out }),
			resticAdds:   med(func(c churnNight) int64 { return c.restic.out }),
			fireopsTotal: med(func(c churnNight) int64 { return c.fireopsTotal }),
			resticTotal:  med(func(c churnNight) int64 { return c.resticTotal }),
			ratio:        -1,
		}
		// Wall and CPU only where the tool ran (out >= 0).
		dur := func(s func(churnNight) sample, f func(sample) time.Duration) time.Duration {
			return time.Duration(med(func(c churnNight) int64 {
				if s(c).out < 0 {
					return -1
				}
				return int64(f(s(c)))
			}))
		}
		fs := func(c churnNight) sample { return c.fireops }
		rs := func(c churnNight) sample { return c.restic }
		wall := func(s sample) time.Duration { return s.wall }
		cpu := func(s sample) time.Duration { return s.cpu }
		row.fireopsWall, row.fireopsCPU = dur(fs, wall), dur(fs, cpu)
		row.resticWall, row.resticCPU = dur(rs, wall), dur(rs, cpu)
		for _, rs := range rounds {
			for _, s := range []sample{rs[n].fireops, rs[n].restic} {
				if s.out >= 0 {
					row.other = max(row.other, busyShare(s))
				}
			}
		}
		if row.fireopsAdds >= 0 && row.resticAdds > 0 {
			row.ratio = float64(row.fireopsAdds) / float64(row.resticAdds)
			if n > 0 {
				ratios = append(ratios, row.ratio)
				if row.ratio > sum.worstRatio {
					sum.worstRatio, sum.worstNight = row.ratio, n
				}
			}
		}
		sum.rows = append(sum.rows, row)
	}
	if len(ratios) > 0 {
		sum.medianRatio = medianFloat(ratios)
	}
	if last := sum.rows[len(sum.rows)-1]; last.fireopsTotal >= 0 && last.resticTotal > 0 {
		sum.totalRatio = float64(last.fireopsTotal) / float64(last.resticTotal)
	}
	return sum
}

func (b *bench) reportChurn(w io.Writer, sum churnSummary) {
	res := b.churnRes
	nights := len(sum.rows) - 1
	fmt.Fprintf(w, "\n### Churn: %d nights of small changes (fireops against restic)\n\n", nights)
	fmt.Fprintf(w, "- tree (internal/churn): %d files, %s (seed %d): %d training logs in CSV, %d float32 checkpoints, %d notebooks, small files; made again for each of %s\n",
		res.stats.Files, fmtBytes(res.stats.Bytes), b.opt.seed, res.stats.Count[churn.CSVLog], res.stats.Count[churn.Checkpoint], res.stats.Count[churn.Notebook], rounds(len(res.rounds)))
	fmt.Fprintf(w, "- each night: one training log grows by 1.3 MB of rows, two notebooks get a cell's text changed mid-file, one small file is added; then `fireops snapshot` (one local destination, the same state_dir every night) and `restic backup` (the same repository), their order alternating\n")
	fmt.Fprintf(w, "- adds: how much the destination or repository grew (apparent size); stored: its size after the night; medians of %s\n\n", rounds(len(res.rounds)))
	fmt.Fprintf(w, "| night | change | fireops adds | restic adds | fireops/restic | fireops stored | restic stored | fireops wall | fireops CPU | restic wall | restic CPU | other load |\n")
	fmt.Fprintf(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	d := func(x time.Duration) string {
		if x < 0 {
			return "-"
		}
		return fmtDur(x)
	}
	for _, r := range sum.rows {
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.0f%% |\n", r.night, r.change,
			fmtBytes(r.fireopsAdds), fmtBytes(r.resticAdds), fmtRatio(r.ratio), fmtBytes(r.fireopsTotal), fmtBytes(r.resticTotal),
			d(r.fireopsWall), d(r.fireopsCPU), d(r.resticWall), d(r.resticCPU), r.other*100)
	}
	var fa, ra int64
	for _, r := range sum.rows[1:] {
		fa, ra = fa+max(0, r.fireopsAdds), ra+max(0, r.resticAdds)
	}
	last := sum.rows[len(sum.rows)-1]
	noisy, total := 0, 0
	for _, rs := range res.rounds {
		for _, n := range rs {
			for _, s := range []sample{n.fireops, n.restic} {
				if s.out >= 0 {
					total++
					if busyShare(s) > noisyShare {
						noisy++
					}
				}
			}
		}
	}
	if noisy > 0 {
		b.warns = append(b.warns, fmt.Sprintf("churn: %d of %d runs overlapped with other processes using more than %.0f%% of the CPUs: their timings are unreliable (the sizes are not)", noisy, total, noisyShare*100))
	}
	fmt.Fprintf(w, "\nNights 1-%d added %s (fireops) and %s (restic); stored after night %d: fireops %s, restic %s, %s.\n",
		nights, fmtBytes(fa), fmtBytes(ra), nights, fmtBytes(last.fireopsTotal), fmtBytes(last.resticTotal), fmtRatio(sum.totalRatio))
}

// churnTargets are the churn benchmark's format v2 targets.
func churnTargets(sum churnSummary) []string {
	nights := len(sum.rows) - 1
	return []string{
		verdict(fmt.Sprintf("churn, added per night fireops/restic, median of nights 1-%d", nights), sum.medianRatio, 2.5, "x"),
		verdict(fmt.Sprintf("churn, added per night fireops/restic, worst night (%d)", sum.worstNight), sum.worstRatio, 2.5, "x"),
		verdict(fmt.Sprintf("churn, stored after %d nights fireops/restic", nights), sum.totalRatio, 1.2, "x"),
	}
}

func medianFloat(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func rounds(n int) string {
	if n == 1 {
		return "1 round"
	}
	return fmt.Sprintf("%d rounds", n)
}
