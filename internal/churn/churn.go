// Package churn makes a volume-like tree of an ML team's files (training
// logs in CSV, a few near-random float32 checkpoints, hundreds of small
// Jupyter notebooks, small configs and notes) and changes it the way a
// night of work does: a log grows by appended rows, notebooks get a cell
// edited in the middle, a small file appears. Everything is derived from a
// seed, so two trees made and changed with the same arguments hold the
// same bytes. The benchmark program (internal/cmd/bench) measures how much
// each nightly snapshot adds; tests can use a smaller tree.
//
// It only writes under the folder it is given and never deletes anything.
package churn

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/firetech/fireops/internal/humanbytes"
)

// Stats counts the files and bytes of a tree.
type Stats struct {
	Files int
	Bytes int64
	Count map[Kind]int // files per kind
}

type spec struct {
	rel  string
	kind Kind
	size int64
	seed uint64
}

// plan lays out a tree of about size bytes: 50% checkpoints (a few files of
// 30-60 MiB at 300 MiB), 30% CSV training logs (2-12 MiB each), notebooks
// (one per 341 KiB of size: 900 at 300 MiB; asked for 8-40 KiB, they come
// out at ~60 KB on average, ~17% of the tree: a plot is 21-85 KB) and 3%
// small files (0.5-8 KiB: configs, params, evaluation CSVs, notes).
func plan(size int64, seed uint64) []spec {
	r := rand.New(rand.NewPCG(seed, 0x636875726e))
	var specs []spec
	add := func(rel string, k Kind, sz int64) {
		specs = append(specs, spec{rel: rel, kind: k, size: sz, seed: r.Uint64()})
	}
	split := func(budget, lo, hi int64) []int64 { return Split(r, budget, lo, hi) }
	projects := []string{"firebreak", "wind-field", "swarm-ppo", "smoke-seg"}
	runDir := func(i int) string { return fmt.Sprintf("runs/%s/run-%03d", projects[i%len(projects)], i) }
	logs := split(size*30/100, 2*mib, 12*mib)
	for i, sz := range logs {
		add(runDir(i)+"/train_log.csv", CSVLog, sz)
	}
	for i, sz := range split(size*50/100, 30*mib, 60*mib) {
		add(fmt.Sprintf("%s/checkpoints/step-%06d.safetensors", runDir(i*7%len(logs)), (i+1)*25000), Checkpoint, sz&^3)
	}
	topics := []string{"eda", "reward-shaping", "eval", "plots", "scratch", "maps", "sweeps", "drafts"}
	notebooks := int(max(10, size/(341*kib)))
	for i := 0; i < notebooks; i++ {
		add(fmt.Sprintf("notebooks/%s/nb-%04d.ipynb", topics[i%len(topics)], i), Notebook, 8*kib+r.Int64N(32*kib))
	}
	names := []string{"config.yaml", "params.json", "eval.csv", "NOTES.md"}
	small := int(max(8, size*3/100/(4*kib)))
	for i := 0; i < small; i++ {
		add(fmt.Sprintf("experiments/exp-%04d/%s", i/4, names[i%4]), Small, 512+r.Int64N(r.Int64N(8*kib-512)+1))
	}
	return specs
}

// Split cuts budget bytes into file sizes drawn from [lo, hi) with r (the
// last one takes the rest, so that none is under lo/2); a budget under 4*lo
// is cut into pieces of 1/8 to 1/2 of it instead. The tree planners here
// and in internal/cmd/bench share it.
func Split(r *rand.Rand, budget, lo, hi int64) []int64 {
	if budget < 4*lo {
		lo, hi = max(budget/8, 1), max(budget/2, 2)
	}
	var out []int64
	for budget > 0 {
		sz := lo + r.Int64N(hi-lo)
		if sz > budget || budget-sz < lo/2 {
			sz = budget
		}
		out = append(out, sz)
		budget -= sz
	}
	return out
}

// Generate writes a tree of about size bytes under dir (made if missing;
// the files must not exist yet), derived from seed alone.
func Generate(ctx context.Context, dir string, size int64, seed uint64) (Stats, error) {
	st := Stats{Count: map[Kind]int{}}
	err := WriteAll(ctx, dir, plan(size, seed), runtime.NumCPU(), spec.file, func(s spec, n int64) {
		st.Files++
		st.Bytes += n
		st.Count[s.kind]++
	})
	return st, err
}

func (s spec) file() File { return File{Rel: s.rel, Kind: s.kind, Size: s.size, Seed: s.seed} }

// File is one planned file of a tree: where it goes below the tree's
// folder, what it holds, about how large it is and the seed of its bytes.
type File struct {
	Rel  string
	Kind Kind
	Size int64
	Seed uint64
}

// WriteAll writes the planned files specs under dir with workers
// goroutines (WriteFile with what file tells of each), largest first, so
// that the workers finish together. Each file has its own generator, so
// the result does not depend on scheduling. count is told of each file
// written (and of one that failed, with the bytes it got), one call at a
// time. It stops handing out files at the first error or when ctx is done
// and returns that error (or ctx's). The tree planners here and in
// internal/cmd/bench share it.
func WriteAll[S any](ctx context.Context, dir string, specs []S, workers int, file func(S) File, count func(s S, written int64)) error {
	files := make([]File, len(specs))
	order := make([]int, len(specs))
	for i, s := range specs {
		files[i] = file(s)
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(files[b].Size, files[a].Size) })
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	jobs := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				f := files[i]
				n, err := WriteFile(filepath.Join(dir, f.Rel), f.Kind, f.Size, f.Seed)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				count(specs[i], n)
				mu.Unlock()
			}
		}()
	}
	for _, i := range order {
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// Plan is what one change does.
type Plan struct {
	Logs      int   // training logs (CSV) that grow
	Append    int64 // bytes of rows appended to each (whole rows: up to one row more)
	Notebooks int   // notebooks with one cell's text changed in the middle of the file
	NewFiles  int   // small files (2-6 KiB) added
}

// Nightly is one night of the churn benchmark: one log grows by 1.3 MB,
// two notebooks are edited, one small file is added.
var Nightly = Plan{Logs: 1, Append: 1_300_000, Notebooks: 2, NewFiles: 1}

// Percent is a change of about pct percent of a tree of size bytes, spread
// over a few files in the same spirit as Nightly: three logs share the
// appended rows, four notebooks are edited, ten small files are added.
func Percent(size int64, pct float64) Plan {
	budget := int64(float64(size) * pct / 100)
	return Plan{Logs: 3, Append: max(1, (budget-10*4*kib)/3), Notebooks: 4, NewFiles: 10}
}

// Change is what Apply did.
type Change struct {
	Appended   int64    // bytes appended to logs
	Edited     int      // notebooks edited
	Added      int      // files added
	AddedBytes int64    // their bytes
	Paths      []string // every file changed or added, relative to the tree
}

func (c Change) String() string {
	return fmt.Sprintf("logs +%s, %s edited, %s added (%s)", humanbytes.Format(c.Appended), plural(c.Edited, "notebook"), plural(c.Added, "file"), humanbytes.Format(c.AddedBytes))
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// ApplyNight applies night n (1, 2, ...) of the churn benchmark to the tree
// in dir: Apply with Nightly.
func ApplyNight(dir string, seed uint64, night int) (Change, error) {
	return Apply(dir, seed, night, Nightly)
}

// Apply changes the tree in dir as p says. Which files change and how is
// derived from seed, n and the tree's file names and sizes, so the same
// tree changed with the same arguments gives the same bytes. Logs are the
// .csv files of at least 64 KiB that start with the training-log header
// (a tree of Generate, or the benchmark's dataset); when there are fewer
// logs or notebooks than p asks for, all of them change (the logs sharing
// the planned rows), and none at all is an error. The new files go to
// experiments/added-NNN/, and applying the same n twice is an error.
func Apply(dir string, seed uint64, n int, p Plan) (Change, error) {
	var c Change
	r := rand.New(rand.NewPCG(seed^0x6e69676874, uint64(n)))
	logs, notebooks, err := candidates(dir)
	if err != nil {
		return c, err
	}
	if (p.Logs > 0 && len(logs) == 0) || (p.Notebooks > 0 && len(notebooks) == 0) {
		return c, fmt.Errorf("%s: %d training logs and %d notebooks: nothing to change", dir, len(logs), len(notebooks))
	}
	// Fewer logs than planned share the planned rows.
	nLogs := min(p.Logs, len(logs))
	for _, i := range r.Perm(len(logs))[:nLogs] {
		added, err := appendRows(filepath.Join(dir, logs[i]), r, p.Append*int64(p.Logs)/int64(nLogs))
		c.Appended += added
		if err != nil {
			return c, err
		}
		c.Paths = append(c.Paths, logs[i])
	}
	for _, i := range r.Perm(len(notebooks))[:min(p.Notebooks, len(notebooks))] {
		if err := editNotebook(filepath.Join(dir, notebooks[i]), r); err != nil {
			return c, err
		}
		c.Edited++
		c.Paths = append(c.Paths, notebooks[i])
	}
	names := []string{"NOTES.md", "config.yaml", "params.json", "eval.csv"}
	for i := 0; i < p.NewFiles; i++ {
		rel := filepath.Join(fmt.Sprintf("experiments/added-%03d", n), fmt.Sprintf("%02d-%s", i, names[i%len(names)]))
		written, err := WriteFile(filepath.Join(dir, rel), Small, 2*kib+r.Int64N(4*kib), r.Uint64())
		if errors.Is(err, fs.ErrExist) {
			return c, fmt.Errorf("%s: change %d was already applied", rel, n)
		}
		c.AddedBytes += written
		if err != nil {
			return c, err
		}
		c.Added++
		c.Paths = append(c.Paths, rel)
	}
	return c, nil
}

// candidates lists the training logs and notebooks under dir, sorted.
func candidates(dir string) (logs, notebooks []string, err error) {
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		switch filepath.Ext(p) {
		case ".ipynb":
			notebooks = append(notebooks, rel)
		case ".csv":
			fi, err := d.Info()
			if err != nil || fi.Size() < 64*kib {
				return err
			}
			if ok, err := hasPrefix(p, csvHeader); err != nil || !ok {
				return err
			}
			logs = append(logs, rel)
		}
		return nil
	})
	slices.Sort(logs)
	slices.Sort(notebooks)
	return logs, notebooks, err
}

func hasPrefix(path, prefix string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	b := make([]byte, len(prefix))
	if _, err := io.ReadFull(f, b); err != nil {
		return false, nil
	}
	return string(b) == prefix, nil
}

// appendRows appends rows of at least size bytes to the training log at
// path, going on from its last row (episode, step, reward, return, clock).
func appendRows(path string, r *rand.Rand, size int64) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	tail := make([]byte, min(fi.Size(), 4*kib))
	if _, err := f.ReadAt(tail, fi.Size()-int64(len(tail))); err != nil {
		return 0, err
	}
	l, err := parseLastRow(tail)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	l.steps = 2e5 + r.Float64()*1e6
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		return 0, err
	}
	cw := &countWriter{w: f}
	bw := bufio.NewWriterSize(cw, 256*kib)
	err = l.write(bw, r, 0, size)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return cw.n, err
}

// parseLastRow reads the state of a training log from the end of the file.
func parseLastRow(tail []byte) (*csvLog, error) {
	tail = bytes.TrimRight(tail, "\n")
	line := tail[bytes.LastIndexByte(tail, '\n')+1:]
	f := strings.Split(string(line), ",")
	if len(f) != strings.Count(csvHeader, ",")+1 {
		return nil, fmt.Errorf("last row %q is not a training log row", line)
	}
	var (
		l    csvLog
		errs []error
	)
	atoi := func(s string) int { v, err := strconv.Atoi(s); errs = append(errs, err); return v }
	atof := func(s string) float64 { v, err := strconv.ParseFloat(s, 64); errs = append(errs, err); return v }
	l.episode, l.step = atoi(f[0]), atoi(f[1])+1
	l.reward, l.ret, l.clock = atof(f[2]), atof(f[3]), atof(f[9])
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("last row %q: %w", line, err)
	}
	return &l, nil
}

// editNotebook changes the text of one cell line (a source line or a line
// of text output) in the middle of the notebook at path: the line's text
// is replaced by other words, a few bytes shorter or longer, so the file
// stays valid JSON of about the same size.
func editNotebook(path string, r *rand.Rand) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := editCell(b, r)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, out, 0o644)
}

// editCell replaces the text of a cell line in the middle of a notebook
// (a JSON string alone on its line, as json.Encoder with SetIndent and
// Jupyter write source and text lines): one from its middle 40% when there
// is one, else the one nearest the middle.
func editCell(b []byte, r *rand.Rand) ([]byte, error) {
	type span struct{ start, end int } // the string's text, between its quotes
	var lines []span
	for off := 0; off < len(b); {
		end := bytes.IndexByte(b[off:], '\n')
		if end < 0 {
			end = len(b) - off
		}
		line := b[off : off+end]
		t := bytes.TrimLeft(line, " \t")
		t = bytes.TrimSuffix(t, []byte(","))
		if len(t) >= 14 && t[0] == '"' && t[len(t)-1] == '"' && !bytes.ContainsAny(t[1:len(t)-1], "\"") {
			text := t[1 : len(t)-1]
			text = bytes.TrimSuffix(text, []byte(`\n`))
			if !bytes.ContainsRune(text, '\\') {
				start := off + (len(line) - len(bytes.TrimLeft(line, " \t"))) + 1
				lines = append(lines, span{start, start + len(text)})
			}
		}
		off += end + 1
	}
	if len(lines) == 0 {
		return nil, errors.New("no cell text to edit")
	}
	var mid []span
	for _, s := range lines {
		if s.start >= len(b)*3/10 && s.start <= len(b)*7/10 {
			mid = append(mid, s)
		}
	}
	var s span
	if len(mid) > 0 {
		s = mid[r.IntN(len(mid))]
	} else {
		s = slices.MinFunc(lines, func(a, c span) int { return absInt(a.start-len(b)/2) - absInt(c.start-len(b)/2) })
	}
	n := max(4, s.end-s.start-8+r.IntN(25))
	text := sentence(r, n/4+2)
	for len(text) < n {
		text += " " + sentence(r, 4)
	}
	text = strings.TrimRight(text[:n], " ") + "."
	out := make([]byte, 0, len(b)+len(text))
	out = append(out, b[:s.start]...)
	out = append(out, text...)
	return append(out, b[s.end:]...), nil
}

func absInt(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
