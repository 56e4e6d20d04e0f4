// Package fingerprint writes the metadata line of one file system entry
// that folder-like sources (files, volumes read from their mountpoint)
// hash into their cheap fingerprint: a part is reused only when every
// entry's line is unchanged, and no file content is read.
package fingerprint

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io/fs"
	"strconv"
	"syscall"
)

// AppendEntry appends the line of one entry to buf: its quoted name, mode,
// size, mtime and ctime in nanoseconds, owner ids, link count and quoted
// symlink target. ctime and the link count go beyond path, size, mtime,
// mode and owner: a file rewritten with its old mtime put back (cp -p,
// rsync -t) still changes ctime, and a wrongly reused part loses data
// while a needless upload only costs time.
func AppendEntry(buf []byte, name string, fi fs.FileInfo, link string) ([]byte, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return buf, fmt.Errorf("%s: no stat data", name)
	}
	buf = strconv.AppendQuote(buf, name)
	buf = fmt.Appendf(buf, " %o %d %d %d %d %d %d ", uint32(fi.Mode()), fi.Size(),
		st.Mtim.Nano(), st.Ctim.Nano(), st.Uid, st.Gid, st.Nlink)
	buf = strconv.AppendQuote(buf, link)
	return append(buf, '\n'), nil
}

// Tree hashes (SHA-256) the lines of a tree's entries, in archive order,
// after a head naming what else the fingerprint depends on (the version
// of its form, the configured paths and exclusions).
type Tree struct {
	h    hash.Hash
	line []byte
}

// NewTree starts the hash of a tree with head.
func NewTree(head string) *Tree {
	t := &Tree{h: sha256.New()}
	t.h.Write([]byte(head))
	return t
}

// Entry hashes the line of one entry ([AppendEntry]).
func (t *Tree) Entry(name string, fi fs.FileInfo, link string) error {
	var err error
	if t.line, err = AppendEntry(t.line[:0], name, fi, link); err != nil {
		return err
	}
	t.h.Write(t.line)
	return nil
}

// Write hashes p, a line the caller made (an entry hashed otherwise than
// by Entry). It never fails.
func (t *Tree) Write(p []byte) (int, error) { return t.h.Write(p) }

// Sum returns the hash of what was hashed, in hex.
func (t *Tree) Sum() string { return hex.EncodeToString(t.h.Sum(nil)) }
