package volume

import (
	"context"
	"io/fs"

	"github.com/firetech/fireops/pkg/source"
)

var _ source.Sizer = (*Source)(nil)

// tarEnd is the end of a tar stream: two zero blocks.
const tarEnd = 1024

// tarEntrySize estimates the bytes one entry takes in the archive: its
// header block, and a regular file's contents padded to whole blocks
// (not counted: PAX records of long names, holes not stored, hard links
// stored once).
func tarEntrySize(fi fs.FileInfo) int64 {
	n := int64(512)
	if fi.Mode().IsRegular() {
		n += (fi.Size() + 511) &^ 511
	}
	return n
}

// Size is the archive's size as the walk of Fingerprint estimated it, for
// a progress display; 0 (unknown) on the api path, which has no walk.
func (s *Source) Size(context.Context) (int64, error) { return s.size, nil }
