package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"

	"github.com/firetech/fireops/pkg/source"
)

// ErrIntegrity is wrapped by every error that means the stored data is not
// what the signed manifest says: a bad signature, a missing, truncated or
// altered chunk, an index or payload that does not decrypt or hash right.
var ErrIntegrity = errors.New("integrity check failed")

func integrityf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrIntegrity, fmt.Sprintf(format, args...))
}

// Listing is one snapshot folder on a destination.
type Listing struct {
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Complete bool      `json:"complete"`
	// Parts and Size come from the manifest (0 for incomplete ones).
	Parts int   `json:"parts"`
	Size  int64 `json:"size"`
	// Problem says why a folder with a manifest is not usable.
	Problem string `json:"problem,omitempty"`
	// Modified is the newest modification time seen in the folder.
	Modified time.Time `json:"modified"`
	// Started is the manifest's start time (zero when incomplete); it
	// orders snapshots taken within the same second.
	Started time.Time `json:"started,omitempty"`
}

// List returns the snapshot folders of host on a store, oldest first. A
// folder is complete only with a manifest whose signature verifies with
// trusted (when trusted is nil, signatures are not checked and the
// listing says so in Problem).
func List(ctx context.Context, st Store, host string, trusted ed25519.PublicKey) ([]Listing, error) {
	entries, err := st.List(ctx, path.Join(host, SnapshotsDir))
	if err != nil {
		return nil, fmt.Errorf("destination %s: list snapshots: %w", st.Name(), err)
	}
	var out []Listing
	for _, e := range entries {
		if !e.Dir || !ValidSnapshotID(e.Name) {
			continue
		}
		t, _ := SnapshotTime(e.Name)
		l := Listing{ID: e.Name, Time: t, Modified: e.ModTime}
		files, err := st.List(ctx, SnapshotPath(host, e.Name))
		if err != nil {
			return nil, fmt.Errorf("destination %s: list snapshot %s: %w", st.Name(), e.Name, err)
		}
		hasManifest := false
		for _, f := range files {
			if f.ModTime.After(l.Modified) {
				l.Modified = f.ModTime
			}
			if f.Name == ManifestFile {
				hasManifest = true
			}
		}
		if !hasManifest {
			// An interrupted run: its start time orders it.
			if b, err := st.GetBytes(ctx, path.Join(SnapshotPath(host, e.Name), StartedFile), 128); err == nil {
				l.Started, _ = time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
			}
		}
		if hasManifest {
			m, err := readManifest(ctx, st, host, e.Name, trusted)
			if err != nil {
				l.Problem = err.Error()
			} else {
				l.Complete, l.Parts, l.Size, l.Started = true, len(m.Objects), m.Size(), m.Started
				if trusted == nil {
					l.Problem = "signature not checked: no trusted signing key configured"
				}
			}
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time)
		}
		if !a.Started.Equal(b.Started) {
			return a.Started.Before(b.Started)
		}
		return a.ID < b.ID
	})
	return out, nil
}

// Latest returns the id of the newest complete snapshot in a listing.
func Latest(ls []Listing) (string, bool) {
	for i := len(ls) - 1; i >= 0; i-- {
		if ls[i].Complete && ls[i].Problem == "" {
			return ls[i].ID, true
		}
	}
	return "", false
}

// readManifest fetches and decodes a manifest, checking its signature when
// trusted is not nil.
func readManifest(ctx context.Context, st Store, host, id string, trusted ed25519.PublicKey) (*Manifest, error) {
	dir := SnapshotPath(host, id)
	data, err := st.GetBytes(ctx, path.Join(dir, ManifestFile), maxManifestSize)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("snapshot %s on %s is incomplete (no manifest): %w", id, st.Name(), err)
		}
		return nil, fmt.Errorf("read manifest of %s on %s: %w", id, st.Name(), err)
	}
	var m *Manifest
	if trusted != nil {
		sig, err := st.GetBytes(ctx, path.Join(dir, SignatureFile), 1024)
		if err != nil {
			return nil, integrityf("snapshot %s on %s: read signature: %v", id, st.Name(), err)
		}
		m, err = ParseManifest(data, sig, trusted)
		if err != nil {
			return nil, integrityf("snapshot %s on %s: %v", id, st.Name(), err)
		}
	} else {
		m = new(Manifest)
		if err := json.Unmarshal(data, m); err != nil {
			return nil, integrityf("snapshot %s on %s: decode manifest: %v", id, st.Name(), err)
		}
		if err := m.check(); err != nil {
			return nil, integrityf("snapshot %s on %s: %v", id, st.Name(), err)
		}
	}
	if m.Snapshot != id || m.Host != host {
		return nil, integrityf("snapshot %s on %s: manifest is for %s/%s", id, st.Name(), m.Host, m.Snapshot)
	}
	return m, nil
}

// Open fetches a snapshot's manifest and checks its signature against
// trusted, which is required: a manifest is never used unsigned.
func Open(ctx context.Context, st Store, host, id string, trusted ed25519.PublicKey) (*Manifest, error) {
	if trusted == nil {
		return nil, errors.New("no trusted signing key: set keys.signing_public_key or keys.signing_key_file")
	}
	return readManifest(ctx, st, host, id, trusted)
}

// ReadIndex fetches index.age, checks it against the manifest, decrypts it
// with the identities and checks that every part's object is listed in the
// manifest.
func ReadIndex(ctx context.Context, st Store, m *Manifest, ids []age.Identity) (*Index, error) {
	p := path.Join(SnapshotPath(m.Host, m.Snapshot), IndexFile)
	data, err := st.GetBytes(ctx, p, maxManifestSize)
	if err != nil {
		return nil, integrityf("%s on %s: %v", p, st.Name(), err)
	}
	sum := sha256.Sum256(data)
	if int64(len(data)) != m.Index.Size || hex.EncodeToString(sum[:]) != m.Index.SHA256 {
		return nil, integrityf("%s on %s: size or sha256 differs from the manifest", p, st.Name())
	}
	r, err := age.Decrypt(bytes.NewReader(data), ids...)
	if err != nil {
		return nil, integrityf("decrypt %s: %v", p, err)
	}
	var idx Index
	if err := json.NewDecoder(r).Decode(&idx); err != nil {
		return nil, integrityf("decode %s: %v", p, err)
	}
	if idx.Snapshot != m.Snapshot {
		return nil, integrityf("%s belongs to snapshot %s", p, idx.Snapshot)
	}
	for _, part := range idx.Parts {
		o, ok := m.Object(part.Object)
		if !ok || o.Size != part.Stored {
			return nil, integrityf("index part %s: object %s is not in the manifest as recorded", part.ID, part.Object)
		}
	}
	return &idx, nil
}

// CheckPresent checks that the index and every chunk of every object of
// the manifest are on the store with the recorded sizes (verify quick).
func CheckPresent(ctx context.Context, st Store, m *Manifest) error {
	dir := SnapshotPath(m.Host, m.Snapshot)
	files, err := st.List(ctx, dir)
	if err != nil {
		return fmt.Errorf("destination %s: list %s: %w", st.Name(), dir, err)
	}
	if !hasFile(files, IndexFile, m.Index.Size) {
		return integrityf("%s/%s on %s is missing or has the wrong size", dir, IndexFile, st.Name())
	}
	for _, o := range m.Objects {
		entries, err := st.List(ctx, ObjectPath(m.Host, o.ID))
		if err != nil {
			return fmt.Errorf("destination %s: list object %s: %w", st.Name(), o.ID, err)
		}
		if i := missingChunk(entries, o); i >= 0 {
			return integrityf("object %s chunk %s on %s is missing or has the wrong size (want %d bytes)", o.ID, ChunkName(i), st.Name(), o.Chunks[i].Size)
		}
	}
	return nil
}

func hasFile(entries []Entry, name string, size int64) bool {
	return slices.ContainsFunc(entries, func(e Entry) bool { return !e.Dir && e.Name == name && e.Size == size })
}

// missingChunk returns the number of the first chunk of obj that entries
// (the listing of its folder) lack or hold with another size, or -1. It
// looks each chunk up in a map: an object can have many thousand chunks.
func missingChunk(entries []Entry, obj Object) int {
	sizes := make(map[string]int64, len(entries))
	for _, e := range entries {
		if !e.Dir {
			sizes[e.Name] = e.Size
		}
	}
	for i, c := range obj.Chunks {
		if s, ok := sizes[ChunkName(i)]; !ok || s != c.Size {
			return i
		}
	}
	return -1
}

// chunkReader streams an object's chunks in order, checking each chunk's
// size and SHA-256 against the manifest as it ends.
type chunkReader struct {
	ctx     context.Context
	st      Store
	host    string
	obj     Object
	n       int
	cur     io.ReadCloser
	h       hash.Hash
	got     int64
	resumed int   // times the current chunk was opened again after a read error
	err     error // the error Read returned, returned again ever after
}

// chunkResumes is how often one chunk's download is started again after
// it broke off (a connection reset half way through a chunk on Yandex
// Disk must not fail a restore of many GiB). The bytes already read are
// skipped, not hashed again: the hash covers exactly what was passed on.
const chunkResumes = 3

// resume opens the current chunk again and skips the r.got bytes already
// read; it reports whether it did.
func (r *chunkReader) resume(cause error) bool {
	if r.resumed >= chunkResumes || r.ctx.Err() != nil {
		return false
	}
	r.resumed++
	r.cur.Close()
	r.cur = nil
	rc, err := r.st.Get(r.ctx, ChunkPath(r.host, r.obj.ID, r.n))
	if err != nil {
		return false
	}
	if _, err := io.CopyN(io.Discard, rc, r.got); err != nil {
		rc.Close()
		return false
	}
	r.cur = rc
	return true
}

// Read reads the object's bytes. An error is final: every later Read
// returns it again (a chunk is never started over from its first byte).
func (r *chunkReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		r.err = err
	}
	return n, err
}

func (r *chunkReader) read(p []byte) (int, error) {
	for {
		if r.cur == nil {
			if r.n >= len(r.obj.Chunks) {
				return 0, io.EOF
			}
			rc, err := r.st.Get(r.ctx, ChunkPath(r.host, r.obj.ID, r.n))
			if err != nil {
				return 0, integrityf("object %s chunk %s on %s: %v", r.obj.ID, ChunkName(r.n), r.st.Name(), err)
			}
			r.cur, r.h, r.got, r.resumed = rc, sha256.New(), 0, 0
		}
		want := r.obj.Chunks[r.n]
		if r.got+int64(len(p)) > want.Size {
			// Never read past the recorded size: a longer chunk is caught
			// below without passing its extra bytes on.
			p = p[:max(0, want.Size-r.got+1)]
		}
		n, err := r.cur.Read(p)
		r.h.Write(p[:n])
		r.got += int64(n)
		if r.got > want.Size {
			return 0, integrityf("object %s chunk %s on %s is longer than the manifest says (%d bytes)", r.obj.ID, ChunkName(r.n), r.st.Name(), want.Size)
		}
		if errors.Is(err, io.EOF) {
			r.cur.Close()
			r.cur = nil
			if r.got != want.Size {
				return n, integrityf("object %s chunk %s on %s is truncated: %d of %d bytes", r.obj.ID, ChunkName(r.n), r.st.Name(), r.got, want.Size)
			}
			if hex.EncodeToString(r.h.Sum(nil)) != want.SHA256 {
				return n, integrityf("object %s chunk %s on %s: sha256 differs from the manifest (altered or swapped chunk)", r.obj.ID, ChunkName(r.n), r.st.Name())
			}
			r.n++
			if n > 0 {
				return n, nil
			}
			continue
		}
		if err != nil {
			if n > 0 || r.resume(err) {
				// Pass on what was read; the next Read goes on from the
				// reopened chunk (or meets the error again).
				if n > 0 {
					return n, nil
				}
				continue
			}
			return n, fmt.Errorf("read object %s chunk %s on %s: %w", r.obj.ID, ChunkName(r.n), r.st.Name(), err)
		}
		return n, nil
	}
}

func (r *chunkReader) Close() error {
	if r.cur != nil {
		return r.cur.Close()
	}
	return nil
}

// blame is called when decryption failed with err. Bytes of a chunk are
// passed on before the chunk ends and its hash can be checked, so a
// damaged chunk usually shows first as an age error ("incorrect identity"
// for a damaged header, a failed authentication for a damaged body), which
// would send whoever reads it after the wrong cause. blame reads the rest
// of the current chunk; when its size or hash differs from the manifest it
// returns that integrity error, naming the chunk, instead of err.
func (r *chunkReader) blame(err error) error {
	if errors.Is(err, ErrIntegrity) {
		return err
	}
	buf := make([]byte, 64<<10)
	for r.cur != nil {
		if _, rerr := r.Read(buf); rerr != nil {
			if errors.Is(rerr, ErrIntegrity) {
				return rerr
			}
			break
		}
	}
	return err
}

// blamingReader is the age decryption of a chunkReader's stream; a
// decryption error becomes the chunk's integrity error when the chunk is
// damaged (see blame).
type blamingReader struct {
	r  io.Reader
	cr *chunkReader
}

func (b blamingReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = b.cr.blame(err)
	}
	return n, err
}

// prefetcher reads ahead from r in its own goroutine (downloading, hashing
// and decrypting chunks) while the consumer decompresses and writes, so
// that a restore keeps both cores busy. It holds at most depth blocks.
type prefetcher struct {
	blocks chan []byte
	free   chan []byte
	blk    []byte // the block being consumed, whole
	cur    []byte // its unread rest
	err    error
	errc   chan error
	stop   chan struct{}
	done   chan struct{}
}

const (
	prefetchBlock = 1 << 20
	prefetchDepth = 8
)

func newPrefetcher(r io.Reader) *prefetcher {
	p := &prefetcher{blocks: make(chan []byte, prefetchDepth), free: make(chan []byte, prefetchDepth+1),
		errc: make(chan error, 1), stop: make(chan struct{}), done: make(chan struct{})}
	for range prefetchDepth + 1 {
		p.free <- make([]byte, prefetchBlock)
	}
	go func() {
		defer close(p.done)
		defer close(p.blocks)
		for {
			var b []byte
			select {
			case b = <-p.free:
			case <-p.stop:
				return
			}
			n, err := io.ReadFull(r, b)
			if n > 0 {
				select {
				case p.blocks <- b[:n]:
				case <-p.stop:
					return
				}
			}
			if err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) {
					err = io.EOF
				}
				p.errc <- err
				return
			}
		}
	}()
	return p
}

func (p *prefetcher) Read(b []byte) (int, error) {
	for len(p.cur) == 0 {
		if p.err != nil {
			return 0, p.err
		}
		blk, ok := <-p.blocks
		if !ok {
			p.err = <-p.errc
			return 0, p.err
		}
		p.blk, p.cur = blk, blk
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	if len(p.cur) == 0 {
		p.free <- p.blk[:cap(p.blk)]
		p.blk, p.cur = nil, nil
	}
	return n, nil
}

// close stops the reading goroutine and waits for it.
func (p *prefetcher) close() {
	close(p.stop)
	<-p.done
}

// PartReader is the verified plaintext payload (tar) of one part.
type PartReader struct {
	part   Part
	pf     *prefetcher
	chunks *chunkReader
	zr     *zstd.Decoder
	h      hash.Hash
	n      int64
	done   bool
	err    error // the first error Read returned (always an ErrIntegrity)
}

// OpenPart streams a part's plaintext payload: chunks checked against the
// manifest, decrypted with ids, decompressed; at the end of the stream the
// payload's size and SHA-256 are checked against the index, and Read
// returns an ErrIntegrity error instead of io.EOF when they differ.
func OpenPart(ctx context.Context, st Store, m *Manifest, part Part, ids []age.Identity) (*PartReader, error) {
	obj, ok := m.Object(part.Object)
	if !ok {
		return nil, integrityf("part %s: object %s is not in the manifest", part.ID, part.Object)
	}
	cr := &chunkReader{ctx: ctx, st: st, host: m.Host, obj: obj}
	ar, err := age.Decrypt(cr, ids...)
	if err != nil {
		err = cr.blame(err)
		cr.Close()
		if errors.Is(err, ErrIntegrity) {
			return nil, err
		}
		return nil, integrityf("part %s: decrypt object %s: %v", part.ID, obj.ID, err)
	}
	// Download, chunk hashing and decryption run ahead in their own
	// goroutine; decompression, the payload hash and the consumer (tar
	// extraction) in the others.
	pf := newPrefetcher(blamingReader{r: ar, cr: cr})
	// zstd's own xxhash of the frame is not checked: the payload SHA-256
	// below covers the same bytes (it was 2.4% of a restore's CPU). The
	// frames keep it for `zstd -d` in a restore without fireops.
	zr, err := zstd.NewReader(pf, zstd.WithDecoderConcurrency(2), zstd.WithDecoderLowmem(true), zstd.IgnoreChecksum(true))
	if err != nil {
		pf.close()
		cr.Close()
		return nil, fmt.Errorf("part %s: start decompression: %w", part.ID, err)
	}
	return &PartReader{part: part, pf: pf, chunks: cr, zr: zr, h: sha256.New()}, nil
}

// Read reads plaintext payload bytes.
func (r *PartReader) Read(p []byte) (int, error) {
	if r.done {
		return 0, io.EOF
	}
	n, err := r.zr.Read(p)
	r.h.Write(p[:n])
	r.n += int64(n)
	if errors.Is(err, io.EOF) {
		r.done = true
		if r.n != r.part.Size || hex.EncodeToString(r.h.Sum(nil)) != r.part.SHA256 {
			r.err = integrityf("part %s (object %s): payload size or sha256 differs from the index", r.part.ID, r.part.Object)
			return n, r.err
		}
		return n, io.EOF
	}
	if err != nil && !errors.Is(err, ErrIntegrity) {
		err = integrityf("part %s (object %s): %v", r.part.ID, r.part.Object, err)
	}
	if err != nil && r.err == nil {
		r.err = err
	}
	return n, err
}

// Finish reads the rest of the payload (tar padding a consumer left) so
// that the final size and hash check runs, and returns its result.
func (r *PartReader) Finish() error {
	_, err := io.Copy(io.Discard, r)
	return err
}

// Close releases the decoder and the open chunk.
func (r *PartReader) Close() error {
	r.zr.Close()
	r.pf.close()
	return r.chunks.Close()
}

// CountTar reads a tar stream to its end and returns the number of entries
// (verify full).
func CountTar(r io.Reader) (int64, error) {
	tr := tar.NewReader(r)
	var n int64
	for {
		_, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
	}
}

// RestorePart streams a part into a restorer: it is staged first; only
// when the whole payload checked out (chunk hashes, decryption, payload
// hash, entry count) is the staged copy committed over the live target.
// On any error the staged copy is removed and the target is untouched.
func RestorePart(ctx context.Context, st Store, m *Manifest, part Part, ids []age.Identity, rs source.Restorer) (source.Stats, error) {
	pr, err := OpenPart(ctx, st, m, part, ids)
	if err != nil {
		return source.Stats{}, err
	}
	defer pr.Close()
	staged, err := rs.Stage(ctx, pr)
	if err != nil {
		// Damaged data fails a chunk hash or age's authentication while
		// Stage reads; report that cause even when the restorer's error
		// does not wrap it. Any other failure (a full disk, a target in
		// use) is the restorer's own: the rest of the part is not
		// downloaded just to find a cause that is not there.
		if pr.err != nil {
			return source.Stats{}, pr.err
		}
		return source.Stats{}, fmt.Errorf("part %s: %w", part.ID, err)
	}
	if err := pr.Finish(); err != nil {
		staged.Abort()
		return source.Stats{}, err
	}
	stats := staged.Stats()
	if stats.Entries != part.Entries {
		staged.Abort()
		return stats, integrityf("part %s: %d entries restored, the index records %d", part.ID, stats.Entries, part.Entries)
	}
	if err := staged.Commit(ctx); err != nil {
		staged.Abort()
		return stats, fmt.Errorf("part %s: %w", part.ID, err)
	}
	return stats, nil
}
