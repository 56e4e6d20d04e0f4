// Package backup runs the backup jobs from a config: snapshot, snapshots
// (List), verify and rotate, and finds the verified snapshot holding a
// part (Holder, for deploy's prune). It decides per part and per
// destination and words each job's result; the destinations are opened by
// pkg/destination, the sources built by pkg/partkind, the snapshot's
// format is pkg/snapshot's, and which snapshot each part comes from is
// pkg/restore's (verify checks what restore latest would take).
// cmd/fireops and pkg/runner call these functions and print or record
// what they return.
package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/destination"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/keys"
	"github.com/firetech/fireops/pkg/partkind"
	"github.com/firetech/fireops/pkg/snapshot"
)

// SnapshotOptions select what one snapshot run covers.
type SnapshotOptions struct {
	// Dests limits the run to these destinations; empty means all.
	Dests []string
	// Only limits the run to these parts ("files:stack", "sqlite", ...);
	// empty means every configured source.
	Only []string
	// Version is recorded in the index.
	Version string
	// Log receives progress.
	Log *slog.Logger
	// Progress, when set, counts every part's bytes, for a progress
	// display on a terminal.
	Progress *snapshot.Progress
	// Now returns the current time (snapshot ids, manifest times); nil
	// means time.Now. Tests take snapshots "in the past" with it.
	Now func() time.Time

	// afterDiscovery, when set (by tests), is called with the volumes
	// found, before their sources are read.
	afterDiscovery func(names []string)
}

// Snapshot takes one snapshot of the configured sources to the configured
// destinations.
func Snapshot(ctx context.Context, cfg *config.Config, o SnapshotOptions) (*snapshot.Result, error) {
	rcp, err := cfg.Recipients()
	if err != nil {
		return nil, exitcode.New(exitcode.Usage, err, "fix keys.recipients in the config")
	}
	if len(rcp) == 0 {
		return nil, exitcode.Usagef("add the age1... recipient `fireops init` printed to keys.recipients", "no recipients: nothing to encrypt to")
	}
	if cfg.Keys.SigningKeyFile == "" {
		return nil, exitcode.Usagef("set keys.signing_key_file (fireops init writes signing.key)", "no signing key: manifests cannot be signed")
	}
	signer, err := keys.LoadSigningKey(cfg.Keys.SigningKeyFile)
	if err != nil {
		return nil, exitcode.New(exitcode.Usage, err, "point keys.signing_key_file at the key fireops init wrote")
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, exitcode.New(exitcode.Usage, fmt.Errorf("state dir: %w", err), "make state_dir writable, or point it elsewhere")
	}
	partkind.RemoveStateLeftovers(cfg, o.Log)
	// Shared with other snapshots, exclusive for rotate's sweep: the sweep
	// must not remove an object this run references (see ObjectsLock).
	objLock, err := destination.HoldObjects(ctx, cfg, "fireops snapshot", o.Log)
	if err != nil {
		return nil, err
	}
	defer objLock.Release()
	srcs, err := partkind.SourcesFor(ctx, cfg, partkind.SourcesRequest{Only: o.Only, AfterDiscovery: o.afterDiscovery})
	if err != nil {
		return nil, err
	}
	partkind.SetLoggers(srcs, o.Log)
	dests, unopened, err := destination.Open(ctx, cfg, o.Dests)
	if err != nil {
		return nil, err
	}
	defer destination.Close(ctx, dests, o.Log)
	for _, u := range unopened {
		if o.Log != nil {
			o.Log.Error("destination failed; the others go on", "destination", u.Name, "err", u.Err)
		}
	}
	state, err := snapshot.LoadState(cfg.StateDir)
	if err != nil {
		return nil, exitcode.New(exitcode.Usage, err, "make state_dir readable, or point it elsewhere")
	}
	stores := make([]snapshot.Store, len(dests))
	uploads := 1
	for i, d := range dests {
		stores[i] = d.Store
		uploads = max(uploads, d.Remote.Uploads())
	}
	res, err := snapshot.Create(ctx, snapshot.Options{
		Host: cfg.Host, Recipients: rcp, Signer: signer, ChunkSize: int(cfg.ChunkSize),
		Compression: cfg.Compression, Uploads: uploads, StateDir: cfg.StateDir, State: state, Version: o.Version, Log: o.Log,
		Progress: o.Progress, Now: o.Now, Only: len(o.Only) > 0,
	}, stores, srcs)
	if res == nil {
		switch {
		case err == nil || exitcode.Hint(err) != "":
		case errors.Is(err, snapshot.ErrEveryDestinationFailed):
			// Every destination tried failed: --dest OTHER only when the
			// config has one this run left out.
			tried := make([]string, 0, len(dests)+len(unopened))
			for _, d := range dests {
				tried = append(tried, d.Name)
			}
			for _, u := range unopened {
				tried = append(tried, u.Name)
			}
			err = exitcode.New(exitcode.Code(err), err, destination.FailedHint(cfg, tried))
		case errors.Is(err, fs.ErrNotExist):
			err = exitcode.New(exitcode.Code(err), err, missingPathHint)
		case errors.As(err, new(*snapshot.PartsError)):
			err = exitcode.New(exitcode.Code(err), err, partsHint)
		}
		return nil, err
	}
	for i := range res.Destinations {
		for _, d := range dests {
			if d.Name == res.Destinations[i].Name {
				res.Destinations[i].Retries = d.Remote.Stats().Retries
			}
		}
	}
	if len(unopened) == 0 {
		if err != nil {
			err = exitcode.New(exitcode.Failure, err, failureHint(cfg, err, res))
		}
		return res, err
	}
	// The destinations that could not be opened are failed destinations
	// of this run, listed in the config's order with the others.
	for _, u := range unopened {
		res.Destinations = append(res.Destinations, snapshot.DestResult{Name: u.Name, Err: u, Error: u.Error(), Retries: u.Retries})
	}
	destination.SortByConfig(cfg, res.Destinations, func(d snapshot.DestResult) string { return d.Name })
	if err == nil {
		err = fmt.Errorf("snapshot %s: %w", res.ID, destination.Failures(unopened))
	} else {
		err = fmt.Errorf("%w\n%w", err, destination.Failures(unopened))
	}
	return res, exitcode.New(exitcode.Failure, err, failureHint(cfg, err, res))
}

// Hints of a snapshot run whose parts failed.
const (
	missingPathHint = "a path a source names does not exist: fix sources in the config (fireops config check shows them), or create it"
	partsHint       = "fix what the error names for each part (a path, a permission, the database) and run fireops snapshot again"
)

// failureHint is the hint of a snapshot run that wrote a snapshot but
// failed on some parts or destinations (exit code 1): a failed part's own
// hint (or a generic one), then the destinations' when one failed, which
// names --dest OTHER only when a destination of cfg did not fail
// (destination.FailedHint).
func failureHint(cfg *config.Config, err error, res *snapshot.Result) string {
	var hints []string
	if errors.As(err, new(*snapshot.PartsError)) {
		h := exitcode.Hint(err)
		switch {
		case h != "":
		case errors.Is(err, fs.ErrNotExist):
			h = missingPathHint
		default:
			h = partsHint
		}
		hints = append(hints, h+" (the snapshot holds the other parts; --only PART takes the failed ones alone)")
	}
	if failed := res.Failed(); len(failed) > 0 {
		h := exitcode.Hint(err) // a destination's own
		if h == "" || len(hints) > 0 {
			names := make([]string, len(failed))
			for i, d := range failed {
				names[i] = d.Name
			}
			h = destination.FailedHint(cfg, names)
		}
		hints = append(hints, h)
	}
	return strings.Join(hints, "; ")
}
