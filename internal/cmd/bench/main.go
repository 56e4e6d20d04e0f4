// Command bench compares fireops with the shell pipeline
// `tar | zstd -3 -T0 | age` and with restic on a generated ML-team dataset:
// first snapshot, second snapshot with nothing changed, restore, and a
// snapshot after 1% of the dataset changed, each repeated with the tools
// alternating, then fireops' peak RSS at 1x and 4x the data. Then the churn
// benchmark (churn.go: seven nights of small changes to a volume-like tree,
// what each nightly snapshot adds, fireops against restic) and a tree of
// 100,000 small files (smallfiles.go: fireops against the pipeline). It
// prints medians, fireops' ratios to the others, and the targets of issue 3
// and of format v2 with PASS or MISS. `make bench` runs it:
//
//	go run ./internal/cmd/bench -fireops bin/fireops [-size 1GiB] [-runs 3] [-only churn]
//
// It needs tar, zstd, age and restic (scripts/test-deps.sh installs them).
// Everything is written under a private temp dir that is removed at the end
// (-keep keeps it); restores go to tmpfs (/dev/shm) when it has room.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/firetech/fireops/internal/churn"
)

type options struct {
	fireops      string
	size         int64
	runs         int
	workdir      string
	keep         bool
	skipRestic   bool
	skipFireops  bool
	scaleCheck   bool
	seed         uint64
	quietWait    time.Duration
	noisyRetries int
	recovery     bool

	changed     bool  // the snapshot after 1% of the dataset changed
	churn       bool  // the churn benchmark
	churnSize   int64 // its tree
	churnNights int
	smallFiles  bool // the many-small-files tree
	smallCount  int
	only        map[string]bool // -only: the groups to run (empty: all enabled)
}

// The groups of measurements -only selects.
const (
	groupMain  = "main"  // the -size dataset: first, second, restore, 1% changed, 4x, recovery
	groupChurn = "churn" // churn.go
	groupSmall = "small" // smallfiles.go
)

// enabled says whether a group of measurements runs: the ones -only names,
// or without -only the main one and those whose flag is on.
func (o *options) enabled(group string) bool {
	if len(o.only) > 0 {
		return o.only[group]
	}
	switch group {
	case groupChurn:
		return o.churn
	case groupSmall:
		return o.smallFiles
	}
	return true
}

// parseOnly reads -only: a comma-separated list of groups.
func parseOnly(s string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, g := range strings.Split(s, ",") {
		g = strings.TrimSpace(g)
		switch g {
		case "":
		case groupMain, groupChurn, groupSmall:
			out[g] = true
		case "small-files":
			out[groupSmall] = true
		default:
			return nil, fmt.Errorf("unknown group %q: want main, churn or small", g)
		}
	}
	return out, nil
}

// The tools and operations of the report.
const (
	toolFireops  = "fireops"
	toolFireops2 = "fireops, 2 destinations"
	toolShell    = "shell pipeline"
	toolRestic   = "restic"

	opFirst   = "first snapshot"
	opSecond  = "second snapshot, no change"
	opRestore = "restore"
	opChanged = "snapshot after 1% changed"
	opScale   = "first snapshot, 4x data"
	opSmall   = "first snapshot, small files"

	toolWalk = "walk (find -printf)"
)

type bench struct {
	opt   options
	ctx   context.Context
	start time.Time

	work    string // private temp dir
	data    string // the dataset
	outDir  string // every tool's output
	keysDir string // fireops init's folder: keys and configs
	cfgHead string // the generated config up to "destinations:"

	recipient, identity string
	resticEnv           []string

	stats       datasetStats // the dataset now (after changedSnapshots, changed)
	genStats    datasetStats // as generated
	changeDesc  string       // what changedSnapshots changed
	churnRes    *churnResult
	smallStats  smallStats
	recoveryRes *recoveryResult
	restoreDir  string
	restoreDesc string

	results map[string]map[string][]sample
	warns   []string
}

func main() {
	var o options
	var size, churnSize, only string
	flag.StringVar(&o.fireops, "fireops", "bin/fireops", "the fireops binary to measure")
	flag.StringVar(&size, "size", "1GiB", "dataset size (e.g. 64MiB, 256MiB, 1GiB, 4GiB)")
	flag.IntVar(&o.runs, "runs", 3, "runs of each tool and operation (medians are reported)")
	flag.StringVar(&o.workdir, "workdir", "", "folder for the private temp dir (default $TMPDIR or /tmp); it needs about 11x -size free (8x without -scale-check)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp dir (dataset, outputs, configs) at the end")
	flag.BoolVar(&o.skipRestic, "skip-restic", false, "leave restic out")
	flag.BoolVar(&o.skipFireops, "skip-fireops", false, "leave fireops out (to try the harness alone)")
	flag.BoolVar(&o.scaleCheck, "scale-check", true, "also measure fireops' peak RSS on 4x the data")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the generated dataset")
	flag.IntVar(&o.noisyRetries, "noisy-retries", 2, "run a measurement again, up to this many times, when other processes used over 10% of the CPUs during it")
	flag.BoolVar(&o.recovery, "recovery", false, "also time a whole-server snapshot and `restore --all` (dataset, SQLite, MongoDB, Docker volumes) over WebDAV; needs root, Docker and FerretDB (recovery.go)")
	flag.DurationVar(&o.quietWait, "quiet-wait", time.Minute, "before each run, wait up to this long for other processes to leave the CPUs idle")
	flag.BoolVar(&o.changed, "changed", true, "after the restores, change about 1% of the dataset and time a snapshot with the same state and destination")
	flag.BoolVar(&o.churn, "churn", true, "run the churn benchmark: nightly small changes to a volume-like tree, fireops' and restic's growth per night (churn.go)")
	flag.StringVar(&churnSize, "churn-size", "300MiB", "size of the churn benchmark's tree")
	flag.IntVar(&o.churnNights, "churn-nights", 7, "nights of the churn benchmark")
	flag.BoolVar(&o.smallFiles, "small-files", true, "time a first snapshot of a tree of many small files against the shell pipeline (smallfiles.go)")
	flag.IntVar(&o.smallCount, "small-files-count", 100000, "files in the many-small-files tree (1-6 KiB each)")
	flag.StringVar(&only, "only", "", "run only these groups, comma-separated: main (the -size dataset), churn, small; overrides -churn and -small-files")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./internal/cmd/bench [flags]\n\n"+
			"Benchmarks fireops against `tar | zstd | age` and restic on a generated dataset.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	var err error
	if o.size, err = parseSize(size); err != nil || o.size < 1*mib {
		fmt.Fprintf(os.Stderr, "bench: -size %q: want a size of at least 1MiB such as 256MiB or 1GiB\n", size)
		os.Exit(2)
	}
	if o.runs < 1 {
		fmt.Fprintln(os.Stderr, "bench: -runs must be at least 1")
		os.Exit(2)
	}
	if o.churnSize, err = parseSize(churnSize); err != nil || o.churnSize < 4*mib {
		fmt.Fprintf(os.Stderr, "bench: -churn-size %q: want a size of at least 4MiB such as 300MiB\n", churnSize)
		os.Exit(2)
	}
	if o.churnNights < 1 || o.smallCount < 1 {
		fmt.Fprintln(os.Stderr, "bench: -churn-nights and -small-files-count must be at least 1")
		os.Exit(2)
	}
	if o.only, err = parseOnly(only); err != nil {
		fmt.Fprintf(os.Stderr, "bench: -only: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{opt: o, ctx: ctx, start: time.Now(), results: map[string]map[string][]sample{}}
	err = b.run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", gib}, {"MiB", mib}, {"KiB", kib}, {"G", gib}, {"M", mib}, {"K", kib}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("bad size")
	}
	return int64(f * float64(mult)), nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	b.warns = append(b.warns, msg)
	b.logf("WARNING: %s", msg)
}

func (b *bench) record(op, tool string, s sample) {
	if b.results[op] == nil {
		b.results[op] = map[string][]sample{}
	}
	b.results[op][tool] = append(b.results[op][tool], s)
	b.logSample(op, tool, s)
}

// logSample logs one measured run.
func (b *bench) logSample(op, tool string, s sample) {
	busy := ""
	if f := busyShare(s); f > noisyShare {
		busy = fmt.Sprintf(" [busy machine: other processes used %.0f%% of the CPUs]", f*100)
	}
	b.logf("  %-27s %-24s wall %-8s cpu %-8s rss %-10s out %s %s%s", op, tool, fmtDur(s.wall), fmtDur(s.cpu), fmtBytes(s.maxRSS), fmtBytes(s.out), s.note, busy)
}

// noisyShare is the share of the machine's CPU time other processes may use
// during a run before its timing is flagged as unreliable.
const noisyShare = 0.10

// busyShare is the share of the machine's CPU time that other processes
// used during the run.
func busyShare(s sample) float64 {
	if s.wall <= 0 {
		return 0
	}
	return s.other.Seconds() / (s.wall.Seconds() * float64(runtime.NumCPU()))
}

func (b *bench) run() (err error) {
	if err := b.checkTools(); err != nil {
		return err
	}
	parent := b.opt.workdir
	if parent == "" {
		parent = os.TempDir()
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(parent, &st); err == nil {
		need := diskNeed(b.opt)
		if free := int64(st.Bavail) * st.Bsize; free < need {
			return fmt.Errorf("%s has %s free; these flags need about %s (datasets, every tool's outputs, the 4x check): pass -workdir, a smaller -size or -churn-size, or -only",
				parent, fmtBytes(free), fmtBytes(need))
		}
	}
	b.work, err = os.MkdirTemp(parent, "fireops-bench-")
	if err != nil {
		return err
	}
	if err := os.Chmod(b.work, 0o700); err != nil {
		return err
	}
	defer func() {
		if b.restoreDir != "" && !strings.HasPrefix(b.restoreDir, b.work) {
			os.RemoveAll(b.restoreDir)
		}
		if b.opt.keep {
			b.logf("kept %s", b.work)
			return
		}
		if rerr := os.RemoveAll(b.work); rerr != nil && err == nil {
			err = rerr
		}
	}()
	b.logf("work dir %s", b.work)
	b.data = filepath.Join(b.work, "data")
	b.outDir = filepath.Join(b.work, "out")
	b.keysDir = filepath.Join(b.work, "keys")
	for _, d := range []string{b.outDir, b.keysDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}

	if b.opt.enabled(groupMain) {
		b.logf("generating %s of ML-team data (seed %d)", fmtBytes(b.opt.size), b.opt.seed)
		t := time.Now()
		if b.stats, err = generateDataset(b.ctx, b.data, b.opt.size, b.opt.seed, runtime.NumCPU()); err != nil {
			return err
		}
		b.genStats = b.stats
		b.logf("generated %d files, %s in %s", b.stats.files, fmtBytes(b.stats.bytes), fmtDur(time.Since(t)))
	}

	if err := b.setupKeys(); err != nil {
		return err
	}
	if b.opt.enabled(groupMain) {
		if err := b.mainBench(); err != nil {
			return err
		}
	}
	if b.opt.enabled(groupChurn) {
		if err := b.churnBench(); err != nil {
			return fmt.Errorf("churn benchmark: %w", err)
		}
	}
	if b.opt.enabled(groupSmall) {
		if err := b.smallFilesBench(); err != nil {
			return fmt.Errorf("small-files benchmark: %w", err)
		}
	}
	b.report(os.Stdout)
	if b.recoveryRes != nil {
		b.reportRecovery(os.Stdout, b.recoveryRes)
	}
	return nil
}

// diskNeed is about how much free disk the enabled measurements need under
// -workdir. They run one after the other and each removes its outputs, but
// the -size dataset stays until the end.
func diskNeed(o options) int64 {
	var main, data int64
	if o.enabled(groupMain) {
		main, data = 8*o.size, o.size
		if o.scaleCheck {
			main = 11 * o.size
		}
		if o.recovery {
			main += o.size
		}
	}
	need := main
	if o.enabled(groupChurn) {
		// The tree, restic's repository (about the tree again) and a
		// destination that may grow by the whole tree each night (format v1).
		need = max(need, data+int64(o.churnNights+3)*o.churnSize)
	}
	if o.enabled(groupSmall) {
		// The tree takes about 1.5x its bytes in blocks; one output at a time.
		need = max(need, data+int64(o.smallCount)*smallFileMean*3)
	}
	return need
}

// mainBench measures the tools on the -size dataset.
func (b *bench) mainBench() (err error) {
	if b.restoreDir, b.restoreDesc, err = restoreTarget(b.work, b.stats.bytes*3/2+256*mib); err != nil {
		return err
	}
	b.logf("restores go to %s", b.restoreDesc)

	if err := b.firstSnapshots(); err != nil {
		return err
	}
	if err := b.secondSnapshots(); err != nil {
		return err
	}
	if err := b.restores(); err != nil {
		return err
	}
	if b.opt.changed {
		if err := b.changedSnapshots(); err != nil {
			return err
		}
	}
	if b.opt.scaleCheck && !b.opt.skipFireops {
		if b.opt.size < 256*mib {
			b.warnf("-size %s is small: fireops' fixed buffers (a few 32 MiB chunks) dominate its RSS at 1x, so the 4x check needs -size 256MiB or more to mean anything", fmtBytes(b.opt.size))
		}
		if err := b.scale(); err != nil {
			return err
		}
	}
	if b.opt.recovery && !b.opt.skipFireops {
		if b.recoveryRes, err = b.recovery(); err != nil {
			return fmt.Errorf("recovery benchmark: %w", err)
		}
	}
	return nil
}

func (b *bench) checkTools() error {
	need := []string{"bash", "tar", "zstd", "age"}
	if b.opt.enabled(groupSmall) {
		need = append(need, "find", "sha256sum")
	}
	if b.opt.skipFireops {
		need = append(need, "age-keygen") // the pipeline's key; else fireops init's
	}
	if !b.opt.skipRestic && (b.opt.enabled(groupMain) || b.opt.enabled(groupChurn)) {
		need = append(need, "restic")
	}
	var missing []string
	for _, t := range need {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s not found in PATH: install them (scripts/test-deps.sh installs age, zstd, restic and tar; or apt-get install %s)",
			strings.Join(missing, ", "), strings.Join(debPackages(missing), " "))
	}
	if b.opt.skipFireops {
		return nil
	}
	p, err := filepath.Abs(b.opt.fireops)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("fireops binary %s not found or not executable: run `make build` or pass -fireops PATH", b.opt.fireops)
	}
	b.opt.fireops = p
	if out, err := output(b.ctx, nil, p, "snapshot", "--help"); err != nil || !strings.Contains(out, "snapshot") {
		return fmt.Errorf("%s has no working `snapshot` command (%v): build a fireops that has it", p, err)
	}
	return nil
}

func debPackages(tools []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range tools {
		p := t
		if t == "age-keygen" {
			p = "age"
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// setupKeys writes fireops' keys and config with `fireops init`, and the
// shell pipeline's age key. The shell pipeline uses fireops' recipient when
// there is one, so both encrypt to the same key.
func (b *bench) setupKeys() error {
	b.resticEnv = []string{
		"RESTIC_PASSWORD=fireops-bench",
		"RESTIC_CACHE_DIR=" + filepath.Join(b.work, "restic-cache"),
	}
	if b.opt.skipFireops {
		b.identity = filepath.Join(b.keysDir, "shell-identity.txt")
		if _, err := output(b.ctx, nil, "age-keygen", "-o", b.identity); err != nil {
			return err
		}
		out, err := output(b.ctx, nil, "age-keygen", "-y", b.identity)
		b.recipient = strings.TrimSpace(out)
		return err
	}
	if _, err := output(b.ctx, nil, b.opt.fireops, "init", "--dir", b.keysDir, "--host", "bench"); err != nil {
		return err
	}
	cfg, err := os.ReadFile(filepath.Join(b.keysDir, "fireops.yaml"))
	if err != nil {
		return err
	}
	i := regexp.MustCompile(`(?m)^destinations:`).FindIndex(cfg)
	if i == nil {
		return errors.New("the config `fireops init` wrote has no top-level destinations: key to edit")
	}
	b.cfgHead = string(cfg[:i[0]])
	b.recipient = regexp.MustCompile(`age1[0-9a-z]{50,}`).FindString(b.cfgHead)
	if b.recipient == "" {
		return errors.New("no age1... recipient in the config `fireops init` wrote")
	}
	b.identity = filepath.Join(b.keysDir, "identity.txt")
	// Check the editing with one config now, so a mistake shows before any run.
	c, err := b.fireopsConfig("check", b.outDir, []string{filepath.Join(b.outDir, "check")}, filepath.Join(b.work, "state-check"))
	if err != nil {
		return err
	}
	if out, err := output(b.ctx, nil, b.opt.fireops, "--config", c, "config", "check"); err != nil {
		return fmt.Errorf("the benchmark's fireops config does not pass `config check`: %v\n%s", err, out)
	}
	return nil
}

// fireopsConfig writes the config `name`: init's keys section, one local
// destination per dests, the state dir and data as a files source.
func (b *bench) fireopsConfig(name, data string, dests []string, state string) (string, error) {
	q := func(s string) string { j, _ := json.Marshal(s); return string(j) }
	var sb strings.Builder
	sb.WriteString(b.cfgHead)
	sb.WriteString("destinations:\n")
	for i, d := range dests {
		fmt.Fprintf(&sb, "  - name: local%d\n    remote: %s\n", i+1, q(d))
	}
	fmt.Fprintf(&sb, "\nstate_dir: %s\n\nsources:\n  files:\n    - name: ml\n      paths: [%s]\n", q(state), q(data))
	p := filepath.Join(b.keysDir, "fireops-"+name+".yaml")
	return p, os.WriteFile(p, []byte(sb.String()), 0o600)
}

// snapResult is what the benchmark reads of `fireops snapshot --json`
// (snapshot.Result); parseSnapResult fills it.
type snapResult struct {
	ID           string
	Parts        []snapPart
	Destinations []snapDest
}

type snapPart struct {
	ID           string
	Reused       bool
	Size, Stored int64
}

type snapDest struct {
	Name, Error string
	Uploaded    int64
	Reused      int
}

// parseSnapResult reads what `fireops snapshot --json` printed, tolerantly,
// since the output may gain fields as the format changes: text before the
// JSON object and after it, unknown fields, and fields of another type than
// expected are ignored (such a field reads as zero; an error that is not a
// string reads as its JSON). It fails only when there is no JSON object.
func parseSnapResult(out []byte) (*snapResult, error) {
	i := bytes.IndexByte(out, '{')
	if i < 0 {
		return nil, errors.New("no JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(out[i:]))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	res := &snapResult{ID: jsonText(v["id"])}
	for _, p := range jsonList(v["parts"]) {
		m, _ := p.(map[string]any)
		res.Parts = append(res.Parts, snapPart{ID: jsonText(m["id"]), Reused: m["reused"] == true, Size: jsonInt(m["size"]), Stored: jsonInt(m["stored"])})
	}
	for _, d := range jsonList(v["destinations"]) {
		m, _ := d.(map[string]any)
		res.Destinations = append(res.Destinations, snapDest{Name: jsonText(m["name"]), Error: jsonText(m["error"]),
			Uploaded: jsonInt(m["uploaded"]), Reused: int(jsonInt(m["reused"]))})
	}
	return res, nil
}

func jsonList(v any) []any { l, _ := v.([]any); return l }

// jsonText is a string as it is, nothing as "", anything else as its JSON.
func jsonText(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// jsonInt is a whole number, or 0.
func jsonInt(v any) int64 {
	n, _ := v.(json.Number)
	i, err := n.Int64()
	if err != nil {
		f, _ := n.Float64()
		i = int64(f)
	}
	return i
}

// reuseRun is what one second snapshot did.
type reuseRun struct {
	parts, reusedParts int
	uploaded           int64
	ok                 bool // every part of every destination reused
}

// measure waits for a quiet machine, then runs and measures c.
func (b *bench) measure(c command) (sample, error) {
	if busy, ok := waitQuiet(b.ctx, b.opt.quietWait); !ok && b.ctx.Err() == nil {
		b.logf("  (machine still busy after %s: other processes used %.0f%% of a CPU; measuring anyway)", b.opt.quietWait, busy.Seconds()*100)
	}
	return measure(b.ctx, c)
}

// attempt runs fn, which prepares fresh inputs and outputs and measures one
// run, and records the sample. When other processes used more than
// noisyShare of the machine during the run, it runs fn again (up to
// -noisy-retries times) and keeps the quietest sample.
func (b *bench) attempt(op, tool string, fn func() (sample, error)) error {
	var best sample
	for i := 0; ; i++ {
		s, err := fn()
		if err != nil {
			return err
		}
		if i == 0 || busyShare(s) < busyShare(best) {
			best = s
		}
		if busyShare(best) <= noisyShare || i >= b.opt.noisyRetries {
			break
		}
		b.logf("  %-27s %-24s busy machine (other processes used %.0f%% of the CPUs): again", op, tool, busyShare(s)*100)
	}
	b.record(op, tool, best)
	return nil
}

// fireopsSnapshot runs `fireops snapshot --json -q` with config cfg.
func (b *bench) fireopsSnapshot(cfg string) (sample, *snapResult, error) {
	var stdout bytes.Buffer
	s, err := b.measure(command{argv: []string{b.opt.fireops, "--config", cfg, "snapshot", "--json", "-q"}, stdout: &stdout})
	if err != nil {
		return s, nil, err
	}
	res, err := parseSnapResult(stdout.Bytes())
	if err != nil {
		b.warnf("cannot read `fireops snapshot --json` output (%v): %.200q", err, stdout.String())
		return s, nil, nil
	}
	for _, d := range res.Destinations {
		if d.Error != "" {
			return s, res, fmt.Errorf("fireops snapshot: destination %s failed: %s", d.Name, d.Error)
		}
	}
	return s, res, nil
}

// fireopsFirst snapshots data to fresh destinations with a fresh state;
// the output is the first destination's size.
func (b *bench) fireopsFirst(data, name string, dests []string) (sample, error) {
	state := filepath.Join(b.work, "state-"+name)
	for _, d := range append([]string{state}, dests...) {
		if err := os.RemoveAll(d); err != nil {
			return sample{}, err
		}
	}
	cfg, err := b.fireopsConfig(name, data, dests, state)
	if err != nil {
		return sample{}, err
	}
	s, res, err := b.fireopsSnapshot(cfg)
	if err != nil {
		return s, err
	}
	if res != nil {
		for _, d := range res.Destinations {
			if d.Reused != 0 {
				b.warnf("first snapshot %s reused %d parts on %s (fresh state and destination)", name, d.Reused, d.Name)
			}
		}
	}
	s.out, _, err = treeSize(dests[0])
	if len(dests) > 1 {
		s.note = "(output: one destination)"
	}
	return s, err
}

func (b *bench) shellSnapshot(data, out string) (sample, error) {
	script := `tar -cf - -C "$1" . | zstd -3 -T0 -q | age -r "$2" > "$3"`
	s, err := b.measure(command{argv: []string{"bash", "-o", "pipefail", "-c", script, "bench", data, b.recipient, out}})
	if err != nil {
		return s, err
	}
	s.out, _, err = treeSize(out)
	s.note = "(RSS: largest process of the pipeline)"
	return s, err
}

func (b *bench) restic(args ...string) (sample, error) {
	return b.measure(command{argv: append([]string{"restic", "-q"}, args...), env: b.resticEnv})
}

// resticFirst backs the dataset up into a fresh repository.
func (b *bench) resticFirst(repo string) (sample, error) {
	if err := os.RemoveAll(repo); err != nil {
		return sample{}, err
	}
	if _, err := output(b.ctx, b.resticEnv, "restic", "-q", "init", "--repo", repo); err != nil {
		return sample{}, err
	}
	s, err := b.restic("--repo", repo, "backup", b.data)
	if err != nil {
		return s, err
	}
	s.out, _, err = treeSize(repo)
	return s, err
}

func (b *bench) fireopsDest(r int) string {
	return filepath.Join(b.outDir, fmt.Sprintf("fireops-%d", r))
}
func (b *bench) fireopsCfg(r int) string {
	return filepath.Join(b.keysDir, fmt.Sprintf("fireops-%d.yaml", r))
}
func (b *bench) shellOut(r int) string {
	return filepath.Join(b.outDir, fmt.Sprintf("shell-%d.tar.zst.age", r))
}
func (b *bench) resticRepo(r int) string { return filepath.Join(b.outDir, fmt.Sprintf("restic-%d", r)) }

func (b *bench) firstSnapshots() error {
	for r := 1; r <= b.opt.runs; r++ {
		b.logf("first snapshot, round %d of %d", r, b.opt.runs)
		if !b.opt.skipFireops {
			err := b.attempt(opFirst, toolFireops, func() (sample, error) {
				return b.fireopsFirst(b.data, strconv.Itoa(r), []string{b.fireopsDest(r)})
			})
			if err != nil {
				return err
			}
		}
		if err := b.attempt(opFirst, toolShell, func() (sample, error) { return b.shellSnapshot(b.data, b.shellOut(r)) }); err != nil {
			return err
		}
		if !b.opt.skipRestic {
			if err := b.attempt(opFirst, toolRestic, func() (sample, error) { return b.resticFirst(b.resticRepo(r)) }); err != nil {
				return err
			}
		}
		if !b.opt.skipFireops {
			if err := b.attempt(opFirst, toolFireops2, func() (sample, error) { return b.fireops2Dest(b.data, fmt.Sprintf("2dest-%d", r)) }); err != nil {
				return err
			}
		}
	}
	return nil
}

// fireops2Dest snapshots data to two fresh local destinations and removes
// them afterwards.
func (b *bench) fireops2Dest(data, name string) (sample, error) {
	dests := []string{filepath.Join(b.outDir, name+"-a"), filepath.Join(b.outDir, name+"-b")}
	s, err := b.fireopsFirst(data, name, dests)
	for _, d := range append(dests, filepath.Join(b.work, "state-"+name)) {
		if rerr := os.RemoveAll(d); err == nil {
			err = rerr
		}
	}
	return s, err
}

// growth runs fn and returns its sample with out set to how much dir grew
// (from nothing when dir did not exist before).
func growth(dir string, fn func() (sample, error)) (sample, error) {
	before, _, err := treeSize(dir)
	if errors.Is(err, fs.ErrNotExist) {
		before, err = 0, nil
	}
	if err != nil {
		return sample{}, err
	}
	s, err := fn()
	if err != nil {
		return s, err
	}
	after, _, err := treeSize(dir)
	s.out = after - before
	return s, err
}

func (b *bench) secondSnapshots() error {
	for r := 1; r <= b.opt.runs; r++ {
		b.logf("second snapshot with nothing changed, round %d of %d", r, b.opt.runs)
		if !b.opt.skipFireops {
			err := b.attempt(opSecond, toolFireops, func() (sample, error) {
				var res *snapResult
				s, err := growth(b.fireopsDest(r), func() (s sample, err error) {
					s, res, err = b.fireopsSnapshot(b.fireopsCfg(r))
					return s, err
				})
				if err != nil {
					return s, err
				}
				rr := &reuseRun{} // no --json result: not ok
				if res != nil {
					rr = &reuseRun{parts: len(res.Parts), ok: len(res.Parts) > 0}
					for _, p := range res.Parts {
						if p.Reused {
							rr.reusedParts++
						} else {
							rr.ok = false
						}
					}
					for _, d := range res.Destinations {
						rr.uploaded += d.Uploaded
						if d.Reused != len(res.Parts) {
							rr.ok = false
						}
					}
				}
				s.reuse = rr
				s.note = fmt.Sprintf("(reused %d of %d parts, uploaded %s)", rr.reusedParts, rr.parts, fmtBytes(rr.uploaded))
				return s, nil
			})
			if err != nil {
				return err
			}
		}
		if !b.opt.skipRestic {
			err := b.attempt(opSecond, toolRestic, func() (sample, error) {
				return growth(b.resticRepo(r), func() (sample, error) { return b.restic("--repo", b.resticRepo(r), "backup", b.data) })
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// changedSnapshots changes about 1% of the dataset (churn.Percent: rows
// appended to three training logs, four notebooks edited, ten small files
// added), then snapshots it once per round with each round's state and
// destination (fireops) or repository (restic), which hold the unchanged
// dataset. A round cannot be run again when the machine was busy: the
// second try would find nothing changed.
func (b *bench) changedSnapshots() error {
	if b.opt.skipFireops && b.opt.skipRestic {
		return nil
	}
	c, err := churn.Apply(b.data, b.opt.seed, 1, churn.Percent(b.stats.bytes, 1))
	if err != nil {
		return fmt.Errorf("changing 1%% of the dataset: %w", err)
	}
	// The restores are done; the recovery benchmark checks its restore
	// against the changed dataset.
	if b.stats.bytes, b.stats.files, err = treeSize(b.data); err != nil {
		return err
	}
	b.changeDesc = fmt.Sprintf("%s: %s in %d files", c, fmtBytes(c.Appended+c.AddedBytes), len(c.Paths))
	b.logf("changed about 1%% of the dataset: %s", b.changeDesc)
	for r := 1; r <= b.opt.runs; r++ {
		b.logf("snapshot after 1%% changed, round %d of %d", r, b.opt.runs)
		if !b.opt.skipFireops {
			var res *snapResult
			s, err := growth(b.fireopsDest(r), func() (s sample, err error) {
				s, res, err = b.fireopsSnapshot(b.fireopsCfg(r))
				return s, err
			})
			if err != nil {
				return err
			}
			s.note = uploadNote(res)
			b.record(opChanged, toolFireops, s)
		}
		if !b.opt.skipRestic {
			s, err := growth(b.resticRepo(r), func() (sample, error) { return b.restic("--repo", b.resticRepo(r), "backup", b.data) })
			if err != nil {
				return err
			}
			b.record(opChanged, toolRestic, s)
		}
	}
	return nil
}

// uploadNote says what a fireops snapshot reported of reused parts and
// uploaded bytes.
func uploadNote(res *snapResult) string {
	if res == nil {
		return "(no --json result)"
	}
	reused, uploaded := 0, int64(0)
	for _, p := range res.Parts {
		if p.Reused {
			reused++
		}
	}
	for _, d := range res.Destinations {
		uploaded += d.Uploaded
	}
	return fmt.Sprintf("(reused %d of %d parts, uploaded %s)", reused, len(res.Parts), fmtBytes(uploaded))
}

func (b *bench) restores() error {
	// fireops stages next to the target: keep that inside the private dir.
	t := filepath.Join(b.restoreDir, "target")
	// restore empties the target, runs fn and checks what it restored.
	restore := func(tool string, fn func() (sample, error)) func() (sample, error) {
		return func() (sample, error) {
			if err := emptyDir(t); err != nil {
				return sample{}, err
			}
			s, err := fn()
			if err != nil {
				return s, err
			}
			n, files, err := treeSize(t)
			if err != nil {
				return s, err
			}
			if n != b.stats.bytes || files != b.stats.files {
				return s, fmt.Errorf("%s restored %d files, %s; the dataset has %d files, %s", tool, files, fmtBytes(n), b.stats.files, fmtBytes(b.stats.bytes))
			}
			s.out = n
			return s, emptyDir(t)
		}
	}
	for r := 1; r <= b.opt.runs; r++ {
		b.logf("restore, round %d of %d", r, b.opt.runs)
		if !b.opt.skipFireops {
			err := b.attempt(opRestore, toolFireops, restore(toolFireops, func() (sample, error) {
				return b.measure(command{argv: []string{b.opt.fireops, "--config", b.fireopsCfg(r), "restore", "latest", "--to", t, "--force", "-q"}})
			}))
			if err != nil {
				return err
			}
		}
		err := b.attempt(opRestore, toolShell, restore(toolShell, func() (sample, error) {
			script := `age -d -i "$1" < "$2" | zstd -d -q | tar -xf - -C "$3"`
			s, err := b.measure(command{argv: []string{"bash", "-o", "pipefail", "-c", script, "bench", b.identity, b.shellOut(r), t}})
			s.note = "(RSS: largest process of the pipeline)"
			return s, err
		}))
		if err != nil {
			return err
		}
		if !b.opt.skipRestic {
			err := b.attempt(opRestore, toolRestic, restore(toolRestic, func() (sample, error) {
				return b.restic("--repo", b.resticRepo(r), "restore", "latest", "--target", t)
			}))
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// scale measures fireops' peak RSS on 4x the data, with one and two
// destinations, to compare with the 1x runs.
func (b *bench) scale() error {
	// The 1x outputs are no longer needed: free the disk first.
	if err := os.RemoveAll(b.outDir); err != nil {
		return err
	}
	if err := os.Mkdir(b.outDir, 0o700); err != nil {
		return err
	}
	data4 := filepath.Join(b.work, "data-4x")
	b.logf("scale check: generating %s (4x)", fmtBytes(4*b.opt.size))
	st, err := generateDataset(b.ctx, data4, 4*b.opt.size, b.opt.seed+1, runtime.NumCPU())
	if err != nil {
		return err
	}
	b.logf("generated %d files, %s", st.files, fmtBytes(st.bytes))
	err = b.attempt(opScale, toolFireops, func() (sample, error) {
		dest := filepath.Join(b.outDir, "fireops-4x")
		s, err := b.fireopsFirst(data4, "4x", []string{dest})
		if rerr := os.RemoveAll(dest); err == nil {
			err = rerr
		}
		return s, err
	})
	if err != nil {
		return err
	}
	if err := b.attempt(opScale, toolFireops2, func() (sample, error) { return b.fireops2Dest(data4, "2dest-4x") }); err != nil {
		return err
	}
	return os.RemoveAll(data4)
}
