package snapshot

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"

	"github.com/firetech/fireops/pkg/keys"
	"github.com/firetech/fireops/pkg/source"
)

// ChunkBuffers is the number of chunk buffers a snapshot run with the
// given uploads per destination holds at most.
func ChunkBuffers(uploads int) int { return max(uploads, 1) + 1 }

// Options are the settings of one snapshot run.
type Options struct {
	// Host names the folder <root>/<host>/ on every destination.
	Host string
	// Recipients encrypt every object and the index.
	Recipients []*age.X25519Recipient
	// Signer signs the manifest.
	Signer ed25519.PrivateKey
	// ChunkSize is the size of one uploaded chunk.
	ChunkSize int
	// Compression is fastest, default, better or best.
	Compression string
	// Uploads is the number of chunks uploaded at once to each
	// destination (default 2). The run holds Uploads+1 chunk buffers, all
	// destinations uploading from the same ones: memory is
	// (Uploads+1) x ChunkSize plus the compressor.
	Uploads int
	// State enables reuse of unchanged parts; nil uploads everything.
	State *State
	// Version is the fireops version recorded in the index.
	Version string
	// Log receives progress; nil discards it.
	Log *slog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Progress, when set, is told which part starts streaming and counts
	// the plaintext bytes read, for progress output on a terminal.
	Progress *Progress
}

// Progress is what a snapshot run reports while it streams; safe to read
// from another goroutine.
type Progress struct {
	// Bytes counts the plaintext bytes read by the current part.
	Bytes atomic.Int64
	part  atomic.Value // string
}

// Part returns the part streaming now, or "".
func (p *Progress) Part() string {
	s, _ := p.part.Load().(string)
	return s
}

// DestResult is what a snapshot run did on one destination.
type DestResult struct {
	Name string `json:"name"`
	// Err is why this destination has no manifest; nil on success.
	Err error `json:"-"`
	// Error is Err's message, for JSON output.
	Error string `json:"error,omitempty"`
	// Uploaded is the number of bytes sent (chunks, index, manifest).
	Uploaded int64 `json:"uploaded"`
	// Reused counts parts referenced from earlier snapshots.
	Reused int `json:"reused"`
	// Retries counts the requests to this destination that failed and were
	// tried again; the engine leaves it 0, the caller that owns the
	// destination's connection fills it in.
	Retries int64 `json:"retries"`
}

// Result is what a snapshot run did.
type Result struct {
	ID           string       `json:"id"`
	Host         string       `json:"host"`
	Started      time.Time    `json:"started"`
	Finished     time.Time    `json:"finished"`
	Parts        []Part       `json:"parts"`
	Destinations []DestResult `json:"destinations"`
	// Skipped lists the parts left out because their source vanished
	// between discovery and reading (a Docker volume removed meanwhile).
	Skipped []SkippedPart `json:"skipped,omitempty"`
}

// SkippedPart is a configured part a snapshot run left out because its
// source no longer existed when it came to be read (source.ErrGone).
type SkippedPart struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// goneError marks a source whose Fingerprint reported source.ErrGone.
type goneError struct{ err error }

func (g *goneError) Error() string { return g.err.Error() }
func (g *goneError) Unwrap() error { return g.err }

// Failed returns the destinations that have no complete snapshot.
func (r *Result) Failed() []DestResult {
	var out []DestResult
	for _, d := range r.Destinations {
		if d.Err != nil {
			out = append(out, d)
		}
	}
	return out
}

// destRun is one destination during a snapshot run.
type destRun struct {
	store    Store
	err      error
	parts    []Part
	objects  []Object
	fps      []string // fingerprints of parts, for the state
	created  []string // objects this run uploaded (to delete on failure)
	uploaded int64
	reused   int
}

// Create takes a snapshot of every source to every store. A source error
// or cancellation fails the whole run: the objects it uploaded are deleted
// (best effort) and no manifest is written anywhere. The one exception is
// a source whose Fingerprint reports source.ErrGone (its data no longer
// exists): nothing was read from it, and it is left out of the snapshot
// with a warning and listed in Result.Skipped. A destination that
// fails on its own is reported in the result and cleaned up while the
// others complete; Create then returns the result and an error naming it.
func Create(ctx context.Context, opts Options, stores []Store, sources []source.Source) (*Result, error) {
	if len(stores) == 0 {
		return nil, errors.New("no destinations to write to")
	}
	if len(opts.Recipients) == 0 {
		return nil, errors.New("no recipients to encrypt to")
	}
	if opts.Signer == nil {
		return nil, errors.New("no signing key")
	}
	level, err := zstdLevel(opts.Compression)
	if err != nil {
		return nil, err
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Uploads < 1 {
		opts.Uploads = 2
	}
	recipients := make([]age.Recipient, len(opts.Recipients))
	for i, r := range opts.Recipients {
		recipients[i] = r
	}
	started := now().UTC()
	res := &Result{ID: NewSnapshotID(started), Host: opts.Host, Started: started}
	runs := make([]*destRun, len(stores))
	for i, s := range stores {
		runs[i] = &destRun{store: s}
	}
	log.Info("snapshot started", "id", res.ID, "parts", len(sources), "destinations", len(stores))
	var startErrs []error
	for _, r := range runs {
		p := path.Join(SnapshotPath(opts.Host, res.ID), StartedFile)
		if err := r.store.Put(ctx, p, []byte(started.Format(time.RFC3339Nano)+"\n")); err != nil {
			r.err = fmt.Errorf("destination %s: write %s: %w", r.store.Name(), p, err)
			startErrs = append(startErrs, r.err)
			log.Error("destination failed", "destination", r.store.Name(), "err", r.err)
		}
	}
	if len(startErrs) == len(runs) {
		// Nothing can be written anywhere: say why for each destination
		// before any source is read.
		cleanup(ctx, runs, opts.Host, res.ID, log)
		return nil, fmt.Errorf("snapshot %s: %w: %w", res.ID, ErrEveryDestinationFailed, errors.Join(startErrs...))
	}

	// Uploads+1 chunk buffers for the whole run, whatever the number of
	// destinations (every destination uploads from the same buffer): one
	// being filled while the others are uploaded. The slowest destination
	// sets the pace.
	pool := newBufPool(ChunkBuffers(opts.Uploads), opts.ChunkSize)
	// One compressor for the whole run too (~12 MiB of buffers a new one
	// allocates): stream resets it for every part and closes it after.
	zw, err := newEncoder(level)
	if err != nil {
		return nil, fmt.Errorf("start compression: %w", err)
	}
	for _, src := range sources {
		part, err := snapshotPart(ctx, opts, zw, recipients, pool, runs, src, log)
		var gone *goneError
		if errors.As(err, &gone) {
			// Nothing was produced or uploaded for it: leave it out.
			log.Warn("part left out: its source no longer exists", "part", source.ID(src), "err", gone.err)
			res.Skipped = append(res.Skipped, SkippedPart{ID: source.ID(src), Reason: gone.err.Error()})
			continue
		}
		if err != nil {
			cleanup(ctx, runs, opts.Host, res.ID, log)
			return nil, fmt.Errorf("snapshot %s: part %s: %w", res.ID, source.ID(src), err)
		}
		res.Parts = append(res.Parts, part)
	}
	if err := ctx.Err(); err != nil {
		cleanup(ctx, runs, opts.Host, res.ID, log)
		return nil, fmt.Errorf("snapshot %s: %w", res.ID, err)
	}

	// The healthy destinations get their manifests first; only then is
	// what the failed ones hold removed (all at once), so a dead
	// destination cannot delay the others' snapshots.
	for _, r := range runs {
		if r.err == nil {
			r.err = writeMeta(ctx, opts, recipients, res, started, now().UTC(), r)
		}
	}
	if ctx.Err() != nil {
		cleanup(ctx, runs, opts.Host, res.ID, log)
		return nil, fmt.Errorf("snapshot %s: %w", res.ID, ctx.Err())
	}
	var failedRuns []*destRun
	for _, r := range runs {
		if r.err != nil {
			failedRuns = append(failedRuns, r)
		}
	}
	cleanup(ctx, failedRuns, opts.Host, res.ID, log)
	res.Finished = now().UTC()
	var failed []error
	for _, r := range runs {
		d := DestResult{Name: r.store.Name(), Err: r.err, Uploaded: r.uploaded, Reused: r.reused}
		if r.err != nil {
			d.Error = r.err.Error()
			failed = append(failed, r.err)
		} else if opts.State != nil {
			for i, p := range r.parts {
				opts.State.Put(opts.Host, r.store.Name(), p.ID, StateEntry{Fingerprint: r.fps[i], Recipients: recipientsKey(opts.Recipients), Object: r.objects[i], Part: p})
			}
		}
		res.Destinations = append(res.Destinations, d)
	}
	if opts.State != nil {
		if err := opts.State.Save(); err != nil {
			log.Warn("reuse state not saved; the next snapshot uploads everything", "err", err)
		}
	}
	log.Info("snapshot finished", "id", res.ID, "failed_destinations", len(failed))
	switch {
	case len(failed) == len(runs):
		return res, fmt.Errorf("snapshot %s: %w: %w", res.ID, ErrEveryDestinationFailed, errors.Join(failed...))
	case len(failed) > 0:
		return res, fmt.Errorf("snapshot %s: %w", res.ID, errors.Join(failed...))
	}
	return res, nil
}

// snapshotPart streams one source to every destination that cannot reuse
// an earlier upload of it, and records the part in each destination's run.
func snapshotPart(ctx context.Context, opts Options, zw *zstd.Encoder, recipients []age.Recipient,
	pool *bufPool, runs []*destRun, src source.Source, log *slog.Logger) (Part, error) {
	id := source.ID(src)
	begin := time.Now()
	if c, ok := src.(io.Closer); ok {
		// Sources that prepare a copy for their fingerprint drop it here
		// when the part is reused (or after WriteTar, which is harmless).
		defer c.Close()
	}
	fp, err := src.Fingerprint(ctx)
	if err != nil {
		if errors.Is(err, source.ErrGone) && ctx.Err() == nil {
			return Part{}, &goneError{err}
		}
		return Part{}, fmt.Errorf("fingerprint: %w", err)
	}
	var todo []*destRun
	var reused *Part
	for _, r := range runs {
		if r.err != nil {
			continue
		}
		if fp != "" && opts.State != nil {
			if e, ok := opts.State.Get(opts.Host, r.store.Name(), id); ok && e.Fingerprint == fp && e.Recipients == recipientsKey(opts.Recipients) &&
				e.consistent(id) && objectPresent(ctx, r.store, opts.Host, e.Object) {
				p := e.Part
				p.Reused = true
				r.parts, r.objects, r.fps = append(r.parts, p), append(r.objects, e.Object), append(r.fps, fp)
				r.reused++
				reused = &p
				log.Info("part unchanged, reused", "part", id, "destination", r.store.Name(), "object", e.Object.ID)
				continue
			}
		}
		todo = append(todo, r)
	}
	if len(todo) == 0 {
		if reused == nil {
			var errs []error
			for _, r := range runs {
				errs = append(errs, r.err)
			}
			return Part{}, fmt.Errorf("%w: %w", ErrEveryDestinationFailed, errors.Join(errs...))
		}
		return *reused, nil
	}

	objID := NewObjectID()
	uploads := make([]*upload, len(todo))
	for i, r := range todo {
		uploads[i] = &upload{store: r.store, host: opts.Host, object: objID}
		r.created = append(r.created, objID)
	}
	var stats source.Stats
	produce := func(w io.Writer) error {
		var err error
		stats, err = src.WriteTar(ctx, w)
		return err
	}
	var counter *atomic.Int64
	if opts.Progress != nil {
		opts.Progress.part.Store(id)
		opts.Progress.Bytes.Store(0)
		counter = &opts.Progress.Bytes
	}
	sr, err := stream(ctx, produce, recipients, zw, pool, opts.Uploads, uploads, counter)
	allFailed := true
	for _, u := range uploads {
		if u.failed() == nil {
			allFailed = false
		}
	}
	if err != nil && (!allFailed || ctx.Err() != nil) {
		return Part{}, err // the source failed: the whole snapshot fails
	}
	for i, u := range uploads {
		if uerr := u.failed(); uerr != nil {
			todo[i].err = uerr
			log.Error("destination failed", "destination", u.store.Name(), "err", uerr)
		}
	}
	if err != nil {
		if reused != nil {
			return *reused, nil
		}
		return Part{}, err
	}
	part := Part{ID: id, Kind: src.Kind(), Name: src.Name(), Object: objID, Size: sr.size, SHA256: sr.sha256, Stored: sr.stored, Stats: stats}
	obj := Object{ID: objID, Size: sr.stored, Chunks: sr.blobs}
	for _, r := range todo {
		if r.err == nil {
			r.parts, r.objects, r.fps = append(r.parts, part), append(r.objects, obj), append(r.fps, fp)
			r.uploaded += sr.stored
		}
	}
	log.Info("part stored", "part", id, "bytes", sr.size, "stored", sr.stored, "chunks", len(sr.blobs),
		"entries", stats.Entries, "seconds", time.Since(begin).Seconds())
	return part, nil
}

// objectPresent reports whether every chunk of obj is on the store with
// its recorded size.
func objectPresent(ctx context.Context, st Store, host string, obj Object) bool {
	entries, err := st.List(ctx, ObjectPath(host, obj.ID))
	return err == nil && len(obj.Chunks) > 0 && missingChunk(entries, obj) < 0
}

// writeMeta writes index.age, manifest.sig and, last, manifest.json.
func writeMeta(ctx context.Context, opts Options, recipients []age.Recipient, res *Result, started, finished time.Time, r *destRun) error {
	dir := SnapshotPath(opts.Host, res.ID)
	idx := Index{Version: FormatVersion, Snapshot: res.ID, Host: opts.Host, Fireops: opts.Version, Created: started, Parts: r.parts}
	plain, err := json.MarshalIndent(idx, "", " ")
	if err != nil {
		return fmt.Errorf("encode index: %w", err)
	}
	var enc bytes.Buffer
	aw, err := age.Encrypt(&enc, recipients...)
	if err == nil {
		_, err = aw.Write(plain)
	}
	if err == nil {
		err = aw.Close()
	}
	if err != nil {
		return fmt.Errorf("encrypt index: %w", err)
	}
	sum := sha256.Sum256(enc.Bytes())
	objs := append([]Object(nil), r.objects...)
	sortObjects(objs)
	m := Manifest{
		Format: FormatName, Version: FormatVersion, Snapshot: res.ID, Host: opts.Host,
		Started: started, Finished: finished, ChunkSize: int64(opts.ChunkSize),
		Signer: keys.FormatPublicKey(opts.Signer.Public().(ed25519.PublicKey)),
		Index:  Blob{Size: int64(enc.Len()), SHA256: hex.EncodeToString(sum[:])}, Objects: objs,
	}
	for _, rc := range opts.Recipients {
		m.Recipients = append(m.Recipients, rc.String())
	}
	data, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	data = append(data, '\n')
	sig := Sign(opts.Signer, data)
	for _, f := range []struct {
		name string
		data []byte
	}{{IndexFile, enc.Bytes()}, {SignatureFile, sig}, {ManifestFile, data}} {
		p := path.Join(dir, f.name)
		if err := r.store.Put(ctx, p, f.data); err != nil {
			return fmt.Errorf("destination %s: write %s: %w", r.store.Name(), p, err)
		}
		r.uploaded += int64(len(f.data))
	}
	return nil
}

// Cleanup budgets: what a failed run wrote is removed best effort within
// cleanupTimeout, or within cleanupAfterCancel once the run is cancelled
// (systemd sends SIGKILL 90 s after SIGTERM); rotate removes the rest.
var (
	cleanupTimeout     = 30 * time.Second
	cleanupAfterCancel = 5 * time.Second
)

// cleanup removes, best effort and on every destination of runs at once,
// what this run wrote there.
func cleanup(ctx context.Context, runs []*destRun, host, id string, log *slog.Logger) {
	if len(runs) == 0 {
		return
	}
	budget := cleanupTimeout
	if ctx.Err() != nil {
		budget = cleanupAfterCancel
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), budget)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(cleanupAfterCancel, cancel) })
	defer stop()
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cleanupDest(cctx, r, host, id, log)
		}()
	}
	wg.Wait()
}

// cleanupDest removes, best effort, the snapshot folder (manifest first)
// and the objects this run uploaded to one destination.
func cleanupDest(ctx context.Context, r *destRun, host, id string, log *slog.Logger) {
	dir := SnapshotPath(host, id)
	if err := r.store.Delete(ctx, path.Join(dir, ManifestFile)); err != nil {
		log.Warn("cleanup: could not delete manifest", "destination", r.store.Name(), "err", err)
	}
	if err := r.store.Rmdir(ctx, dir); err != nil {
		log.Warn("cleanup: could not delete snapshot folder; rotate removes it later", "destination", r.store.Name(), "err", err)
	}
	for _, o := range r.created {
		if err := r.store.Rmdir(ctx, ObjectPath(host, o)); err != nil {
			log.Warn("cleanup: could not delete object; rotate removes it later", "destination", r.store.Name(), "object", o, "err", err)
		}
	}
	r.created = nil
}
