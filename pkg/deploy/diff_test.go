package deploy

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
)

// TestDiffMemoryIsLinear: the diff of two 50,000-line files allocates a
// small multiple of their size (a longest-common-subsequence table takes
// 4 bytes for every pair of lines: 10 GB here), and is right: the changed
// lines, and only those, are removed and added.
func TestDiffMemoryIsLinear(t *testing.T) {
	const n = 50000
	for _, tc := range []struct {
		name  string
		every int // every how many lines one is changed
	}{
		{"every 1000th line changed", 1000},
		{"every 7th line changed", 7},
		{"every line changed", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a, b bytes.Buffer
			for i := range n {
				fmt.Fprintf(&a, "  key%d: value %d\n", i, i)
				if i%tc.every == 0 {
					fmt.Fprintf(&b, "  key%d: changed %d\n", i, i)
				} else {
					fmt.Fprintf(&b, "  key%d: value %d\n", i, i)
				}
			}
			var out bytes.Buffer
			out.Grow(4 * (a.Len() + b.Len()))
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			err := WriteDiff(&out, []Change{{Path: "f", Action: "update", old: a.Bytes(), new: b.Bytes()}})
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			limit := 40 * uint64(a.Len()+b.Len())
			t.Logf("%d bytes of input, %d allocated", a.Len()+b.Len(), alloc)
			if alloc > limit {
				t.Errorf("the diff of %d+%d bytes allocated %d bytes, want at most %d", a.Len(), b.Len(), alloc, limit)
			}
			changed := (n + tc.every - 1) / tc.every
			var minus, plus int
			for _, l := range bytes.SplitAfter(out.Bytes(), []byte("\n")) {
				switch {
				case bytes.HasPrefix(l, []byte("--- ")), bytes.HasPrefix(l, []byte("+++ ")):
				case bytes.HasPrefix(l, []byte("-")):
					minus++
					if !bytes.Contains(l, []byte(": value ")) {
						t.Fatalf("removed %q", l)
					}
				case bytes.HasPrefix(l, []byte("+")):
					plus++
					if !bytes.Contains(l, []byte(": changed ")) {
						t.Fatalf("added %q", l)
					}
				}
			}
			if minus != changed || plus != changed {
				t.Errorf("%d lines removed and %d added, want %d each", minus, plus, changed)
			}
		})
	}
}
