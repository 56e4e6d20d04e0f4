package mongo

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math/bits"
)

// docSum is an order-independent digest of a set of raw documents: the
// sum, modulo 2^256, of the SHA-256 of each document's exact bytes (read
// as a big-endian number). A server returns a collection's documents in
// an order of its choosing, so a restore-test compares this sum of the
// restored documents with the one the dump recorded, and the test suite
// can compare collections without sorting them in memory. It detects any
// changed, missing or added document; it is a check of faithful storage,
// not a defence against forgery (the manifest's signature is).
type docSum struct {
	w [4]uint64 // w[0] most significant
	n int64
}

// add adds one raw document.
func (s *docSum) add(doc []byte) {
	h := sha256.Sum256(doc)
	var carry uint64
	for i := 3; i >= 0; i-- {
		s.w[i], carry = bits.Add64(s.w[i], binary.BigEndian.Uint64(h[i*8:]), carry)
	}
	s.n++
}

// String returns the sum in hex (64 digits).
func (s *docSum) String() string {
	var b [32]byte
	for i, w := range s.w {
		binary.BigEndian.PutUint64(b[i*8:], w)
	}
	return hex.EncodeToString(b[:])
}
