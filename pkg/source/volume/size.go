package volume

import (
	"context"

	"github.com/firetech/fireops/pkg/source"
)

var _ source.Sizer = (*Source)(nil)

// Size is the archive's size as the walk of Fingerprint estimated it, for
// a progress display; 0 (unknown) on the api path, which has no walk.
func (s *Source) Size(context.Context) (int64, error) { return s.size, nil }
