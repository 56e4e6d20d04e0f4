package tarsafe

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
)

// writerBufferSize is the size of a Writer's buffer: its output goes out in
// writes of this size, and file contents are read into it.
const writerBufferSize = 256 << 10

// Writer writes a tar archive for the sources: for every header and
// contents, exactly the bytes that archive/tar's Writer writes, but
// cheaply per entry, for archives of many small files. It encodes the
// headers the sources make itself (Format tar.FormatPAX, regular files,
// folders, symbolic and hard links with ASCII names and owner names, ids
// and sizes that fit the octal fields: a USTAR block, or PAX records for
// long names and sub-second modification times, as archive/tar chooses)
// and hands any other header to archive/tar. Output is buffered and goes
// to the underlying writer in writes of 256 KiB; [Writer.ReadContents]
// reads file contents straight into that buffer. Close writes the end of
// the archive and flushes; after an error nothing more is written.
type Writer struct {
	w         io.Writer
	buf       []byte // pending output, never longer than its capacity
	remaining int64  // contents the current entry still expects
	pad       int64  // zeros after the current entry's contents
	err       error  // first error writing to w; every later call returns it
	closed    bool
	rec       []byte       // PAX records of the header being encoded
	fb        bytes.Buffer // headers encoded by archive/tar
}

// NewWriter returns a Writer that writes the archive to w.
func NewWriter(w io.Writer) *Writer { return newWriterSize(w, writerBufferSize) }

func newWriterSize(w io.Writer, size int) *Writer {
	return &Writer{w: w, buf: make([]byte, 0, size)}
}

// flush writes the buffer out.
func (w *Writer) flush() {
	if w.err == nil && len(w.buf) > 0 {
		_, w.err = w.w.Write(w.buf)
	}
	w.buf = w.buf[:0]
}

// reserve appends n zero bytes to the buffer, flushing it first when they
// do not fit, and returns them.
func (w *Writer) reserve(n int) []byte {
	if cap(w.buf)-len(w.buf) < n {
		w.flush()
		if cap(w.buf) < n {
			w.buf = make([]byte, 0, n)
		}
	}
	l := len(w.buf)
	w.buf = w.buf[:l+n]
	b := w.buf[l:]
	clear(b)
	return b
}

// finishEntry checks that the current entry's contents are complete and
// writes its padding.
func (w *Writer) finishEntry() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return tar.ErrWriteAfterClose
	}
	if w.remaining > 0 {
		return fmt.Errorf("tarsafe: missed writing %d bytes", w.remaining)
	}
	if w.pad > 0 {
		w.reserve(int(w.pad))
		w.pad = 0
	}
	return w.err
}

// WriteHeader writes hdr and prepares for the entry's contents: Size
// bytes for a regular file, none for header-only types (folders, links,
// devices). The previous entry's contents must be complete.
func (w *Writer) WriteHeader(hdr *tar.Header) error {
	if err := w.finishEntry(); err != nil {
		return err
	}
	flag := hdr.Typeflag
	//lint:ignore SA1019 a caller's header may carry the legacy flag, which archive/tar.Writer promotes as this does
	if flag == tar.TypeRegA {
		if strings.HasSuffix(hdr.Name, "/") {
			flag = tar.TypeDir
		} else {
			flag = tar.TypeReg
		}
	}
	if !w.encode(hdr, flag) {
		if flag == tar.TypeXGlobalHeader {
			return errors.New("tarsafe: global PAX headers are not supported")
		}
		w.fb.Reset()
		if err := tar.NewWriter(&w.fb).WriteHeader(hdr); err != nil {
			return err
		}
		copy(w.reserve(w.fb.Len()), w.fb.Bytes())
	}
	size := hdr.Size
	if headerOnly(flag) {
		size = 0
	}
	w.remaining, w.pad = size, -size&(blockSize-1)
	return w.err
}

// Write writes contents of the current entry; more than its header's size
// is tar.ErrWriteTooLong.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, tar.ErrWriteAfterClose
	}
	tooLong := false
	if int64(len(p)) > w.remaining {
		p, tooLong = p[:w.remaining], true
	}
	n := 0
	for n < len(p) {
		if len(w.buf) == cap(w.buf) {
			if w.flush(); w.err != nil {
				return n, w.err
			}
		}
		k := copy(w.buf[len(w.buf):cap(w.buf)], p[n:])
		w.buf = w.buf[:len(w.buf)+k]
		n += k
	}
	w.remaining -= int64(n)
	if tooLong {
		return n, tar.ErrWriteTooLong
	}
	return n, nil
}

// ReadContents reads the rest of the current entry's contents from r
// straight into the output buffer, until they are complete or r reports
// io.EOF, and returns the bytes read: fewer than expected when r ended
// early (a file that shrank; see [Writer.FillZeros]). A file longer than
// the header says is read only up to its size. ctx is checked before
// every read.
func (w *Writer) ReadContents(ctx context.Context, r io.Reader) (int64, error) {
	var total int64
	for w.remaining > 0 {
		if w.err != nil {
			return total, w.err
		}
		if w.closed {
			return total, tar.ErrWriteAfterClose
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
		if len(w.buf) == cap(w.buf) {
			w.flush()
			continue
		}
		free := w.buf[len(w.buf):cap(w.buf)]
		if int64(len(free)) > w.remaining {
			free = free[:w.remaining]
		}
		n, err := r.Read(free)
		if n < 0 || n > len(free) {
			return total, errors.New("tarsafe: invalid read count")
		}
		w.buf = w.buf[:len(w.buf)+n]
		w.remaining -= int64(n)
		total += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, io.ErrNoProgress
		}
	}
	return total, w.err
}

// FillZeros completes the current entry's contents with zeros.
func (w *Writer) FillZeros() error {
	if w.closed {
		return tar.ErrWriteAfterClose
	}
	for w.remaining > 0 && w.err == nil {
		if len(w.buf) == cap(w.buf) {
			w.flush()
			continue
		}
		k := min(int64(cap(w.buf)-len(w.buf)), w.remaining)
		w.reserve(int(k))
		w.remaining -= k
	}
	return w.err
}

// Close writes the end of the archive (two zero blocks) and flushes the
// buffer; the current entry's contents must be complete. It does not
// close the underlying writer.
func (w *Writer) Close() error {
	if w.closed && w.err == nil {
		return nil
	}
	if err := w.finishEntry(); err != nil {
		return err
	}
	w.reserve(2 * blockSize)
	w.flush()
	w.closed = true
	return w.err
}

// The tar header block (V7 fields, then USTAR's).
const (
	blockSize  = 512
	nameSize   = 100 // name field, and linkname
	prefixSize = 155 // USTAR prefix field

	offName     = 0
	offMode     = 100
	offUID      = 108
	offGID      = 116
	offSize     = 124
	offMtime    = 136
	offChksum   = 148
	offTypeflag = 156
	offLinkname = 157
	offMagic    = 257
	offVersion  = 263
	offUname    = 265
	offGname    = 297
	offDevmajor = 329
	offDevminor = 337
	offPrefix   = 345

	maxSpecialFileSize = 1 << 20 // archive/tar's limit on PAX records
)

// headerOnly reports whether entries of type flag have no contents.
func headerOnly(flag byte) bool {
	switch flag {
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
		return true
	}
	return false
}

// encode writes the header block(s) of hdr the way archive/tar's
// WriteHeader does, for the headers the sources make; it returns false,
// having written nothing, for any other header.
//
// What it mirrors (archive/tar, Header.allowedFormats and the writers):
// with Format PAX, a header that needs no PAX record, or only a "path"
// record for a long name that USTAR can split into prefix and name, is
// written as a USTAR block; a header with a sub-second modification time
// or a long link target is written as PAX: a "PaxHeaders.0" extended
// header holding the records (linkpath, mtime, path: sorted), then the
// block with the name and link target cut to their fields.
func (w *Writer) encode(hdr *tar.Header, flag byte) bool {
	//lint:ignore SA1019 a caller's Xattrs become PAX records in archive/tar, so the fast path must leave them to it
	if hdr.Format != tar.FormatPAX || len(hdr.PAXRecords) != 0 || len(hdr.Xattrs) != 0 ||
		!hdr.AccessTime.IsZero() || !hdr.ChangeTime.IsZero() || hdr.Devmajor != 0 || hdr.Devminor != 0 {
		return false
	}
	switch flag {
	case tar.TypeReg:
		if strings.HasSuffix(hdr.Name, "/") {
			return false // archive/tar's error
		}
	case tar.TypeDir, tar.TypeSymlink, tar.TypeLink:
	default:
		return false
	}
	if !fitsOctal(8, hdr.Mode) || !fitsOctal(8, int64(hdr.Uid)) || !fitsOctal(8, int64(hdr.Gid)) || !fitsOctal(12, hdr.Size) ||
		!isASCII(hdr.Name) || !isASCII(hdr.Linkname) ||
		!isASCII(hdr.Uname) || len(hdr.Uname) > 32 || !isASCII(hdr.Gname) || len(hdr.Gname) > 32 {
		return false
	}
	var secs int64
	var nsecs int
	if !hdr.ModTime.IsZero() {
		secs, nsecs = hdr.ModTime.Unix(), hdr.ModTime.Nanosecond()
		if !fitsOctal(12, secs) {
			return false
		}
	}
	name, prefix := hdr.Name, ""
	nameLong, linkLong := len(hdr.Name) > nameSize, len(hdr.Linkname) > nameSize
	pax := nsecs != 0 || linkLong
	if nameLong && !pax {
		if p, n, ok := splitUSTARPath(hdr.Name); ok {
			prefix, name = p, n
		} else {
			pax = true
		}
	}
	if pax {
		rec := w.rec[:0]
		if linkLong {
			rec = appendPAXRecord(rec, "linkpath", hdr.Linkname)
		}
		if nsecs != 0 {
			var t [32]byte
			rec = appendPAXRecord(rec, "mtime", appendPAXTime(t[:0], secs, nsecs))
		}
		if nameLong {
			rec = appendPAXRecord(rec, "path", hdr.Name)
		}
		w.rec = rec
		if len(rec) > maxSpecialFileSize {
			return false // archive/tar's error
		}
		w.writeXHeader(hdr.Name, rec)
	}
	blk := w.reserve(blockSize)
	blk[offTypeflag] = flag
	formatString(blk[offName:offName+nameSize], name)
	formatString(blk[offLinkname:offLinkname+nameSize], hdr.Linkname)
	formatOctal(blk[offMode:offMode+8], hdr.Mode)
	formatOctal(blk[offUID:offUID+8], int64(hdr.Uid))
	formatOctal(blk[offGID:offGID+8], int64(hdr.Gid))
	formatOctal(blk[offSize:offSize+12], hdr.Size)
	formatOctal(blk[offMtime:offMtime+12], secs)
	formatString(blk[offUname:offUname+32], hdr.Uname)
	formatString(blk[offGname:offGname+32], hdr.Gname)
	formatOctal(blk[offDevmajor:offDevmajor+8], 0)
	formatOctal(blk[offDevminor:offDevminor+8], 0)
	formatString(blk[offPrefix:offPrefix+prefixSize], prefix)
	finishBlock(blk)
	return true
}

// writeXHeader writes the PAX extended header holding the records rec
// for the entry name, as archive/tar does: named "PaxHeaders.0" in the
// entry's folder (cut to the name field), mode, owner and time zero.
func (w *Writer) writeXHeader(name string, rec []byte) {
	xname := paxHeaderName(name)
	if len(xname) > nameSize {
		xname = xname[:nameSize]
	}
	xname = strings.TrimRight(xname, "/")
	blk := w.reserve(blockSize)
	blk[offTypeflag] = tar.TypeXHeader
	formatString(blk[offName:offName+nameSize], xname)
	formatOctal(blk[offMode:offMode+8], 0)
	formatOctal(blk[offUID:offUID+8], 0)
	formatOctal(blk[offGID:offGID+8], 0)
	formatOctal(blk[offSize:offSize+12], int64(len(rec)))
	formatOctal(blk[offMtime:offMtime+12], 0)
	finishBlock(blk)
	copy(w.reserve(len(rec)+(-len(rec)&(blockSize-1))), rec)
}

// finishBlock sets the USTAR magic and version and the checksum: the sum
// of the block's bytes with the checksum field counted as spaces (it is
// still zero here), as 6 octal digits, a NUL and a space.
func finishBlock(blk []byte) {
	copy(blk[offMagic:], "ustar\x00")
	copy(blk[offVersion:], "00")
	formatOctal(blk[offChksum:offChksum+7], byteSum(blk[:blockSize])+8*' ')
	blk[offChksum+7] = ' '
}

// byteSum returns the sum of the bytes of a block, eight at a time.
func byteSum(b []byte) int64 {
	const lanes = 0x00ff00ff00ff00ff
	var acc uint64 // four 16-bit sums; 64 words of at most 2*255 each fit
	for i := 0; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		acc += w&lanes + (w>>8)&lanes
	}
	acc = acc&0x0000ffff0000ffff + (acc>>16)&0x0000ffff0000ffff
	return int64(acc&0xffffffff + acc>>32)
}

// paxHeaderName is the name archive/tar gives the extended header of
// name: path.Join(dir, "PaxHeaders.0", file) of path.Split(name), built
// without path.Clean when name is already clean.
func paxHeaderName(name string) string {
	dir, file := path.Split(name)
	if d := strings.TrimSuffix(dir, "/"); d == "" || !isCleanRel(d) || file == "." || file == ".." {
		return path.Join(dir, "PaxHeaders.0", file)
	}
	if file == "" {
		return dir + "PaxHeaders.0"
	}
	return dir + "PaxHeaders.0/" + file
}

// isCleanRel reports whether p is a relative path that path.Clean leaves
// as it is: no empty, "." or ".." elements, no leading or trailing slash.
func isCleanRel(p string) bool {
	for len(p) > 0 {
		i := strings.IndexByte(p, '/')
		elem := p
		if i >= 0 {
			elem, p = p[:i], p[i+1:]
			if p == "" {
				return false // trailing slash
			}
		} else {
			p = ""
		}
		if elem == "" || elem == "." || elem == ".." {
			return false
		}
	}
	return true
}

// formatString is archive/tar's: s cut to the field, NUL-terminated when
// shorter, and a cut name does not end the field with a slash.
func formatString(b []byte, s string) {
	copy(b, s)
	if len(s) < len(b) {
		b[len(s)] = 0
	}
	if len(s) > len(b) && b[len(b)-1] == '/' {
		n := len(strings.TrimRight(s[:len(b)-1], "/"))
		b[n] = 0
	}
}

// formatOctal writes x (which fits, see fitsOctal) as len(b)-1 octal
// digits with leading zeros and a NUL.
func formatOctal(b []byte, x int64) {
	i := len(b) - 1
	b[i] = 0
	for i > 0 {
		i--
		b[i] = byte('0' + x&7)
		x >>= 3
	}
}

// fitsOctal reports whether x fits an n-byte octal field with its NUL.
func fitsOctal(n int, x int64) bool {
	return x >= 0 && (n >= 22 || x < 1<<(uint(n-1)*3))
}

// isASCII reports whether s is ASCII without NUL bytes.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x80 || c == 0 {
			return false
		}
	}
	return true
}

// splitUSTARPath is archive/tar's: a name too long for the name field
// split at a slash into USTAR's prefix and name fields.
func splitUSTARPath(name string) (prefix, suffix string, ok bool) {
	length := len(name)
	if length <= nameSize || !isASCII(name) {
		return "", "", false
	} else if length > prefixSize+1 {
		length = prefixSize + 1
	} else if name[length-1] == '/' {
		length--
	}
	i := strings.LastIndex(name[:length], "/")
	nlen := len(name) - i - 1
	plen := i
	if i <= 0 || nlen > nameSize || nlen == 0 || plen > prefixSize {
		return "", "", false
	}
	return name[:i], name[i+1:], true
}

// appendPAXTime appends a non-negative time with nanoseconds as PAX does:
// seconds, a dot and the nanoseconds without trailing zeros.
func appendPAXTime(b []byte, secs int64, nsecs int) []byte {
	b = strconv.AppendInt(b, secs, 10)
	b = append(b, '.')
	var d [9]byte
	for i := 8; i >= 0; i-- {
		d[i] = byte('0' + nsecs%10)
		nsecs /= 10
	}
	n := 9
	for n > 0 && d[n-1] == '0' {
		n--
	}
	return append(b, d[:n]...)
}

// appendPAXRecord appends the record "<length> <k>=<v>\n", whose length
// counts itself (archive/tar's formatPAXRecord).
func appendPAXRecord[V string | []byte](b []byte, k string, v V) []byte {
	size := len(k) + len(v) + 3
	size += decimalDigits(size)
	if n := decimalDigits(size) + len(k) + len(v) + 3; n != size {
		size = n
	}
	b = strconv.AppendInt(b, int64(size), 10)
	b = append(b, ' ')
	b = append(b, k...)
	b = append(b, '=')
	b = append(b, v...)
	return append(b, '\n')
}

func decimalDigits(n int) int {
	d := 1
	for n >= 10 {
		n /= 10
		d++
	}
	return d
}
