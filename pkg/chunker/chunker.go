// Package chunker cuts a byte stream into content-defined pieces: the cut
// points depend only on the bytes near them, so an insertion or a change
// moves the cuts around it and leaves the pieces before and after it
// unchanged, and equal runs of bytes are cut the same way wherever they
// appear. Snapshot format v2 stores each piece once (design.md §4).
//
// The algorithm is FastCDC (Xia et al., USENIX ATC 2016): a gear rolling
// hash, no cut before Min, a stricter condition before Avg and a looser one
// after it ("normalized chunking", level 2), a forced cut at Max. Its gear
// table is derived from a secret key, so that where the cuts fall (and so
// the piece sizes a storage provider sees) does not reveal which known
// files a stream holds, the reason borg and restic key their chunkers.
package chunker

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/bits"
)

// Params are the piece sizes: no piece is shorter than Min (but the last),
// none longer than Max, and pieces average about Avg. Avg must be a power
// of two.
type Params struct {
	Min, Avg, Max int
}

// Validate reports whether p can drive a Chunker.
func (p Params) Validate() error {
	switch {
	case p.Avg <= 0 || p.Avg&(p.Avg-1) != 0:
		return fmt.Errorf("chunker: average piece size %d is not a power of two", p.Avg)
	case p.Avg < 256:
		return fmt.Errorf("chunker: average piece size %d is below 256 bytes", p.Avg)
	case p.Min < 64 || p.Min > p.Avg:
		return fmt.Errorf("chunker: minimum piece size %d is not between 64 and the average %d", p.Min, p.Avg)
	case p.Max < p.Avg:
		return fmt.Errorf("chunker: maximum piece size %d is below the average %d", p.Max, p.Avg)
	}
	return nil
}

// Chunker holds the keyed gear table and the masks of one set of Params.
// It is immutable and safe for concurrent use; each stream keeps its own
// State.
type Chunker struct {
	p            Params
	gear         [256]uint64
	strict, easy uint64 // masks before and after Avg
}

// New returns a chunker whose gear table is derived from key (HKDF-SHA256,
// any length; the snapshot engine passes a key derived from the site's
// signing key).
func New(key []byte, p Params) (*Chunker, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	table, err := hkdf.Key(sha256.New, key, nil, "fireops chunker gear table v1", 256*8)
	if err != nil {
		return nil, fmt.Errorf("chunker: derive gear table: %w", err)
	}
	c := &Chunker{p: p}
	for i := range c.gear {
		c.gear[i] = binary.LittleEndian.Uint64(table[i*8:])
	}
	k := bits.TrailingZeros(uint(p.Avg))
	// A cut is where the hash's top n bits are all zero: probability 2^-n
	// per byte. Before Avg n = k+2, after it n = k-2 (normalized chunking
	// level 2), which keeps most pieces near Avg. The top bits depend on
	// the last 64 bytes, the gear hash's window.
	c.strict = topBits(k + 2)
	c.easy = topBits(max(k-2, 1))
	return c, nil
}

func topBits(n int) uint64 { return ^uint64(0) << (64 - n) }

// Params returns the chunker's piece sizes.
func (c *Chunker) Params() Params { return c.p }

// State is the position of one stream inside its current piece.
type State struct {
	c *Chunker
	n int    // bytes of the current piece seen so far
	h uint64 // gear hash
}

// NewState starts a stream at the beginning of a piece.
func (c *Chunker) NewState() *State { return &State{c: c} }

// Reset starts a new piece.
func (s *State) Reset() { s.n, s.h = 0, 0 }

// Scan looks for the end of the current piece in data, which continues
// the bytes given before. It returns how many bytes of data belong to the
// current piece and whether the piece ends after them; when it does, the
// state is reset for the next piece, which begins at data[n:].
func (s *State) Scan(data []byte) (n int, cut bool) {
	p := s.c.p
	i := 0
	// No cut is possible before Min: skip those bytes without hashing (the
	// hash only depends on the last 64 bytes, so start it 64 bytes early).
	if skip := p.Min - 64 - s.n; skip > 0 {
		if skip >= len(data) {
			s.n += len(data)
			return len(data), false
		}
		i = skip
		s.n += skip
	}
	h := s.h
	gear := &s.c.gear
	// Hash up to Min without testing, then test with the strict mask up to
	// Avg, then with the easy one up to Max.
	for ; i < len(data) && s.n < p.Min; i++ {
		h = h<<1 + gear[data[i]]
		s.n++
	}
	if s.n < p.Avg {
		end := min(len(data), i+p.Avg-s.n)
		mask := s.c.strict
		for j := i; j < end; j++ {
			h = h<<1 + gear[data[j]]
			if h&mask == 0 {
				s.n += j + 1 - i
				s.Reset()
				return j + 1, true
			}
		}
		s.n += end - i
		i = end
	}
	if s.n >= p.Avg {
		end := min(len(data), i+p.Max-s.n)
		mask := s.c.easy
		for j := i; j < end; j++ {
			h = h<<1 + gear[data[j]]
			if h&mask == 0 {
				s.Reset()
				return j + 1, true
			}
		}
		s.n += end - i
		i = end
		if s.n >= p.Max {
			s.Reset()
			return i, true
		}
	}
	s.h = h
	return i, false
}
