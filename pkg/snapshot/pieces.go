package snapshot

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"filippo.io/age"
	"github.com/zeebo/blake3"

	"github.com/firetech/fireops/pkg/chunker"
)

// Piece sizes of format v2, chosen by measurement (make bench, churn:
// a 300 MiB volume-like tree with ~1% changing each night, against restic
// on the same data; docs/benchmarks.md): pieces average PieceAvg of
// plaintext, never less than PieceMin (but a part's last) nor more than
// PieceMax. Per night fireops added a median 4.90x what restic added at
// 1 MiB, 3.26x at 512 KiB and 1.84x at 256 KiB (target 2.5x); stored after
// 7 nights 1.11x, 1.05x and 1.03x. The price of small pieces is objects:
// about 4 million per TiB of distinct data at 256 KiB (each one upload
// and one listing entry on Yandex Disk), and a known-objects log of 72
// bytes an object on the backup host.
const (
	PieceAvg = 256 << 10
	PieceMin = PieceAvg / 4
	PieceMax = PieceAvg * 4
)

// PieceParams returns the chunker parameters for a run whose chunk_size
// is maxPiece: pieces never exceed it (config chunk_size; the default 32
// MiB does not bind) and the average shrinks with it.
func PieceParams(maxPiece int) chunker.Params {
	p := chunker.Params{Min: PieceMin, Avg: PieceAvg, Max: PieceMax}
	for p.Max > maxPiece && p.Avg > 4096 {
		p.Avg /= 2
		p.Min, p.Max = p.Avg/4, p.Avg*4
	}
	return p
}

// Dedup is the secret material of one deduplication space: equal pieces
// encrypted to the same recipients and signed by the same key are stored
// once. It is derived from the signing key (no new key file) and the
// sorted recipient set, so that changing keys.recipients starts a new
// space: an object is encrypted to the recipients of the run that uploaded
// it, and must never be referenced by a snapshot whose identity cannot
// decrypt it. A new signing key starts a new space too.
type Dedup struct {
	// Space names the space in state files and logs: a hash of the id
	// key, which says nothing about it.
	Space string
	idKey []byte
	chunk *chunker.Chunker
}

// NewDedup derives the dedup keys of a signing key and a recipient set,
// and the chunker for pieces of at most maxPiece bytes.
func NewDedup(signer ed25519.PrivateKey, recipients []string, maxPiece int) (*Dedup, error) {
	if signer == nil {
		return nil, fmt.Errorf("no signing key: the dedup keys are derived from it")
	}
	rs := recipientSet(recipients)
	seed := signer.Seed()
	idKey, err := hkdf.Key(sha256.New, seed, []byte("fireops dedup v2"), "piece ids\x00"+strings.Join(rs, "\n"), 32)
	if err != nil {
		return nil, fmt.Errorf("derive piece id key: %w", err)
	}
	// The cuts depend on the signing key only: they are the same for any
	// recipients, which costs nothing and keeps the chunker's work
	// comparable across a recipient change.
	ckey, err := hkdf.Key(sha256.New, seed, []byte("fireops dedup v2"), "chunker", 32)
	if err != nil {
		return nil, fmt.Errorf("derive chunker key: %w", err)
	}
	c, err := chunker.New(ckey, PieceParams(maxPiece))
	if err != nil {
		return nil, err
	}
	space := sha256.Sum256(append([]byte("fireops dedup space\x00"), idKey...))
	return &Dedup{Space: hex.EncodeToString(space[:8]), idKey: idKey, chunk: c}, nil
}

// pieceIDKey derives only the id key (what a reader needs to check ids).
func pieceIDKey(signer ed25519.PrivateKey, recipients []string) ([]byte, error) {
	d, err := NewDedup(signer, recipients, PieceMax)
	if err != nil {
		return nil, err
	}
	return d.idKey, nil
}

// Chunker returns the space's content-defined chunker.
func (d *Dedup) Chunker() *chunker.Chunker { return d.chunk }

// PieceID returns the object id of a plaintext piece: keyed BLAKE3-256.
func (d *Dedup) PieceID(plain []byte) [32]byte { return keyedID(d.idKey, plain) }

func keyedID(key, plain []byte) [32]byte {
	h, err := blake3.NewKeyed(key)
	if err != nil {
		panic(err) // the key is always 32 bytes
	}
	h.Write(plain)
	var id [32]byte
	h.Sum(id[:0])
	return id
}

// recipientSet is a recipient list in the one order the dedup key and
// the known-objects rebuild compare: sorted, without repeats.
func recipientSet(rs []string) []string {
	out := slices.Clone(rs)
	slices.Sort(out)
	return slices.Compact(out)
}

// recipientStrings returns the recipients' age1... forms.
func recipientStrings(rs []*age.X25519Recipient) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

// CheckPieceIDs makes every later read of this (v2) manifest's pieces
// also check each piece's keyed id against its decrypted plaintext. It
// needs the signing key the snapshot's pieces were keyed with (the site's
// signing_key_file); a restore host that has only the public key relies on
// the stored SHA-256s bound by the signature and on age's authentication.
func (m *Manifest) CheckPieceIDs(signer ed25519.PrivateKey) error {
	if m.Version != FormatVersion || signer == nil {
		return nil
	}
	k, err := pieceIDKey(signer, m.Recipients)
	if err != nil {
		return err
	}
	m.idKey = k
	return nil
}

// PieceList is a v2 piece list: the ordered pieces of one part. It is
// stored in plaintext (it holds ids, sizes and hashes, no names), so that
// the backup host, which cannot decrypt, can check and sweep every object
// a snapshot references.
type PieceList struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// Size is the part's plaintext size: the sum of the pieces' sizes.
	Size   int64   `json:"size"`
	Pieces []Piece `json:"pieces"`
}

// PieceListFormat identifies a piece list.
const PieceListFormat = "fireops-pieces"

// Piece is one piece in a list: its object id, plaintext size, stored
// size and SHA-256 of the stored bytes. A list holds it as a JSON array
// [id, size, stored, sha256] to stay short (encodeList writes it).
type Piece struct {
	ID     string
	Size   int64
	Stored int64
	SHA256 string
}

// UnmarshalJSON decodes [id, size, stored, sha256].
func (p *Piece) UnmarshalJSON(b []byte) error {
	var a []json.RawMessage
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	if len(a) != 4 {
		return fmt.Errorf("piece has %d fields, want 4", len(a))
	}
	for i, dst := range []any{&p.ID, &p.Size, &p.Stored, &p.SHA256} {
		if err := json.Unmarshal(a[i], dst); err != nil {
			return fmt.Errorf("piece field %d: %w", i, err)
		}
	}
	return nil
}

// encodeList returns the stored bytes of a part's piece list and its Ref
// (id = SHA-256 of those bytes: a list holds nothing secret, so a plain
// hash names it). About 150 bytes a piece, one piece a line.
func encodeList(size int64, pieces []pieceRec) ([]byte, Ref) {
	buf := make([]byte, 0, 64+len(pieces)*152)
	buf = append(buf, `{"format":"`+PieceListFormat+`","version":2,"size":`...)
	buf = strconv.AppendInt(buf, size, 10)
	buf = append(buf, `,"pieces":[`...)
	for i, p := range pieces {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, "\n[\""...)
		buf = hex.AppendEncode(buf, p.id[:])
		buf = append(buf, `",`...)
		buf = strconv.AppendUint(buf, uint64(p.size), 10)
		buf = append(buf, ',')
		buf = strconv.AppendUint(buf, uint64(p.stored), 10)
		buf = append(buf, `,"`...)
		buf = hex.AppendEncode(buf, p.sha[:])
		buf = append(buf, `"]`...)
	}
	buf = append(buf, "\n]}\n"...)
	sum := sha256.Sum256(buf)
	id := hex.EncodeToString(sum[:])
	return buf, Ref{ID: id, Size: int64(len(buf)), SHA256: id}
}

// decodeList parses and checks a list's bytes (already checked against
// its Ref).
func decodeList(data []byte) (*PieceList, error) {
	var l PieceList
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("decode piece list: %w", err)
	}
	if l.Format != PieceListFormat || l.Version != FormatVersion {
		return nil, fmt.Errorf("piece list format %q version %d, want %q %d", l.Format, l.Version, PieceListFormat, FormatVersion)
	}
	var sum int64
	for i, p := range l.Pieces {
		if !ValidPieceID(p.ID) || !ValidPieceID(p.SHA256) || p.Size <= 0 || p.Size > maxPieceRead || p.Stored <= 0 || p.Stored > maxStored(maxPieceRead) {
			return nil, fmt.Errorf("piece list: piece %d is malformed", i)
		}
		sum += p.Size
	}
	if sum != l.Size {
		return nil, fmt.Errorf("piece list: pieces add up to %d bytes, not %d", sum, l.Size)
	}
	return &l, nil
}

// maxPieceRead bounds a piece a reader accepts: the largest chunk_size.
const maxPieceRead = 1 << 30

// maxStored is the largest stored size of a piece of n plaintext bytes:
// a raw zstd frame (3 bytes a 128 KiB block, 14 of header), age's 16 bytes
// a 64 KiB chunk and its header (a stanza per recipient, bounded here).
func maxStored(n int64) int64 { return n + n/4096 + 64<<10 }

// Raw zstd frames: a piece that does not compress is stored as a zstd
// frame of raw blocks, so that every piece reads the same way (`age -d |
// zstd -d`) without spending zstd's work on it.
const rawBlock = 128 << 10

// writeRawFrame writes to w a zstd frame holding p in raw blocks (RFC
// 8878: magic, a header with a 4-byte content size and a 128 KiB window,
// then blocks with 3-byte headers of type Raw; no checksum), p's bytes
// passed on as they are.
func writeRawFrame(w io.Writer, p []byte) error {
	hdr := []byte{0x28, 0xB5, 0x2F, 0xFD,
		// Frame header descriptor: Frame_Content_Size_flag 2 (4 bytes), not
		// single segment, no checksum, no dictionary; window 2^17.
		0x80, (17 - 10) << 3}
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(len(p)))
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	for first := true; first || len(p) > 0; first = false {
		n := min(len(p), rawBlock)
		h := uint32(n) << 3 // Block_Type 0 (Raw)
		if n == len(p) {
			h |= 1 // Last_Block
		}
		if _, err := w.Write([]byte{byte(h), byte(h >> 8), byte(h >> 16)}); err != nil {
			return err
		}
		if _, err := w.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}
