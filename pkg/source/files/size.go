package files

import (
	"context"

	"github.com/firetech/fireops/pkg/source"
	"github.com/firetech/fireops/pkg/tarsafe"
)

var _ source.Sizer = (*Source)(nil)

// Size estimates the size of the archive WriteTar writes, for a progress
// display: the walk of the last Fingerprint measured it; without one, a
// walk (metadata only) does now.
func (s *Source) Size(ctx context.Context) (int64, error) {
	if s.sized {
		return s.size, nil
	}
	var size int64
	if _, err := s.walk(ctx, func(e entry) error {
		size += tarsafe.EntrySize(e.Info)
		return nil
	}); err != nil {
		return 0, err
	}
	return size + tarsafe.EndSize, nil
}
