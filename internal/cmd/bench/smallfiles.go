package main

// The many-small-files benchmark (-small-files, -only small): a tree like a
// Python environment and an image dataset, -small-files-count files of
// 1-6 KiB, first snapshot by fireops against the shell pipeline, and a
// plain walk that reads what a fingerprint reads (lstat of every entry).

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// smallFileMean is the mean size of a small file: 1 KiB + 5 KiB x E[u^(1/3)].
const smallFileMean = 1*kib + 5*kib*3/4

type smallStats struct {
	files, py, img   int
	bytes, pyB, imgB int64
	generated        time.Duration
}

// smallFile is where file i of count goes and how big it is: the first
// half are .py files of a virtualenv's site-packages (40 modules a
// folder, 5 folders a package), the rest .jpg images of a dataset (train
// and val, 12 classes).
func smallFile(i, count int, seed uint64) (rel string, py bool, size int64, fseed uint64) {
	r := rand.New(rand.NewPCG(seed, uint64(i)^0x736d616c6c))
	size = 1*kib + int64(5*kib*math.Cbrt(r.Float64()))
	fseed = r.Uint64()
	if half := count / 2; i < half {
		pkg, sub := i/200, (i/40)%5
		name := pyWords[pkg%len(pyWords)]
		return fmt.Sprintf("venv/lib/python3.11/site-packages/%s%d/%s/%s_%02d.py", name, pkg, pyWords[(pkg+sub)%len(pyWords)], pyWords[i%len(pyWords)], i%40), true, size, fseed
	}
	j := i - count/2
	split := "train"
	if j%5 == 4 {
		split = "val"
	}
	return fmt.Sprintf("datasets/wildfire-cams/%s/%s/img_%06d.jpg", split, imgClasses[j%len(imgClasses)], j), false, size, fseed
}

var imgClasses = []string{"flame", "smoke", "haze", "clear", "night", "fog", "dust", "glare", "cloud", "ember", "ash", "sky"}

var pyWords = strings.Fields(`core utils io tensor nn optim data loader sampler config logging
	metrics plot array linalg fft random stats sparse signal image transform encode decode
	cache http client server parse render schema model layer module hooks backend compat`)

// generateSmallFiles writes count small files under dir with workers
// goroutines; file i depends only on seed and i.
func generateSmallFiles(ctx context.Context, dir string, count int, seed uint64, workers int) (smallStats, error) {
	var st smallStats
	t := time.Now()
	// Folders first, so that the workers only create files.
	made := map[string]bool{}
	for i := 0; i < count; i++ {
		rel, _, _, _ := smallFile(i, count, seed)
		if d := filepath.Dir(rel); !made[d] {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				return st, err
			}
			made[d] = true
		}
	}
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	const batch = 500
	jobs := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local smallStats
			buf := make([]byte, 0, 8*kib)
			var err error
			for start := range jobs {
				for i := start; i < min(start+batch, count) && err == nil; i++ {
					rel, py, size, fseed := smallFile(i, count, seed)
					r := rand.New(rand.NewPCG(fseed, fseed^0x9e3779b97f4a7c15))
					if py {
						buf = genPython(buf[:0], r, size)
						local.py++
						local.pyB += int64(len(buf))
					} else {
						buf = genImage(buf[:0], r, size)
						local.img++
						local.imgB += int64(len(buf))
					}
					err = os.WriteFile(filepath.Join(dir, rel), buf, 0o644)
				}
				if err != nil || ctx.Err() != nil {
					break
				}
			}
			mu.Lock()
			if err != nil && first == nil {
				first = err
			}
			st.py, st.img, st.pyB, st.imgB = st.py+local.py, st.img+local.img, st.pyB+local.pyB, st.imgB+local.imgB
			mu.Unlock()
			for range jobs { // drain after an error
			}
		}()
	}
	for start := 0; start < count && ctx.Err() == nil; start += batch {
		jobs <- start
	}
	close(jobs)
	wg.Wait()
	st.files, st.bytes = st.py+st.img, st.pyB+st.imgB
	st.generated = time.Since(t)
	if first == nil {
		first = ctx.Err()
	}
	return st, first
}

// genPython appends Python-like source of about size bytes (it ends at the
// first line past size) to b.
func genPython(b []byte, r *rand.Rand, size int64) []byte {
	w := func() string { return pyWords[r.IntN(len(pyWords))] }
	b = fmt.Appendf(b, "\"\"\"%s %s helpers.\"\"\"\n\nfrom __future__ import annotations\n\nimport os\nimport sys\nfrom typing import Any, Optional\n\nfrom .%s import %s_%s\n\n",
		w(), w(), w(), w(), w())
	for int64(len(b)) < size {
		switch r.IntN(3) {
		case 0:
			b = fmt.Appendf(b, "\ndef %s_%s(%s: Any, %s: Optional[int] = None) -> Any:\n    \"\"\"Return the %s of %s.\"\"\"\n    if %s is None:\n        %s = %d\n    return %s_%s(%s, %s)\n\n",
				w(), w(), w(), w(), w(), w(), w(), w(), r.IntN(1000), w(), w(), w(), w())
		case 1:
			c := strings.ToUpper(w()[:1]) + w()[1:]
			b = fmt.Appendf(b, "\nclass %s%s:\n    %s: int = %d\n\n    def __init__(self, %s, %s=None):\n        self.%s = %s\n        self._%s = %s or {}\n\n    def __repr__(self):\n        return f\"%s({self.%s!r})\"\n\n",
				c, strings.ToUpper(w()[:1])+w()[1:], strings.ToUpper(w()), r.IntN(4096), w(), w(), w(), w(), w(), w(), c, w())
		default:
			b = fmt.Appendf(b, "%s_%s = os.environ.get(\"%s_%s\", \"%s\")\n", strings.ToUpper(w()), strings.ToUpper(w()), strings.ToUpper(w()), strings.ToUpper(w()), w())
		}
	}
	return b
}

// genImage appends a JPEG-like file of exactly size bytes: markers around
// random bytes (compressed image data does not compress further).
func genImage(b []byte, r *rand.Rand, size int64) []byte {
	b = append(b, "\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"...)
	for int64(len(b))+8 <= size-2 {
		b = binary.LittleEndian.AppendUint64(b, r.Uint64())
	}
	for int64(len(b)) < size-2 {
		b = append(b, byte(r.Uint32()))
	}
	return append(b, 0xff, 0xd9)
}

func (b *bench) smallFilesBench() error {
	dir := filepath.Join(b.work, "small")
	data, out := filepath.Join(dir, "data"), filepath.Join(dir, "out")
	if err := os.MkdirAll(out, 0o700); err != nil {
		return err
	}
	b.logf("generating %d small files (seed %d)", b.opt.smallCount, b.opt.seed)
	var err error
	// Writing small files waits on the file system more than on the CPU.
	if b.smallStats, err = generateSmallFiles(b.ctx, data, b.opt.smallCount, b.opt.seed, 2*runtime.NumCPU()); err != nil {
		return err
	}
	st := b.smallStats
	b.logf("generated %d files, %s in %s", st.files, fmtBytes(st.bytes), fmtDur(st.generated))
	for r := 1; r <= b.opt.runs; r++ {
		b.logf("first snapshot of small files, round %d of %d", r, b.opt.runs)
		if !b.opt.skipFireops {
			err := b.attempt(opSmall, toolFireops, func() (sample, error) {
				dest := filepath.Join(out, "fireops")
				s, err := b.fireopsFirst(data, "small", []string{dest})
				for _, d := range []string{dest, filepath.Join(b.work, "state-small")} {
					if rerr := os.RemoveAll(d); err == nil {
						err = rerr
					}
				}
				return s, err
			})
			if err != nil {
				return err
			}
		}
		err := b.attempt(opSmall, toolShell, func() (sample, error) {
			f := filepath.Join(out, "shell.tar.zst.age")
			s, err := b.shellSnapshot(data, f)
			if rerr := os.Remove(f); err == nil {
				err = rerr
			}
			return s, err
		})
		if err != nil {
			return err
		}
		err = b.attempt(opSmall, toolWalk, func() (sample, error) {
			// What a fingerprint reads: every entry's lstat (find -P), one
			// line each, hashed.
			script := `find "$1" -printf '%P %m %s %T@ %C@ %U %G %n %l\n' | sha256sum >/dev/null`
			s, err := b.measure(command{argv: []string{"bash", "-o", "pipefail", "-c", script, "bench", data}})
			s.note = "(walk and lstat only, no content)"
			return s, err
		})
		if err != nil {
			return err
		}
	}
	return os.RemoveAll(dir)
}
