package tarsafe

// Sparse files.
//
// A file with holes (made with truncate, or a disk image) is archived
// without them: [ScanSparse] finds its data regions with lseek
// SEEK_DATA/SEEK_HOLE on the open file, [Writer.WriteSparseHeader] writes
// a GNU sparse entry in PAX format 1.0 (what GNU tar writes with
// --format=pax --sparse, and what GNU tar, bsdtar and archive/tar read)
// and [Writer.ReadSparse] reads only the data regions. The holes are
// never read: archiving a file costs its data, not its size. Extract
// writes these entries back with holes (see extract.go).
//
// The entry, as GNU tar writes it: a PAX extended header with the records
// GNU.sparse.major=1, GNU.sparse.minor=0, GNU.sparse.name=<name> and
// GNU.sparse.realsize=<size> (and those archive/tar would add: mtime with
// nanoseconds, size, ids or owner names too large for their fields), then
// a regular file header named <folder>/GNUSparseFile.0/<base> whose
// contents are the sparse map, padded to 512 bytes ("<n>\n" then
// "<offset>\n<length>\n" per region, the last one "<size>\n0\n"), then the
// data regions one after the other.

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	// SparseMinHoles is how much of a file must be unallocated (size less
	// st_blocks*512) before [ScanSparse] looks for its holes: files with
	// fewer are archived whole, as before.
	SparseMinHoles = 1 << 20
	// sparseMinGap is the shortest hole kept as a hole: shorter ones
	// between two data regions are stored as data (zeros), which keeps
	// the map short.
	sparseMinGap = 64 << 10
	// maxSparseRegions bounds the regions of one entry's map: at most 40
	// bytes each, the map stays well below the 1 MiB archive/tar reads.
	maxSparseRegions = 16384
	// maxScanRegions bounds the regions ScanSparse collects before it
	// merges them down to maxSparseRegions (16 MiB of memory).
	maxScanRegions = 1 << 20
	// sparseMergeAllowance is the zeros a map merged down to
	// maxSparseRegions may store beyond the file's data.
	sparseMergeAllowance = 64 << 20
	// scanCtxEvery is how many lseek rounds ScanSparse makes between two
	// checks of its context.
	scanCtxEvery = 4096
)

// MaxSparseHoles is the most hole bytes the sources let the sparse
// entries of one part carry, and the most one sparse entry may have for
// Extract to restore it. A restore cannot skip holes: archive/tar hides
// an entry's sparse map and hands its holes over as zeros, which Extract
// checks at 10 to 50 GB/s on one core (docs/format.md), so a tebibyte of
// holes costs a restore 20 seconds to 2 minutes. Without a cap, files
// made with truncate (free to snapshot: 16 TiB costs a few KB) would cost
// a restore hours per file, and never end on XFS (8 EiB files); a user's
// terabyte disk image still fits.
const MaxSparseHoles = 1 << 40

// maxSparseHoles is MaxSparseHoles for Extract, lowered by tests.
var maxSparseHoles int64 = MaxSparseHoles

// ErrTooManyHoles is wrapped by the errors about a sparse file whose
// holes pass [MaxSparseHoles]: a source's (a files part fails naming the
// file) and Extract's.
var ErrTooManyHoles = errors.New("sparse file with more holes than a restore reads in reasonable time")

// ErrTooFragmented is wrapped by ScanSparse's error for a file whose data
// lies in so many separate regions that no sparse map of at most
// maxSparseRegions regions covers it without storing far more zeros than
// data (more than its data and 64 MiB): archived dense, its holes would
// cost their size in time and space.
var ErrTooFragmented = errors.New("sparse file too fragmented to archive without its holes")

// Region is a run of a file's data: Length bytes from Offset.
type Region struct{ Offset, Length int64 }

// SparseMap is the data regions of a file with holes, in order and apart:
// offsets are multiples of 512, and so are lengths except a region that
// ends at Size. Everything outside the regions reads as zeros.
type SparseMap struct {
	Size    int64 // the file's size
	Regions []Region
}

// Holes returns the bytes outside the regions: what a restore reads as
// zeros without their being stored.
func (m *SparseMap) Holes() int64 { return m.Size - m.DataSize() }

// DataSize returns the bytes of the regions: what the entry stores.
func (m *SparseMap) DataSize() int64 {
	var n int64
	for _, r := range m.Regions {
		n += r.Length
	}
	return n
}

// ScanSparse looks for the holes of the open regular file fd, whose fstat
// is fi. It returns nil for a file to archive whole: one whose allocated
// size is within SparseMinHoles of its size (most files: no lseek is
// made), a file system without SEEK_DATA, or a file with no hole of 64 KiB
// or more. Otherwise it returns the file's data regions up to fi.Size()
// (what the file holds beyond, should it grow, is not archived), holes
// shorter than 64 KiB between them counted as data. The same file gives
// the same map, so its entry has the same bytes. A file too fragmented to
// map is an error wrapping ErrTooFragmented. The file offset of fd is
// left at 0.
func ScanSparse(ctx context.Context, fd int, fi fs.FileInfo) (*SparseMap, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	size := fi.Size()
	if !ok || !fi.Mode().IsRegular() || size < SparseMinHoles || st.Blocks > (size-SparseMinHoles)/512 {
		return nil, nil
	}
	defer unix.Seek(fd, 0, io.SeekStart)
	var rs []Region
	var raw int64 // data bytes
	off := int64(0)
	for i := 0; off < size; i++ {
		if i%scanCtxEvery == scanCtxEvery-1 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		d, err := seek(fd, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break // only a hole left (or the file shrank)
		}
		if err != nil {
			return nil, nil // no SEEK_DATA here: archived whole
		}
		if d < off || d >= size {
			break
		}
		h, err := seek(fd, d, unix.SEEK_HOLE)
		if err == unix.ENXIO {
			h = size // shrank meanwhile; ReadSparse sees it
		} else if err != nil {
			return nil, nil
		}
		h = min(h, size)
		if h <= d {
			h = min(d+512, size) // not what lseek promises; keep moving
		}
		start, end := d&^511, min((h+511)&^511, size)
		if n := len(rs); n > 0 && start-(rs[n-1].Offset+rs[n-1].Length) < sparseMinGap {
			last := &rs[n-1]
			raw += max(end-(last.Offset+last.Length), 0)
			last.Length = max(end, last.Offset+last.Length) - last.Offset
		} else {
			if len(rs) == maxScanRegions {
				return nil, fmt.Errorf("%w: more than %d separate data regions in %d bytes", ErrTooFragmented, maxScanRegions, size)
			}
			rs = append(rs, Region{Offset: start, Length: end - start})
			raw += end - start
		}
		off = h
	}
	if raw == size {
		return nil, nil // no hole worth keeping
	}
	if len(rs) > maxSparseRegions {
		var added int64
		rs, added = mergeGaps(rs, maxSparseRegions)
		if added > max(raw, sparseMergeAllowance) {
			return nil, fmt.Errorf("%w: %d bytes of data in more than %d separate regions over %d bytes",
				ErrTooFragmented, raw, maxSparseRegions, size)
		}
	}
	return &SparseMap{Size: size, Regions: rs}, nil
}

// seek is lseek, retrying on EINTR.
func seek(fd int, off int64, whence int) (int64, error) {
	for {
		n, err := unix.Seek(fd, off, whence)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// mergeGaps merges the regions rs, joining the shortest gaps between
// neighbours (the leftmost first among equal ones), until at most max
// remain; it returns them and the gap bytes joined.
func mergeGaps(rs []Region, max int) ([]Region, int64) {
	k := len(rs) - max // merges needed
	if k <= 0 {
		return rs, 0
	}
	gap := func(i int) int64 { return rs[i+1].Offset - (rs[i].Offset + rs[i].Length) }
	gaps := make([]int64, len(rs)-1)
	for i := range gaps {
		gaps[i] = gap(i)
	}
	slices.Sort(gaps)
	limit := gaps[k-1]
	below := 0 // gaps shorter than limit: all merged
	for _, g := range gaps[:k] {
		if g < limit {
			below++
		}
	}
	ties := k - below // gaps equal to limit to merge, from the left
	var added int64
	out := rs[:1]
	for i := 0; i+1 < len(rs); i++ {
		g := gap(i)
		merge := g < limit
		if g == limit && ties > 0 {
			merge, ties = true, ties-1
		}
		if merge {
			last := &out[len(out)-1]
			last.Length = rs[i+1].Offset + rs[i+1].Length - last.Offset
			added += g
			continue
		}
		out = append(out, rs[i+1])
	}
	return out, added
}

// sparseName is the name of a sparse entry's file header, as GNU tar and
// archive/tar make it: "GNUSparseFile.0" between the folder and the base
// name. Readers that know the format use GNU.sparse.name instead.
func sparseName(name string) string {
	dir, file := path.Split(name)
	return dir + "GNUSparseFile.0/" + file
}

// WriteSparseHeader writes hdr, a regular file of hdr.Size bytes with the
// holes m (from [ScanSparse]; m.Size must be hdr.Size), as a GNU sparse
// entry in PAX format 1.0, and its sparse map; the contents that follow
// are the data regions, m.DataSize() bytes (see [Writer.ReadSparse]). The
// previous entry's contents must be complete. hdr must be PAX or
// unspecified format, without PAX records, extended attributes, access or
// change times.
func (w *Writer) WriteSparseHeader(hdr *tar.Header, m *SparseMap) error {
	if err := w.finishEntry(); err != nil {
		return err
	}
	switch {
	//lint:ignore SA1019 a caller's header may carry the legacy flag for a regular file, as archive/tar.Writer accepts
	case hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA:
		return fmt.Errorf("tarsafe: %s: a sparse entry must be a regular file", hdr.Name)
	case m.Size != hdr.Size:
		return fmt.Errorf("tarsafe: %s: sparse map of %d bytes for a file of %d", hdr.Name, m.Size, hdr.Size)
	case hdr.Format != tar.FormatPAX && hdr.Format != tar.FormatUnknown:
		return fmt.Errorf("tarsafe: %s: sparse entries are PAX", hdr.Name)
	//lint:ignore SA1019 a caller's Xattrs are PAX records to archive/tar, which a sparse entry does not support
	case len(hdr.PAXRecords) != 0 || len(hdr.Xattrs) != 0 || !hdr.AccessTime.IsZero() || !hdr.ChangeTime.IsZero():
		return fmt.Errorf("tarsafe: %s: PAX records, extended attributes, access or change times in a sparse entry are not supported", hdr.Name)
	}
	// The map: "<n>\n", then "<offset>\n<length>\n" per region and a last
	// empty region at the end, as GNU tar writes it.
	var sm []byte
	sm = strconv.AppendInt(sm, int64(len(m.Regions)+1), 10)
	sm = append(sm, '\n')
	var prev int64
	for _, r := range m.Regions {
		if r.Offset < prev || r.Length < 0 || r.Offset+r.Length > m.Size {
			return fmt.Errorf("tarsafe: %s: invalid sparse map", hdr.Name)
		}
		prev = r.Offset + r.Length
		sm = strconv.AppendInt(sm, r.Offset, 10)
		sm = append(sm, '\n')
		sm = strconv.AppendInt(sm, r.Length, 10)
		sm = append(sm, '\n')
	}
	sm = strconv.AppendInt(sm, m.Size, 10)
	sm = append(sm, "\n0\n"...)
	sm = append(sm, make([]byte, -len(sm)&(blockSize-1))...)
	if len(sm) > maxSpecialFileSize { // archive/tar reads no longer map
		return fmt.Errorf("tarsafe: %s: sparse map of %d regions: %w", hdr.Name, len(m.Regions), ErrTooFragmented)
	}
	phys := int64(len(sm)) + m.DataSize()

	var secs int64
	var nsecs int
	if !hdr.ModTime.IsZero() {
		secs, nsecs = hdr.ModTime.Unix(), hdr.ModTime.Nanosecond()
	}
	type kv struct{ k, v string }
	recs := []kv{
		{"GNU.sparse.major", "1"},
		{"GNU.sparse.minor", "0"},
		{"GNU.sparse.name", hdr.Name},
		{"GNU.sparse.realsize", strconv.FormatInt(m.Size, 10)},
	}
	// What does not fit the header block goes in records, like
	// archive/tar's PAX headers; the block gets zero or a cut string.
	mtimeOK := nsecs == 0 && fitsOctal(12, secs)
	if !mtimeOK {
		recs = append(recs, kv{"mtime", formatPAXTime(secs, nsecs)})
	}
	sizeOK := fitsOctal(12, phys)
	if !sizeOK {
		recs = append(recs, kv{"size", strconv.FormatInt(phys, 10)})
	}
	uidOK, gidOK := fitsOctal(8, int64(hdr.Uid)), fitsOctal(8, int64(hdr.Gid))
	if !uidOK {
		recs = append(recs, kv{"uid", strconv.Itoa(hdr.Uid)})
	}
	if !gidOK {
		recs = append(recs, kv{"gid", strconv.Itoa(hdr.Gid)})
	}
	if !isASCII(hdr.Uname) || len(hdr.Uname) > 32 {
		recs = append(recs, kv{"uname", hdr.Uname})
	}
	if !isASCII(hdr.Gname) || len(hdr.Gname) > 32 {
		recs = append(recs, kv{"gname", hdr.Gname})
	}
	slices.SortFunc(recs, func(a, b kv) int {
		switch {
		case a.k < b.k:
			return -1
		case a.k > b.k:
			return 1
		}
		return 0
	})
	rec := w.rec[:0]
	for _, r := range recs {
		if !validPAXValue(r.k, r.v) {
			return fmt.Errorf("tarsafe: %s: %s holds a NUL byte", hdr.Name, r.k)
		}
		rec = appendPAXRecord(rec, r.k, r.v)
	}
	w.rec = rec
	if len(rec) > maxSpecialFileSize {
		return fmt.Errorf("tarsafe: %s: PAX records too long", hdr.Name)
	}
	w.writeXHeader(hdr.Name, rec)

	field := func(ok bool, v int64) int64 {
		if ok {
			return v
		}
		return 0
	}
	blk := w.reserve(blockSize)
	blk[offTypeflag] = tar.TypeReg
	formatString(blk[offName:offName+nameSize], toASCII(sparseName(hdr.Name)))
	formatOctal(blk[offMode:offMode+8], hdr.Mode&0o7777)
	formatOctal(blk[offUID:offUID+8], field(uidOK, int64(hdr.Uid)))
	formatOctal(blk[offGID:offGID+8], field(gidOK, int64(hdr.Gid)))
	formatOctal(blk[offSize:offSize+12], field(sizeOK, phys))
	formatOctal(blk[offMtime:offMtime+12], field(mtimeOK, secs))
	formatString(blk[offUname:offUname+32], toASCII(hdr.Uname))
	formatString(blk[offGname:offGname+32], toASCII(hdr.Gname))
	formatOctal(blk[offDevmajor:offDevmajor+8], 0)
	formatOctal(blk[offDevminor:offDevminor+8], 0)
	finishBlock(blk)
	if w.err != nil {
		return w.err
	}
	w.remaining, w.pad = phys, -phys&(blockSize-1)
	_, err := w.Write(sm)
	return err
}

// ReadSparse reads the data regions of m from the open file fd (pread:
// the file offset does not matter) into the current entry, written by
// [Writer.WriteSparseHeader], until they are complete or the file ends
// before them, and returns the bytes read: fewer than m.DataSize() when
// the file shrank (see [Writer.FillZeros]). The holes are not read. ctx
// is checked before every read.
func (w *Writer) ReadSparse(ctx context.Context, fd int, m *SparseMap) (int64, error) {
	return w.ReadContents(ctx, &regionReader{fd: fd, regions: m.Regions})
}

// regionReader reads a file's regions one after the other with pread; a
// region that ends early (the file shrank) ends the stream.
type regionReader struct {
	fd      int
	regions []Region
	done    int64 // bytes read of regions[0]
}

func (r *regionReader) Read(p []byte) (int, error) {
	for len(r.regions) > 0 && r.done == r.regions[0].Length {
		r.regions, r.done = r.regions[1:], 0
	}
	if len(r.regions) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	cur := r.regions[0]
	p = p[:min(int64(len(p)), cur.Length-r.done)]
	n, err := retryRead(func() (int, error) { return unix.Pread(r.fd, p, cur.Offset+r.done) })
	r.done += int64(n)
	return n, err
}

// formatPAXTime formats a time as a PAX record does: seconds, and a dot
// and the nanoseconds without trailing zeros when there are any (times
// before 1970 count down from the next whole second, like archive/tar).
func formatPAXTime(secs int64, nsecs int) string {
	if nsecs == 0 {
		return strconv.FormatInt(secs, 10)
	}
	if secs >= 0 {
		var b [32]byte
		return string(appendPAXTime(b[:0], secs, nsecs))
	}
	var b [32]byte
	return "-" + string(appendPAXTime(b[:0], -(secs+1), 1e9-nsecs))
}

// validPAXValue reports whether archive/tar accepts the record k=v.
func validPAXValue(k, v string) bool {
	switch k {
	case "path", "linkpath", "uname", "gname", "GNU.sparse.name":
		for i := 0; i < len(v); i++ {
			if v[i] == 0 {
				return false
			}
		}
	}
	return true
}

// toASCII drops the bytes of s that are not ASCII, as archive/tar does
// for the fields of a PAX header block whose value is in a record.
func toASCII(s string) string {
	if isASCII(s) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x80 && c != 0 {
			b = append(b, c)
		}
	}
	return string(b)
}
