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
	k := &Known{path: p, objs: map[uint64]uint32{}, overflow: map[[32]byte]uint32{}}
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
	if b, err := os.ReadFile(p + ".last"); err == nil {
		k.last = string(b)
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
	if err != nil || rid != id {
		return knownObject{}, false
	}
	return o, true
}

// add records an uploaded object: appended to the log (flushed at once: a
// kill loses nothing the kernel has) and indexed.
func (k *Known) add(id [32]byte, o knownObject) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.present != nil {
		k.present.add(id, o.stored)
	}
	var rec [knownRecord]byte
	copy(rec[:32], id[:])
	binary.LittleEndian.PutUint64(rec[32:40], uint64(o.stored))
	copy(rec[40:], o.sha[:])
	if _, err := k.w.Write(rec[:]); err != nil {
		return fmt.Errorf("known objects: %w", err)
	}
	if err := k.w.Flush(); err != nil {
		return fmt.Errorf("known objects: %w", err)
	}
	k.index(id)
	return nil
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

// setLast records the newest snapshot written in this space.
func (k *Known) setLast(id string) error {
	k.last = id
	return writeFileAtomic(k.path+".last", []byte(id), 0o600)
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
}

// ambiguous marks a prefix shared by objects of different sizes.
const ambiguous = ^uint32(0)

func newObjectSet() *ObjectSet { return &ObjectSet{m: map[uint64]uint32{}} }

func (s *ObjectSet) add(id [32]byte, size int64) {
	p := prefix(id)
	v := uint32(min(size, int64(ambiguous-1)))
	if old, ok := s.m[p]; ok && old != v {
		v = ambiguous
	}
	s.m[p] = v
}

func (s *ObjectSet) has(id [32]byte, size int64) bool {
	if s == nil {
		return false
	}
	v, ok := s.m[prefix(id)]
	return ok && v != ambiguous && int64(v) == size
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
		return nil, fmt.Errorf("destination %s: list objects: %w", st.Name(), err)
	}
	for _, d := range top {
		if !d.Dir || !prefixRE.MatchString(d.Name) {
			continue
		}
		es, err := st.List(ctx, path.Join(host, ObjectsDir, d.Name))
		if err != nil {
			return nil, fmt.Errorf("destination %s: list objects/%s: %w", st.Name(), d.Name, err)
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
	newer, err := snapshotsAfter(ctx, st, host, k.last)
	if err != nil {
		k.close()
		return nil, err
	}
	if !existed || len(newer) > 0 {
		n, err := k.rebuild(ctx, st, host, newer, trusted, recipients)
		if err != nil {
			k.close()
			return nil, err
		}
		if n > 0 || !existed {
			log.Info("known objects completed from the destination's piece lists", "destination", st.Name(), "objects", n, "snapshots", len(newer))
		}
	}
	return k, nil
}

// snapshotsAfter returns the ids of the snapshot folders that may be
// newer than last (all of them when last is empty): ids hold whole
// seconds, so every other one of last's second counts too.
func snapshotsAfter(ctx context.Context, st Store, host, last string) ([]string, error) {
	es, err := st.List(ctx, path.Join(host, SnapshotsDir))
	if err != nil {
		return nil, fmt.Errorf("destination %s: list snapshots: %w", st.Name(), err)
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
	want := sortedSet(recipients)
	var ms []*Manifest
	for _, id := range ids {
		m, err := readManifest(ctx, st, host, id, trusted)
		if err != nil || m.Version != FormatVersion || !slices.Equal(sortedSet(m.Recipients), want) {
			continue
		}
		ms = append(ms, m)
	}
	// Newest first by start time (ids of one second sort by chance).
	slices.SortFunc(ms, func(a, b *Manifest) int { return b.Started.Compare(a.Started) })
	n := 0
	seen := map[string]bool{}
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
				if _, ok := k.find(pid); ok {
					continue
				}
				if !k.present.has(pid, p.Stored) {
					continue
				}
				var o knownObject
				sha, _ := parseID(p.SHA256)
				o.stored, o.sha = p.Stored, sha
				if err := k.add(pid, o); err != nil {
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
	if err != nil {
		return nil, integrityf("piece list %s on %s: %v", ref.ID, st.Name(), err)
	}
	sum := sha256.Sum256(data)
	if int64(len(data)) != ref.Size || hex.EncodeToString(sum[:]) != ref.SHA256 {
		return nil, integrityf("piece list %s on %s: size or sha256 differs from the manifest", ref.ID, st.Name())
	}
	l, err := decodeList(data)
	if err != nil {
		return nil, integrityf("piece list %s on %s: %v", ref.ID, st.Name(), err)
	}
	return l, nil
}

func sortedSet(s []string) []string {
	m := map[string]bool{}
	for _, v := range s {
		m[v] = true
	}
	out := make([]string, 0, len(m))
	for v := range m {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}
