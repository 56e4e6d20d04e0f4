package churn

import (
	"crypto/sha256"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestSmallFiles(t *testing.T) {
	const n = 1000
	gen := func() (map[string][32]byte, int64, int) {
		dir := t.TempDir()
		images := 0
		total, err := SmallFiles(dir, n, func(p string, dataset bool) error {
			if dataset != strings.HasSuffix(p, ".jpg") {
				t.Errorf("%s: dataset %v", p, dataset)
			}
			if dataset {
				images++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][32]byte{}
		var sum int64
		err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			b, err := os.ReadFile(p)
			if len(b) < 1024 || len(b) >= 6*1024 {
				t.Errorf("%s: %d bytes", p, len(b))
			}
			sum += int64(len(b))
			rel, _ := filepath.Rel(dir, p)
			out[rel] = sha256.Sum256(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if l, err := os.Readlink(filepath.Join(dir, "venv/bin/python3")); err != nil || l != "python3.11" {
			t.Errorf("venv/bin/python3 -> %q, %v", l, err)
		}
		if sum != total {
			t.Errorf("returned %d bytes, wrote %d", total, sum)
		}
		return out, total, images
	}
	a, total, images := gen()
	// The benchmarks' trees stay the same bytes: 3,541,112 for 1000 files.
	if len(a) != n || images != n-n*4/10 || total != 3541112 {
		t.Errorf("%d files (%d bytes), %d images", len(a), total, images)
	}
	if _, ok := a[filepath.FromSlash("dataset/train/class_002/img_000900.jpg")]; !ok {
		t.Errorf("no dataset/train/class_002/img_000900.jpg")
	}
	if b, total2, _ := gen(); total2 != total || !reflect.DeepEqual(a, b) {
		t.Errorf("two trees differ")
	}
	if _, err := SmallFiles(t.TempDir(), 10, func(string, bool) error { return fs.ErrPermission }); err == nil {
		t.Errorf("an error from own did not stop the tree")
	}
}
