package main

import (
	"context"
	"crypto/sha256"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestSmallFile(t *testing.T) {
	const count = 20000
	seen := map[string]bool{}
	py, img := 0, 0
	var total int64
	for i := 0; i < count; i++ {
		rel, isPy, size, _ := smallFile(i, count, 1)
		if seen[rel] {
			t.Fatalf("file %d: %s twice", i, rel)
		}
		seen[rel] = true
		if size < 1024 || size > 6*1024 {
			t.Fatalf("file %d: size %d", i, size)
		}
		total += size
		if isPy != strings.HasSuffix(rel, ".py") {
			t.Fatalf("file %d: %s, py %v", i, rel, isPy)
		}
		if isPy {
			py++
		} else {
			img++
		}
	}
	if py != count/2 || img != count/2 {
		t.Errorf("%d .py, %d images", py, img)
	}
	if mean := total / count; mean < smallFileMean*95/100 || mean > smallFileMean*105/100 {
		t.Errorf("mean size %d, want about %d", mean, smallFileMean)
	}
}

func TestGenContent(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int64{1024, 3000, 6144} {
		img := genImage(nil, r, size)
		if int64(len(img)) != size || !strings.HasPrefix(string(img), "\xff\xd8") || !strings.HasSuffix(string(img), "\xff\xd9") {
			t.Errorf("image of %d: %d bytes", size, len(img))
		}
		py := genPython(nil, r, size)
		if int64(len(py)) < size || int64(len(py)) > size+600 || !strings.HasPrefix(string(py), `"""`) || strings.ContainsRune(string(py), 0) {
			t.Errorf("python of %d: %d bytes", size, len(py))
		}
	}
}

func TestGenerateSmallFiles(t *testing.T) {
	gen := func(workers int) (map[string][32]byte, smallStats) {
		dir := t.TempDir()
		st, err := generateSmallFiles(context.Background(), dir, 1200, 3, workers)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][32]byte{}
		err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			out[p[len(dir):]] = sha256.Sum256(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return out, st
	}
	a, st := gen(1)
	b, _ := gen(4)
	if len(a) != 1200 || st.files != 1200 || st.py != 600 || st.bytes != st.pyB+st.imgB || !reflect.DeepEqual(a, b) {
		t.Errorf("%d files, stats %+v; same with 4 workers: %v", len(a), st, reflect.DeepEqual(a, b))
	}
}
