package snapshot

import (
	"bytes"
	"os/exec"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/firetech/fireops/internal/testenv"
)

// TestRawFrame: a piece stored without compression is a zstd frame of raw
// blocks that the reader's decoder and the zstd command (the restore
// without fireops) both read back to the same bytes, block edges included.
func TestRawFrame(t *testing.T) {
	t.Parallel()
	zstdBin := testenv.RequireTool(t, "zstd")
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	for _, n := range []int{0, 1, rawBlock - 1, rawBlock, rawBlock + 1, 3*rawBlock + 17} {
		p := randomBytes(n, uint64(n))
		var frame bytes.Buffer
		if err := writeRawFrame(&frame, p); err != nil {
			t.Fatal(err)
		}
		if want := 4 + 2 + 4 + 3*max(1, (n+rawBlock-1)/rawBlock) + n; frame.Len() != want {
			t.Errorf("%d bytes: frame of %d bytes, want %d", n, frame.Len(), want)
		}
		got, err := dec.DecodeAll(frame.Bytes(), nil)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("%d bytes: decoder: %v, equal %v", n, err, bytes.Equal(got, p))
		}
		if zstdBin == "" {
			continue
		}
		cmd := exec.Command(zstdBin, "-d", "-c")
		cmd.Stdin = bytes.NewReader(frame.Bytes())
		out, err := cmd.Output()
		if err != nil || !bytes.Equal(out, p) {
			t.Fatalf("%d bytes: zstd -d: %v, equal %v", n, err, bytes.Equal(out, p))
		}
	}
}
