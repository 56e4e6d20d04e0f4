package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

func median(xs []int64) int64 {
	if len(xs) == 0 {
		return -1
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// stat is the median of one field over a tool's runs.
func (b *bench) stat(op, tool string, field func(sample) int64) (med, lo, hi int64, ok bool) {
	ss := b.results[op][tool]
	if len(ss) == 0 {
		return 0, 0, 0, false
	}
	var xs []int64
	for _, s := range ss {
		xs = append(xs, field(s))
	}
	return median(xs), slices.Min(xs), slices.Max(xs), true
}

var (
	fWall = func(s sample) int64 { return int64(s.wall) }
	fCPU  = func(s sample) int64 { return int64(s.cpu) }
	fRSS  = func(s sample) int64 { return s.maxRSS }
	fOut  = func(s sample) int64 { return s.out }
)

var (
	allOps   = []string{opFirst, opSecond, opRestore, opChanged, opScale, opSmall}
	allTools = []string{toolFireops, toolFireops2, toolShell, toolRestic, toolWalk}
)

func (b *bench) environment() []string {
	cpu := "?"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	mem := "?"
	if m, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(m), "MemTotal: %d kB", &kb); err == nil {
			mem = fmtBytes(kb * 1024)
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	first := func(argv ...string) string {
		out, err := output(b.ctx, nil, argv...)
		if err != nil && out == "" {
			return "?"
		}
		line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
		return line
	}
	lines := []string{
		fmt.Sprintf("machine: %d CPU cores (%s), %s RAM, Linux %s", runtime.NumCPU(), cpu, mem, strings.TrimSpace(string(kernel))),
	}
	if !b.opt.skipFireops {
		lines = append(lines, "fireops: "+first(b.opt.fireops, "version"))
	}
	lines = append(lines, "tar: "+first("tar", "--version"), "zstd: "+first("zstd", "--version"), "age: "+first("age", "--version"))
	if !b.opt.skipRestic {
		lines = append(lines, "restic: "+first("restic", "version"))
	}
	return lines
}

func (b *bench) report(w io.Writer) {
	fmt.Fprintf(w, "\n## fireops benchmark\n\n")
	for _, l := range b.environment() {
		fmt.Fprintf(w, "- %s\n", l)
	}
	main := b.opt.enabled(groupMain)
	if main {
		fmt.Fprintf(w, "- dataset: %d files, %s (seed %d):", b.genStats.files, fmtBytes(b.genStats.bytes), b.opt.seed)
		for k, ks := range b.genStats.byKind {
			if ks.files > 0 {
				fmt.Fprintf(w, " %s %d files %s;", kindNames[k], ks.files, fmtBytes(ks.bytes))
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "- %d runs of each, tools alternating; source data in the page cache; `sync` before each run\n", b.opt.runs)
	if main {
		fmt.Fprintf(w, "- restores into %s\n", b.restoreDesc)
	}
	fmt.Fprintf(w, "- shell pipeline: `tar -cf - -C DATA . | zstd -3 -T0 | age -r KEY > FILE`, restored with `age -d -i ID < FILE | zstd -d | tar -xf - -C DIR`\n")
	if main {
		fmt.Fprintf(w, "- restic: `restic backup DATA` into a fresh local repository (`restic init`, not timed); `restic restore latest --target DIR`\n")
		fmt.Fprintf(w, "- fireops: `fireops snapshot` to a fresh local destination with a fresh state dir, the dataset as one files part; the second snapshot reuses both; `fireops restore latest --to DIR --force`\n")
	}
	if b.changeDesc != "" {
		fmt.Fprintf(w, "- %s: after the restores, %s; each round's fireops state and destination and restic repository, which hold the unchanged dataset; output = how much they grew\n", opChanged, b.changeDesc)
	}
	if st := b.smallStats; st.files > 0 {
		fmt.Fprintf(w, "- %s: %d files of 1-6 KiB, %s: %d .py files of a virtualenv (%s), %d .jpg images of random bytes (%s); fireops to a fresh destination and state dir, the pipeline, and `find -printf '%%P %%m %%s %%T@ ...' | sha256sum` (the lstat walk a fingerprint does)\n",
			opSmall, st.files, fmtBytes(st.bytes), st.py, fmtBytes(st.pyB), st.img, fmtBytes(st.imgB))
	}
	fmt.Fprintf(w, "- CPU = user+sys of the process and its children; the pipeline's peak RSS is its largest process\n")

	for _, op := range allOps {
		if len(b.results[op]) > 0 {
			b.reportMedians(w)
			break
		}
	}

	var sum churnSummary
	if b.churnRes != nil && len(b.churnRes.rounds) > 0 {
		sum = summarizeChurn(b.churnRes.rounds)
		b.reportChurn(w, sum)
	}

	if main {
		fmt.Fprintf(w, "\n### Targets (issue 3)\n\n")
		for _, l := range b.targets() {
			fmt.Fprintf(w, "- %s\n", l)
		}
	}
	if v2 := b.v2Targets(sum); len(v2) > 0 {
		fmt.Fprintf(w, "\n### Targets (format v2)\n\n")
		for _, l := range v2 {
			fmt.Fprintf(w, "- %s\n", l)
		}
	}
	if len(b.warns) > 0 {
		fmt.Fprintf(w, "\n### Warnings\n\n")
		for _, l := range b.warns {
			fmt.Fprintf(w, "- %s\n", l)
		}
	}
}

func fmtRatio(r float64) string {
	if r < 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", r)
}

// ratio is median(tool) / median(other) of a field; -1 when unknown.
func (b *bench) ratio(op, tool, other string, f func(sample) int64) float64 {
	return b.medianRatio(op, tool, op, other, f)
}

// medianRatio is the median of a field of op by tool over that of
// otherOp by otherTool; -1 when unknown.
func (b *bench) medianRatio(op, tool, otherOp, otherTool string, f func(sample) int64) float64 {
	a, _, _, ok1 := b.stat(op, tool, f)
	c, _, _, ok2 := b.stat(otherOp, otherTool, f)
	if !ok1 || !ok2 || c <= 0 || a < 0 {
		return -1
	}
	return float64(a) / float64(c)
}

// verdict says PASS or MISS for value <= limit and by how much.
func verdict(what string, value, limit float64, unit string) string {
	if value < 0 {
		return fmt.Sprintf("SKIP  %s: not measured", what)
	}
	num := "%.2f"
	if unit == " MiB" {
		num = "%.0f"
	}
	v, l := fmt.Sprintf(num, value)+unit, fmt.Sprintf(num, limit)+unit
	if value <= limit {
		return fmt.Sprintf("PASS  %s: %s (target <= %s, %.0f%% under)", what, v, l, (1-value/limit)*100)
	}
	return fmt.Sprintf("MISS  %s: %s (target <= %s, %.0f%% over)", what, v, l, (value/limit-1)*100)
}

func (b *bench) targets() []string {
	var out []string
	if b.opt.skipFireops {
		return []string{"SKIP  fireops was not measured (-skip-fireops)"}
	}
	out = append(out,
		verdict("first snapshot wall, fireops/shell", b.ratio(opFirst, toolFireops, toolShell, fWall), 1.1, "x"),
		verdict("first snapshot wall, fireops/restic", b.ratio(opFirst, toolFireops, toolRestic, fWall), 0.7, "x"),
		verdict("restore wall, fireops/shell", b.ratio(opRestore, toolFireops, toolShell, fWall), 1.1, "x"),
		verdict("restore wall, fireops/restic", b.ratio(opRestore, toolFireops, toolRestic, fWall), 0.9, "x"),
	)
	// Peak RSS with two destinations: the worst run, 1x and 4x.
	worst := int64(-1)
	for _, op := range []string{opFirst, opScale} {
		for _, s := range b.results[op][toolFireops2] {
			worst = max(worst, s.maxRSS)
		}
	}
	out = append(out, verdict("peak RSS with two destinations (worst run)", float64(worst)/mib, 256, " MiB"))
	if b.opt.scaleCheck {
		for _, tool := range []string{toolFireops, toolFireops2} {
			one, _, _, ok1 := b.stat(opFirst, tool, fRSS)
			four, _, _, ok4 := b.stat(opScale, tool, fRSS)
			r := -1.0
			if ok1 && ok4 && one > 0 {
				r = float64(four) / float64(one)
			}
			out = append(out, verdict(fmt.Sprintf("peak RSS 4x/1x data, %s (%s -> %s)", tool, fmtBytes(one), fmtBytes(four)), r, 1.25, "x"))
		}
	}
	out = append(out, verdict("second snapshot wall, fireops/restic", b.ratio(opSecond, toolFireops, toolRestic, fWall), 1.5, "x"))
	bad, parts, reused := 0, 0, 0
	var uploaded []string
	var reuse []*reuseRun
	for _, s := range b.results[opSecond][toolFireops] {
		if s.reuse != nil {
			reuse = append(reuse, s.reuse)
		}
	}
	for _, r := range reuse {
		if !r.ok {
			bad++
		}
		parts += r.parts
		reused += r.reusedParts
		uploaded = append(uploaded, fmtBytes(r.uploaded))
	}
	switch {
	case len(reuse) == 0:
		out = append(out, "SKIP  no part uploaded again: not measured")
	case bad == 0:
		out = append(out, fmt.Sprintf("PASS  no part uploaded again: %d of %d parts reused over %d runs (uploaded: %s, index and manifest)", reused, parts, len(reuse), strings.Join(uploaded, ", ")))
	default:
		out = append(out, fmt.Sprintf("MISS  no part uploaded again: %d of %d runs uploaded a part again or reported no reuse (%d of %d parts reused; uploaded %s)", bad, len(reuse), reused, parts, strings.Join(uploaded, ", ")))
	}
	return out
}

// v2Targets are the targets of format v2 for what ran: the churn benchmark
// (sum), the snapshot after 1% changed and the small-files tree.
func (b *bench) v2Targets(sum churnSummary) []string {
	var out []string
	if len(sum.rows) > 0 {
		out = append(out, churnTargets(sum)...)
	}
	if b.opt.enabled(groupMain) && b.opt.changed && !b.opt.skipFireops {
		what := "CPU of the snapshot after 1% changed / the first snapshot, fireops"
		if r := b.opRatio(opChanged, opFirst, toolRestic, fCPU); r >= 0 {
			what += fmt.Sprintf(" (restic: %s)", fmtRatio(r))
		}
		out = append(out, verdict(what, b.opRatio(opChanged, opFirst, toolFireops, fCPU), 0.4, "x"))
	}
	if b.opt.enabled(groupSmall) && !b.opt.skipFireops {
		out = append(out, verdict(fmt.Sprintf("first snapshot of %d small files, wall, fireops/shell", b.smallStats.files), b.ratio(opSmall, toolFireops, toolShell, fWall), 1.3, "x"))
	}
	return out
}

// opRatio is median(op) / median(other op) of one tool's field; -1 when unknown.
func (b *bench) opRatio(op, otherOp, tool string, f func(sample) int64) float64 {
	return b.medianRatio(op, tool, otherOp, tool, f)
}

// reportMedians writes the table of medians and fireops' ratios to the others.
func (b *bench) reportMedians(w io.Writer) {
	fmt.Fprintf(w, "\n### Medians\n\n")
	fmt.Fprintf(w, "| operation | tool | wall (min-max) | CPU | peak RSS | output | other load |\n")
	fmt.Fprintf(w, "|---|---|---:|---:|---:|---:|---:|\n")
	noisy, total := 0, 0
	for _, op := range allOps {
		for _, tool := range allTools {
			wall, lo, hi, ok := b.stat(op, tool, fWall)
			if !ok {
				continue
			}
			cpu, _, _, _ := b.stat(op, tool, fCPU)
			rss, _, _, _ := b.stat(op, tool, fRSS)
			out, _, _, _ := b.stat(op, tool, fOut)
			rng := ""
			if len(b.results[op][tool]) > 1 {
				rng = fmt.Sprintf(" (%.2f-%.2f)", time.Duration(lo).Seconds(), time.Duration(hi).Seconds())
			}
			outS := fmtBytes(out)
			switch op {
			case opSecond, opChanged:
				outS = "+" + outS
			case opRestore:
				outS += " restored"
			}
			worst := 0.0
			for _, s := range b.results[op][tool] {
				total++
				worst = max(worst, busyShare(s))
				if busyShare(s) > noisyShare {
					noisy++
				}
			}
			fmt.Fprintf(w, "| %s | %s | %s%s | %s | %s | %s | %.0f%% |\n", op, tool, fmtDur(time.Duration(wall)), rng,
				fmtDur(time.Duration(cpu)), fmtBytes(rss), outS, worst*100)
		}
	}
	fmt.Fprintf(w, "\nother load: the most CPU that other processes used during one of the runs, as a share of the machine.\n")
	if noisy > 0 {
		b.warns = append(b.warns, fmt.Sprintf("%d of %d runs overlapped with other processes using more than %.0f%% of the CPUs: their timings are unreliable; rerun on an idle machine", noisy, total, noisyShare*100))
	}

	fmt.Fprintf(w, "\n### fireops as a ratio of the others (medians)\n\n")
	fmt.Fprintf(w, "| operation | fireops / | wall | CPU | peak RSS | output |\n|---|---|---:|---:|---:|---:|\n")
	for _, op := range []string{opFirst, opSecond, opRestore, opChanged, opSmall} {
		for _, other := range []string{toolShell, toolRestic} {
			if _, _, _, ok := b.stat(op, other, fWall); !ok {
				continue
			}
			if _, _, _, ok := b.stat(op, toolFireops, fWall); !ok {
				continue
			}
			cols := []string{}
			for _, f := range []func(sample) int64{fWall, fCPU, fRSS, fOut} {
				cols = append(cols, fmtRatio(b.ratio(op, toolFireops, other, f)))
			}
			if op == opRestore {
				cols[3] = "-"
			}
			fmt.Fprintf(w, "| %s | %s | %s |\n", op, other, strings.Join(cols, " | "))
		}
	}
}
