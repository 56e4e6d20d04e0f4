package mongo

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/firetech/fireops/pkg/leftover"
)

// spoolPrefix starts the name of a spool file while it has one: only
// where the filesystem lacks O_TMPFILE, between its creation and its
// unlink (see [leftover.TempFile]).
const spoolPrefix = ".fireops-mongo-spool-"

// CleanLeftovers removes the spool files that killed runs left in dir
// (the folder given to WithTempDir: state_dir for fireops), logging each,
// and never one of a live run. A spool file has no name (O_TMPFILE) or
// loses it at once, so only a run killed in that instant, on a
// filesystem without O_TMPFILE, leaves one, and it holds ciphertext
// under a key that died with the run.
func CleanLeftovers(dir string, log *slog.Logger) ([]string, error) {
	return leftover.Clean(dir, spoolPrefix, log)
}

// spool holds one collection's raw documents between the cursor and the
// tar entry, whose header needs the size before the contents. Up to limit
// bytes stay in memory; the rest goes to a temp file in dir that never has
// a name (O_TMPFILE; else it is unlinked as soon as it is created, see
// [CleanLeftovers]), so nothing is left after a crash, and is encrypted with AES-256-CTR under a key that only this process ever
// holds, so no plaintext document reaches the disk.
type spool struct {
	dir   string
	limit int
	mem   []byte
	f     *os.File
	bw    *bufio.Writer
	enc   cipher.Stream
	block cipher.Block
	iv    []byte
	size  int64
}

func newSpool(dir string, limit int) *spool { return &spool{dir: dir, limit: limit} }

// Write appends p.
func (s *spool) Write(p []byte) (int, error) {
	if s.f == nil && len(s.mem)+len(p) <= s.limit {
		s.mem = append(s.mem, p...)
		s.size += int64(len(p))
		return len(p), nil
	}
	if s.f == nil {
		if err := s.spill(); err != nil {
			return 0, err
		}
	}
	buf := make([]byte, min(len(p), 64<<10))
	for off := 0; off < len(p); {
		n := copy(buf, p[off:])
		s.enc.XORKeyStream(buf[:n], p[off:off+n])
		if _, err := s.bw.Write(buf[:n]); err != nil {
			return off, fmt.Errorf("mongo: spool file in %s: %w", s.dir, err)
		}
		off += n
	}
	s.size += int64(len(p))
	return len(p), nil
}

// spill starts the encrypted file.
func (s *spool) spill() error {
	f, err := leftover.TempFile(s.dir, spoolPrefix)
	if err != nil {
		return fmt.Errorf("mongo: spool file: %w (set state_dir to a folder with room for the largest collection)", err)
	}
	if s.block == nil {
		key := make([]byte, 32)
		rand.Read(key)
		if s.block, err = aes.NewCipher(key); err != nil {
			f.Close()
			return err
		}
	}
	s.iv = make([]byte, aes.BlockSize)
	rand.Read(s.iv)
	s.f, s.enc = f, cipher.NewCTR(s.block, s.iv)
	s.bw = bufio.NewWriterSize(f, 256<<10)
	return nil
}

// Size is the number of bytes written.
func (s *spool) Size() int64 { return s.size }

// WriteTo writes the spooled bytes to w, in order.
func (s *spool) WriteTo(w io.Writer) (int64, error) {
	n, err := io.Copy(w, bytes.NewReader(s.mem))
	if err != nil || s.f == nil {
		return n, err
	}
	if err := s.bw.Flush(); err != nil {
		return n, fmt.Errorf("mongo: spool file in %s: %w", s.dir, err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return n, fmt.Errorf("mongo: spool file: %w", err)
	}
	r := cipher.StreamReader{S: cipher.NewCTR(s.block, s.iv), R: bufio.NewReaderSize(s.f, 256<<10)}
	m, err := io.Copy(w, r)
	return n + m, err
}

// Reset empties the spool for the next collection, keeping the memory.
func (s *spool) Reset() {
	s.mem, s.size = s.mem[:0], 0
	if s.f != nil {
		s.f.Close()
		s.f, s.bw, s.enc = nil, nil, nil
	}
}

// Close releases the file and the memory.
func (s *spool) Close() {
	s.Reset()
	s.mem = nil
}
