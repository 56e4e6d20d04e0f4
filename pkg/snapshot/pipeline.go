package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"

	"github.com/firetech/fireops/pkg/chunker"
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

// pieceWorkers is the number of pieces hashed, compressed and encrypted
// at once: one a core (the tar producer and the chunker share the rest).
func pieceWorkers() int { return min(max(runtime.GOMAXPROCS(0), 1), 4) }

// MemoryBudget is about the most memory a snapshot run's buffers take
// with uploads parallel uploads per destination and pieces of at most
// chunkSize bytes: plaintext pieces being filled and worked on, stored
// pieces waiting for their uploads, and each worker's compression buffer.
func MemoryBudget(chunkSize int64, uploads int) int64 {
	maxPiece := int64(PieceParams(int(chunkSize)).Max)
	w := int64(pieceWorkers())
	return (w+2)*maxPiece + int64(storedBuffers(uploads))*maxStored(maxPiece) + w*maxStored(maxPiece)
}

func storedBuffers(uploads int) int { return max(uploads, 1) + pieceWorkers() + 1 }

// bufPool hands out buffers of one capacity: at most max of them ever
// exist, made when first needed and shared by every part of a run, so the
// memory of a snapshot is bounded whatever the data size.
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

// ErrEveryDestinationFailed is wrapped by Create's error when no
// destination could take the snapshot (each one's cause is joined to it).
var ErrEveryDestinationFailed = errors.New("every destination failed")

// pending is a piece one destination's upload was claimed for in this
// run: later copies of the same piece wait for its stored form and
// reference it.
type pending struct {
	ready chan struct{}
	obj   knownObject
	err   error
}

// stored is one encrypted piece shared by the destinations uploading it.
type stored struct {
	data []byte
	refs atomic.Int32
	pool *bufPool
}

func (s *stored) release() {
	if s.refs.Add(-1) == 0 && s.pool != nil {
		s.pool.put(s.data)
	}
}

// uploadJob is one object to put on one destination: a piece, or a
// piece list (list: not recorded in the known-objects log, which holds
// what the writer dedups against).
type uploadJob struct {
	id   [32]byte
	obj  knownObject
	data *stored
	list bool
}

// startUploads starts the destination's upload workers, which live for
// the whole run: each puts objects, records them in the known log, and
// on the first failure marks the destination failed (the rest of its
// queue is only released).
func (r *destRun) startUploads(ctx context.Context, host string, n int) {
	if l, ok := r.store.(UploadLimiter); ok && l.Uploads() > 0 {
		n = min(n, l.Uploads())
	}
	r.queue = make(chan uploadJob, n)
	for range n {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for j := range r.queue {
				if r.failed() == nil {
					if err := r.upload(ctx, host, j); err != nil {
						r.fail(err)
					}
				}
				j.data.release()
			}
		}()
	}
}

// upload puts one object and records it: a piece list as present, a
// piece in the known log (and then no longer pending).
func (r *destRun) upload(ctx context.Context, host string, j uploadJob) error {
	p := PiecePath(host, hex.EncodeToString(j.id[:]))
	if err := r.store.Put(ctx, p, j.data.data); err != nil {
		return destError(r.store.Name(), err, "upload "+p)
	}
	r.uploaded.Add(j.obj.stored)
	if j.list {
		r.known.setPresent(j.id, j.obj.stored)
		return nil
	}
	if err := r.known.add(j.id, j.obj); err != nil {
		return err
	}
	// Known from now on: later copies look it up there, and the run
	// holds nothing more for it.
	r.mu.Lock()
	delete(r.pending, j.id)
	r.mu.Unlock()
	return nil
}

// stopUploads waits for the destination's queue to drain.
func (r *destRun) stopUploads() {
	if r.queue != nil {
		close(r.queue)
		r.wg.Wait()
		r.queue = nil
	}
}

func (r *destRun) failed() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *destRun) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

// engine is what every part of a run shares: the dedup space, the
// buffers, the compressor and the recipients.
type engine struct {
	dedup      *Dedup
	recipients []age.Recipient
	zw         *zstd.Encoder
	plain      *bufPool
	stored     *bufPool
	scratch    chan []byte // one compression buffer per worker
	host       string
}

func newEngine(d *Dedup, recipients []age.Recipient, level zstd.EncoderLevel, uploads int, host string) (*engine, error) {
	w := pieceWorkers()
	zw, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(w),
		zstd.WithWindowSize(PieceMax), zstd.WithZeroFrames(true))
	if err != nil {
		return nil, fmt.Errorf("start compression: %w", err)
	}
	maxPiece := d.Chunker().Params().Max
	e := &engine{dedup: d, recipients: recipients, zw: zw, host: host,
		plain:   newBufPool(w+2, maxPiece),
		stored:  newBufPool(storedBuffers(uploads), int(maxStored(int64(maxPiece)))),
		scratch: make(chan []byte, w),
	}
	for range w {
		e.scratch <- make([]byte, 0, maxStored(int64(maxPiece)))
	}
	return e, nil
}

// compressSample is the size of the samples that decide whether a piece
// is worth compressing; incompressible says a sample saved less than 3%.
const compressSample = 32 << 10

// incompressible compresses sample into buf (a worker's scratch buffer)
// and reports whether it saved less than 3%.
func (e *engine) incompressible(sample, buf []byte) bool {
	out := e.zw.EncodeAll(sample, buf[:0])
	return len(out) > len(sample)-len(sample)/32
}

// encode returns age(zstd(plain)) in a buffer of the stored pool, and
// whether the piece was stored raw. A piece that does not compress is
// stored as a frame of raw blocks: checkpoints and archives cost no zstd
// work past a sample. sample says the part's last piece did not compress:
// then two samples (the piece's start and middle) decide first; after a
// piece that compressed, the piece is compressed whole and kept raw only
// when that saved nothing, so compressible data pays for no sample.
func (e *engine) encode(ctx context.Context, plain []byte, sample bool) ([]byte, bool, error) {
	buf := <-e.scratch
	defer func() { e.scratch <- buf[:0] }()
	raw := false
	if sample && len(plain) > 4*compressSample {
		mid := len(plain) / 2
		raw = e.incompressible(plain[:compressSample], buf) && e.incompressible(plain[mid:mid+compressSample], buf)
	}
	if !raw {
		buf = e.zw.EncodeAll(plain, buf[:0])
		if len(buf) > len(plain)-len(plain)/32 {
			raw = true
		}
	}
	out, err := e.stored.get(ctx)
	if err != nil {
		return nil, false, err
	}
	w := bytes.NewBuffer(out)
	aw, err := age.Encrypt(w, e.recipients...)
	if err == nil {
		if raw {
			// Straight from the piece into age: no copy of it first.
			err = writeRawFrame(aw, plain)
		} else {
			_, err = aw.Write(buf)
		}
	}
	if err == nil {
		err = aw.Close()
	}
	if err != nil {
		e.stored.put(out)
		return nil, false, fmt.Errorf("encrypt piece: %w", err)
	}
	// The buffer is sized for the worst case; had it grown, the grown one
	// takes the old one's place in the pool.
	return w.Bytes(), raw, nil
}

// partRun is one part streaming to the destinations that need it.
type partRun struct {
	e     *engine
	dests []*destRun
	mu    sync.Mutex
	// pieces[i][seq] is piece seq of the part on destination i (72
	// bytes a piece: the part's list is held until the part ends).
	pieces [][]pieceRec
	// distinct[i] holds the stored size of each distinct piece of the
	// part on destination i; added[i] counts the stored bytes of the
	// pieces it uploads for this part.
	distinct []pieceSet
	added    []int64
	size     int64
	// lastRaw says the part's last encoded piece did not compress (the
	// next one is sampled before zstd works on it whole).
	lastRaw atomic.Bool
	// task counts the part's stored and reused bytes for a progress
	// display (nil: none).
	task *Task
}

// alive reports whether any destination of the part is still healthy.
func (pr *partRun) alive() bool {
	for _, d := range pr.dests {
		if d.failed() == nil {
			return true
		}
	}
	return false
}

// piece hashes one plaintext piece, references it on every destination
// that holds it, and encodes it once for those that do not.
func (pr *partRun) piece(ctx context.Context, seq int, plain []byte) error {
	id := pr.e.dedup.PieceID(plain)
	refs := make([]knownObject, len(pr.dests))
	var claimed []*pending
	var claimedBy []int
	var waits []int
	var waitOn []*pending
	for i, d := range pr.dests {
		if d.failed() != nil {
			continue
		}
		if o, ok := d.known.lookup(id); ok {
			refs[i] = o
			continue
		}
		d.mu.Lock()
		p, ok := d.pending[id]
		if !ok {
			// An upload of it may have ended since the lookup: its
			// pending entry goes only after it is known (upload workers).
			if o, ok := d.known.lookup(id); ok {
				d.mu.Unlock()
				refs[i] = o
				continue
			}
			p = &pending{ready: make(chan struct{})}
			d.pending[id] = p
			claimed, claimedBy = append(claimed, p), append(claimedBy, i)
		} else {
			waits, waitOn = append(waits, i), append(waitOn, p)
		}
		d.mu.Unlock()
	}
	if len(claimed) == 0 {
		pr.task.AddReused(int64(len(plain)))
	} else {
		for _, i := range claimedBy {
			if err := pr.dests[i].known.invalidate(id); err != nil {
				pr.dests[i].fail(err)
			}
		}
		data, raw, err := pr.e.encode(ctx, plain, pr.lastRaw.Load())
		pr.lastRaw.Store(raw)
		if err != nil {
			for _, p := range claimed {
				p.err = err
				close(p.ready)
			}
			return err
		}
		o := knownObject{stored: int64(len(data)), sha: sha256.Sum256(data)}
		pr.task.AddStored(o.stored)
		s := &stored{data: data, pool: pr.e.stored}
		s.refs.Store(int32(len(claimed)))
		pr.mu.Lock()
		for _, i := range claimedBy {
			pr.added[i] += o.stored
		}
		pr.mu.Unlock()
		for k, p := range claimed {
			p.obj = o
			close(p.ready)
			i := claimedBy[k]
			refs[i] = o
			select {
			case pr.dests[i].queue <- uploadJob{id: id, obj: o, data: s}:
			case <-ctx.Done():
				for range len(claimed) - k {
					s.release()
				}
				return ctx.Err()
			}
		}
	}
	for k, p := range waitOn {
		select {
		case <-p.ready:
		case <-ctx.Done():
			return ctx.Err()
		}
		if p.err != nil {
			return p.err
		}
		refs[waits[k]] = p.obj
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	for i := range pr.dests {
		if refs[i].stored == 0 {
			continue // the destination failed
		}
		for len(pr.pieces[i]) <= seq {
			pr.pieces[i] = append(pr.pieces[i], pieceRec{})
		}
		pr.pieces[i][seq] = pieceRec{id: id, size: uint32(len(plain)), stored: uint32(refs[i].stored), sha: refs[i].sha}
		pr.distinct[i].add(id, refs[i].stored)
	}
	return nil
}

// pieceRec is one piece of a part being written: a Piece in 72 bytes.
type pieceRec struct {
	id           [32]byte
	size, stored uint32
	sha          [32]byte
}

// pieceSet counts distinct pieces and their stored bytes, keyed by the
// first 8 bytes of their ids (about 20 bytes a piece; two ids sharing
// them would be counted once, which only makes a statistic smaller).
type pieceSet map[uint64]uint32

func (s pieceSet) add(id [32]byte, stored int64) { s[prefix(id)] = uint32(stored) }

// bytes is the stored size of the set's pieces.
func (s pieceSet) bytes() int64 {
	var n int64
	for _, v := range s {
		n += int64(v)
	}
	return n
}

// cutter is the writer the source's tar stream goes into: it cuts the
// stream into pieces with the chunker and hands each full piece to the
// workers. Back-pressure: it blocks while every plaintext buffer is in use.
type cutter struct {
	ctx      context.Context
	state    *chunker.State
	pool     *bufPool
	cur      []byte
	seq      int
	jobs     chan<- pieceJob
	alive    func() bool
	progress *atomic.Int64
	n        int64
}

type pieceJob struct {
	seq   int
	plain []byte
}

func (c *cutter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if c.cur == nil {
			b, err := c.pool.get(c.ctx)
			if err != nil {
				return written, err
			}
			c.cur = b
		}
		n, cut := c.state.Scan(p)
		c.cur = append(c.cur, p[:n]...)
		p, written = p[n:], written+n
		c.n += int64(n)
		if c.progress != nil {
			c.progress.Add(int64(n))
		}
		if cut {
			if err := c.emit(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// emit hands the current piece to the workers.
func (c *cutter) emit() error {
	if len(c.cur) == 0 {
		return nil
	}
	if !c.alive() {
		c.pool.put(c.cur)
		c.cur = nil
		return ErrEveryDestinationFailed
	}
	select {
	case c.jobs <- pieceJob{seq: c.seq, plain: c.cur}:
	case <-c.ctx.Done():
		c.pool.put(c.cur)
		c.cur = nil
		return c.ctx.Err()
	}
	c.seq++
	c.cur = nil
	return nil
}

// stream runs produce (a source writing its tar payload) through the
// chunker and the piece workers to the part's destinations, and records
// each destination's ordered pieces. When only produce failed (no worker,
// destination or cancellation did), the error is a *sourceError: every
// piece the source produced until then was handed to the uploads, so the
// destinations' runs stay consistent and the run can go on without the
// part.
func (pr *partRun) stream(ctx context.Context, produce func(io.Writer) error, progress *atomic.Int64) error {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan pieceJob, 1)
	var werr error
	var werrOnce sync.Once
	var wg sync.WaitGroup
	for range pieceWorkers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				err := ctx.Err()
				if err == nil {
					err = pr.piece(ctx, j.seq, j.plain)
				}
				pr.e.plain.put(j.plain)
				if err != nil {
					werrOnce.Do(func() { werr = err; cancel() })
				}
			}
		}()
	}
	c := &cutter{ctx: ctx, state: pr.e.dedup.Chunker().NewState(), pool: pr.e.plain, jobs: jobs, alive: pr.alive, progress: progress}
	err := produce(c)
	if err == nil {
		err = c.emit()
	} else if c.cur != nil {
		pr.e.plain.put(c.cur)
		c.cur = nil
	}
	close(jobs)
	wg.Wait()
	pr.size = c.n
	if werr != nil && (err == nil || errors.Is(err, context.Canceled)) {
		err = werr
	}
	if err == nil && !pr.alive() {
		err = ErrEveryDestinationFailed
	}
	if errors.Is(err, ErrEveryDestinationFailed) {
		var errs []error
		for _, d := range pr.dests {
			errs = append(errs, d.failed())
		}
		return fmt.Errorf("%w: %w", ErrEveryDestinationFailed, errors.Join(errs...))
	}
	if err != nil && werr == nil && parent.Err() == nil && pr.alive() {
		return &sourceError{err}
	}
	return err
}
