// Package partkind knows each kind of part a snapshot holds (files,
// volume, sqlite, mongo): how the config's sources of that kind are built
// for a snapshot, where and how a part of it is restored (its target
// planned and refused before anything is downloaded, then a staged
// restorer), and how it is restored into a scratch target for verify
// --level restore-test. The jobs ask it through SourcesFor (pkg/backup's
// snapshot), Plan and Restorer (pkg/restore) and Scratch (pkg/backup's
// verify) and never look at a kind themselves.
package partkind

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/snapshot"
	"github.com/firetech/fireops/pkg/source"
)

// kind is what the jobs need to know about one kind of part (files,
// sqlite, mongo, volume): how to build its sources from the config, where
// and how to restore it, and how to restore it into a scratch target for
// verify --level restore-test. Each kind lives in its own file;
// the kinds list fixes the order of parts in a snapshot.
type kind interface {
	// name is the kind as in part ids ("files" in "files:stack").
	name() string
	// sources returns the configured sources of this kind that r.Only
	// selects (see wanted). A source that cannot be set up on this host
	// now (a missing file, the Docker Engine down) is a failedSetup
	// source, which fails its part only; an error stops the whole run
	// and is kept for the config's own errors. A configured source this
	// version cannot read is never a silent skip.
	sources(ctx context.Context, cfg *config.Config, r SourcesRequest) ([]source.Source, error)
	// plan decides the target of a part being restored and refuses,
	// before anything is downloaded, a target that would be replaced
	// without r.Force.
	plan(ctx context.Context, cfg *config.Config, r Request) (Target, error)
	// restorer returns the staged restorer for a planned target.
	restorer(ctx context.Context, cfg *config.Config, r Request, t Target) (source.Restorer, error)
	// scratch returns a restorer into a scratch target under r.Dir (a
	// private temp folder removed afterwards) and a cleanup for anything
	// outside it (a scratch database or volume); cleanup runs also when
	// the restore failed.
	scratch(ctx context.Context, cfg *config.Config, r ScratchRequest) (source.Restorer, func(), error)
}

// SourcesRequest is what a snapshot asks of the kinds' sources.
type SourcesRequest struct {
	// Only selects parts by id or kind (see wanted); empty selects all.
	Only []string
	// AfterDiscovery, when set (by tests), is called with the volumes
	// found, before their sources are read.
	AfterDiscovery func(names []string)
}

// Request is what a kind is asked to plan and restore: one part
// and the options of the restore that concern it.
type Request struct {
	// Part is the part restored.
	Part snapshot.Part
	// To is --to as given: a folder, a file (one sqlite part) or
	// volume:NAME (one volume part); "" puts the part back where it came
	// from.
	To string
	// N is the number of parts restored together (with several, --to DIR
	// holds one folder or file per part).
	N int
	// InPlace (restore --all) puts a files part back over the paths its
	// config source names.
	InPlace bool
	// Force replaces a target that has content.
	Force bool
	// DryRun: only the plan is made (it says what a real restore would
	// warn about when it starts).
	DryRun bool
	// Mongo are the mongo part's options.
	Mongo MongoRestoreOptions
	// Stopping are the containers restore --all --stop-stack stops: the
	// plan does not refuse a volume only they use.
	Stopping []string
	// Log receives what the kinds log (nil: nothing).
	Log *slog.Logger
}

// Target is where a planned part is restored: a path on this host,
// a Docker volume, a file inside a Docker volume, or, for what is neither
// (a MongoDB server's collections), only how the plan shows it.
type Target struct {
	// Path is a folder or file on this host.
	Path string
	// Volume is a Docker volume: the target, or with File the volume
	// holding the file (a database restored after its volume's part).
	Volume, File string
	// Shown, when set, is the target as the plan shows it.
	Shown string
}

// String is the target as the plan shows it: the path, "volume:NAME",
// "volume:NAME/FILE" or what Shown says.
func (t Target) String() string {
	switch {
	case t.Shown != "":
		return t.Shown
	case t.Volume != "" && t.File != "":
		return volumeTarget + t.Volume + "/" + t.File
	case t.Volume != "":
		return volumeTarget + t.Volume
	}
	return t.Path
}

// ScratchRequest is what a kind is asked to restore a part into a
// scratch target for verify --level restore-test.
type ScratchRequest struct {
	// Part is the part restored.
	Part snapshot.Part
	// Dir is a private temp folder, removed afterwards.
	Dir string
	// Snapshot is the id of the snapshot tested (it names a scratch
	// database or volume).
	Snapshot string
	// MongoURIFile is verify's --scratch-uri-file ("" means the
	// configured server).
	MongoURIFile string
	// Log receives what the kinds log (nil: nothing).
	Log *slog.Logger
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

// Plan asks the part's kind where r.Part is restored, refusing a target
// that would be replaced without r.Force.
func Plan(ctx context.Context, cfg *config.Config, r Request) (Target, error) {
	k, err := kindOf(r.Part)
	if err != nil {
		return Target{}, err
	}
	return k.plan(ctx, cfg, r)
}

// Restorer returns the staged restorer of r.Part for its planned target t.
func Restorer(ctx context.Context, cfg *config.Config, r Request, t Target) (source.Restorer, error) {
	k, err := kindOf(r.Part)
	if err != nil {
		return nil, err
	}
	return k.restorer(ctx, cfg, r, t)
}

// Scratch returns a restorer of r.Part into a scratch target under r.Dir
// and the cleanup of what lies outside it (see kind.scratch).
func Scratch(ctx context.Context, cfg *config.Config, r ScratchRequest) (source.Restorer, func(), error) {
	k, err := kindOf(r.Part)
	if err != nil {
		return nil, nil, err
	}
	return k.scratch(ctx, cfg, r)
}

// wanted reports whether a part id ("kind:name") is selected by only
// (ids or kinds; "kind:*" is the kind); an empty selection selects
// everything.
func wanted(only []string, kind, name string) bool {
	return len(only) == 0 || slices.Contains(only, kind) || slices.Contains(only, kind+":"+EveryOfKind) ||
		slices.Contains(only, kind+":"+name)
}

// EveryOfKind is the name of the failed pseudo-part that stands for every
// part of a kind whose parts could not even be listed ("volume:*" while
// the Docker Engine is down). It is only ever a failed part: no snapshot
// holds it, so retention counts nothing for it and restore has nothing of
// it to restore.
const EveryOfKind = "*"

// setupFailed is a configured part whose source could not be set up
// before anything was read: the MongoDB URI file missing (it exists only
// after `fireops deploy`) or unreadable, the Docker Engine down while the
// volumes are listed, an sqlite source's volume that does not exist. Its
// Fingerprint returns the cause, so the snapshot engine fails this part
// only (design.md §5): the other parts are snapshotted, the snapshot's
// index names this one with the cause, and the run exits 1 with the
// cause's hint. Config errors that `config check` catches at load never
// get here: they stop the run before anything starts.
type setupFailed struct {
	kind, name string
	err        error
}

// failedSetup returns the source of part kind:name whose set-up failed
// with err. The error keeps its hint and exits 1 (a usage code of the
// cause would make a run whose other parts failed too exit 2).
func failedSetup(kind, name string, err error) source.Source {
	return &setupFailed{kind: kind, name: name, err: exitcode.New(exitcode.Failure, err, exitcode.Hint(err))}
}

// Kind returns the part's kind.
func (s *setupFailed) Kind() string { return s.kind }

// Name returns the part's name.
func (s *setupFailed) Name() string { return s.name }

// Fingerprint returns the set-up error.
func (s *setupFailed) Fingerprint(context.Context) (string, error) { return "", s.err }

// WriteTar returns the set-up error (the engine never calls it after a
// failed Fingerprint).
func (s *setupFailed) WriteTar(context.Context, io.Writer) (source.Stats, error) {
	return source.Stats{}, s.err
}

// Sources builds the configured sources, or those selected by only (part
// ids such as files:stack, or kinds such as sqlite).
func Sources(ctx context.Context, cfg *config.Config, only []string) ([]source.Source, error) {
	return SourcesFor(ctx, cfg, SourcesRequest{Only: only})
}

// SourcesFor builds the sources r selects.
func SourcesFor(ctx context.Context, cfg *config.Config, r SourcesRequest) ([]source.Source, error) {
	only := r.Only
	var out []source.Source
	for _, k := range kinds {
		srcs, err := k.sources(ctx, cfg, r)
		if err != nil {
			return nil, err
		}
		out = append(out, srcs...)
	}
	if len(out) == 0 {
		if len(only) > 0 {
			return nil, onlyMatchesNothing(ctx, cfg, only)
		}
		return nil, exitcode.Usagef("add a source under sources: (docs/configuration.md)", "config %s has no sources", cfg.File)
	}
	return out, nil
}

// onlyMatchesNothing is the usage error for an --only selection that
// selects no part: it names the selection as typed and the configured
// part ids, so that the admin can pick one.
func onlyMatchesNothing(ctx context.Context, cfg *config.Config, only []string) error {
	var ids []string
	for _, k := range kinds {
		srcs, err := k.sources(ctx, cfg, SourcesRequest{})
		if err != nil {
			continue
		}
		for _, s := range srcs {
			ids = append(ids, s.Kind()+":"+s.Name())
		}
	}
	parts := "the config has no sources"
	if len(ids) > 0 {
		parts = "the parts are: " + strings.Join(ids, ", ")
	}
	return exitcode.Usagef("name one of the configured parts, or a kind (files, sqlite, volume, mongo)",
		"--only %s matches no configured part; %s", strings.Join(only, ","), parts)
}
