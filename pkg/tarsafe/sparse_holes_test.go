package tarsafe

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestExtractSparseHolesCapped: a sparse entry with more than
// maxSparseHoles bytes of holes is refused, naming it, once that much
// was read; one at the cap is restored. Zeros an entry stores are data,
// not holes: a sparse entry of stored zeros is restored whatever its
// size. (Not parallel: maxSparseHoles.)
func TestExtractSparseHolesCapped(t *testing.T) {
	const limit = 8 << 20
	maxSparseHoles = limit
	t.Cleanup(func() { maxSparseHoles = MaxSparseHoles })
	tests := []struct {
		name string
		arch []byte
		ok   bool
	}{
		// paxSparse stores one byte at the end: realsize-1 bytes of holes.
		{"over", paxSparse(t, "over", limit+2, "1", "0"), false},
		{"at", paxSparse(t, "at", limit+1, "1", "0"), true},
		{"stored zeros", storedZeros(t, "zeros", 4*limit, limit/2), true},
	}
	for _, tc := range tests {
		_, target, _ := sandbox(t)
		_, err := Extract(context.Background(), bytes.NewReader(tc.arch), target, Options{})
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case !tc.ok && (!errors.Is(err, ErrTooManyHoles) || !strings.Contains(err.Error(), tc.name) || !strings.Contains(err.Error(), "tar -x")):
			t.Errorf("%s: %v, want ErrTooManyHoles naming it", tc.name, err)
		}
		if !tc.ok {
			t.Logf("error: %v", err)
		}
	}
}

// storedZeros is an archive of one sparse entry, written by Writer, of a
// file of data bytes of zeros stored as data and then holes bytes of
// holes.
func storedZeros(t *testing.T, name string, data, holes int64) []byte {
	t.Helper()
	var b bytes.Buffer
	w := NewWriter(&b)
	m := &SparseMap{Size: data + holes, Regions: []Region{{0, data}}}
	must(t, w.WriteSparseHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: m.Size, Mode: 0o644}, m))
	n, err := w.ReadContents(context.Background(), io.LimitReader(zeros{}, data))
	must(t, err)
	if n != data {
		t.Fatalf("wrote %d bytes of %d", n, data)
	}
	must(t, w.Close())
	return b.Bytes()
}
