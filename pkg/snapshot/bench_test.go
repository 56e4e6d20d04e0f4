package snapshot

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/firetech/fireops/internal/churn"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/source"
	"github.com/firetech/fireops/pkg/source/files"
)

// streamSource is a part of n bytes, half compressible text and half
// random, produced without holding it in memory.
type streamSource struct{ n int64 }

func (s streamSource) Kind() string                                { return "files" }
func (s streamSource) Name() string                                { return "bench" }
func (s streamSource) Fingerprint(context.Context) (string, error) { return "", nil }
func (s streamSource) WriteTar(_ context.Context, w io.Writer) (source.Stats, error) {
	text := bytes.Repeat([]byte("42,0.731,episode_reward,drone-7,fire-3\n"), 1<<14)
	random := randomBytes(len(text), 3)
	var done int64
	for i := 0; done < s.n; i++ {
		b := text
		if i%2 == 1 {
			b = random
		}
		if _, err := w.Write(b); err != nil {
			return source.Stats{}, err
		}
		done += int64(len(b))
	}
	return source.Stats{Entries: 1}, nil
}

// BenchmarkCreate measures the snapshot pipeline (SHA-256, zstd, age,
// chunking) on 256 MiB to two local destinations, and its allocations:
// memory must not grow with the data.
func BenchmarkCreate(b *testing.B) {
	const size = 256 << 20
	e := newEnv(b, 2)
	e.opts.ChunkSize = 32 << 20
	e.opts.Compression = "default"
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Create(context.Background(), e.opts, e.storeList(), []source.Source{streamSource{size}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateTree measures a first snapshot of a volume-like tree
// (internal/churn: logs, near-random checkpoints, notebooks; 128 MiB) to a
// fresh destination each time: the chunker, the keyed ids, zstd's choice
// per piece, age and the uploads, with nothing to dedup against.
func BenchmarkCreateTree(b *testing.B) {
	src := benchTree(b)
	b.SetBytes(128 << 20)
	for b.Loop() {
		e := benchEnv(b)
		if _, err := Create(context.Background(), e.opts, e.storeList(), []source.Source{src}); err != nil {
			b.Fatal(err)
		}
	}
}

// benchTree is a files source of a 128 MiB volume-like tree.
func benchTree(b *testing.B) source.Source {
	tree := b.TempDir()
	if _, err := churn.Generate(context.Background(), tree, 128<<20, 3); err != nil {
		b.Fatal(err)
	}
	src, err := files.New(config.FileSource{Name: "tree", Paths: []string{tree}})
	if err != nil {
		b.Fatal(err)
	}
	return src
}

// benchEnv is a fresh destination with the default settings.
func benchEnv(b *testing.B) *env {
	e := newEnv(b, 1)
	e.opts.ChunkSize = 32 << 20
	e.opts.Compression = "default"
	return e
}

// BenchmarkRestoreTree measures reading a part back (download, checks,
// decryption, decompression) into a tar reader that discards it: the
// restore path without a target's own cost.
func BenchmarkRestoreTree(b *testing.B) {
	e := benchEnv(b)
	ctx := context.Background()
	res, err := Create(ctx, e.opts, e.storeList(), []source.Source{benchTree(b)})
	if err != nil {
		b.Fatal(err)
	}
	st := e.stores[0]
	m, err := Open(ctx, st, "gpu01", res.ID, e.pub)
	if err != nil {
		b.Fatal(err)
	}
	idx, err := ReadIndex(ctx, st, m, e.ids)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(idx.Parts[0].Size)
	for b.Loop() {
		pr, err := OpenPart(ctx, st, m, idx.Parts[0], e.ids)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := CountTar(pr); err != nil {
			b.Fatal(err)
		}
		if err := pr.Finish(); err != nil {
			b.Fatal(err)
		}
		pr.Close()
	}
}
