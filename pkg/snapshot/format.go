// Package snapshot is the snapshot engine and the owner of the on-disk
// format: it streams every part (a source's tar payload) through a keyed
// content-defined chunker into deduplicated pieces, each stored once per
// destination as age(zstd(piece)), writes per-part piece lists, the
// encrypted index and the signed manifest last, and reads all of it back
// for verify and restore, releasing only verified plaintext. It also knows
// what a manifest references, so rotate's sweep lives here.
//
// The format is a contract documented in docs/format.md: version 2 is
// written; version 1 (fixed chunks of one encrypted object per part) is
// read, verified, restored and swept for ever. A snapshot of either must
// stay restorable with rclone, age, zstd and tar alone.
package snapshot

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"time"

	"github.com/firetech/fireops/pkg/source"
)

// FormatVersion is the version of the on-disk format this code writes.
const FormatVersion = 2

// FormatV1 is the first release's format, still read.
const FormatV1 = 1

// FormatName identifies a fireops manifest.
const FormatName = "fireops-snapshot"

// File names inside a snapshot folder.
const (
	// StartedFile is written first, so that an interrupted snapshot shows
	// as incomplete; it holds only the start time.
	StartedFile   = "started"
	IndexFile     = "index.age"
	ManifestFile  = "manifest.json"
	SignatureFile = "manifest.sig"
)

// Folders under <remote>/<host>/.
const (
	ObjectsDir   = "objects"
	SnapshotsDir = "snapshots"
)

// maxManifestSize bounds what is read of a manifest or index: a v1
// manifest lists chunks, ~100 bytes each, so 64 MiB covers petabytes; a v2
// manifest lists one piece list per part.
const maxManifestSize = 64 << 20

// Manifest is manifest.json: the plaintext, signed list of what a snapshot
// needs. It holds no names and no secrets.
type Manifest struct {
	Format   string    `json:"format"`
	Version  int       `json:"version"`
	Snapshot string    `json:"snapshot"`
	Host     string    `json:"host"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// ChunkSize is v1's fixed chunk size.
	ChunkSize  int64    `json:"chunk_size,omitempty"`
	Recipients []string `json:"recipients"`
	Signer     string   `json:"signer"`
	Index      Blob     `json:"index"`
	// Objects are v1's per-part objects.
	Objects []Object `json:"objects,omitempty"`
	// Lists are v2's piece lists, one per part (sorted by id, so the
	// manifest does not tell the parts' order): each binds, by its size
	// and SHA-256, the ordered pieces of a part with their stored sizes
	// and SHA-256s, so every stored byte is bound to this signature.
	Lists []Ref `json:"lists,omitempty"`
	// Stored is the stored size of every object the snapshot references
	// (pieces counted once, lists included): what it would take to copy
	// it alone. Pieces is the number of distinct pieces.
	Stored int64 `json:"stored,omitempty"`
	Pieces int   `json:"pieces,omitempty"`
	// FailedParts is the number of configured parts the run could not
	// read whole (a partial snapshot): it holds the others. Which parts,
	// and why, is in the encrypted index (names stay out of the
	// manifest). Absent (0) in older manifests; readers that do not know
	// it see a snapshot of fewer parts, which it is.
	FailedParts int `json:"failed_parts,omitempty"`
	// Parts are the keyed tags of the parts the snapshot holds, sorted
	// (parttags.go): rotate counts its rules per part by them without
	// learning the parts' names. Absent in manifests written before.
	Parts []string `json:"parts,omitempty"`
	// Only is set on a snapshot of selected parts (snapshot --only): a
	// part it does not hold was not looked at, not found gone.
	Only bool `json:"only,omitempty"`

	// idKey, when set (CheckPieceIDs), makes the reader check each
	// piece's keyed id against its plaintext.
	idKey []byte
}

// Ref names one stored object of format v2 with its size and SHA-256
// (hex) as stored.
type Ref struct {
	ID     string `json:"id"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Blob is the size and SHA-256 (hex) of one stored file.
type Blob struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Object is one part's encrypted payload, cut into chunks named by their
// position (ChunkName).
type Object struct {
	ID     string `json:"id"`
	Size   int64  `json:"size"`
	Chunks []Blob `json:"chunks"`
}

// Index is the content of index.age: what each part is. It is encrypted
// because it holds names.
type Index struct {
	Version  int       `json:"version"`
	Snapshot string    `json:"snapshot"`
	Host     string    `json:"host"`
	Fireops  string    `json:"fireops"`
	Created  time.Time `json:"created"`
	Parts    []Part    `json:"parts"`
	// FailedParts are the configured parts the run could not read whole:
	// not in this snapshot (their pieces uploaded so far are referenced
	// by none of its lists).
	FailedParts []FailedPart `json:"failed_parts,omitempty"`
}

// FailedPart is a part a snapshot run could not read whole (its source
// failed: an unreadable file, a database that does not open): the run's
// snapshot holds the other parts and names this one.
type FailedPart struct {
	ID string `json:"id"`
	// Reason is the source's error on one line, credentials redacted.
	Reason string `json:"reason"`
}

// Part is one part in the index.
type Part struct {
	// ID is "kind:name".
	ID   string `json:"id"`
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Object is, in v1, the object id holding the payload.
	Object string `json:"object,omitempty"`
	// List is, in v2, the id of the part's piece list.
	List string `json:"list,omitempty"`
	// Size is the plaintext payload (tar) size.
	Size int64 `json:"size"`
	// SHA256 is, in v1, the plaintext payload's hash (hex). v2 binds every
	// piece instead (stored SHA-256 in the signed chain, keyed id of the
	// plaintext), which makes a whole-payload hash redundant.
	SHA256 string `json:"sha256,omitempty"`
	// Stored is the stored size of the part's object (v1) or of its
	// pieces (v2, each distinct piece counted once).
	Stored int64 `json:"stored"`
	// Pieces is, in v2, the number of pieces of the payload; Uploaded the
	// stored bytes of the pieces this snapshot uploaded (the rest were
	// already on the destination).
	Pieces   int   `json:"pieces,omitempty"`
	Uploaded int64 `json:"uploaded"`
	source.Stats
	// Reused says the part was not read at all: its source was unchanged
	// since an earlier snapshot (v1: its object; v2: its piece list).
	Reused bool `json:"reused"`
}

// ChunkName is the file name of chunk n of a v1 object: zero-padded so that
// `cat objects/<id>/*` concatenates in order.
func ChunkName(n int) string { return fmt.Sprintf("%06d", n) }

// ObjectPath is the folder of a v1 object under the remote root.
func ObjectPath(host, id string) string { return path.Join(host, ObjectsDir, id) }

// ChunkPath is the path of one chunk of a v1 object under the remote root.
func ChunkPath(host, id string, n int) string { return path.Join(ObjectPath(host, id), ChunkName(n)) }

// PiecePath is the path of a v2 object (a piece or a piece list) under the
// remote root: objects/<first 2 hex>/<id>, so no folder holds more than a
// 256th of the objects.
func PiecePath(host, id string) string { return path.Join(host, ObjectsDir, id[:2], id) }

// SnapshotPath is the folder of a snapshot under the remote root.
func SnapshotPath(host, id string) string { return path.Join(host, SnapshotsDir, id) }

var (
	snapshotIDRE = regexp.MustCompile(`^\d{8}T\d{6}Z-[0-9a-f]{6}$`)
	objectIDRE   = regexp.MustCompile(`^[0-9a-f]{32}$`)
	pieceIDRE    = regexp.MustCompile(`^[0-9a-f]{64}$`)
	prefixRE     = regexp.MustCompile(`^[0-9a-f]{2}$`)
)

// ValidObjectID reports whether name is a v1 object id (a folder of
// chunks under objects/).
func ValidObjectID(name string) bool { return objectIDRE.MatchString(name) }

// ValidPieceID reports whether name is a v2 object id (a piece or a piece
// list, under objects/<2 hex>/).
func ValidPieceID(name string) bool { return pieceIDRE.MatchString(name) }

// NewSnapshotID returns YYYYMMDDTHHMMSSZ-<6 hex> for t.
func NewSnapshotID(t time.Time) string {
	var b [3]byte
	rand.Read(b[:])
	return t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// ValidSnapshotID reports whether id has the snapshot id form.
func ValidSnapshotID(id string) bool { return snapshotIDRE.MatchString(id) }

// SnapshotTime returns the time encoded in a snapshot id.
func SnapshotTime(id string) (time.Time, error) {
	if !ValidSnapshotID(id) {
		return time.Time{}, fmt.Errorf("%q is not a snapshot id (YYYYMMDDTHHMMSSZ-xxxxxx)", id)
	}
	return time.Parse("20060102T150405Z", id[:16])
}

// Sign returns the Ed25519 signature of the manifest's exact bytes.
func Sign(key ed25519.PrivateKey, manifest []byte) []byte {
	return ed25519.Sign(key, manifest)
}

// ParseManifest checks the signature of data against the trusted key, then
// decodes and checks the manifest. Nothing in an unsigned manifest is used.
func ParseManifest(data, sig []byte, trusted ed25519.PublicKey) (*Manifest, error) {
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(trusted, data, sig) {
		return nil, fmt.Errorf("manifest signature does not verify with the trusted signing key: the snapshot was altered or signed by another key")
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return &m, nil
}

// check validates a decoded manifest's structure.
func (m *Manifest) check() error {
	if m.Format != FormatName {
		return fmt.Errorf("manifest format %q, want %q", m.Format, FormatName)
	}
	if m.Version != FormatV1 && m.Version != FormatVersion {
		return fmt.Errorf("manifest format version %d is not supported (this fireops reads %d and %d): use a newer fireops", m.Version, FormatV1, FormatVersion)
	}
	if !ValidSnapshotID(m.Snapshot) {
		return fmt.Errorf("manifest has an invalid snapshot id %q", m.Snapshot)
	}
	if m.FailedParts < 0 {
		return fmt.Errorf("manifest has a negative failed_parts (%d)", m.FailedParts)
	}
	if err := checkPartTags(m.Parts, m.PartCount()); err != nil {
		return err
	}
	if m.Version == FormatVersion {
		if len(m.Objects) > 0 {
			return fmt.Errorf("manifest of format 2 lists format 1 objects")
		}
		for _, l := range m.Lists {
			if !ValidPieceID(l.ID) || !ValidPieceID(l.SHA256) || l.Size <= 0 {
				return fmt.Errorf("manifest has an invalid piece list %q", l.ID)
			}
		}
		return nil
	}
	if len(m.Lists) > 0 {
		return fmt.Errorf("manifest of format 1 lists format 2 piece lists")
	}
	for _, o := range m.Objects {
		if !objectIDRE.MatchString(o.ID) {
			return fmt.Errorf("manifest has an invalid object id %q", o.ID)
		}
		var sum int64
		for _, c := range o.Chunks {
			sum += c.Size
		}
		if sum != o.Size {
			return fmt.Errorf("manifest: object %s: chunk sizes add up to %d, not %d", o.ID, sum, o.Size)
		}
	}
	return nil
}

// Object returns the manifest's object with the given id.
func (m *Manifest) Object(id string) (Object, bool) {
	for _, o := range m.Objects {
		if o.ID == id {
			return o, true
		}
	}
	return Object{}, false
}

// List returns the manifest's piece list with the given id (v2).
func (m *Manifest) List(id string) (Ref, bool) {
	for _, l := range m.Lists {
		if l.ID == id {
			return l, true
		}
	}
	return Ref{}, false
}

// PartCount is the number of parts the snapshot holds.
func (m *Manifest) PartCount() int {
	if m.Version == FormatV1 {
		return len(m.Objects)
	}
	return len(m.Lists)
}

// Size is the stored size of everything the snapshot needs: its index and
// objects (v1), or its index, piece lists and pieces (v2), shared pieces
// counted once.
func (m *Manifest) Size() int64 {
	n := m.Index.Size
	for _, o := range m.Objects {
		n += o.Size
	}
	return n + m.Stored
}
