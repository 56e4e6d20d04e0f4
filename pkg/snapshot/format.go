// Package snapshot is the snapshot engine: it streams every part (a
// source's tar payload) through SHA-256, zstd and age into fixed-size
// chunks uploaded to every destination, writes the encrypted index, the
// signed manifest last, and reads all of it back for verify and restore.
//
// The on-disk format (version 1) is a contract documented in
// docs/format.md; a snapshot must stay restorable with rclone, age, zstd
// and tar alone.
package snapshot

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/firetech/fireops/pkg/source"
)

// FormatVersion is the version of the on-disk format this code writes.
const FormatVersion = 1

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

// maxManifestSize bounds what is read of a manifest or index: a manifest
// lists chunks, ~100 bytes each, so 64 MiB covers petabytes.
const maxManifestSize = 64 << 20

// Manifest is manifest.json: the plaintext, signed list of what a snapshot
// needs. It holds no names and no secrets.
type Manifest struct {
	Format     string    `json:"format"`
	Version    int       `json:"version"`
	Snapshot   string    `json:"snapshot"`
	Host       string    `json:"host"`
	Started    time.Time `json:"started"`
	Finished   time.Time `json:"finished"`
	ChunkSize  int64     `json:"chunk_size"`
	Recipients []string  `json:"recipients"`
	Signer     string    `json:"signer"`
	Index      Blob      `json:"index"`
	Objects    []Object  `json:"objects"`
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
}

// Part is one part in the index.
type Part struct {
	// ID is "kind:name".
	ID   string `json:"id"`
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Object is the object id holding the payload.
	Object string `json:"object"`
	// Size is the plaintext payload (tar) size.
	Size int64 `json:"size"`
	// SHA256 is the plaintext payload's hash (hex).
	SHA256 string `json:"sha256"`
	// Stored is the encrypted object's size.
	Stored int64 `json:"stored"`
	source.Stats
	// Reused says the object was uploaded by an earlier snapshot.
	Reused bool `json:"reused"`
}

// ChunkName is the file name of chunk n of an object: zero-padded so that
// `cat objects/<id>/*` concatenates in order.
func ChunkName(n int) string { return fmt.Sprintf("%06d", n) }

// ObjectPath is the folder of an object under the host root.
func ObjectPath(host, id string) string { return path.Join(host, ObjectsDir, id) }

// ChunkPath is the path of one chunk under the remote root.
func ChunkPath(host, id string, n int) string { return path.Join(ObjectPath(host, id), ChunkName(n)) }

// SnapshotPath is the folder of a snapshot under the remote root.
func SnapshotPath(host, id string) string { return path.Join(host, SnapshotsDir, id) }

var (
	snapshotIDRE = regexp.MustCompile(`^\d{8}T\d{6}Z-[0-9a-f]{6}$`)
	objectIDRE   = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// NewSnapshotID returns YYYYMMDDTHHMMSSZ-<6 hex> for t.
func NewSnapshotID(t time.Time) string {
	var b [3]byte
	rand.Read(b[:])
	return t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// ValidSnapshotID reports whether id has the snapshot id form.
func ValidSnapshotID(id string) bool { return snapshotIDRE.MatchString(id) }

// NewObjectID returns 128 random bits in hex.
func NewObjectID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

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
	if m.Version != FormatVersion {
		return fmt.Errorf("manifest format version %d is not supported (this fireops reads %d)", m.Version, FormatVersion)
	}
	if !ValidSnapshotID(m.Snapshot) {
		return fmt.Errorf("manifest has an invalid snapshot id %q", m.Snapshot)
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

// Size is the sum of the sizes of the snapshot's objects and index.
func (m *Manifest) Size() int64 {
	n := m.Index.Size
	for _, o := range m.Objects {
		n += o.Size
	}
	return n
}

// sortObjects orders objects by id, so a manifest reveals nothing of the
// order of parts.
func sortObjects(objs []Object) {
	slices.SortFunc(objs, func(a, b Object) int { return strings.Compare(a.ID, b.ID) })
}
