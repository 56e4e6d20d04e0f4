package tarsafe

import "io/fs"

// EndSize is the size of the end of a tar stream: two zero blocks.
const EndSize = 1024

// EntrySize estimates the bytes one entry of a tree takes in the archive
// a walker writes: its header block, and a regular file's contents padded
// to whole blocks. It leaves out what only the archive knows (PAX records
// of long names, holes not stored, hard links stored once): enough for a
// progress display's total, never for an allocation.
func EntrySize(fi fs.FileInfo) int64 {
	n := int64(512)
	if fi.Mode().IsRegular() {
		n += (fi.Size() + 511) &^ 511
	}
	return n
}
