package snapshot

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// KnownDir is the folder in state_dir holding, per destination and dedup
// space, the objects this host knows are stored there.
const KnownDir = "known"

// knownRecord is one line of a known-objects log: id, stored size,
// SHA-256 of the stored bytes.
const knownRecord = 32 + 8 + 32

// knownObject is what the writer needs to reference a stored piece.
type knownObject struct {
	stored int64
	sha    [32]byte
}

// Known is the cache of the objects one destination holds in one dedup
// space (design.md §4, "what the host already stored"): an append-only
// log in state_dir, one record per uploaded object, written as each upload
// ends, so that a run killed half way still lets the next run reference
// what it uploaded. It is checked against a listing of the destination at
// the start of every run: an object the log names but the destination
// lacks, or holds with another size, is uploaded again, never referenced.
// When the log is missing, or the destination holds a snapshot newer than
// the last one this host recorded (state restored from a backup, another
// copy of state_dir), the log is completed from the piece lists of the
// destination's complete snapshots of the same space.
//
// Memory: about 40 bytes an object (a 1 TiB destination at 256 KiB
// pieces holds some 4 million): the log's records stay on disk and only
// an index of them is held, and the listing keeps each id's first 8 bytes
// and size.
type Known struct {
	path string
	mu   sync.Mutex
	// objs indexes the log's records by the first 8 bytes of their id
	// (the record holds the whole id, checked on every lookup); ids that
	// share their first 8 bytes with another go to overflow.
	objs     map[uint64]uint32
	overflow map[[32]byte]uint32
	records  uint32
	// present is the destination's listing. Objects present but not
	// known (an upload cut off by a kill, whose size may be short) are
	// uploaded again.
	present *ObjectSet
	f       *os.File
	w       *bufio.Writer
	// Last is the newest snapshot this host wrote to the destination in
	// this space (from the log's companion file).
	last string
	// damaged are objects verify or restore found damaged (ForgetObjects):
	// taken for absent until this run uploads them again.
	damaged      map[[32]byte]bool
	damagedDirty bool
	// stateDir, host, dest locate the damaged objects' file.
	stateDir, host, dest string
}

// knownPath is the log of one destination and space in stateDir.
func knownPath(stateDir, host, dest, space string) string {
	sum := sha256.Sum256([]byte(host + "\x00" + dest))
	return filepath.Join(stateDir, KnownDir, hex.EncodeToString(sum[:8])+"-"+space+".log")
}

// openKnown loads the log (a missing one is empty) and opens it for
// appending; a torn last record (a crash mid-write) is dropped.
func openKnown(stateDir, host, dest, space string) (*Known, bool, error) {
	p := knownPath(stateDir, host, dest, space)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, false, fmt.Errorf("known objects: %w", err)
	}
	k := &Known{path: p, objs: map[uint64]uint32{}, overflow: map[[32]byte]uint32{}, stateDir: stateDir, host: host, dest: dest}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("known objects: %w", err)
	}
	k.f = f
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, false, fmt.Errorf("known objects: %w", err)
	}
	existed := st.Size() > 0
	whole := st.Size() - st.Size()%knownRecord
	r := bufio.NewReaderSize(io.LimitReader(f, whole), 1<<16)
	var rec [knownRecord]byte
	for {
		if _, err := io.ReadFull(r, rec[:]); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			f.Close()
			return nil, false, fmt.Errorf("known objects: read %s: %w", p, err)
		}
		var id [32]byte
		copy(id[:], rec[:32])
		k.index(id)
	}
	if whole != st.Size() {
		if err := f.Truncate(whole); err != nil {
			f.Close()
			return nil, false, fmt.Errorf("known objects: %w", err)
		}
	}
	if _, err := f.Seek(whole, io.SeekStart); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("known objects: %w", err)
	}
	k.w = bufio.NewWriterSize(f, knownRecord)
	if b, ok := readLastRecord(p + ".last"); ok {
		k.last = b
	}
	return k, existed, nil
}

// index records that the log's next record is id's (a later record of
// the same id, an object uploaded again, takes the place of the earlier).
func (k *Known) index(id [32]byte) {
	n := k.records
	k.records++
	p := prefix(id)
	if _, ok := k.overflow[id]; ok {
		k.overflow[id] = n
		return
	}
	if old, ok := k.objs[p]; ok {
		if oid, _, err := k.record(old); err == nil && oid != id {
			k.overflow[id] = n
			return
		}
	}
	k.objs[p] = n
}

func prefix(id [32]byte) uint64 { return binary.LittleEndian.Uint64(id[:8]) }

// record reads record n of the log.
func (k *Known) record(n uint32) ([32]byte, knownObject, error) {
	var rec [knownRecord]byte
	var id [32]byte
	var o knownObject
	if _, err := k.f.ReadAt(rec[:], int64(n)*knownRecord); err != nil {
		return id, o, fmt.Errorf("known objects: read %s: %w", k.path, err)
	}
	copy(id[:], rec[:32])
	o.stored = int64(binary.LittleEndian.Uint64(rec[32:40]))
	copy(o.sha[:], rec[40:])
	return id, o, nil
}

// find returns the newest record of id.
func (k *Known) find(id [32]byte) (knownObject, bool) {
	n, ok := k.overflow[id]
	if !ok {
		if n, ok = k.objs[prefix(id)]; !ok {
			return knownObject{}, false
		}
	}
	rid, o, err := k.record(n)
	if err != nil || rid != id || o.stored == 0 {
		return knownObject{}, false // a tombstone: see invalidate
	}
	return o, true
}

// invalidate appends a tombstone for id when the log has a record of it,
// before the object is uploaded again: from then on the log no longer
// vouches for the old stored hash, whether or not the new upload is
// recorded (a run killed, or an upload that failed after the provider
// kept the new bytes, must not leave the old hash in force).
func (k *Known) invalidate(id [32]byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.find(id); !ok {
		return nil
	}
	var rec [knownRecord]byte
	copy(rec[:32], id[:])
	return k.appendRecord(id, rec[:])
}

// appendRecord appends rec, a record of id, to the log, flushed at
// once, and indexes id; k.mu is held.
func (k *Known) appendRecord(id [32]byte, rec []byte) error {
	if _, err := k.w.Write(rec); err != nil {
		return fmt.Errorf("known objects: %w", err)
	}
	if err := k.w.Flush(); err != nil {
		return fmt.Errorf("known objects: %w", err)
	}
	k.index(id)
	return nil
}

// add records an uploaded object: appended to the log (flushed at once: a
// kill loses nothing the kernel has) and indexed.
func (k *Known) add(id [32]byte, o knownObject) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.present != nil {
		k.present.add(id, o.stored)
	}
	if k.damaged[id] {
		delete(k.damaged, id)
		k.damagedDirty = true
	}
	var rec [knownRecord]byte
	copy(rec[:32], id[:])
	binary.LittleEndian.PutUint64(rec[32:40], uint64(o.stored))
	copy(rec[40:], o.sha[:])
	return k.appendRecord(id, rec[:])
}

// setPresent records an object (a piece list) now on the destination.
func (k *Known) setPresent(id [32]byte, size int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.present.add(id, size)
}

// isPresent reports whether the destination holds an object of this size.
func (k *Known) isPresent(id [32]byte, size int64) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.present.has(id, size)
}

// lookup returns the stored object with this id when the destination
// holds it as recorded.
func (k *Known) lookup(id [32]byte) (knownObject, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	o, ok := k.find(id)
	if !ok || !k.present.has(id, o.stored) {
		return o, false
	}
	return o, true
}

// sync makes the log durable: the manifest that references its objects
// is written only after it, so that a power loss cannot leave a snapshot
// referencing an object the log forgot (it would be uploaded again, and
// the snapshot's stored hash would no longer match).
func (k *Known) sync() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.w.Flush(); err != nil {
		return fmt.Errorf("known objects: %w", err)
	}
	if err := k.f.Sync(); err != nil {
		return fmt.Errorf("known objects: %w", err)
	}
	return nil
}

// setLast records the newest snapshot written in this space, with the
// SHA-256 of its manifest (to notice a destination rewritten since), and
// the parts it holds in the destination's per-part record (PartsWritten).
func (k *Known) setLast(id string, manifest []byte, w Written) error {
	sum := sha256.Sum256(manifest)
	k.last = id + " " + hex.EncodeToString(sum[:])
	if err := writeFileAtomic(k.path+".last", []byte(k.last), 0o600); err != nil {
		return err
	}
	if err := recordParts(k.stateDir, k.host, k.dest, id, w); err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.damagedDirty {
		// The damaged objects uploaded again are no longer damaged.
		if err := saveDamaged(k.stateDir, k.host, k.dest, k.damaged); err != nil {
			return err
		}
		k.damagedDirty = false
	}
	return nil
}

func (k *Known) close() error {
	if k.f == nil {
		return nil
	}
	err := k.w.Flush()
	if cerr := k.f.Close(); err == nil {
		err = cerr
	}
	k.f = nil
	return err
}

// ObjectSet is a listing of a destination's v2 objects: for each, the
// first 8 bytes of its id and its stored size, about 20 bytes an object.
// Two ids that share their first 8 bytes (about one pair in 10^12 at a
// million objects) and differ in size are both taken for absent, which
// only means an upload again; sharing the size too would take a missing
// one for present, which is left to that chance.
type ObjectSet struct {
	m map[uint64]uint32
	// gone are objects forgotten as damaged until they are added again.
	gone map[uint64]bool
}

// ambiguous marks a prefix shared by objects of different sizes.
const ambiguous = ^uint32(0)

func newObjectSet() *ObjectSet { return &ObjectSet{m: map[uint64]uint32{}, gone: map[uint64]bool{}} }

func (s *ObjectSet) add(id [32]byte, size int64) {
	p := prefix(id)
	if s.gone[p] {
		delete(s.gone, p)
		s.m[p] = uint32(min(size, int64(ambiguous-1)))
		return
	}
	v := uint32(min(size, int64(ambiguous-1)))
	if old, ok := s.m[p]; ok && old != v {
		v = ambiguous
	}
	s.m[p] = v
}

// forget makes an object read as absent until it is added again.
func (s *ObjectSet) forget(id [32]byte) { s.gone[prefix(id)] = true }

func (s *ObjectSet) has(id [32]byte, size int64) bool {
	if s == nil {
		return false
	}
	v, ok := s.m[prefix(id)]
	return ok && !s.gone[prefix(id)] && v != ambiguous && int64(v) == size
}

// Has reports whether the listing holds the object with this (hex) id
// and stored size.
func (s *ObjectSet) Has(id string, size int64) bool {
	b, err := parseID(id)
	return err == nil && s.has(b, size)
}

// Len is the number of objects listed (ids that share a prefix once).
func (s *ObjectSet) Len() int { return len(s.m) }

// listObjects lists every v2 object on a store.
func listObjects(ctx context.Context, st Store, host string) (*ObjectSet, error) {
	out := newObjectSet()
	top, err := st.List(ctx, path.Join(host, ObjectsDir))
	if err != nil {
		return nil, destError(st.Name(), err, "list objects")
	}
	for _, d := range top {
		if !d.Dir || !prefixRE.MatchString(d.Name) {
			continue
		}
		es, err := st.List(ctx, path.Join(host, ObjectsDir, d.Name))
		if err != nil {
			return nil, destError(st.Name(), err, "list objects/"+d.Name)
		}
		for _, e := range es {
			if e.Dir || !ValidPieceID(e.Name) || e.Name[:2] != d.Name {
				continue
			}
			id, _ := parseID(e.Name)
			out.add(id, e.Size)
		}
	}
	return out, nil
}

func parseID(s string) ([32]byte, error) {
	var id [32]byte
	if len(s) != 64 {
		return id, fmt.Errorf("object id %q is not 64 hex digits", s)
	}
	_, err := hex.Decode(id[:], []byte(s))
	return id, err
}

// loadKnown opens the known-objects log of a destination and checks it
// against the destination's listing; when the log is new or stale it is
// completed from the piece lists of the destination's snapshots of this
// space (signed by signer's public key).
func loadKnown(ctx context.Context, stateDir string, st Store, host string, d *Dedup, trusted []byte, recipients []string, log *slog.Logger) (*Known, error) {
	k, existed, err := openKnown(stateDir, host, st.Name(), d.Space)
	if err != nil {
		return nil, err
	}
	present, err := listObjects(ctx, st, host)
	if err != nil {
		k.close()
		return nil, err
	}
	k.present = present
	k.damaged = loadDamaged(stateDir, host, st.Name())
	for id := range k.damaged {
		present.forget(id)
	}
	lastID, lastSum, _ := strings.Cut(k.last, " ")
	after := lastID
	if existed && lastID != "" && !manifestIs(ctx, st, host, lastID, lastSum) {
		// The last manifest this host wrote is gone or was rewritten (the
		// destination refilled from a mirror, or restored): nothing the
		// log says can be trusted without the piece lists now there.
		after = ""
		log.Info("the destination changed since this host's last snapshot: checking the known objects against its piece lists", "destination", st.Name(), "last", lastID)
	}
	newer, err := snapshotsAfter(ctx, st, host, after)
	if err != nil {
		k.close()
		return nil, err
	}
	if !existed || len(newer) > 0 {
		if lastID != "" && !slices.Contains(newer, lastID) {
			// The newest this host knows takes part, so that a snapshot of
			// the same second but older cannot put back a hash it
			// replaced (the rebuild goes newest first by start time).
			newer = append(newer, lastID)
		}
		n, err := k.rebuild(ctx, st, host, newer, trusted, recipients)
		if err != nil {
			k.close()
			return nil, err
		}
		if n > 0 {
			log.Info("known objects completed from the destination's piece lists", "destination", st.Name(), "objects", n, "snapshots", len(newer))
		}
	}
	return k, nil
}

// manifestIs reports whether the manifest of snapshot id on the store is
// the one this host wrote (its SHA-256, hex). A manifest that cannot be
// read (gone, or the network) counts as changed: the rebuild that follows
// only reads what is there.
func manifestIs(ctx context.Context, st Store, host, id, sum string) bool {
	if sum == "" {
		return true // a .last file of an earlier version of this code
	}
	data, err := st.GetBytes(ctx, path.Join(SnapshotPath(host, id), ManifestFile), maxManifestSize)
	if err != nil {
		return false
	}
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:]) == sum
}

// snapshotsAfter returns the ids of the snapshot folders that may be
// newer than last (all of them when last is empty): ids hold whole
// seconds, so every other one of last's second counts too.
func snapshotsAfter(ctx context.Context, st Store, host, last string) ([]string, error) {
	es, err := st.List(ctx, path.Join(host, SnapshotsDir))
	if err != nil {
		return nil, destError(st.Name(), err, "list snapshots")
	}
	var out []string
	for _, e := range es {
		if e.Dir && ValidSnapshotID(e.Name) && e.Name != last && (last == "" || e.Name[:16] >= last[:min(16, len(last))]) {
			out = append(out, e.Name)
		}
	}
	return out, nil
}

// rebuild adds to the log the pieces of the given snapshots that are v2,
// signed by the trusted key, of the same recipients (so the same space),
// and present on the destination with their recorded size. Incomplete or
// unreadable snapshots are passed over: their objects are uploaded again
// when needed. Newer snapshots come first: a piece uploaded again (after
// it went missing) is recorded with the hash of its newest upload.
func (k *Known) rebuild(ctx context.Context, st Store, host string, ids []string, trusted []byte, recipients []string) (int, error) {
	want := recipientSet(recipients)
	var ms []*Manifest
	for _, id := range ids {
		m, err := readManifest(ctx, st, host, id, trusted)
		if err != nil || m.Version != FormatVersion || !slices.Equal(recipientSet(m.Recipients), want) {
			continue
		}
		ms = append(ms, m)
	}
	// Newest first by start time (ids of one second sort by chance).
	slices.SortFunc(ms, func(a, b *Manifest) int { return b.Started.Compare(a.Started) })
	n := 0
	seen := map[string]bool{}
	done := map[[32]byte]bool{} // pieces the newest snapshot naming them set
	for _, m := range ms {
		for _, ref := range m.Lists {
			if seen[ref.ID] {
				continue
			}
			seen[ref.ID] = true
			l, err := fetchList(ctx, st, host, ref)
			if err != nil {
				continue
			}
			for _, p := range l.Pieces {
				pid, _ := parseID(p.ID)
				if done[pid] {
					continue
				}
				done[pid] = true
				sha, _ := parseID(p.SHA256)
				// A record with another hash is stale (the object was
				// uploaded again, or the destination refilled from a
				// mirror): the newest snapshot's hash takes its place.
				if o, ok := k.find(pid); ok && o.sha == sha && o.stored == p.Stored {
					continue
				}
				if !k.present.has(pid, p.Stored) {
					continue
				}
				if err := k.add(pid, knownObject{stored: p.Stored, sha: sha}); err != nil {
					return n, err
				}
				n++
			}
		}
	}
	return n, nil
}

// fetchList downloads a piece list and checks it against its reference.
func fetchList(ctx context.Context, st Store, host string, ref Ref) (*PieceList, error) {
	data, err := st.GetBytes(ctx, PiecePath(host, ref.ID), ref.Size+1)
	if errors.Is(err, ErrNotFound) {
		return nil, damaged(ref.ID, integrityf("piece list %s on %s is missing", ref.ID, st.Name()))
	}
	if errors.Is(err, ErrTooLarge) {
		// Longer than the manifest says: altered, as a shorter one is.
		return nil, damaged(ref.ID, integrityf("piece list %s on %s is longer than the manifest says (%d bytes)", ref.ID, st.Name(), ref.Size))
	}
	if err != nil {
		return nil, fmt.Errorf("piece list %s on %s: %w", ref.ID, st.Name(), err)
	}
	sum := sha256.Sum256(data)
	if int64(len(data)) != ref.Size || hex.EncodeToString(sum[:]) != ref.SHA256 {
		return nil, damaged(ref.ID, integrityf("piece list %s on %s: size or sha256 differs from the manifest", ref.ID, st.Name()))
	}
	l, err := decodeList(data)
	if err != nil {
		return nil, integrityf("piece list %s on %s: %v", ref.ID, st.Name(), err)
	}
	return l, nil
}

// DamagedObjectError is an integrity error about one stored v2 object
// (a piece found missing, truncated or altered).
type DamagedObjectError struct {
	ID  string
	Err error
}

func (e *DamagedObjectError) Error() string { return e.Err.Error() }
func (e *DamagedObjectError) Unwrap() error { return e.Err }

func damaged(id string, err error) error { return &DamagedObjectError{ID: id, Err: err} }

// DamagedObjects returns the ids of the objects an error (possibly
// joined) names as damaged.
func DamagedObjects(err error) []string {
	var out []string
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if d, ok := err.(*DamagedObjectError); ok {
			out = append(out, d.ID)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	slices.Sort(out)
	return slices.Compact(out)
}

// damagedPath is the file of a destination's damaged objects in stateDir.
func damagedPath(stateDir, host, dest string) string {
	sum := sha256.Sum256([]byte(host + "\x00" + dest))
	return filepath.Join(stateDir, KnownDir, hex.EncodeToString(sum[:8])+".damaged")
}

// ForgetObjects records that verify or restore found these objects of a
// destination damaged: the next snapshot on this host treats them as
// absent, so it uploads each one again (replacing the damaged copy) when
// a part still has the piece, instead of referencing it in every new
// snapshot. Snapshots that referenced the damaged copy stay damaged.
func ForgetObjects(stateDir, host, dest string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	p := damagedPath(stateDir, host, dest)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("forget damaged objects: %w", err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("forget damaged objects: %w", err)
	}
	var b strings.Builder
	for _, id := range ids {
		if ValidPieceID(id) {
			b.WriteString(id + "\n")
		}
	}
	_, err = f.WriteString(b.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("forget damaged objects: %w", err)
	}
	return nil
}

// loadDamaged reads a destination's damaged objects.
func loadDamaged(stateDir, host, dest string) map[[32]byte]bool {
	out := map[[32]byte]bool{}
	data, err := os.ReadFile(damagedPath(stateDir, host, dest))
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		if id, err := parseID(strings.TrimSpace(line)); err == nil {
			out[id] = true
		}
	}
	return out
}

// saveDamaged rewrites the damaged objects not uploaded again since.
func saveDamaged(stateDir, host, dest string, ids map[[32]byte]bool) error {
	p := damagedPath(stateDir, host, dest)
	if len(ids) == 0 {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("forget damaged objects: %w", err)
		}
		return nil
	}
	var b strings.Builder
	for id := range ids {
		b.WriteString(hex.EncodeToString(id[:]) + "\n")
	}
	return writeFileAtomic(p, []byte(b.String()), 0o600)
}

// LastWritten returns the newest snapshot this host wrote to a
// destination (any dedup space), as recorded in stateDir, or "".
// A destination whose newest complete snapshot is older than that lost
// snapshots since: deleted, or its manifest removed or refused (a
// rollback by deletion, which would otherwise pass unnoticed).
func LastWritten(stateDir, host, dest string) string {
	last := ""
	for _, id := range lastRecordIDs(stateDir, host, dest) {
		last = max(last, id)
	}
	return last
}

// lastRecordIDs returns the snapshot ids the known-objects logs' .last
// files of host's destination dest name in stateDir (one a dedup space),
// in no order; unreadable files and invalid ids are left out.
func lastRecordIDs(stateDir, host, dest string) []string {
	sum := sha256.Sum256([]byte(host + "\x00" + dest))
	files, _ := filepath.Glob(filepath.Join(stateDir, KnownDir, hex.EncodeToString(sum[:8])+"-*.log.last"))
	var ids []string
	for _, f := range files {
		b, ok := readLastRecord(f)
		if !ok {
			continue
		}
		if id, _, _ := strings.Cut(strings.TrimSpace(b), " "); ValidSnapshotID(id) {
			ids = append(ids, id)
		}
	}
	return ids
}

// Written is what a snapshot just written holds, for the per-part record
// (PartsWritten).
type Written struct {
	// Tagger tags the parts (the run's signing key).
	Tagger *PartTagger
	// Parts are the parts the snapshot holds.
	Parts []Part
	// Clean is a run of every configured part (not --only) in which none
	// failed: the manifest's !Only && FailedParts == 0.
	Clean bool
}

// PartWritten is one entry of a destination's per-part record: the newest
// snapshot this host wrote there holding a part.
type PartWritten struct {
	// Tag is the part's keyed tag, as in the manifests (Listing.PartTags).
	Tag string
	// Snapshot is the id of the newest snapshot written holding it.
	Snapshot string
	// Part is the part's id ("files:stack"): state_dir is on the host.
	Part string
}

// partsPath is the per-part record of a destination in stateDir.
func partsPath(stateDir, host, dest string) string {
	sum := sha256.Sum256([]byte(host + "\x00" + dest))
	return filepath.Join(stateDir, KnownDir, hex.EncodeToString(sum[:8])+".parts")
}

// PartsWritten returns a destination's per-part record, sorted by part:
// for each part this host wrote there since (and including) its last
// clean run (Written.Clean), the newest snapshot holding it. A snapshot
// of a part that is older than the record's (or gone, or refused) while
// no newer clean run retires the part means the destination lost the
// part's newest snapshot: a per-part rollback that the newest snapshot
// alone does not show (an --only run, or a run in which that part
// failed, taken after the lost one). Empty when the host has no record
// (a fresh state_dir: a new host after a disaster).
func PartsWritten(stateDir, host, dest string) []PartWritten {
	m := readParts(partsPath(stateDir, host, dest))
	out := make([]PartWritten, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b PartWritten) int {
		if c := strings.Compare(a.Part, b.Part); c != 0 {
			return c
		}
		return strings.Compare(a.Tag, b.Tag)
	})
	return out
}

// readParts reads a per-part record (missing or unreadable: empty), one
// entry a line: tag, snapshot id, part id. Malformed lines are skipped.
func readParts(p string) map[string]PartWritten {
	out := map[string]PartWritten{}
	data, err := os.ReadFile(p)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.SplitN(line, " ", 3)
		if len(f) != 3 || !partTagRE.MatchString(f[0]) || !ValidSnapshotID(f[1]) {
			continue
		}
		if old, ok := out[f[0]]; ok && old.Snapshot > f[1] {
			continue
		}
		out[f[0]] = PartWritten{Tag: f[0], Snapshot: f[1], Part: f[2]}
	}
	return out
}

// writeParts replaces a per-part record (written to a temporary file,
// synced, renamed: a crash leaves the old record or the new one).
func writeParts(p string, m map[string]PartWritten) error {
	if len(m) == 0 {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("per-part record: %w", err)
		}
		return nil
	}
	lines := make([]string, 0, len(m))
	for _, e := range m {
		lines = append(lines, e.Tag+" "+e.Snapshot+" "+strings.ReplaceAll(e.Part, "\n", " ")+"\n")
	}
	slices.Sort(lines)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("per-part record: %w", err)
	}
	return writeFileAtomic(p, []byte(strings.Join(lines, "")), 0o600)
}

// recordParts adds snapshot id's parts to the destination's per-part
// record. A clean run starts the record afresh: a part it does not hold
// is retired (no longer on the server, or tagged anew under a new signing
// key), and retention no longer keeps its newest snapshot (docs/retention.md),
// so the record holds the parts of the last clean run and those written
// since. Any other run (--only, or one in which a part failed) merges.
// The snapshot runs of one host do not overlap (the snapshot job lock),
// and rotate edits it (ForgetPartsWritten) only under the objects
// lock held exclusively, which a snapshot holds shared.
func recordParts(stateDir, host, dest, id string, w Written) error {
	if w.Tagger == nil {
		return nil
	}
	p := partsPath(stateDir, host, dest)
	m := map[string]PartWritten{}
	if !w.Clean {
		m = readParts(p)
	}
	for _, part := range w.Parts {
		tag := w.Tagger.Tag(part.ID)
		m[tag] = PartWritten{Tag: tag, Snapshot: id, Part: part.ID}
	}
	return writeParts(p, m)
}

// ForgetPartsWritten drops from a destination's per-part record the
// entries of snapshots that rotate removes by policy (it never removes the
// newest snapshot of a live part: this only drops what a retired part or
// a stale record left), so that rotate's own removals never read as a
// rollback.
func ForgetPartsWritten(stateDir, host, dest string, ids ...string) error {
	p := partsPath(stateDir, host, dest)
	m := readParts(p)
	n := len(m)
	for tag, e := range m {
		if slices.Contains(ids, e.Snapshot) {
			delete(m, tag)
		}
	}
	if len(m) == n {
		return nil
	}
	return writeParts(p, m)
}
