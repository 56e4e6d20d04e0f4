package main

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/firetech/fireops/internal/churn"
)

// The dataset imitates what an ML team keeps on its server: compressible
// training logs (CSV and JSON lines), Jupyter notebooks, checkpoint-like
// binaries of float32 weights (nearly incompressible), and thousands of
// small files (configs, small CSVs, notes). Everything is derived from one
// seed, so the same flags give the same bytes. The files' contents come
// from internal/churn, which also makes the churn benchmark's tree.

type fileKind = churn.Kind

const (
	kindCheckpoint = churn.Checkpoint
	kindCSVLog     = churn.CSVLog
	kindJSONL      = churn.JSONL
	kindNotebook   = churn.Notebook
	kindSmall      = churn.Small
)

var kindNames = [...]string{
	kindCheckpoint: "checkpoints (float32, incompressible)",
	kindCSVLog:     "training logs (CSV)",
	kindJSONL:      "metrics (JSON lines)",
	kindNotebook:   "notebooks (.ipynb)",
	kindSmall:      "small files (configs, CSVs, notes)",
}

type fileSpec struct {
	rel  string
	kind fileKind
	size int64 // target size; text files end at the first row past it
	seed uint64
}

// kindStats counts what was written per kind.
type kindStats struct {
	files int
	bytes int64
}

type datasetStats struct {
	files  int
	bytes  int64
	byKind [len(kindNames)]kindStats
}

const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30
)

// planDataset lays out about size bytes: 50% checkpoints, 25% CSV logs,
// 15% JSON lines, 7% notebooks and the rest (at least 1000 files) small files.
func planDataset(size int64, seed uint64) []fileSpec {
	r := rand.New(rand.NewPCG(seed, 0x6669726f7073))
	var specs []fileSpec
	add := func(rel string, k fileKind, sz int64) {
		specs = append(specs, fileSpec{rel: rel, kind: k, size: sz, seed: r.Uint64()})
	}
	// split cuts budget into pieces of [lo, hi) bytes.
	split := func(budget, lo, hi int64) []int64 { return churn.Split(r, budget, lo, hi) }

	users := []string{"anna", "boris", "chen", "dasha", "emre", "farid", "gita", "hugo"}
	projects := int(min(16, 3+size/(256*mib)))
	csvs := split(size*25/100, 1*mib, 16*mib)
	runDir := func(i int) string {
		return fmt.Sprintf("projects/proj-%02d/runs/run-%04d", i%projects, i)
	}
	for i, sz := range csvs {
		add(runDir(i)+"/metrics.csv", kindCSVLog, sz)
	}
	runs := len(csvs)
	for i, sz := range split(size*15/100, 1*mib, 8*mib) {
		add(runDir(i%runs)+fmt.Sprintf("/events-%02d.jsonl", i/runs), kindJSONL, sz)
	}
	for i, sz := range split(size*50/100, 50*mib, 200*mib) {
		add(runDir(i%runs)+fmt.Sprintf("/checkpoints/step-%06d.safetensors", (i/runs+1)*5000), kindCheckpoint, sz&^3)
	}
	for i, sz := range split(size*7/100, 100*kib, 2*mib) {
		add(fmt.Sprintf("notebooks/%s/exp-%03d.ipynb", users[i%len(users)], i), kindNotebook, sz)
	}
	// Small files, four per experiment folder, 200 B to 16 KiB each.
	small := int(min(20000, max(1000, size/(200*kib))))
	names := []string{"config.yaml", "params.json", "eval.csv", "NOTES.md"}
	for i := 0; i < small; i++ {
		sz := 200 + r.Int64N(r.Int64N(16*kib-200)+1)
		add(fmt.Sprintf("experiments/%s/exp-%05d/%s", users[(i/4)%len(users)], i/4, names[i%4]), kindSmall, sz)
	}
	return specs
}

// generateDataset writes the planned files under dir with workers
// goroutines (churn.WriteAll). Each file has its own generator, so the
// result does not depend on scheduling.
func generateDataset(ctx context.Context, dir string, size int64, seed uint64, workers int) (datasetStats, error) {
	var st datasetStats
	err := churn.WriteAll(ctx, dir, planDataset(size, seed), workers, fileSpec.file, func(s fileSpec, n int64) {
		st.files++
		st.bytes += n
		st.byKind[s.kind].files++
		st.byKind[s.kind].bytes += n
	})
	return st, err
}

func (s fileSpec) file() churn.File {
	return churn.File{Rel: s.rel, Kind: s.kind, Size: s.size, Seed: s.seed}
}
