package partkind

import (
	"context"
	"log/slog"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/source/mongo"
	"github.com/firetech/fireops/pkg/source/sqlite"
	"github.com/firetech/fireops/pkg/source/volume"
)

// RemoveStateLeftovers removes what killed snapshots left in state_dir:
// the SQLite source's database copies (plaintext) and MongoDB's spool
// files (pkg/leftover keeps those of live runs). A snapshot does it at its
// start, whatever parts it takes, and so does rotate. A failure is only
// logged (to log when not nil).
func RemoveStateLeftovers(cfg *config.Config, log *slog.Logger) {
	if _, err := sqlite.CleanLeftovers(cfg.StateDir, log); err != nil && log != nil {
		log.Warn("leftover copies in state_dir not removed", "err", err)
	}
	if _, err := mongo.CleanLeftovers(cfg.StateDir, log); err != nil && log != nil {
		log.Warn("leftover spool files in state_dir not removed", "err", err)
	}
}

// RemoveStagingVolumes removes the staging volumes that killed restores
// of this host left (a user's files), when the config backs up volumes.
// A failure is only logged (to log when not nil): rotate goes on.
func RemoveStagingVolumes(ctx context.Context, cfg *config.Config, log *slog.Logger) {
	if cfg.Sources.Volumes == nil {
		return
	}
	if _, err := volume.CleanStaging(ctx, log); err != nil && log != nil {
		log.Warn("staging volumes that interrupted restores left were not looked for or not all removed", "err", err)
	}
}
