package files

import (
	"context"
	"io/fs"

	"github.com/firetech/fireops/pkg/source"
)

var _ source.Sizer = (*Source)(nil)

// tarEnd is the end of a tar stream: two zero blocks.
const tarEnd = 1024

// tarEntrySize estimates the bytes one entry takes in the archive: its
// header block, and a regular file's contents padded to whole blocks. It
// leaves out what only the archive knows (PAX records of long names,
// holes not stored, hard links stored once).
func tarEntrySize(fi fs.FileInfo) int64 {
	n := int64(512)
	if fi.Mode().IsRegular() {
		n += (fi.Size() + 511) &^ 511
	}
	return n
}

// Size estimates the size of the archive WriteTar writes, for a progress
// display: the walk of the last Fingerprint measured it; without one, a
// walk (metadata only) does now.
func (s *Source) Size(ctx context.Context) (int64, error) {
	if s.sized {
		return s.size, nil
	}
	var size int64
	if _, err := s.walk(ctx, func(e entry) error {
		size += tarEntrySize(e.fi)
		return nil
	}); err != nil {
		return 0, err
	}
	return size + tarEnd, nil
}
