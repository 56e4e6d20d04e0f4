package sqlite

import (
	"context"
	"fmt"
	"os"

	"github.com/firetech/fireops/pkg/source"
)

var _ source.Sizer = (*Source)(nil)

// Size estimates the archive's size for a progress display: the copy
// Fingerprint made (its one entry, header and end blocks), or without
// one the database file's size.
func (s *Source) Size(context.Context) (int64, error) {
	if s.prep != nil {
		return 512 + (s.prep.hdr.Size+511)&^511 + 1024 + 1024, nil // PAX header, header, contents, end
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		return 0, fmt.Errorf("sqlite:%s: %w", s.name, err)
	}
	return fi.Size(), nil
}
