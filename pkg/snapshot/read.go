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
	"os"
	"path"
	"slices"
	"sort"
	"time"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"

	"github.com/firetech/fireops/pkg/keys"
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
	// FailedParts counts the parts the run could not read whole (from the
	// manifest): the snapshot is partial, it holds the others. Failed
	// names them, when the caller could read the encrypted index.
	FailedParts int          `json:"failed_parts,omitempty"`
	Failed      []FailedPart `json:"failed,omitempty"`
	// PartTags are the manifest's keyed part tags (nil when it records
	// none), and Only says it was a snapshot --only run.
	PartTags []string `json:"part_tags,omitempty"`
	Only     bool     `json:"only,omitempty"`
	// Signer is the trusted key (ed25519:...) the manifest's signature
	// verified with: after a signing key change it tells which snapshots
	// still need the old key. Empty when unchecked or refused.
	Signer string `json:"signer,omitempty"`
}

// List returns the snapshot folders of host on a store, oldest first. A
// folder is complete only with a manifest whose signature verifies with
// one of the trusted keys (nil keys are ignored; with none, signatures are
// not checked and the listing says so in Problem).
func List(ctx context.Context, st Store, host string, trusted ...ed25519.PublicKey) ([]Listing, error) {
	trusted = trustedKeys(trusted)
	entries, err := st.List(ctx, path.Join(host, SnapshotsDir))
	if err != nil {
		return nil, destError(st.Name(), err, "list snapshots")
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
			return nil, destError(st.Name(), err, "list snapshot "+e.Name)
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
			l.Started = StartedTime(ctx, st, host, e.Name)
		}
		if hasManifest {
			m, signer, err := readSignedManifest(ctx, st, host, e.Name, trusted)
			if err != nil {
				l.Problem = err.Error()
			} else {
				l.Complete, l.Parts, l.Size, l.Started = true, m.PartCount(), m.Size(), m.Started
				l.FailedParts = m.FailedParts
				l.PartTags, l.Only = m.Parts, m.Only
				if signer != nil {
					l.Signer = keys.FormatPublicKey(signer)
				}
				if len(trusted) == 0 {
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

// ErrUntrustedSigner is wrapped (with ErrIntegrity) by the error of a
// manifest that names a signer outside the trusted keys and whose
// signature none of them verifies: after a signing key change, the old
// public key belongs in keys.signing_public_keys until the snapshots it
// signed are rotated away.
var ErrUntrustedSigner = errors.New("signed by a key that is not trusted")

// trustedKeys returns the keys of trusted that are set.
func trustedKeys(trusted []ed25519.PublicKey) []ed25519.PublicKey {
	var out []ed25519.PublicKey
	for _, k := range trusted {
		if len(k) > 0 {
			out = append(out, k)
		}
	}
	return out
}

// verifySignature returns the first trusted key that verifies sig over a
// manifest's exact bytes. When none does, the error names the trusted keys
// (short fingerprints) and says whether the manifest names a signer that
// is not among them (ErrUntrustedSigner: an old key left out of the
// config, or a stranger's) or one that is (the manifest or its signature
// was altered). The signer a manifest names is read before anything is
// trusted, only to say which it is.
func verifySignature(data, sig []byte, trusted []ed25519.PublicKey) (ed25519.PublicKey, error) {
	if len(sig) == ed25519.SignatureSize {
		for _, k := range trusted {
			// A key of another length is no key: it verifies nothing.
			if len(k) == ed25519.PublicKeySize && ed25519.Verify(k, data, sig) {
				return k, nil
			}
		}
	}
	var claim struct {
		Signer string `json:"signer"`
	}
	_ = json.Unmarshal(data, &claim)
	names := keys.Fingerprints(trusted)
	if signer, err := keys.ParsePublicKey(claim.Signer); err == nil && !slices.ContainsFunc(trusted, func(k ed25519.PublicKey) bool { return k.Equal(signer) }) {
		return nil, &untrustedSignerError{signer: signer, trusted: trusted}
	}
	return nil, fmt.Errorf("manifest signature verifies with none of the trusted keys (%s): the manifest or its signature was altered, or it was signed by a key not in keys.signing_public_keys", names)
}

// untrustedSignerError is a manifest that names a signer outside the
// trusted keys. It names the signer's whole public key, the line to add
// to keys.signing_public_keys if it is an earlier key of this site, and
// the trusted ones short (they are in the config already). It is an
// ErrUntrustedSigner and an ErrIntegrity (the manifest is not used), but
// its text does not call it damage: nothing need be wrong with the data.
type untrustedSignerError struct {
	signer  ed25519.PublicKey
	trusted []ed25519.PublicKey
}

func (e *untrustedSignerError) Error() string {
	return fmt.Sprintf("%v (signer %s); trusted: %s", ErrUntrustedSigner, keys.FormatPublicKey(e.signer), keys.Fingerprints(e.trusted))
}

// Unwrap makes errors.Is true for ErrUntrustedSigner and ErrIntegrity.
func (e *untrustedSignerError) Unwrap() []error { return []error{ErrUntrustedSigner, ErrIntegrity} }

// readManifest fetches and decodes a manifest, checking its signature
// against the trusted keys when there are any (nil keys are ignored).
func readManifest(ctx context.Context, st Store, host, id string, trusted ...ed25519.PublicKey) (*Manifest, error) {
	m, _, err := readSignedManifest(ctx, st, host, id, trustedKeys(trusted))
	return m, err
}

// readSignedManifest is readManifest, also returning the trusted key the
// signature verified with (nil when trusted is empty: nothing was checked).
func readSignedManifest(ctx context.Context, st Store, host, id string, trusted []ed25519.PublicKey) (*Manifest, ed25519.PublicKey, error) {
	dir := SnapshotPath(host, id)
	data, err := st.GetBytes(ctx, path.Join(dir, ManifestFile), maxManifestSize)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil, fmt.Errorf("snapshot %s on %s is incomplete (no manifest): %w", id, st.Name(), err)
		}
		if errors.Is(err, ErrTooLarge) {
			// Larger than any manifest: not the one the host signed.
			return nil, nil, integrityf("snapshot %s on %s: manifest is larger than %d bytes", id, st.Name(), maxManifestSize)
		}
		return nil, nil, fmt.Errorf("read manifest of %s on %s: %w", id, st.Name(), err)
	}
	var signer ed25519.PublicKey
	if len(trusted) > 0 {
		sig, err := st.GetBytes(ctx, path.Join(dir, SignatureFile), 1024)
		if err != nil {
			return nil, nil, integrityf("snapshot %s on %s: read signature: %v", id, st.Name(), err)
		}
		if signer, err = verifySignature(data, sig, trusted); err != nil {
			var untrusted *untrustedSignerError
			if errors.As(err, &untrusted) {
				return nil, nil, fmt.Errorf("snapshot %s on %s: %w", id, st.Name(), err)
			}
			return nil, nil, fmt.Errorf("%w: snapshot %s on %s: %w", ErrIntegrity, id, st.Name(), err)
		}
	}
	// Verified above when there are trusted keys (ParseManifest would
	// verify the signature a second time).
	m := new(Manifest)
	if err := json.Unmarshal(data, m); err != nil {
		return nil, nil, integrityf("snapshot %s on %s: decode manifest: %v", id, st.Name(), err)
	}
	if err := m.check(); err != nil {
		return nil, nil, integrityf("snapshot %s on %s: %v", id, st.Name(), err)
	}
	if m.Snapshot != id || m.Host != host {
		return nil, nil, integrityf("snapshot %s on %s: manifest is for %q/%s", id, st.Name(), m.Host, m.Snapshot)
	}
	return m, signer, nil
}

// Open fetches a snapshot's manifest and checks that its signature
// verifies with one of the trusted keys, which are required: a manifest
// is never used unsigned.
func Open(ctx context.Context, st Store, host, id string, trusted ...ed25519.PublicKey) (*Manifest, error) {
	m, _, err := OpenSigned(ctx, st, host, id, trusted...)
	return m, err
}

// OpenSigned is Open, also returning the trusted key the manifest's
// signature verified with. After a signing key change that key tells the
// snapshots of the old key (and the old dedup space) from the new ones.
func OpenSigned(ctx context.Context, st Store, host, id string, trusted ...ed25519.PublicKey) (*Manifest, ed25519.PublicKey, error) {
	trusted = trustedKeys(trusted)
	if len(trusted) == 0 {
		return nil, nil, errors.New("no trusted signing key: set keys.signing_public_keys or keys.signing_key_file")
	}
	return readSignedManifest(ctx, st, host, id, trusted)
}

// signedLimit is what GetBytes may read of an object whose size a signed
// manifest gives: that size (a longer object is then refused before it
// is downloaded whole), never more than maxManifestSize.
func signedLimit(size int64) int64 { return min(max(size, 0), maxManifestSize) }

// ReadIndex fetches index.age, checks it against the manifest, decrypts it
// with the identities and checks that every part's object is listed in the
// manifest. It reads no more of index.age than the manifest's size for it
// (and a byte to see that it is longer): a swapped index costs no download.
func ReadIndex(ctx context.Context, st Store, m *Manifest, ids []age.Identity) (*Index, error) {
	p := path.Join(SnapshotPath(m.Host, m.Snapshot), IndexFile)
	data, err := st.GetBytes(ctx, p, signedLimit(m.Index.Size))
	if err != nil {
		return nil, integrityf("%s on %s: %v", p, st.Name(), err)
	}
	sum := sha256.Sum256(data)
	if int64(len(data)) != m.Index.Size || hex.EncodeToString(sum[:]) != m.Index.SHA256 {
		return nil, integrityf("%s on %s: size or sha256 differs from the manifest", p, st.Name())
	}
	r, err := age.Decrypt(bytes.NewReader(data), ids...)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return nil, fmt.Errorf("decrypt %s: %w", p, ErrWrongIdentity)
		}
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
		if m.Version == FormatVersion {
			if _, ok := m.List(part.List); !ok {
				return nil, integrityf("index part %s: piece list %s is not in the manifest", part.ID, part.List)
			}
			continue
		}
		o, ok := m.Object(part.Object)
		if !ok || o.Size != part.Stored {
			return nil, integrityf("index part %s: object %s is not in the manifest as recorded", part.ID, part.Object)
		}
	}
	return &idx, nil
}

// CheckPresent checks that the index and every object of the manifest
// are on the store with the recorded sizes (verify quick): v1 chunks, v2
// piece lists (downloaded and checked: they name the pieces) and pieces.
// present, when not nil, is a listing of the store's v2 objects shared by
// the checks of several snapshots (see ListObjects).
func CheckPresent(ctx context.Context, st Store, m *Manifest, present *ObjectSet) error {
	dir := SnapshotPath(m.Host, m.Snapshot)
	files, err := st.List(ctx, dir)
	if err != nil {
		return destError(st.Name(), err, "list "+dir)
	}
	if !hasFile(files, IndexFile, m.Index.Size) {
		return integrityf("%s/%s on %s is missing or has the wrong size", dir, IndexFile, st.Name())
	}
	if m.Version == FormatVersion {
		if present == nil {
			if present, err = ListObjects(ctx, st, m.Host); err != nil {
				return err
			}
		}
		return forEachList(ctx, st, m, func(ref Ref, l *PieceList) error {
			_, err := missingPiece(st, ref, l, present)
			return err
		})
	}
	for _, o := range m.Objects {
		if err := checkChunks(ctx, st, m.Host, o); err != nil {
			return err
		}
	}
	return nil
}

// missingPiece returns the id of the first piece of l (the piece list ref
// on st) that present does not hold with its stored size, and an error
// naming it; "" and nil when present holds them all.
func missingPiece(st Store, ref Ref, l *PieceList, present *ObjectSet) (string, error) {
	for i, p := range l.Pieces {
		if !present.Has(p.ID, p.Stored) {
			return p.ID, integrityf("piece %d (%s) of piece list %s on %s is missing or has the wrong size (want %d bytes)", i, p.ID, ref.ID, st.Name(), p.Stored)
		}
	}
	return "", nil
}

// checkChunks checks that every chunk of the v1 object o of host is on st
// with its recorded size.
func checkChunks(ctx context.Context, st Store, host string, o Object) error {
	entries, err := st.List(ctx, ObjectPath(host, o.ID))
	if err != nil {
		return destError(st.Name(), err, "list object "+o.ID)
	}
	if i := missingChunk(entries, o); i >= 0 {
		return integrityf("object %s chunk %s on %s is missing or has the wrong size (want %d bytes)", o.ID, ChunkName(i), st.Name(), o.Chunks[i].Size)
	}
	return nil
}

// CheckPartPresent is CheckPresent for one part: its piece list and
// pieces (v2) or its object's chunks (v1) are on the store with the
// recorded sizes. A restore checks each part on its own, so that an
// object missing from one part never blocks another. present is as for
// CheckPresent. A missing piece is named as damaged (DamagedObjects).
func CheckPartPresent(ctx context.Context, st Store, m *Manifest, part Part, present *ObjectSet) error {
	if m.Version == FormatVersion {
		ref, ok := m.List(part.List)
		if !ok {
			return integrityf("part %s: piece list %s is not in the manifest", part.ID, part.List)
		}
		l, err := fetchList(ctx, st, m.Host, ref)
		if err != nil {
			return err
		}
		if present == nil {
			if present, err = ListObjects(ctx, st, m.Host); err != nil {
				return err
			}
		}
		if id, err := missingPiece(st, ref, l, present); err != nil {
			return damaged(id, err)
		}
		return nil
	}
	o, ok := m.Object(part.Object)
	if !ok {
		return integrityf("part %s: object %s is not in the manifest", part.ID, part.Object)
	}
	return checkChunks(ctx, st, m.Host, o)
}

// ListObjects lists every v2 object on a store, for CheckPresent over
// many snapshots.
func ListObjects(ctx context.Context, st Store, host string) (*ObjectSet, error) {
	return listObjects(ctx, st, host)
}

// forEachList downloads and checks each distinct piece list of a v2
// manifest and calls fn with it.
func forEachList(ctx context.Context, st Store, m *Manifest, fn func(Ref, *PieceList) error) error {
	seen := map[string]bool{}
	for _, ref := range m.Lists {
		if seen[ref.ID] {
			continue
		}
		seen[ref.ID] = true
		l, err := fetchList(ctx, st, m.Host, ref)
		if err != nil {
			return err
		}
		if err := fn(ref, l); err != nil {
			return err
		}
	}
	return nil
}

// CheckHashes downloads every object the manifest references and checks
// its size and SHA-256 against the signed manifest (v1 chunks) or the
// piece lists it binds (v2 pieces), without decrypting anything: the
// backup host, which has no identity, can run it (verify --level hashes).
// checked, when not nil, holds the objects already found intact by an
// earlier call and is filled in, so that pieces shared by many snapshots
// are downloaded once.
func CheckHashes(ctx context.Context, st Store, m *Manifest, checked map[string]bool) error {
	if checked == nil {
		checked = map[string]bool{}
	}
	if err := checkBlob(ctx, st, path.Join(SnapshotPath(m.Host, m.Snapshot), IndexFile), m.Index.Size, m.Index.SHA256); err != nil {
		return fmt.Errorf("%s of %s on %s: %w", IndexFile, m.Snapshot, st.Name(), err)
	}
	if m.Version == FormatVersion {
		// Every piece is checked, not only up to the first damaged one:
		// the damaged ones are all named (and forgotten by the caller, so
		// that the next snapshot uploads them again).
		var bad []error
		err := forEachList(ctx, st, m, func(ref Ref, l *PieceList) error {
			for i, p := range l.Pieces {
				key := p.ID + "/" + p.SHA256
				if checked[key] {
					continue
				}
				if err := checkBlob(ctx, st, PiecePath(m.Host, p.ID), p.Stored, p.SHA256); err != nil {
					err = fmt.Errorf("piece %d (%s) of piece list %s on %s: %w", i, p.ID, ref.ID, st.Name(), err)
					if !errors.Is(err, ErrIntegrity) {
						return err
					}
					bad = append(bad, damaged(p.ID, err))
					continue
				}
				checked[key] = true
			}
			return nil
		})
		if len(bad) > 0 {
			return errors.Join(append(bad, err)...)
		}
		return err
	}
	for _, o := range m.Objects {
		for i, c := range o.Chunks {
			key := o.ID + "/" + c.SHA256
			if checked[key] {
				continue
			}
			if err := checkBlob(ctx, st, ChunkPath(m.Host, o.ID, i), c.Size, c.SHA256); err != nil {
				return fmt.Errorf("object %s chunk %s on %s: %w", o.ID, ChunkName(i), st.Name(), err)
			}
			checked[key] = true
		}
	}
	return nil
}

// checkBlob downloads one stored file and checks its size and SHA-256;
// what it finds wrong with the data is an ErrIntegrity error, a failure
// to read it (the network) is not.
func checkBlob(ctx context.Context, st Store, p string, size int64, sum string) error {
	h := sha256.New()
	got, err := downloadInto(ctx, st, p, size, h)
	switch {
	case errors.Is(err, ErrNotFound):
		return integrityf("missing")
	case err != nil:
		return err
	case got != size:
		return integrityf("truncated: %d of %d bytes", got, size)
	case hex.EncodeToString(h.Sum(nil)) != sum:
		return integrityf("sha256 differs (altered or swapped)")
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

// chunkSpoolLimit is the largest v1 chunk held in memory while it is
// checked; a larger one (chunk_size up to 1 GiB) is spooled to a private,
// unlinked temp file. Either holds ciphertext only. A variable for tests.
var chunkSpoolLimit int64 = 64 << 20

// chunkReader streams a v1 object's chunks in order. Each chunk is
// downloaded whole and its size and SHA-256 checked against the signed
// manifest before any of its bytes are passed on: nothing unverified
// reaches the decryption, let alone a restorer.
type chunkReader struct {
	ctx  context.Context
	st   Store
	host string
	obj  Object
	n    int
	cur  io.Reader // the verified chunk being passed on
	file *os.File  // its spool file, when it did not fit in memory
	buf  []byte
	err  error // the error Read returned, returned again ever after
}

// chunkResumes is how often one chunk's download is started again after
// it broke off (a connection reset half way through a chunk on Yandex
// Disk must not fail a restore of many GiB).
const chunkResumes = 3

// Read reads the object's verified bytes. An error is final.
func (r *chunkReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	for {
		if r.cur != nil {
			n, err := r.cur.Read(p)
			if errors.Is(err, io.EOF) {
				r.dropSpool()
				r.cur = nil
				r.n++
				if n == 0 {
					continue
				}
				err = nil
			}
			if err != nil {
				r.err = err
			}
			return n, err
		}
		if r.n >= len(r.obj.Chunks) {
			return 0, io.EOF
		}
		if err := r.fetch(); err != nil {
			r.err = err
			return 0, err
		}
	}
}

// fetch downloads chunk r.n whole and checks it.
func (r *chunkReader) fetch() error {
	want := r.obj.Chunks[r.n]
	p := ChunkPath(r.host, r.obj.ID, r.n)
	var w io.Writer
	if want.Size <= chunkSpoolLimit {
		if int64(cap(r.buf)) < want.Size+1 {
			r.buf = make([]byte, 0, want.Size+1)
		}
		bw := bytes.NewBuffer(r.buf[:0])
		w = bw
		defer func() { r.buf = bw.Bytes() }()
	} else {
		f, err := os.CreateTemp("", ".fireops-chunk-*")
		if err != nil {
			return fmt.Errorf("spool object %s chunk %s: %w", r.obj.ID, ChunkName(r.n), err)
		}
		os.Remove(f.Name()) // private (0600) and gone when closed
		r.file, w = f, f
	}
	h := sha256.New()
	got, err := downloadInto(r.ctx, r.st, p, want.Size, io.MultiWriter(w, h))
	if err != nil {
		r.dropSpool()
		if errors.Is(err, ErrIntegrity) || errors.Is(err, ErrNotFound) {
			return integrityf("object %s chunk %s on %s: %v", r.obj.ID, ChunkName(r.n), r.st.Name(), err)
		}
		return fmt.Errorf("read object %s chunk %s on %s: %w", r.obj.ID, ChunkName(r.n), r.st.Name(), err)
	}
	if got != want.Size {
		r.dropSpool()
		return integrityf("object %s chunk %s on %s is truncated: %d of %d bytes", r.obj.ID, ChunkName(r.n), r.st.Name(), got, want.Size)
	}
	if hex.EncodeToString(h.Sum(nil)) != want.SHA256 {
		r.dropSpool()
		return integrityf("object %s chunk %s on %s: sha256 differs from the manifest (altered or swapped chunk)", r.obj.ID, ChunkName(r.n), r.st.Name())
	}
	if r.file != nil {
		if _, err := r.file.Seek(0, io.SeekStart); err != nil {
			r.dropSpool()
			return fmt.Errorf("spool object %s: %w", r.obj.ID, err)
		}
		r.cur = r.file
	} else {
		r.cur = bytes.NewReader(w.(*bytes.Buffer).Bytes())
	}
	return nil
}

func (r *chunkReader) dropSpool() {
	if r.file != nil {
		r.file.Close()
		r.file = nil
	}
}

// downloadInto copies the stored file at p into w, reading at most max+1
// bytes (a longer file is an integrity error) and resuming a download that
// broke off where it stopped (chunkResumes times).
func downloadInto(ctx context.Context, st Store, p string, max int64, w io.Writer) (int64, error) {
	var got int64
	for attempt := 0; ; attempt++ {
		rc, err := st.Get(ctx, p)
		if err != nil {
			return got, err
		}
		if got > 0 {
			if _, err := io.CopyN(io.Discard, rc, got); err != nil {
				rc.Close()
				if attempt < chunkResumes && ctx.Err() == nil {
					continue
				}
				return got, err
			}
		}
		n, err := io.Copy(w, io.LimitReader(rc, max+1-got))
		rc.Close()
		got += n
		if got > max {
			return got, integrityf("%s is longer than the manifest says (%d bytes)", p, max)
		}
		if err == nil {
			return got, nil
		}
		if attempt >= chunkResumes || ctx.Err() != nil {
			return got, err
		}
	}
}

func (r *chunkReader) Close() error {
	r.dropSpool()
	return nil
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
	part Part
	// v1: the chunks, decrypted ahead, then decompressed and hashed.
	pf     *prefetcher
	chunks *chunkReader
	zr     *zstd.Decoder
	h      hash.Hash
	// v2: the verified plaintext pieces, in order.
	pieces *pieceReader
	n      int64
	done   bool
	err    error // the first error Read returned (always an ErrIntegrity)
	// task counts the bytes read for a progress display (nil: none).
	task *Task
}

// OpenPart streams a part's plaintext payload, releasing only verified
// bytes. v2: each piece is downloaded whole, its size and SHA-256 checked
// against the piece list the signed manifest binds, then decrypted with
// ids, decompressed, and its size (and, after CheckPieceIDs, its keyed id)
// checked before any byte is passed on. v1: each chunk is checked whole
// before decryption, and the payload's size and SHA-256 against the index
// at the end (Read returns an ErrIntegrity error instead of io.EOF when
// they differ). No read goes past the part's recorded size. With a
// Progress in ctx (WithProgress), the read is a task of it.
func OpenPart(ctx context.Context, st Store, m *Manifest, part Part, ids []age.Identity) (*PartReader, error) {
	r, err := openPart(ctx, st, m, part, ids)
	if err == nil {
		r.task = progressFrom(ctx).Start(part.ID, st.Name(), Bytes, part.Size)
	}
	return r, err
}

func openPart(ctx context.Context, st Store, m *Manifest, part Part, ids []age.Identity) (*PartReader, error) {
	if m.Version == FormatVersion {
		ref, ok := m.List(part.List)
		if !ok {
			return nil, integrityf("part %s: piece list %s is not in the manifest", part.ID, part.List)
		}
		l, err := fetchList(ctx, st, m.Host, ref)
		if err != nil {
			return nil, err
		}
		if l.Size != part.Size {
			return nil, integrityf("part %s: piece list %s holds %d bytes, the index records %d", part.ID, ref.ID, l.Size, part.Size)
		}
		return &PartReader{part: part, pieces: newPieceReader(ctx, st, m, part, l, ids)}, nil
	}
	obj, ok := m.Object(part.Object)
	if !ok {
		return nil, integrityf("part %s: object %s is not in the manifest", part.ID, part.Object)
	}
	cr := &chunkReader{ctx: ctx, st: st, host: m.Host, obj: obj}
	// Download, chunk checks and decryption run ahead in their own
	// goroutine; decompression, the payload hash and the consumer (tar
	// extraction) in the others. age.Decrypt reads the header, so the
	// first chunk is fetched and checked here.
	ar, err := age.Decrypt(cr, ids...)
	if err != nil {
		cr.Close()
		if errors.Is(err, ErrIntegrity) {
			return nil, err
		}
		return nil, decryptError(part.ID, obj.ID, err)
	}
	pf := newPrefetcher(ar)
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

// ErrWrongIdentity is wrapped by the error of a read whose verified
// ciphertext the identities cannot decrypt: the data is intact, the key
// is wrong (a usage error, never reported as damage).
var ErrWrongIdentity = errors.New("the identity matches none of the snapshot's recipients")

// decryptError explains a decryption failure of bytes that were checked
// against the signed manifest: no identity matched, or the object was
// encrypted wrongly when it was written (reported as damage).
func decryptError(part, obj string, err error) error {
	var nm *age.NoIdentityMatchError
	if errors.As(err, &nm) {
		return fmt.Errorf("part %s: decrypt %s: %w", part, obj, ErrWrongIdentity)
	}
	return integrityf("part %s: decrypt %s: %v", part, obj, err)
}

// Read reads plaintext payload bytes.
func (r *PartReader) Read(p []byte) (int, error) {
	n, err := r.read(p)
	if r.task != nil {
		r.task.Add(int64(n))
		if r.done && r.err == nil {
			r.task.Finish(TaskDone)
		}
	}
	return n, err
}

func (r *PartReader) read(p []byte) (int, error) {
	if r.done {
		return 0, io.EOF
	}
	if r.err != nil {
		return 0, r.err
	}
	if r.pieces != nil {
		n, err := r.pieces.Read(p)
		r.n += int64(n)
		if errors.Is(err, io.EOF) {
			r.done = true
			return n, io.EOF
		}
		if err != nil {
			r.err = err
		}
		return n, err
	}
	if rest := r.part.Size - r.n; int64(len(p)) > rest {
		// Never pass on more than the index records: one byte more is
		// read to find out whether there is more.
		p = p[:rest+1]
	}
	n, err := r.zr.Read(p)
	if r.n+int64(n) > r.part.Size {
		r.err = integrityf("part %s (object %s): payload is longer than the index records (%d bytes)", r.part.ID, r.part.Object, r.part.Size)
		return 0, r.err
	}
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
	if err != nil && !errors.Is(err, ErrIntegrity) && !errors.Is(err, ErrWrongIdentity) {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			err = decryptError(r.part.ID, r.part.Object, err)
		} else {
			err = integrityf("part %s (object %s): %v", r.part.ID, r.part.Object, err)
		}
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

// Close releases the decoder and the open chunk or pieces.
func (r *PartReader) Close() error {
	r.task.Finish(TaskFailed) // unless it was read to its verified end
	if r.pieces != nil {
		r.pieces.close()
		return nil
	}
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
