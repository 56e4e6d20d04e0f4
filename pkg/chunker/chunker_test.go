package chunker

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"slices"
	"testing"
)

var testParams = Params{Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	return b
}

// cuts returns the piece lengths of data fed in writes of the given sizes
// (cycled); nil sizes feed it whole.
func cuts(t testing.TB, c *Chunker, data []byte, sizes []int) []int {
	t.Helper()
	s := c.NewState()
	var out []int
	cur := 0
	for k := 0; len(data) > 0; k++ {
		w := len(data)
		if sizes != nil {
			w = min(w, sizes[k%len(sizes)])
		}
		chunk := data[:w]
		data = data[w:]
		for len(chunk) > 0 {
			n, cut := s.Scan(chunk)
			cur += n
			chunk = chunk[n:]
			if cut {
				out = append(out, cur)
				cur = 0
			}
		}
	}
	if cur > 0 {
		out = append(out, cur)
	}
	return out
}

func mustNew(t testing.TB, key string, p Params) *Chunker {
	t.Helper()
	c, err := New([]byte(key), p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		p  Params
		ok bool
	}{
		{testParams, true},
		{Params{Min: 1 << 20, Avg: 1 << 20, Max: 1 << 20}, true},
		{Params{Min: 16 << 10, Avg: 60 << 10, Max: 256 << 10}, false}, // not a power of two
		{Params{Min: 16 << 10, Avg: 128, Max: 256 << 10}, false},      // too small
		{Params{Min: 32, Avg: 64 << 10, Max: 256 << 10}, false},       // min below 64
		{Params{Min: 128 << 10, Avg: 64 << 10, Max: 256 << 10}, false},
		{Params{Min: 16 << 10, Avg: 64 << 10, Max: 32 << 10}, false},
	} {
		if err := tc.p.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: Validate() = %v, want ok=%v", tc.p, err, tc.ok)
		}
		if _, err := New([]byte("k"), tc.p); (err == nil) != tc.ok {
			t.Errorf("%+v: New() = %v, want ok=%v", tc.p, err, tc.ok)
		}
	}
}

func TestSizesWithinBounds(t *testing.T) {
	c := mustNew(t, "key", testParams)
	data := randomBytes(1, 8<<20)
	got := cuts(t, c, data, nil)
	total := 0
	for i, n := range got {
		total += n
		if n > testParams.Max || (n < testParams.Min && i != len(got)-1) {
			t.Fatalf("piece %d is %d bytes, outside [%d, %d]", i, n, testParams.Min, testParams.Max)
		}
	}
	if total != len(data) {
		t.Fatalf("pieces add up to %d, want %d", total, len(data))
	}
	avg := total / len(got)
	if avg < testParams.Avg/2 || avg > testParams.Avg*2 {
		t.Fatalf("average piece %d bytes, want near %d (%d pieces)", avg, testParams.Avg, len(got))
	}
}

func TestZerosCutAtMax(t *testing.T) {
	// A run of one byte never matches (the hash settles on a value that
	// is not a cut, or on one that always is): either way pieces stay
	// within bounds and the stream is covered.
	c := mustNew(t, "key", testParams)
	got := cuts(t, c, make([]byte, 2<<20), nil)
	total := 0
	for _, n := range got {
		total += n
		if n > testParams.Max {
			t.Fatalf("piece of %d bytes", n)
		}
	}
	if total != 2<<20 {
		t.Fatalf("total %d", total)
	}
}

func TestWriteSizesDoNotMatter(t *testing.T) {
	c := mustNew(t, "key", testParams)
	data := randomBytes(2, 3<<20)
	want := cuts(t, c, data, nil)
	for _, sizes := range [][]int{{1}, {7, 1000, 3}, {65536}, {100000, 1}, {testParams.Min - 64, 64, 1}} {
		if sizes[0] == 1 && len(sizes) == 1 {
			// byte by byte over 3 MiB is slow under -race; a prefix is enough.
			d := data[:600<<10]
			w := cuts(t, c, d, nil)
			if got := cuts(t, c, d, sizes); !slices.Equal(got, w) {
				t.Fatalf("byte-wise writes cut %v, whole %v", got, w)
			}
			continue
		}
		if got := cuts(t, c, data, sizes); !slices.Equal(got, want) {
			t.Fatalf("writes of %v cut %v, whole %v", sizes, got, want)
		}
	}
}

// pieceSet returns the hashes of the pieces of data.
func pieceSet(t testing.TB, c *Chunker, data []byte) map[[32]byte]int {
	t.Helper()
	set := map[[32]byte]int{}
	off := 0
	for _, n := range cuts(t, c, data, nil) {
		set[sha256.Sum256(data[off:off+n])] = n
		off += n
	}
	return set
}

func TestInsertionChangesFewPieces(t *testing.T) {
	c := mustNew(t, "key", testParams)
	data := randomBytes(3, 8<<20)
	edited := bytes.Clone(data[:3<<20])
	edited = append(edited, []byte("a few inserted bytes")...)
	edited = append(edited, data[3<<20:]...)
	before, after := pieceSet(t, c, data), pieceSet(t, c, edited)
	newBytes := 0
	for h, n := range after {
		if _, ok := before[h]; !ok {
			newBytes += n
		}
	}
	// One or two pieces around the insertion change; the rest is shared.
	if newBytes > 3*testParams.Max {
		t.Fatalf("an insertion of 20 bytes changed %d bytes of pieces", newBytes)
	}
	if newBytes == 0 {
		t.Fatal("an insertion changed no piece")
	}
}

func TestKeyChangesCuts(t *testing.T) {
	data := randomBytes(4, 4<<20)
	a := cuts(t, mustNew(t, "key one", testParams), data, nil)
	b := cuts(t, mustNew(t, "key two", testParams), data, nil)
	if slices.Equal(a, b) {
		t.Fatal("two keys cut the same stream at the same places")
	}
	if c := cuts(t, mustNew(t, "key one", testParams), data, nil); !slices.Equal(a, c) {
		t.Fatal("the same key cut differently")
	}
}

func BenchmarkScan(b *testing.B) {
	for _, p := range []Params{
		{Min: 256 << 10, Avg: 1 << 20, Max: 4 << 20},
		{Min: 512 << 10, Avg: 2 << 20, Max: 8 << 20},
	} {
		c := mustNew(b, "bench", p)
		data := randomBytes(5, 64<<20)
		b.Run(byteSize(p.Avg), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				s := c.NewState()
				d := data
				for len(d) > 0 {
					n, _ := s.Scan(d)
					d = d[n:]
				}
			}
		})
	}
}

func byteSize(n int) string {
	return string(rune('0'+n>>20)) + "MiB"
}
