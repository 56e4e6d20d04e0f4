package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"sync/atomic"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
)

// zstdLevel maps the config's compression names to zstd levels.
func zstdLevel(name string) (zstd.EncoderLevel, error) {
	switch name {
	case "fastest":
		return zstd.SpeedFastest, nil
	case "", "default":
		return zstd.SpeedDefault, nil
	case "better":
		return zstd.SpeedBetterCompression, nil
	case "best":
		return zstd.SpeedBestCompression, nil
	}
	return 0, fmt.Errorf("unknown compression %q", name)
}

// newEncoder returns the zstd encoder of the pipeline (stream sets its
// writer with Reset): concurrent blocks on every core with a 1 MiB window,
// which keeps both cores busy at about 115 MiB of memory (the default window in blocks mode takes ~700 MiB).
func newEncoder(level zstd.EncoderLevel) (*zstd.Encoder, error) {
	return zstd.NewWriter(nil,
		zstd.WithEncoderLevel(level),
		zstd.WithEncoderConcurrency(2),
		zstd.WithConcurrentBlocks(true),
		zstd.WithWindowSize(1<<20),
	)
}

// chunk is one full chunk buffer shared by every destination uploading it.
type chunk struct {
	n    int
	data []byte
	refs atomic.Int32
}

// upload is the state of one destination while a part streams to it.
type upload struct {
	store  Store
	host   string
	object string
	ch     chan *chunk
	mu     sync.Mutex
	err    error
}

func (u *upload) failed() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

func (u *upload) fail(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.err == nil {
		u.err = err
	}
}

// bufPool hands out chunk buffers: at most max of them ever exist, made
// when first needed, and shared by every part of a run, so the memory of a
// snapshot is bounded by max chunk sizes whatever the data size.
type bufPool struct {
	free      chan []byte
	mu        sync.Mutex
	made, max int
	size      int
}

func newBufPool(max, size int) *bufPool {
	return &bufPool{free: make(chan []byte, max), max: max, size: size}
}

// get returns a free buffer, making one while fewer than max exist, else
// waiting for one to come back (back-pressure).
func (p *bufPool) get(ctx context.Context) ([]byte, error) {
	select {
	case b := <-p.free:
		return b[:0], nil
	default:
	}
	p.mu.Lock()
	if p.made < p.max {
		p.made++
		p.mu.Unlock()
		return make([]byte, 0, p.size), nil
	}
	p.mu.Unlock()
	select {
	case b := <-p.free:
		return b[:0], nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// put returns a buffer.
func (p *bufPool) put(b []byte) { p.free <- b }

// chunker is the last writer of the pipeline: it cuts the encrypted stream
// into chunks, hashes each, and hands it to every destination's uploaders.
// Back-pressure: it blocks while all buffers of its pool are in flight.
type chunker struct {
	ctx     context.Context
	size    int
	pool    *bufPool
	cur     []byte
	n       int
	total   int64
	blobs   []Blob
	uploads []*upload
}

func (c *chunker) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if c.cur == nil {
			b, err := c.pool.get(c.ctx)
			if err != nil {
				return written, err
			}
			c.cur = b
		}
		k := min(c.size-len(c.cur), len(p))
		c.cur = append(c.cur, p[:k]...)
		p, written = p[k:], written+k
		if len(c.cur) == c.size {
			if err := c.flush(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// flush sends the current buffer (if any) as the next chunk.
func (c *chunker) flush() error {
	if c.cur == nil {
		return nil
	}
	sum := sha256.Sum256(c.cur)
	c.blobs = append(c.blobs, Blob{Size: int64(len(c.cur)), SHA256: hex.EncodeToString(sum[:])})
	c.total += int64(len(c.cur))
	ch := &chunk{n: c.n, data: c.cur}
	c.n++
	c.cur = nil
	// Hand the chunk to exactly the destinations counted in its refs: one
	// failing meanwhile still takes it (its workers release it).
	var alive []*upload
	for _, u := range c.uploads {
		if u.failed() == nil {
			alive = append(alive, u)
		}
	}
	if len(alive) == 0 {
		c.pool.put(ch.data)
		return ErrEveryDestinationFailed
	}
	ch.refs.Store(int32(len(alive)))
	for _, u := range alive {
		select {
		case u.ch <- ch:
		case <-c.ctx.Done():
			return c.ctx.Err()
		}
	}
	return nil
}

// ErrEveryDestinationFailed is wrapped by Create's error when no
// destination could take the snapshot (each one's cause is joined to it).
var ErrEveryDestinationFailed = errors.New("every destination failed")

// countWriter counts and hashes the plaintext payload.
type countWriter struct {
	h        hash.Hash
	n        int64
	progress *atomic.Int64 // plaintext bytes read so far, for progress output
}

func (w *countWriter) Write(p []byte) (int, error) {
	w.h.Write(p)
	w.n += int64(len(p))
	if w.progress != nil {
		w.progress.Add(int64(len(p)))
	}
	return len(p), nil
}

// streamResult is what one run of the pipeline produced.
type streamResult struct {
	size   int64  // plaintext payload bytes
	sha256 string // plaintext payload hash
	stored int64  // encrypted bytes
	blobs  []Blob // chunks
}

// stream runs produce (a source writing its tar payload) through SHA-256,
// zstd (zw, reset to this part's stream and closed at its end: one
// encoder serves every part of a run), age and the chunker, uploading every chunk to each upload's store
// with `workers` parallel puts per destination. Memory is bounded by the
// pool's chunk buffers.
func stream(ctx context.Context, produce func(io.Writer) error, recipients []age.Recipient, zw *zstd.Encoder,
	pool *bufPool, workers int, uploads []*upload, progress *atomic.Int64) (*streamResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	release := func(c *chunk) {
		if c.refs.Add(-1) == 0 {
			pool.put(c.data)
		}
	}
	var wg sync.WaitGroup
	for _, u := range uploads {
		n := workers
		if l, ok := u.store.(UploadLimiter); ok && l.Uploads() > 0 {
			n = min(n, l.Uploads())
		}
		u.ch = make(chan *chunk, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for c := range u.ch {
					if u.failed() == nil {
						path := ChunkPath(u.host, u.object, c.n)
						if err := u.store.Put(ctx, path, c.data); err != nil {
							u.fail(fmt.Errorf("destination %s: upload %s: %w", u.store.Name(), path, err))
						}
					}
					release(c)
				}
			}()
		}
	}
	closeUploads := func() {
		for _, u := range uploads {
			close(u.ch)
		}
		wg.Wait()
	}

	ck := &chunker{ctx: ctx, size: pool.size, pool: pool, uploads: uploads}
	aw, err := age.Encrypt(ck, recipients...)
	if err != nil {
		closeUploads()
		return nil, fmt.Errorf("start encryption: %w", err)
	}
	zw.Reset(aw)
	cw := &countWriter{h: sha256.New(), progress: progress}
	err = produce(io.MultiWriter(cw, zw))
	if err == nil {
		err = zw.Close()
	} else {
		zw.Close()
	}
	if err == nil {
		err = aw.Close()
	}
	if err == nil {
		err = ck.flush()
	}
	if err != nil {
		cancel()
	}
	closeUploads()
	if ck.cur != nil { // a failed run's half-filled buffer goes back too
		pool.put(ck.cur)
		ck.cur = nil
	}
	if err != nil {
		if errors.Is(err, ErrEveryDestinationFailed) {
			return nil, fmt.Errorf("%w: %w", ErrEveryDestinationFailed, joinUploadErrors(uploads))
		}
		return nil, err
	}
	return &streamResult{size: cw.n, sha256: hex.EncodeToString(cw.h.Sum(nil)), stored: ck.total, blobs: ck.blobs}, nil
}

func joinUploadErrors(uploads []*upload) error {
	var errs []error
	for _, u := range uploads {
		if err := u.failed(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
