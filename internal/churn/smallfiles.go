package churn

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// SmallFiles writes n files of 1-6 KB into dir (made if missing; the files
// must not exist yet), shaped like a user's volume holding a Python
// environment and an image dataset: the first 40% are .py modules in
// venv/lib/python3.11/site-packages/pkgN/subM/ (7-20 a folder, three
// folders a package, plus the symlinks venv/bin/python and python3), the
// rest .jpg images in dataset/train/class_NNN/ (250 a folder). Contents are
// slices of one 6 KiB block of xorshift32 bytes, so the same n gives the
// same tree. When own is not nil it is called on every file after it is
// written (dataset tells an image from a module), e.g. to chown it; an
// error from it stops the tree. It returns the bytes of file contents
// written. The file benchmarks of pkg/source use it.
func SmallFiles(dir string, n int, own func(path string, dataset bool) error) (int64, error) {
	var total int64
	x := uint32(12345)
	rnd := func() uint32 { x ^= x << 13; x ^= x >> 17; x ^= x << 5; return x }
	body := make([]byte, 6<<10)
	for i := range body {
		body[i] = byte(rnd())
	}
	write := func(p string, dataset bool) error {
		size := 1024 + int(rnd()%5120)
		off := int(rnd() % uint32(len(body)-size+1))
		if err := os.WriteFile(p, body[off:off+size], 0o644); err != nil {
			return err
		}
		total += int64(size)
		if own != nil {
			return own(p, dataset)
		}
		return nil
	}
	env := filepath.Join(dir, "venv")
	site := filepath.Join(env, "lib", "python3.11", "site-packages")
	if err := os.MkdirAll(filepath.Join(env, "bin"), 0o755); err != nil {
		return total, err
	}
	for _, l := range []string{"python", "python3"} {
		if err := os.Symlink("python3.11", filepath.Join(env, "bin", l)); err != nil {
			return total, err
		}
	}
	nEnv := n * 4 / 10
	for i, pkg := 0, 0; i < nEnv; pkg++ {
		for sub := 0; sub < 3 && i < nEnv; sub++ {
			d := filepath.Join(site, "pkg"+strconv.Itoa(pkg), "sub"+strconv.Itoa(sub))
			if err := os.MkdirAll(d, 0o755); err != nil {
				return total, err
			}
			for k, m := 0, 7+int(rnd()%14); k < m && i < nEnv; k, i = k+1, i+1 {
				if err := write(filepath.Join(d, "module_"+strconv.Itoa(k)+".py"), false); err != nil {
					return total, err
				}
			}
		}
	}
	for i := nEnv; i < n; {
		d := filepath.Join(dir, "dataset", "train", fmt.Sprintf("class_%03d", (i-nEnv)/250))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return total, err
		}
		for k := 0; k < 250 && i < n; k, i = k+1, i+1 {
			if err := write(filepath.Join(d, fmt.Sprintf("img_%06d.jpg", i)), true); err != nil {
				return total, err
			}
		}
	}
	return total, nil
}
