package tarsafe

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
)

// holeBlock is the unit in which Extract looks for zeros in a sparse
// entry: a block of zeros is left a hole, not written.
const holeBlock = 4 << 10

// IsSparse reports whether hdr, from archive/tar's Reader, is a GNU sparse
// entry in any form (old GNU 'S', PAX GNU.sparse.* records): archive/tar
// reads its holes as zeros, so copying its contents writes them dense.
func IsSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// sparseEntry reports whether hdr is a regular file in GNU sparse PAX
// format 1.0, the form [Writer.WriteSparseHeader] and GNU tar
// --format=pax write, which Extract writes with its holes left out. Other
// sparse forms (old GNU 'S', PAX 0.0 and 0.1, other versions or types)
// are refused with an error wrapping ErrUnsupported: fireops never writes
// them.
func sparseEntry(hdr *tar.Header) (bool, error) {
	if !IsSparse(hdr) {
		return false, nil
	}
	switch {
	case hdr.Typeflag == tar.TypeGNUSparse:
		return false, fmt.Errorf("%w: sparse file in old GNU format (only PAX format 1.0 sparse entries are restored)", ErrUnsupported)
	case hdr.PAXRecords["GNU.sparse.major"] != "1" || hdr.PAXRecords["GNU.sparse.minor"] != "0":
		return false, fmt.Errorf("%w: sparse file in PAX format %s.%s (only PAX format 1.0 sparse entries are restored)",
			ErrUnsupported, hdr.PAXRecords["GNU.sparse.major"], hdr.PAXRecords["GNU.sparse.minor"])
	case hdr.Typeflag != tar.TypeReg: // tar.Reader turns the legacy TypeRegA into TypeReg
		return false, fmt.Errorf("%w: sparse %s", ErrUnsupported, typeName(hdr.Typeflag))
	}
	return true, nil
}

// CountingReader counts in N the bytes read through it from R. Extract
// reads the archive through one: while a sparse entry is copied, what
// archive/tar hands over beyond what it read from the archive is holes.
type CountingReader struct {
	R io.Reader
	N int64
}

// Read reads from R and counts what it read.
func (c *CountingReader) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.N += int64(n)
	return n, err
}

// copySparse writes the contents of a sparse entry of size bytes, r (in
// which archive/tar reads the holes as zeros), to the new empty file f
// without allocating the holes: f first gets its size (ftruncate, so a
// size the file system cannot hold fails at once), then only the 4 KiB
// blocks of r that are not all zeros are written, at their offsets. The
// context is checked before every read of up to 256 KiB, so a cancel
// stops even a terabyte hole at once. The cost of a hole is archive/tar
// clearing the buffer and one comparison: tens of GB/s. An entry with
// more than MaxSparseHoles bytes of holes (what archive/tar made up, not
// read from the archive; zeros the entry stores are data) is refused with
// an error wrapping ErrTooManyHoles once that much was read, so a restore
// spends at most that on one entry's holes: fireops never writes one.
func (x *extractor) copySparse(f *os.File, r io.Reader, size int64) error {
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("set the size of a sparse file to %d bytes: %w", size, err)
	}
	if x.zeros == nil {
		x.zeros = make([]byte, len(x.buf))
	}
	var off int64
	start := x.in.N // the archive's bytes read before the entry's data
	for {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		// Fill the buffer, so that blocks keep their 4 KiB alignment.
		n, eof := 0, false
		for n < len(x.buf) {
			k, err := r.Read(x.buf[n:])
			n += k
			if err == io.EOF {
				eof = true
				break
			}
			if err != nil {
				return fmt.Errorf("write contents: %w", err)
			}
			if k == 0 {
				return fmt.Errorf("write contents: %w", io.ErrNoProgress)
			}
		}
		if err := x.writeData(f, x.buf[:n], off); err != nil {
			return err
		}
		off += int64(n)
		if holes := off - (x.in.N - start); holes > maxSparseHoles {
			return fmt.Errorf("%w: %d bytes, more than %d of them holes, which fireops never archives (a restore reads every hole as zeros); "+
				"restore it with GNU tar -x", ErrTooManyHoles, size, maxSparseHoles)
		}
		if eof {
			break
		}
	}
	if off != size {
		return fmt.Errorf("write contents: %d bytes of a sparse file of %d", off, size)
	}
	x.stats.Bytes += size
	return nil
}

// writeData writes the blocks of b that are not all zeros to f at off.
func (x *extractor) writeData(f *os.File, b []byte, off int64) error {
	if bytes.Equal(b, x.zeros[:len(b)]) {
		return nil
	}
	start := -1 // first block of the run of data blocks being collected
	for i := 0; i < len(b); i += holeBlock {
		end := min(i+holeBlock, len(b))
		if !bytes.Equal(b[i:end], x.zeros[:end-i]) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			if _, err := f.WriteAt(b[start:i], off+int64(start)); err != nil {
				return fmt.Errorf("write contents: %w", err)
			}
			start = -1
		}
	}
	if start >= 0 {
		if _, err := f.WriteAt(b[start:], off+int64(start)); err != nil {
			return fmt.Errorf("write contents: %w", err)
		}
	}
	return nil
}
