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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"

	"github.com/firetech/fireops/internal/textcut"
	"github.com/firetech/fireops/pkg/keys"
	"github.com/firetech/fireops/pkg/redact"
	"github.com/firetech/fireops/pkg/source"
)

// Options are the settings of one snapshot run.
type Options struct {
	// Host names the folder <root>/<host>/ on every destination.
	Host string
	// Recipients encrypt every object and the index.
	Recipients []*age.X25519Recipient
	// Signer signs the manifest.
	Signer ed25519.PrivateKey
	// ChunkSize bounds the size of a piece (config chunk_size); pieces
	// are content-defined and average PieceAvg when it does not bind.
	ChunkSize int
	// Compression is fastest, default, better or best.
	Compression string
	// Uploads is the number of objects uploaded at once to each
	// destination (default 2). Memory is bounded by MemoryBudget.
	Uploads int
	// StateDir holds the known-objects logs (required) and State's file.
	StateDir string
	// State enables reuse of unchanged parts without reading them; nil
	// reads every part (pieces are still deduplicated).
	State *State
	// Version is the fireops version recorded in the index.
	Version string
	// Log receives progress; nil discards it.
	Log *slog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Only marks a run limited to selected parts (snapshot --only) in the
	// manifest (Manifest.Only).
	Only bool
	// Progress, when set, gets a task for every part: announced with the
	// size the last run recorded, started with the source's own estimate
	// (source.Sizer), counting the plaintext bytes read and the bytes
	// stored and reused, for a progress display on a terminal.
	Progress *Progress
}

// DestResult is what a snapshot run did on one destination.
type DestResult struct {
	Name string `json:"name"`
	// Err is why this destination has no manifest; nil on success.
	Err error `json:"-"`
	// Error is Err's message, for JSON output.
	Error string `json:"error,omitempty"`
	// Uploaded is the number of bytes sent (pieces, piece lists, index,
	// manifest).
	Uploaded int64 `json:"uploaded"`
	// Reused counts parts whose source was unchanged and not read.
	Reused int `json:"reused"`
	// Stored is the stored size of the snapshot on this destination, its
	// pieces counted once (most of it shared with earlier snapshots).
	Stored int64 `json:"stored"`
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
	// FailedParts lists the parts whose source failed: the snapshot holds
	// the others and names these in its index (a partial snapshot).
	FailedParts []FailedPart `json:"failed_parts,omitempty"`
}

// PartsError is wrapped by Create's error when parts failed because their
// sources did (an unreadable file, a database that does not open): it
// names each with its reason. Held is the number of parts the snapshot
// holds; 0 means every part failed and no snapshot was written. errors.Is
// and errors.As see each source's own error.
type PartsError struct {
	Failed []FailedPart
	Held   int
	errs   []error
}

func (e *PartsError) Error() string {
	var b strings.Builder
	for i, f := range e.Failed {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "part %s: %s", f.ID, f.Reason)
	}
	switch {
	case e.Held == 1:
		b.WriteString(" (partial snapshot: it holds the 1 other part)")
	case e.Held > 1:
		fmt.Fprintf(&b, " (partial snapshot: it holds the %d other parts)", e.Held)
	}
	return b.String()
}

func (e *PartsError) Unwrap() []error { return e.errs }

// sourceError marks a part whose source failed (Fingerprint, or WriteTar
// half way) while every destination and the run itself were fine: the run
// goes on without the part.
type sourceError struct{ err error }

func (s *sourceError) Error() string { return s.err.Error() }
func (s *sourceError) Unwrap() error { return s.err }

// maxReason bounds a failed part's reason (a path in a user's volume can
// be as long as a hostile user makes it).
const maxReason = 1024

// oneLine is err's message on one line, credentials redacted, control
// characters, bidirectional overrides and bytes that are not UTF-8
// escaped (redact.Line: a reason names paths a user chose, and tables and
// logs print it), at most maxReason bytes.
func oneLine(err error) string {
	var lines []string
	for _, l := range strings.Split(redact.String(err.Error()), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	s := redact.Line(strings.Join(lines, "; "))
	if len(s) > maxReason {
		s = textcut.Prefix(s, maxReason) + "..."
	}
	return s
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
	store Store
	known *Known
	mu    sync.Mutex
	err   error
	parts []Part
	lists []Ref
	// pieces counts the stored size of each distinct piece the snapshot
	// references on this destination.
	pieces   pieceSet
	fps      []string // fingerprints of parts, for the state
	pending  map[[32]byte]*pending
	queue    chan uploadJob
	wg       sync.WaitGroup
	uploaded atomic.Int64
	reused   int
}

// Create takes a snapshot of every source to every store in format v2.
//
// A source that fails (its Fingerprint, or its WriteTar half way) fails
// its part only: the snapshot is written and signed with the parts that
// succeeded, its index names the failed ones with their reasons
// (Index.FailedParts; the manifest only counts them), and Create returns
// the result with an error wrapping a *PartsError. The pieces a failed
// part uploaded stay, recorded in the known-objects logs, for the next run
// to reference (rotate sweeps them after the grace period if none does),
// as those of a failed run do. When every part fails, no manifest is
// written anywhere and the snapshot folders are removed (nil result, the
// error wraps a *PartsError with Held 0). A source whose Fingerprint
// reports source.ErrGone (its data no longer exists) is not a failure:
// nothing was read from it, and it is left out with a warning and listed
// in Result.Skipped.
//
// Cancellation, and any failure that is not the source's own, fails the
// whole run: no manifest, the snapshot folders removed. A destination that
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
	if opts.StateDir == "" {
		return nil, errors.New("no state_dir for the known-objects logs")
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
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = PieceMax
	}
	rstrings := recipientStrings(opts.Recipients)
	dedup, err := NewDedup(opts.Signer, rstrings, opts.ChunkSize)
	if err != nil {
		return nil, err
	}
	recipients := make([]age.Recipient, len(opts.Recipients))
	for i, r := range opts.Recipients {
		recipients[i] = r
	}
	trusted := opts.Signer.Public().(ed25519.PublicKey)
	started := now().UTC()
	res := &Result{ID: NewSnapshotID(started), Host: opts.Host, Started: started}
	runs := make([]*destRun, len(stores))
	for i, s := range stores {
		runs[i] = &destRun{store: s, pieces: pieceSet{}, pending: map[[32]byte]*pending{}}
	}
	log.Info("snapshot started", "id", res.ID, "parts", len(sources), "destinations", len(stores), "dedup_space", dedup.Space)
	expectParts(opts, stores, sources)
	var startErrs []error
	for _, r := range runs {
		p := path.Join(SnapshotPath(opts.Host, res.ID), StartedFile)
		if err := r.store.Put(ctx, p, []byte(started.Format(time.RFC3339Nano)+"\n")); err != nil {
			r.err = destError(r.store.Name(), err, "write "+p)
		} else if r.known, err = loadKnown(ctx, opts.StateDir, r.store, opts.Host, dedup, trusted, rstrings, log); err != nil {
			r.err = destError(r.store.Name(), err, "")
		}
		if r.err != nil {
			startErrs = append(startErrs, r.err)
			log.Error("destination failed", "destination", r.store.Name(), "err", r.err)
		}
	}
	defer func() {
		for _, r := range runs {
			if r.known != nil {
				r.known.close()
			}
		}
	}()
	if len(startErrs) == len(runs) {
		// Nothing can be written anywhere: say why for each destination
		// before any source is read.
		cleanup(ctx, runs, opts.Host, res.ID, log)
		return nil, fmt.Errorf("snapshot %s: %w: %w", res.ID, ErrEveryDestinationFailed, errors.Join(startErrs...))
	}

	e, err := newEngine(dedup, recipients, level, opts.Uploads, opts.Host)
	if err != nil {
		cleanup(ctx, runs, opts.Host, res.ID, log)
		return nil, err
	}
	defer e.zw.Close()
	for _, r := range runs {
		if r.err == nil {
			r.startUploads(ctx, opts.Host, opts.Uploads)
		}
	}
	stopUploads := func() {
		for _, r := range runs {
			r.stopUploads()
		}
	}
	var partErrs []error
	for _, src := range sources {
		part, err := snapshotPart(ctx, opts, e, runs, src, log)
		var gone *goneError
		var failed *sourceError
		switch {
		case err == nil:
			res.Parts = append(res.Parts, part)
		case errors.As(err, &gone):
			// Nothing was produced or uploaded for it: leave it out.
			log.Warn("part left out: its source no longer exists", "part", source.ID(src), "err", gone.err)
			res.Skipped = append(res.Skipped, SkippedPart{ID: source.ID(src), Reason: gone.err.Error()})
		case errors.As(err, &failed) && ctx.Err() == nil:
			// Only this part: the others still make a snapshot.
			fp := FailedPart{ID: source.ID(src), Reason: WithoutPartID(source.ID(src), oneLine(failed.err))}
			log.Error("part failed; the snapshot goes on without it", "part", fp.ID, "err", fp.Reason)
			res.FailedParts = append(res.FailedParts, fp)
			partErrs = append(partErrs, failed.err)
		default:
			stopUploads()
			cleanup(ctx, runs, opts.Host, res.ID, log)
			return nil, fmt.Errorf("snapshot %s: %w", res.ID, &PartError{ID: source.ID(src), Err: err})
		}
	}
	stopUploads()
	if err := ctx.Err(); err != nil {
		cleanup(ctx, runs, opts.Host, res.ID, log)
		return nil, fmt.Errorf("snapshot %s: %w", res.ID, err)
	}
	var partsErr *PartsError
	if len(res.FailedParts) > 0 {
		partsErr = &PartsError{Failed: res.FailedParts, Held: len(res.Parts), errs: partErrs}
		if len(res.Parts) == 0 {
			// Every part failed: nothing to sign, nothing left behind.
			cleanup(ctx, runs, opts.Host, res.ID, log)
			return nil, fmt.Errorf("snapshot %s: %w", res.ID, partsErr)
		}
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
		d := DestResult{Name: r.store.Name(), Err: r.err, Uploaded: r.uploaded.Load(), Reused: r.reused}
		if r.err != nil {
			d.Error = r.err.Error()
			failed = append(failed, r.err)
		} else {
			d.Stored = r.pieces.bytes()
			if opts.State != nil {
				for i, p := range r.parts {
					opts.State.Put(opts.Host, r.store.Name(), p.ID, StateEntry{Fingerprint: r.fps[i], Space: dedup.Space, List: r.lists[i], Part: p})
				}
			}
		}
		res.Destinations = append(res.Destinations, d)
	}
	if opts.State != nil {
		if err := opts.State.Save(); err != nil {
			log.Warn("reuse state not saved; the next snapshot reads every part again", "err", err)
		}
	}
	log.Info("snapshot finished", "id", res.ID, "failed_destinations", len(failed), "failed_parts", len(res.FailedParts))
	var errs []error
	if partsErr != nil {
		errs = append(errs, partsErr)
	}
	switch {
	case len(failed) == len(runs):
		errs = append(errs, fmt.Errorf("%w: %w", ErrEveryDestinationFailed, errors.Join(failed...)))
	case len(failed) > 0:
		errs = append(errs, errors.Join(failed...))
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("snapshot %s: %w", res.ID, errors.Join(errs...))
	}
	return res, nil
}

// snapshotPart streams one source to every destination that cannot reuse
// an earlier piece list of it, and records the part in each destination's
// run.
func snapshotPart(ctx context.Context, opts Options, e *engine, runs []*destRun, src source.Source, log *slog.Logger) (Part, error) {
	id := source.ID(src)
	begin := time.Now()
	if c, ok := src.(io.Closer); ok {
		// Sources that prepare a copy for their fingerprint drop it here
		// when the part is reused (or after WriteTar, which is harmless).
		defer c.Close()
	}
	fp, err := src.Fingerprint(ctx)
	if err != nil {
		opts.Progress.Drop(id)
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, source.ErrGone):
			return Part{}, &goneError{err}
		default:
			return Part{}, &sourceError{fmt.Errorf("fingerprint: %w", err)}
		}
		return Part{}, fmt.Errorf("fingerprint: %w", err)
	}
	var todo []*destRun
	var reused *Part
	// The destinations that reuse the part record it only once the others
	// have it too: a source that fails for them fails the part everywhere.
	var reusedOn []reusedPart
	for _, r := range runs {
		if r.failed() != nil {
			continue
		}
		if fp != "" && opts.State != nil {
			if rp, ok := reuse(ctx, opts, e, r, id, fp); ok {
				reusedOn = append(reusedOn, rp)
				reused = &rp.part
				log.Info("part unchanged, reused", "part", id, "destination", r.store.Name(), "list", rp.part.List)
				continue
			}
		}
		todo = append(todo, r)
	}
	commitReused := func() {
		for _, rp := range reusedOn {
			rp.r.addPart(rp.part, rp.list, fp, rp.pieces)
			rp.r.mu.Lock()
			rp.r.reused++
			rp.r.mu.Unlock()
		}
	}
	if len(todo) == 0 {
		commitReused()
		if reused == nil {
			opts.Progress.Drop(id)
			var errs []error
			for _, r := range runs {
				errs = append(errs, r.failed())
			}
			return Part{}, fmt.Errorf("%w: %w", ErrEveryDestinationFailed, errors.Join(errs...))
		}
		opts.Progress.Start(id, "", Bytes, reused.Size).Finish(TaskReused)
		return *reused, nil
	}

	pr := &partRun{e: e, dests: todo, pieces: make([][]pieceRec, len(todo)), distinct: make([]pieceSet, len(todo)), added: make([]int64, len(todo))}
	for i := range todo {
		pr.distinct[i] = pieceSet{}
	}
	var stats source.Stats
	produce := func(w io.Writer) error {
		var err error
		stats, err = src.WriteTar(ctx, w)
		return err
	}
	pr.task = opts.Progress.Start(id, "", Bytes, partSize(ctx, opts.Progress, src, log))
	err = pr.stream(ctx, produce, pr.task.counter())
	if err != nil {
		pr.task.Finish(TaskFailed)
	} else {
		pr.task.Finish(TaskDone)
	}
	if err != nil && (!errors.Is(err, ErrEveryDestinationFailed) || ctx.Err() != nil) {
		return Part{}, err // the source failed (a *sourceError), or the run did
	}
	commitReused()
	for _, r := range todo {
		if uerr := r.failed(); uerr != nil {
			log.Error("destination failed", "destination", r.store.Name(), "err", uerr)
		}
	}
	if err != nil {
		if reused != nil {
			return *reused, nil
		}
		return Part{}, err
	}
	var out *Part
	for i, r := range todo {
		if r.failed() != nil {
			continue
		}
		part := Part{ID: id, Kind: src.Kind(), Name: src.Name(), Size: pr.size, Pieces: len(pr.pieces[i]), Stats: stats}
		part.Stored = pr.distinct[i].bytes()
		ref, err := putList(ctx, r, opts.Host, pr.size, pr.pieces[i])
		pr.pieces[i] = nil
		if err != nil {
			r.fail(err)
			log.Error("destination failed", "destination", r.store.Name(), "err", err)
			continue
		}
		part.List = ref.ID
		part.Uploaded = pr.added[i]
		r.addPart(part, ref, fp, pr.distinct[i])
		if out == nil {
			p := part
			out = &p
		}
	}
	if out == nil {
		if reused != nil {
			return *reused, nil
		}
		var errs []error
		for _, r := range runs {
			errs = append(errs, r.failed())
		}
		return Part{}, fmt.Errorf("%w: %w", ErrEveryDestinationFailed, errors.Join(errs...))
	}
	log.Info("part stored", "part", id, "bytes", pr.size, "stored", out.Stored, "pieces", out.Pieces,
		"entries", stats.Entries, "seconds", time.Since(begin).Seconds())
	return *out, nil
}

// addPart records a part in the destination's run.
func (r *destRun) addPart(p Part, list Ref, fp string, pieces pieceSet) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.parts, r.lists, r.fps = append(r.parts, p), append(r.lists, list), append(r.fps, fp)
	for k, s := range pieces {
		r.pieces[k] = s
	}
}

// putList queues a part's piece list for upload unless the destination
// already holds it (an unchanged part read again makes the same list).
// It goes through the destination's upload queue, so that its uploads
// limit holds.
func putList(ctx context.Context, r *destRun, host string, size int64, pieces []pieceRec) (Ref, error) {
	data, ref := encodeList(size, pieces)
	id, _ := parseID(ref.ID)
	if r.known.isPresent(id, ref.Size) {
		return ref, nil
	}
	s := &stored{data: data}
	s.refs.Store(1)
	select {
	case r.queue <- uploadJob{id: id, obj: knownObject{stored: ref.Size}, data: s, list: true}:
	case <-ctx.Done():
		return Ref{}, ctx.Err()
	}
	return ref, nil
}

// reusedPart is an unchanged part one destination can reference without
// reading it, not yet recorded in its run.
type reusedPart struct {
	r      *destRun
	part   Part
	list   Ref
	pieces pieceSet
}

// reuse finds, on one destination, the piece list an unchanged part had in
// an earlier snapshot of the same dedup space, when the list and every
// piece it names are still stored there as recorded.
func reuse(ctx context.Context, opts Options, e *engine, r *destRun, id, fp string) (reusedPart, bool) {
	st, ok := opts.State.Get(opts.Host, r.store.Name(), id)
	if !ok || st.Fingerprint != fp || st.Space != e.dedup.Space || !st.consistent(id) {
		return reusedPart{}, false
	}
	lid, _ := parseID(st.List.ID)
	if !r.known.isPresent(lid, st.List.Size) {
		return reusedPart{}, false
	}
	l, err := fetchList(ctx, r.store, opts.Host, st.List)
	if err != nil || l.Size != st.Part.Size {
		return reusedPart{}, false
	}
	pieces := make(pieceSet, len(l.Pieces))
	for _, p := range l.Pieces {
		pid, _ := parseID(p.ID)
		o, ok := r.known.lookup(pid)
		if !ok || o.stored != p.Stored || hex.EncodeToString(o.sha[:]) != p.SHA256 {
			return reusedPart{}, false
		}
		pieces.add(pid, p.Stored)
	}
	p := st.Part
	p.Reused, p.Uploaded = true, 0
	return reusedPart{r: r, part: p, list: st.List, pieces: pieces}, true
}

// writeMeta writes index.age, manifest.sig and, last, manifest.json.
func writeMeta(ctx context.Context, opts Options, recipients []age.Recipient, res *Result, started, finished time.Time, r *destRun) error {
	dir := SnapshotPath(opts.Host, res.ID)
	idx := Index{Version: FormatVersion, Snapshot: res.ID, Host: opts.Host, Fireops: opts.Version, Created: started, Parts: r.parts,
		FailedParts: res.FailedParts}
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
	lists := slices.Clone(r.lists)
	slices.SortFunc(lists, func(a, b Ref) int { return strings.Compare(a.ID, b.ID) })
	m := Manifest{
		Format: FormatName, Version: FormatVersion, Snapshot: res.ID, Host: opts.Host,
		Started: started, Finished: finished,
		Signer: keys.FormatPublicKey(opts.Signer.Public().(ed25519.PublicKey)),
		Index:  Blob{Size: int64(enc.Len()), SHA256: hex.EncodeToString(sum[:])}, Lists: lists,
		Pieces: len(r.pieces), FailedParts: len(res.FailedParts), Only: opts.Only,
	}
	tagger, err := NewPartTagger(opts.Signer)
	if err != nil {
		return err
	}
	m.Parts = tagger.Tags(r.parts)
	seen := map[string]bool{}
	for _, l := range lists {
		if !seen[l.ID] {
			seen[l.ID] = true
			m.Stored += l.Size
		}
	}
	m.Stored += r.pieces.bytes()
	// Every object the manifest references must be durably known before
	// the manifest exists (see Known.sync).
	if err := r.known.sync(); err != nil {
		return fmt.Errorf("destination %s: %w", r.store.Name(), err)
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
			return destError(r.store.Name(), err, "write "+p)
		}
		r.uploaded.Add(int64(len(f.data)))
	}
	if err := r.known.setLast(res.ID, data, Written{Tagger: tagger, Parts: r.parts, Clean: !m.Only && m.FailedParts == 0}); err != nil {
		return fmt.Errorf("destination %s: %w", r.store.Name(), err)
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
// of one destination. The pieces the run uploaded stay: they are in the
// known-objects log, so the next run references them instead of uploading
// them again, and rotate sweeps those no snapshot ever references.
func cleanupDest(ctx context.Context, r *destRun, host, id string, log *slog.Logger) {
	dir := SnapshotPath(host, id)
	if err := r.store.Delete(ctx, path.Join(dir, ManifestFile)); err != nil {
		log.Warn("cleanup: could not delete manifest", "destination", r.store.Name(), "err", err)
	}
	if err := r.store.Rmdir(ctx, dir); err != nil {
		log.Warn("cleanup: could not delete snapshot folder; rotate removes it later", "destination", r.store.Name(), "err", err)
	}
}
