package backup

import (
	"context"
	"fmt"
	"slices"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/snapshot"
	"github.com/firetech/fireops/pkg/source"
)

// kind is what the jobs need to know about one kind of part (files,
// sqlite, mongo, volume): how to build its sources from the config, where
// and how to restore it, and how to restore it into a scratch target for
// verify --level restore-test. Each kind lives in its own kind_*.go file;
// the kinds list fixes the order of parts in a snapshot.
type kind interface {
	// name is the kind as in part ids ("files" in "files:stack").
	name() string
	// sources returns the configured sources of this kind that only
	// selects (see wanted). A configured source this version cannot
	// read is an error, never a silent skip.
	sources(ctx context.Context, cfg *config.Config, only []string) ([]source.Source, error)
	// plan decides the target of a part being restored (n parts are
	// restored together) and refuses, before anything is downloaded, a
	// target that would be replaced without --force. The returned
	// description is shown in the plan.
	plan(ctx context.Context, cfg *config.Config, p snapshot.Part, o RestoreOptions, n int) (target string, err error)
	// restorer returns the staged restorer for a planned target.
	restorer(ctx context.Context, cfg *config.Config, p snapshot.Part, target string, o RestoreOptions) (source.Restorer, error)
	// scratch returns a restorer into a scratch target under dir (a
	// private temp folder removed afterwards) and a cleanup for anything
	// outside dir (a scratch database or volume); cleanup runs also when
	// the restore failed.
	scratch(ctx context.Context, cfg *config.Config, p snapshot.Part, dir string) (source.Restorer, func(), error)
}

// kinds lists every kind, in the order their parts are snapshotted.
//
// Volumes come before sqlite, so that restoring a whole snapshot puts a
// volume back before the database that lives in it (the volume part
// leaves that database out).
var kinds = []kind{filesKind{}, volumeKind{}, sqliteKind{}, mongoKind{}}

// kindOf returns the kind of a part.
func kindOf(p snapshot.Part) (kind, error) {
	for _, k := range kinds {
		if k.name() == p.Kind {
			return k, nil
		}
	}
	return nil, fmt.Errorf("part %s: %s parts are not supported by this version of fireops", p.ID, p.Kind)
}

// wanted reports whether a part id ("kind:name") is selected by only
// (ids or kinds); an empty selection selects everything.
func wanted(only []string, kind, name string) bool {
	return len(only) == 0 || slices.Contains(only, kind) || slices.Contains(only, kind+":"+name)
}

// Sources builds the configured sources, or those selected by only (part
// ids such as files:stack, or kinds such as sqlite).
func Sources(ctx context.Context, cfg *config.Config, only []string) ([]source.Source, error) {
	var out []source.Source
	for _, k := range kinds {
		srcs, err := k.sources(ctx, cfg, only)
		if err != nil {
			return nil, err
		}
		out = append(out, srcs...)
	}
	if len(out) == 0 {
		if len(only) > 0 {
			return nil, exitcode.Usagef("name a configured part: files:NAME, sqlite:NAME, volume:NAME, mongo:mongodb, or a kind", "--only %v matches no configured source", only)
		}
		return nil, exitcode.Usagef("add a source under sources: (docs/configuration.md)", "config %s has no sources", cfg.File)
	}
	return out, nil
}
