package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
)

// readWorkers is the number of pieces downloaded, checked, decrypted and
// decompressed at once while a consumer writes the previous ones.
const readWorkers = 2

// readBufs recycles the reader's piece-sized buffers (downloaded bytes,
// decrypted frame, plaintext), so that a restore of many pieces does not
// allocate three buffers a piece.
var readBufs sync.Pool

func getBuf(n int) []byte {
	if b, ok := readBufs.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:0]
	}
	return make([]byte, 0, n)
}

func putBuf(b []byte) {
	if cap(b) > 0 && cap(b) <= 2*PieceMax+(64<<10) {
		readBufs.Put(&b)
	}
}

// pieceResult is one piece's verified plaintext, or why there is none.
type pieceResult struct {
	plain []byte
	err   error
}

// pieceReader is the verified plaintext of a v2 part: workers fetch and
// check the pieces ahead, in parallel; Read hands them on in order. It
// holds at most readWorkers+1 pieces.
type pieceReader struct {
	ctx    context.Context
	cancel context.CancelFunc
	st     Store
	m      *Manifest
	part   Part
	list   *PieceList
	ids    []age.Identity
	zr     *zstd.Decoder
	order  chan chan pieceResult // one per piece, in order
	cur    []byte
	rest   []byte
	err    error
	wg     sync.WaitGroup
}

func newPieceReader(ctx context.Context, st Store, m *Manifest, part Part, l *PieceList, ids []age.Identity) *pieceReader {
	ctx, cancel := context.WithCancel(ctx)
	zr, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(readWorkers), zstd.IgnoreChecksum(true),
		zstd.WithDecoderMaxMemory(maxPieceRead))
	r := &pieceReader{ctx: ctx, cancel: cancel, st: st, m: m, part: part, list: l, ids: ids, zr: zr,
		order: make(chan chan pieceResult, readWorkers)}
	// The dispatcher starts one fetch per piece, in order, never more than
	// readWorkers ahead of the consumer (the order channel's capacity).
	sem := make(chan struct{}, readWorkers)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(r.order)
		for i := range l.Pieces {
			res := make(chan pieceResult, 1)
			select {
			case r.order <- res:
			case <-ctx.Done():
				return
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				res <- pieceResult{err: ctx.Err()}
				return
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer func() { <-sem }()
				plain, err := r.fetch(i)
				res <- pieceResult{plain: plain, err: err}
			}()
		}
	}()
	return r
}

// fetch downloads piece i whole and returns its plaintext once every
// check passed: stored size and SHA-256 against the list (before
// decryption), then the plaintext size and, when the manifest has the
// id key, the keyed id.
func (r *pieceReader) fetch(i int) ([]byte, error) {
	p := r.list.Pieces[i]
	path := PiecePath(r.m.Host, p.ID)
	buf := bytes.NewBuffer(getBuf(int(p.Stored) + 1))
	defer func() { putBuf(buf.Bytes()) }()
	h := sha256.New()
	got, err := downloadInto(r.ctx, r.st, path, p.Stored, io.MultiWriter(buf, h))
	name := fmt.Sprintf("part %s: piece %d (%s) on %s", r.part.ID, i, p.ID, r.st.Name())
	if err != nil {
		if errors.Is(err, ErrIntegrity) || errors.Is(err, ErrNotFound) {
			return nil, damaged(p.ID, integrityf("%s: %v", name, err))
		}
		if r.ctx.Err() != nil {
			return nil, r.ctx.Err()
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if got != p.Stored {
		return nil, damaged(p.ID, integrityf("%s is truncated: %d of %d bytes", name, got, p.Stored))
	}
	if hex.EncodeToString(h.Sum(nil)) != p.SHA256 {
		return nil, damaged(p.ID, integrityf("%s: sha256 differs from the piece list (altered or swapped piece)", name))
	}
	ar, err := age.Decrypt(bytes.NewReader(buf.Bytes()), r.ids...)
	if err != nil {
		return nil, decryptError(r.part.ID, "piece "+p.ID, err)
	}
	frame, err := readAllInto(ar, getBuf(int(p.Stored)), p.Stored)
	defer putBuf(frame)
	if err != nil {
		return nil, decryptError(r.part.ID, "piece "+p.ID, err)
	}
	plain, err := r.zr.DecodeAll(frame, getBuf(int(p.Size)))
	if err != nil {
		putBuf(plain)
		return nil, integrityf("%s: decompress: %v", name, err)
	}
	if int64(len(plain)) != p.Size {
		putBuf(plain)
		return nil, integrityf("%s: %d bytes of plaintext, the piece list records %d", name, len(plain), p.Size)
	}
	if r.m.idKey != nil {
		if id := keyedID(r.m.idKey, plain); hex.EncodeToString(id[:]) != p.ID {
			putBuf(plain)
			return nil, integrityf("%s: the plaintext does not match the piece's keyed id", name)
		}
	}
	return plain, nil
}

// readAllInto reads r to its end into buf, failing past max bytes.
func readAllInto(r io.Reader, buf []byte, max int64) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > max {
				return buf, fmt.Errorf("decrypted piece is longer than stored")
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// Read hands on verified plaintext in order.
func (r *pieceReader) Read(p []byte) (int, error) {
	for len(r.rest) == 0 {
		if r.cur != nil {
			putBuf(r.cur)
			r.cur = nil
		}
		if r.err != nil {
			return 0, r.err
		}
		res, ok := <-r.order
		if !ok {
			if err := r.ctx.Err(); err != nil {
				r.err = err
				return 0, err
			}
			r.err = io.EOF
			return 0, io.EOF
		}
		out := <-res
		if out.err != nil {
			r.err = out.err
			r.cancel()
			return 0, out.err
		}
		r.cur, r.rest = out.plain, out.plain
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}

// close stops the workers and waits for them.
func (r *pieceReader) close() {
	r.cancel()
	for range r.order {
	}
	r.wg.Wait()
	r.zr.Close()
}
