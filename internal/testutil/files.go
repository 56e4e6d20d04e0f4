package testutil

import (
	"crypto/sha256"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// ReadFiles calls fn with the path relative to dir and the content of
// every file below dir, in lexical order: every entry but the folders, a
// symbolic link read through. It ends the test when dir cannot be walked
// or a file read.
func ReadFiles(t testing.TB, dir string, fn func(rel string, data []byte)) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fn(rel, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// FileSums returns the SHA-256 of every file [ReadFiles] reads below dir,
// by path relative to dir: two trees of the same bytes have equal sums.
func FileSums(t testing.TB, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	ReadFiles(t, dir, func(rel string, data []byte) { out[rel] = sha256.Sum256(data) })
	return out
}
