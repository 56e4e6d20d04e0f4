package backup

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/keys"
	"github.com/firetech/fireops/pkg/leftover"
	"github.com/firetech/fireops/pkg/snapshot"
	"github.com/firetech/fireops/pkg/source"
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
	// Progress, when set, counts bytes for a progress line.
	Progress *snapshot.Progress
	// Now returns the current time (snapshot ids, manifest times); nil
	// means time.Now. Tests take snapshots "in the past" with it.
	Now func() time.Time
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
	removeStateLeftovers(cfg, o.Log)
	// Shared with other snapshots, exclusive for rotate's sweep: the sweep
	// must not remove an object this run references (see ObjectsLock).
	objLock, err := holdObjects(ctx, cfg, "fireops snapshot", o.Log)
	if err != nil {
		return nil, err
	}
	defer objLock.Release()
	srcs, err := Sources(ctx, cfg, o.Only)
	if err != nil {
		return nil, err
	}
	setLoggers(srcs, o.Log)
	dests, unopened, err := OpenDests(ctx, cfg, o.Dests)
	if err != nil {
		return nil, err
	}
	defer CloseDests(ctx, dests, o.Log)
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
			err = exitcode.New(exitcode.Code(err), err, destHint)
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
			err = exitcode.New(exitcode.Failure, err, failureHint(err, res))
		}
		return res, err
	}
	// The destinations that could not be opened are failed destinations
	// of this run, listed in the config's order with the others.
	for _, u := range unopened {
		res.Destinations = append(res.Destinations, snapshot.DestResult{Name: u.Name, Err: u, Error: u.Error(), Retries: u.Retries})
	}
	sortByConfig(cfg, res.Destinations, func(d snapshot.DestResult) string { return d.Name })
	if err == nil {
		err = fmt.Errorf("snapshot %s: %w", res.ID, destFailures(unopened))
	} else {
		err = fmt.Errorf("%w\n%w", err, destFailures(unopened))
	}
	return res, exitcode.New(exitcode.Failure, err, failureHint(err, res))
}

// Hints of a snapshot run whose parts failed.
const (
	missingPathHint = "a path a source names does not exist: fix sources in the config (fireops config check shows them), or create it"
	partsHint       = "fix what the error names for each part (a path, a permission, the database) and run fireops snapshot again"
)

// failureHint is the hint of a snapshot run that wrote a snapshot but
// failed on some parts or destinations (exit code 1): a failed part's own
// hint (or a generic one), then the destinations' when one failed.
func failureHint(err error, res *snapshot.Result) string {
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
	if len(res.Failed()) > 0 {
		h := exitcode.Hint(err) // a destination's own
		if h == "" || len(hints) > 0 {
			h = destHint
		}
		hints = append(hints, h)
	}
	return strings.Join(hints, "; ")
}

// DestListing is the snapshots of one destination.
type DestListing struct {
	Destination string             `json:"destination"`
	Error       string             `json:"error,omitempty"`
	Snapshots   []snapshot.Listing `json:"snapshots"`
}

// List lists the snapshots of every destination (or those named). A
// destination that cannot be listed is reported in its entry, not fatal.
// A partial snapshot's failed parts are named when keys.identity_file can
// decrypt its index; without it the listing only counts them.
func List(ctx context.Context, cfg *config.Config, only []string) ([]DestListing, error) {
	trusted, _ := TrustedKeys(cfg) // listing works without one, and says so
	var ids []age.Identity
	if cfg.Keys.IdentityFile != "" {
		ids, _ = Identities(cfg, "")
	}
	dests, unopened, err := OpenDests(ctx, cfg, only)
	if err != nil {
		return nil, err
	}
	defer CloseDests(ctx, dests, nil)
	var out []DestListing
	for _, d := range cfg.Destinations {
		if i := slices.IndexFunc(unopened, func(u DestError) bool { return u.Name == d.Name }); i >= 0 {
			out = append(out, DestListing{Destination: d.Name, Error: unopened[i].Error(), Snapshots: []snapshot.Listing{}})
			continue
		}
		i := slices.IndexFunc(dests, func(o Dest) bool { return o.Name == d.Name })
		if i < 0 {
			continue // left out with --dest
		}
		l := DestListing{Destination: d.Name, Snapshots: []snapshot.Listing{}}
		ls, err := snapshot.List(ctx, dests[i].Store, cfg.Host, trusted...)
		if err != nil {
			l.Error = err.Error()
		} else {
			nameFailed(ctx, cfg, dests[i], ls, trusted, ids)
			l.Snapshots = ls
		}
		out = append(out, l)
	}
	return out, nil
}

// nameFailed fills in which parts of each partial snapshot in ls failed,
// and why, from its encrypted index, when ids can decrypt it. A snapshot
// whose index cannot be read keeps only the count.
func nameFailed(ctx context.Context, cfg *config.Config, d Dest, ls []snapshot.Listing, trusted []ed25519.PublicKey, ids []age.Identity) {
	if len(ids) == 0 {
		return
	}
	for i := range ls {
		l := &ls[i]
		if !l.Complete || l.Problem != "" || l.FailedParts == 0 {
			continue
		}
		m, err := snapshot.Open(ctx, d.Store, cfg.Host, l.ID, trusted...)
		if err != nil {
			continue
		}
		if idx, err := snapshot.ReadIndex(ctx, d.Store, m, ids); err == nil {
			l.Failed = idx.FailedParts
		}
	}
}

// ListError is the error of a listing in which some destinations could not
// be listed (exit code 1: the listing of the others is still printed), or
// nil.
func ListError(ls []DestListing) error {
	var bad []string
	for _, l := range ls {
		if l.Error != "" {
			bad = append(bad, l.Destination)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return exitcode.New(exitcode.Failure, fmt.Errorf("snapshots: %s could not be listed", strings.Join(bad, ", ")), destHint)
}

// snapshotIDForm is the form of a snapshot id, position by position: d a
// digit, h a lowercase hex digit, anything else itself.
const snapshotIDForm = "ddddddddTddddddZ-hhhhhh"

// validIDPrefix reports whether id is a non-empty prefix of a snapshot id.
func validIDPrefix(id string) bool {
	if id == "" || len(id) > len(snapshotIDForm) {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch snapshotIDForm[i] {
		case 'd':
			if c < '0' || c > '9' {
				return false
			}
		case 'h':
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		default:
			if c != snapshotIDForm[i] {
				return false
			}
		}
	}
	return true
}

// EmptyIDError is the usage error of a snapshot id given but empty (a
// script's unset $ID): it never stands for latest.
func EmptyIDError() error {
	return exitcode.Usagef("`fireops snapshots` lists the ids; in a script, check that the variable holding the id is set",
		"an empty snapshot id: give an id, a unique prefix, or latest")
}

// resolveID turns a snapshot id, or any unique prefix of one (like git and
// restic), into the full id, looking at the snapshot folders of every
// destination given; on says which of them hold it. "latest" is returned
// as it is (each caller finds the newest its own way). A prefix that
// matches several ids, or none, is a usage error that lists the matches or
// the closest ids; when a destination could not be listed, an id found on
// none of the others is a failure of that destination instead (it may be
// there).
func resolveID(ctx context.Context, cfg *config.Config, dests []Dest, unopened []DestError, id string) (string, map[string]bool, error) {
	if id == "latest" {
		return id, nil, nil
	}
	if id == "" {
		return "", nil, EmptyIDError()
	}
	if !validIDPrefix(id) {
		return "", nil, exitcode.Usagef("give an id (or a unique prefix of one) as listed by `fireops snapshots`, or latest",
			"%q is not a snapshot id (YYYYMMDDTHHMMSSZ-xxxxxx)", id)
	}
	holders := map[string][]string{} // id -> the destinations holding it
	var all []string
	var unlisted []string
	for _, u := range unopened {
		unlisted = append(unlisted, fmt.Sprintf("%s: %v", u.Name, u.Err))
	}
	for _, d := range dests {
		entries, err := d.Store.List(ctx, path.Join(cfg.Host, snapshot.SnapshotsDir))
		if err != nil && !errors.Is(err, snapshot.ErrNotFound) {
			unlisted = append(unlisted, fmt.Sprintf("%s: %v", d.Name, err))
			continue
		}
		for _, e := range entries {
			if !e.Dir || !snapshot.ValidSnapshotID(e.Name) {
				continue
			}
			if _, ok := holders[e.Name]; !ok {
				all = append(all, e.Name)
			}
			holders[e.Name] = append(holders[e.Name], d.Name)
		}
	}
	sort.Strings(all) // oldest first: ids begin with their UTC time
	var matches []string
	for _, c := range all {
		if strings.HasPrefix(c, id) {
			matches = append(matches, c)
		}
	}
	switch {
	case len(matches) == 1:
		on := map[string]bool{}
		for _, n := range holders[matches[0]] {
			on[n] = true
		}
		return matches[0], on, nil
	case len(matches) > 1:
		shown := matches
		if len(shown) > 10 {
			shown = append(slices.Clone(shown[:10]), fmt.Sprintf("and %d more", len(matches)-10))
		}
		return "", nil, exitcode.Usagef("give more of the id", "snapshot id prefix %q is ambiguous: it matches %s", id, strings.Join(shown, ", "))
	case len(unlisted) > 0:
		return "", nil, exitcode.New(exitcode.Failure, fmt.Errorf("no snapshot %q on the destinations that could be listed; not listed: %s", id, strings.Join(unlisted, "; ")), destHint)
	case len(all) == 0:
		return "", nil, exitcode.Usagef("take one with `fireops snapshot`, or check host and destinations in the config",
			"no snapshot %q: the destination(s) hold no snapshot of host %s", id, cfg.Host)
	}
	started := func(c string) snapshot.Listing {
		for _, d := range dests {
			if slices.Contains(holders[c], d.Name) {
				return startedListing(ctx, d.Store, cfg.Host, c)
			}
		}
		return snapshot.Listing{}
	}
	return "", nil, exitcode.Usagef("give an id as listed by `fireops snapshots`, or latest",
		"no snapshot %q on %s; closest, newest first: %s", id, destNames(dests), strings.Join(closestIDs(all, id, 3, started), ", "))
}

// destNames names the destinations given ("local, yandex").
func destNames(dests []Dest) string {
	var names []string
	for _, d := range dests {
		names = append(names, d.Name)
	}
	return strings.Join(names, ", ")
}

// rolledBack says why the latest complete snapshot of a destination is not
// to be trusted as its newest: the newest snapshot this host wrote there
// (state_dir) is gone, incomplete or refused, and not older than latest.
// "" when all is well (or this host never wrote there).
func rolledBack(cfg *config.Config, d Dest, ls []snapshot.Listing, latest snapshot.Listing) string {
	last := snapshot.LastWritten(cfg.StateDir, cfg.Host, d.Name)
	if last == "" || last == latest.ID || last[:16] < latest.ID[:16] {
		return ""
	}
	for _, l := range ls {
		if l.ID == last {
			if l.Complete && l.Problem == "" {
				return ""
			}
			why := l.Problem
			if why == "" {
				why = "incomplete: no manifest"
			}
			return fmt.Sprintf("the newest snapshot this host wrote to %s, %s, is not usable there (%s); the latest complete one is the older %s: check who changed the destination",
				d.Name, last, why, latest.ID)
		}
	}
	return fmt.Sprintf("the newest snapshot this host wrote to %s, %s, is gone; the latest there is the older %s: a newer snapshot was deleted (rollback), check who changed the destination",
		d.Name, last, latest.ID)
}

// NoSnapshotError says that a destination answered but holds no usable
// snapshot of the host: what it holds instead, so that an empty (or
// misnamed) destination is not taken for one that is down.
type NoSnapshotError struct {
	Dest, Host string
	// Incomplete counts the host's snapshots without a usable manifest.
	Incomplete int
	// OtherHosts are the hosts that do have snapshots there.
	OtherHosts []string
}

// emptyOnly reports whether every error says a destination holds no
// snapshot of the host (and there is at least one).
func emptyOnly(errs []error) bool {
	for _, err := range errs {
		var ns *NoSnapshotError
		if !errors.As(err, &ns) {
			return false
		}
	}
	return len(errs) > 0
}

// NoSnapshotHint is what to do about a NoSnapshotError.
const NoSnapshotHint = "take one with `fireops snapshot`, or check `host:` in the config (and --dest)"

func (e *NoSnapshotError) Error() string {
	there := "none"
	switch {
	case e.Incomplete > 0:
		there = fmt.Sprintf("only incomplete or refused ones (%d)", e.Incomplete)
	case len(e.OtherHosts) > 0:
		there = "other hosts: " + strings.Join(e.OtherHosts, ", ")
	}
	return fmt.Sprintf("destination %s holds no snapshot of host %s (snapshots there: %s)", e.Dest, e.Host, there)
}

// noSnapshotOn describes a destination whose listing ls has no complete
// snapshot of the host.
func noSnapshotOn(ctx context.Context, cfg *config.Config, d Dest, ls []snapshot.Listing) error {
	e := &NoSnapshotError{Dest: d.Name, Host: cfg.Host, Incomplete: len(ls)}
	if e.Incomplete == 0 {
		entries, _ := d.Store.List(ctx, "")
		for _, h := range entries {
			if !h.Dir || h.Name == cfg.Host {
				continue
			}
			if snaps, err := d.Store.List(ctx, h.Name+"/"+snapshot.SnapshotsDir); err == nil && len(snaps) > 0 {
				e.OtherHosts = append(e.OtherHosts, h.Name)
			}
		}
	}
	return e
}

// Levels of verify.
const (
	LevelQuick       = "quick"
	LevelHashes      = "hashes"
	LevelFull        = "full"
	LevelRestoreTest = "restore-test"
)

// VerifyOptions select what verify checks.
type VerifyOptions struct {
	// Snapshot is an id (or a unique prefix), or "latest" ("" means
	// latest unless All): on each destination, for each part, the newest
	// snapshot holding it, as restore latest takes it (verify_latest.go).
	Snapshot string
	// All verifies every complete snapshot.
	All bool
	// Level is quick, hashes, full or restore-test.
	Level string
	// Dests limits verify to these destinations.
	Dests []string
	// Identity is the identity file for full and restore-test ("" means
	// keys.identity_file).
	Identity string
	// ScratchDir is where restore-test restores (default: the temp dir).
	ScratchDir string
	// Mongo holds the mongo part's restore-test options.
	Mongo MongoVerifyOptions
	// Log receives progress.
	Log *slog.Logger
}

// VerifyResult is the verdict on one snapshot on one destination.
type VerifyResult struct {
	Destination string  `json:"destination"`
	Snapshot    string  `json:"snapshot"`
	Level       string  `json:"level"`
	OK          bool    `json:"ok"`
	Parts       int     `json:"parts"`
	Bytes       int64   `json:"bytes"`
	Error       string  `json:"error,omitempty"`
	Seconds     float64 `json:"seconds"`
	// PartIDs names the parts ("volume:jupyterhub-user-ada"), from the
	// encrypted index: only levels full and restore-test read it.
	PartIDs []string `json:"part_ids,omitempty"`
	// FailedParts names the parts that failed their check (levels full
	// and restore-test check each part on its own and go on).
	FailedParts []string `json:"failed_parts,omitempty"`
	// Rollback, on the row of a destination's newest snapshot, says that a
	// snapshot this host wrote there is gone, without manifest or refused
	// while older ones stand in for it or for some of its parts: a finding
	// of the destination (the run fails, exit 3), not of this snapshot,
	// whose own verdict is OK and Error.
	Rollback string `json:"rollback,omitempty"`
	// damaged: the failure is an integrity error (the data on the
	// destination), not one of the check itself (a scratch target the
	// server refused, a download that broke off).
	damaged bool
	// wrongKey: the identity matches none of the recipients.
	wrongKey bool
	// untrustedSigner: the manifest was refused because it names a signer
	// outside the trusted keys (an earlier signing key left out?).
	untrustedSigner bool
}

// Verify checks snapshots at the given level. It returns every result
// (one per snapshot and destination) and an error with exit code 3 when
// any snapshot failed its check or a destination shows a rollback (latest
// and All look for one: VerifyResult.Rollback).
func Verify(ctx context.Context, cfg *config.Config, o VerifyOptions) ([]VerifyResult, error) {
	switch o.Level {
	case "":
		o.Level = LevelQuick
	case LevelQuick, LevelHashes, LevelFull, LevelRestoreTest:
	default:
		return nil, exitcode.Usagef("use --level quick, hashes, full or restore-test", "unknown verify level %q", o.Level)
	}
	if !o.All && o.Snapshot == "" {
		o.Snapshot = "latest"
	}
	trusted, err := TrustedKeys(cfg)
	if err != nil {
		return nil, err
	}
	var ids []age.Identity
	if o.Level != LevelQuick && o.Level != LevelHashes {
		if ids, err = Identities(cfg, o.Identity); err != nil {
			return nil, err
		}
	}
	if o.Level == LevelRestoreTest {
		// The scratch restores a killed verify left hold plaintext.
		scratch := o.ScratchDir
		if scratch == "" {
			scratch = os.TempDir()
		}
		if _, err := leftover.Clean(scratch, restoreTestPrefix, o.Log); err != nil && o.Log != nil {
			o.Log.Warn("leftover scratch restores not removed", "err", err)
		}
	}
	// Rotate removes nothing while this run holds the objects lock: a
	// snapshot listed here is not removed before it is read (see
	// ObjectsLock).
	objLock, err := holdObjects(ctx, cfg, "fireops verify", o.Log)
	if err != nil {
		return nil, err
	}
	defer objLock.Release()
	dests, unopened, err := OpenDests(ctx, cfg, o.Dests)
	if err != nil {
		return nil, err
	}
	defer CloseDests(ctx, dests, o.Log)
	var results []VerifyResult
	var failed []string    // snapshots that failed their check
	var rollbacks []string // the destinations' rollback findings
	damaged, wrongKey := false, false
	// A destination that cannot be opened or listed is a failed result of
	// its own (exit code 1 unless a check failed too), not the end of the
	// run: the others are still checked.
	var unreachable []string
	var unreachableErrs []error
	destFailed := func(name string, err error) {
		unreachableErrs = append(unreachableErrs, err)
		snap := o.Snapshot
		if o.All {
			snap = "all"
		}
		results = append(results, VerifyResult{Destination: name, Snapshot: snap, Level: o.Level, Error: err.Error()})
		unreachable = append(unreachable, fmt.Sprintf("%s: %v", name, err))
	}
	for _, u := range unopened {
		destFailed(u.Name, u.Err)
	}
	// An id (or a unique prefix of one) is looked up on every destination
	// at once: one it is on is enough, an unknown id is a usage error.
	var on map[string]bool
	if !o.All {
		full, hosts, err := resolveID(ctx, cfg, dests, unopened, o.Snapshot)
		if exitcode.Code(err) == exitcode.Usage {
			return results, err
		}
		if err != nil {
			for _, d := range dests {
				destFailed(d.Name, err)
			}
			dests = nil
		}
		o.Snapshot, on = full, hosts
	}
	for _, d := range dests {
		var targets []verifyTarget
		// rollback is the destination's rollback finding, newest its
		// newest usable snapshot (whose row names the finding).
		var rollback, newest string
		if o.All {
			ls, err := snapshot.List(ctx, d.Store, cfg.Host, trusted...)
			if err != nil {
				destFailed(d.Name, err)
				continue
			}
			for _, l := range ls {
				if l.Complete || l.Problem != "" {
					targets = append(targets, verifyTarget{id: l.ID})
				}
			}
			rollback, newest = rollbackOn(cfg, d, ls)
		} else if o.Snapshot == "latest" {
			x, err := latestListing(ctx, cfg, d)
			var ee *exitcode.Error
			if errors.As(err, &ee) {
				return results, err
			}
			if err != nil {
				destFailed(d.Name, err)
				continue
			}
			rollback, newest = x.rollbackAlarm(), x.latest.ID
			targets = latestTargets(ctx, cfg, d, x, o, trusted, ids)
		} else {
			if !on[d.Name] {
				if o.Log != nil {
					o.Log.Info("snapshot not on this destination", "destination", d.Name, "snapshot", o.Snapshot)
				}
				continue
			}
			targets = []verifyTarget{{id: o.Snapshot}}
		}
		if rollback != "" {
			// The data that is there may be intact; what is missing is a
			// newer snapshot: a finding of its own (exit 3), not a damaged
			// snapshot.
			rollbacks = append(rollbacks, rollback)
		}
		// What several snapshots of one destination share is looked at
		// once: its listing of objects, and the pieces already hashed.
		vc := &verifyCache{checked: map[string]bool{}}
		for _, t := range targets {
			r := verifyOne(ctx, cfg, d, t.id, t.parts, o, trusted, ids, vc)
			if !r.OK {
				failed = append(failed, fmt.Sprintf("%s on %s: %s", r.Snapshot, r.Destination, r.Error))
				damaged = damaged || r.damaged
				wrongKey = wrongKey || r.wrongKey
			}
			if t.id == newest {
				r.Rollback = rollback
			}
			results = append(results, r)
		}
	}
	sortByConfig(cfg, results, func(r VerifyResult) string { return r.Destination })
	if len(failed) > 0 || len(rollbacks) > 0 {
		var what []string
		if len(failed) > 0 {
			what = append(what, fmt.Sprintf("%d snapshot(s) failed: %s", len(failed), strings.Join(failed, "; ")))
		}
		if len(rollbacks) > 0 {
			what = append(what, strings.Join(rollbacks, "; "))
		}
		msg := "verify: " + strings.Join(what, "; ")
		if len(unreachable) > 0 {
			msg += "; not checked on " + strings.Join(unreachable, "; ")
		}
		const wrongKeyHint = "pass --identity with the identity of a recipient the manifest names (the one kept offline); the data was not found damaged"
		if wrongKey && !damaged && len(rollbacks) == 0 {
			return results, exitcode.New(exitcode.Usage, errors.New(msg), wrongKeyHint)
		}
		hint := ""
		switch {
		case len(failed) == 0:
		case untrustedOnly(results):
			hint = UntrustedSignerHint
		case damaged:
			hint = "the data on the destination is damaged or was altered: the next snapshot uploads the damaged pieces again (snapshots taken before it stay damaged); find the cause"
		case wrongKey:
			hint = wrongKeyHint
		default:
			// Every failure is the check's own: the data checked out as far
			// as it was read.
			hint = "the snapshot could not be checked to its end (see the error: e.g. a scratch restore the server refused); the data read so far was intact"
		}
		if len(rollbacks) > 0 {
			hint = joinNote(hint, RollbackHint)
		}
		return results, exitcode.New(exitcode.CheckFailed, errors.New(msg), hint)
	}
	if len(unreachable) > 0 {
		hint := destHint
		if emptyOnly(unreachableErrs) {
			hint = NoSnapshotHint
		}
		return results, exitcode.New(exitcode.Failure, fmt.Errorf("verify: not checked on %s", strings.Join(unreachable, "; ")), hint)
	}
	return results, nil
}

// verifyCache is what the checks of one destination's snapshots share.
type verifyCache struct {
	present *snapshot.ObjectSet // the v2 objects listed, once
	checked map[string]bool     // objects found intact by level hashes
}

// verifyOne checks snapshot id on d at o's level: at levels full and
// restore-test only the parts named in only, when it names any (verify
// latest takes the others from other snapshots); quick and hashes check
// the whole snapshot.
func verifyOne(ctx context.Context, cfg *config.Config, d Dest, id string, only []string, o VerifyOptions, trusted []ed25519.PublicKey, ids []age.Identity, vc *verifyCache) VerifyResult {
	begin := time.Now()
	r := VerifyResult{Destination: d.Name, Snapshot: id, Level: o.Level}
	err := func() error {
		m, err := openManifest(ctx, cfg, d, id, trusted)
		if err != nil {
			return err
		}
		r.Parts, r.Bytes = m.PartCount(), m.Size()
		if m.Version == snapshot.FormatVersion && vc.present == nil {
			if vc.present, err = snapshot.ListObjects(ctx, d.Store, cfg.Host); err != nil {
				return err
			}
		}
		switch o.Level {
		case LevelQuick:
			return snapshot.CheckPresent(ctx, d.Store, m, vc.present)
		case LevelHashes:
			if err := snapshot.CheckPresent(ctx, d.Store, m, vc.present); err != nil {
				return err
			}
			return snapshot.CheckHashes(ctx, d.Store, m, vc.checked)
		}
		// Levels full and restore-test check every part on its own (its
		// objects present, then read or restored), name the part that
		// fails and go on with the others: one damaged part never hides
		// the state of the rest.
		idx, err := snapshot.ReadIndex(ctx, d.Store, m, ids)
		if err != nil {
			return err
		}
		parts := idx.Parts
		if only != nil {
			parts = nil
			r.Bytes = m.Index.Size
			for _, p := range idx.Parts {
				if slices.Contains(only, p.ID) {
					parts = append(parts, p)
					r.Bytes += p.Stored
				}
			}
			r.Parts = len(parts)
		}
		for _, p := range parts {
			r.PartIDs = append(r.PartIDs, p.ID)
		}
		var bad []error
		for _, p := range parts {
			err := snapshot.CheckPartPresent(ctx, d.Store, m, p, vc.present)
			if err == nil && o.Level == LevelFull {
				err = verifyPart(ctx, d, m, p, ids)
			} else if err == nil {
				err = restoreTestPart(withScratchInfo(ctx, id, o), cfg, d, m, p, ids, o.ScratchDir)
			}
			if err == nil {
				continue
			}
			r.FailedParts = append(r.FailedParts, p.ID)
			bad = append(bad, fmt.Errorf("part %s: %w", p.ID, err))
			if errors.Is(err, snapshot.ErrWrongIdentity) || ctx.Err() != nil {
				break // every other part would fail the same way
			}
		}
		return errors.Join(bad...)
	}()
	r.Seconds = time.Since(begin).Seconds()
	if err != nil {
		// The row names the snapshot and the destination already.
		r.Error = strings.TrimPrefix(strings.ReplaceAll(err.Error(), "\n", "; "), "snapshot "+id+" on "+d.Name+": ")
		r.damaged = errors.Is(err, snapshot.ErrIntegrity)
		r.wrongKey = errors.Is(err, snapshot.ErrWrongIdentity)
		r.untrustedSigner = errors.Is(err, snapshot.ErrUntrustedSigner)
		forgetDamaged(cfg, d.Name, err, o.Log)
	} else {
		r.OK = true
	}
	if o.Log != nil {
		o.Log.Info("verified", "destination", d.Name, "snapshot", id, "level", o.Level, "ok", r.OK, "err", r.Error)
	}
	return r
}

// forgetDamaged tells this host's snapshots to upload again the pieces err
// names as damaged on a destination, instead of referencing them in every
// new snapshot (snapshot.ForgetObjects).
func forgetDamaged(cfg *config.Config, dest string, err error, log *slog.Logger) {
	ids := snapshot.DamagedObjects(err)
	if len(ids) == 0 {
		return
	}
	if ferr := snapshot.ForgetObjects(cfg.StateDir, cfg.Host, dest, ids); ferr != nil {
		if log != nil {
			log.Warn("damaged pieces not recorded: the next snapshot may reference them again", "destination", dest, "err", ferr)
		}
		return
	}
	if log != nil {
		log.Warn("damaged pieces forgotten: the next snapshot uploads them again", "destination", dest, "pieces", len(ids))
	}
}

// verifyPart downloads, hashes, decrypts, decompresses and parses a part.
func verifyPart(ctx context.Context, d Dest, m *snapshot.Manifest, p snapshot.Part, ids []age.Identity) error {
	pr, err := snapshot.OpenPart(ctx, d.Store, m, p, ids)
	if err != nil {
		return err
	}
	defer pr.Close()
	n, err := snapshot.CountTar(pr)
	if ferr := pr.Finish(); ferr != nil {
		return ferr
	}
	if err != nil {
		return fmt.Errorf("%w: part %s: payload is not a valid tar stream: %v", snapshot.ErrIntegrity, p.ID, err)
	}
	if n != p.Entries {
		return fmt.Errorf("%w: part %s: %d tar entries, the index records %d", snapshot.ErrIntegrity, p.ID, n, p.Entries)
	}
	return nil
}

// restoreTestPrefix starts the name of a restore-test's scratch folder;
// the run's tag follows (pkg/leftover), so the next restore-test removes
// what a killed one left.
const restoreTestPrefix = "fireops-restore-test-"

// restoreTestPart restores a part into a private scratch target and
// drops it, also when the restore failed.
func restoreTestPart(ctx context.Context, cfg *config.Config, d Dest, m *snapshot.Manifest, p snapshot.Part, ids []age.Identity, scratch string) error {
	k, err := kindOf(p)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(scratch, leftover.Pattern(restoreTestPrefix))
	if err != nil {
		return fmt.Errorf("restore-test: %w", err)
	}
	defer os.RemoveAll(dir)
	rs, cleanup, err := k.scratch(ctx, cfg, p, dir)
	if err != nil {
		return err
	}
	defer cleanup()
	_, err = snapshot.RestorePart(ctx, d.Store, m, p, ids, rs)
	return err
}

// RestoreOptions select what restore writes where.
type RestoreOptions struct {
	// Snapshot is an id or "latest".
	Snapshot string
	// Parts limits the restore to these part ids or kinds; empty: all.
	Parts []string
	// To is the target folder (or file, for one sqlite part).
	To string
	// DryRun prints the plan only.
	DryRun bool
	// Force allows replacing a non-empty target.
	Force bool
	// Mongo holds the mongo part's options (--ns, --to-db, --to-uri-file,
	// --drop).
	Mongo MongoRestoreOptions
	// Dest is the destination to read from ("" means the first that has
	// the snapshot).
	Dest string
	// Identity is the identity file ("" means keys.identity_file).
	Identity string
	// All is the whole-server restore (restore_all.go): every part (or
	// those of Parts) in place, in the safe order, each on its own.
	All bool
	// StopStack (with All) stops the stack's running containers before
	// the first part and starts them again at the end.
	StopStack bool
	// Confirm (with All), when set, is called with the plan before
	// anything is written; an error stops the restore there.
	Confirm func(*RestoreResult) error
	// Log receives progress.
	Log *slog.Logger

	// stopping are the containers StopStack stops: the plan does not
	// refuse a volume only they use.
	stopping []string
}

// PlannedPart is one part of a restore plan and what happened to it.
type PlannedPart struct {
	Part   string `json:"part"`
	Target string `json:"target"`
	Size   int64  `json:"size"`
	Status string `json:"status"` // StatusPlanned, StatusRestored, ...
	Error  string `json:"error,omitempty"`
	// Snapshot is the snapshot the part comes from: with latest, the
	// newest holding it (restore_latest.go).
	Snapshot string `json:"snapshot"`
	// Destination is where the part was read from when that is not the
	// result's destination (its objects were missing or damaged there).
	Destination string `json:"destination,omitempty"`
}

// RestoreResult says what restore did.
type RestoreResult struct {
	Destination string        `json:"destination"`
	Snapshot    string        `json:"snapshot"`
	Parts       []PlannedPart `json:"parts"`
	// Note says how the parts' snapshots were chosen when they are not
	// all one (restore latest).
	Note string `json:"note,omitempty"`
	// Stack is what --stop-stack did (with All).
	Stack *StackAction `json:"stack,omitempty"`
}

// Restore restores parts of a snapshot. Each part is staged, checked and
// only then committed over its target; a part that fails leaves its target
// as it was, and the other parts are still restored (the error names the
// parts that were not).
func Restore(ctx context.Context, cfg *config.Config, o RestoreOptions) (*RestoreResult, error) {
	trusted, err := TrustedKeys(cfg)
	if err != nil {
		return nil, err
	}
	ids, err := Identities(cfg, o.Identity)
	if err != nil {
		return nil, err
	}
	var only []string
	if o.Dest != "" {
		only = []string{o.Dest}
	}
	// Rotate removes nothing while this run holds the objects lock: the
	// snapshot chosen is not removed while it is restored (see
	// ObjectsLock).
	objLock, err := holdObjects(ctx, cfg, "fireops restore", o.Log)
	if err != nil {
		return nil, err
	}
	defer objLock.Release()
	dests, unopened, err := OpenDests(ctx, cfg, only)
	if err != nil {
		return nil, err
	}
	defer CloseDests(ctx, dests, o.Log)
	var errs []error
	// The snapshot comes from the first destination that has it.
	for _, u := range unopened {
		errs = append(errs, u)
		if o.Log != nil {
			o.Log.Warn("destination not available; trying the others", "destination", u.Name, "err", u.Err)
		}
	}
	// "latest" is, for each part, the newest complete snapshot holding it
	// on any destination (restore_latest.go), not the first destination's
	// newest (it may have missed last night's run); an id is looked for on
	// every destination. The first destination (in the config's order)
	// whose copy is intact wins; an older snapshot is never taken silently
	// instead.
	full, on, err := resolveID(ctx, cfg, dests, unopened, o.Snapshot)
	if err != nil {
		return nil, err
	}
	// A snapshot's destinations are chosen by its manifest and index only:
	// those where both are usable, the first in the config's order first.
	// A part's objects are checked per part (partSource), so that an
	// object missing from one part never blocks another; a part whose
	// objects are missing there is read from the next destination holding
	// them.
	var all []partFrom
	note := ""
	if full == "latest" {
		all, note, err = latestParts(ctx, cfg, dests, trusted, ids, o, errs)
	} else {
		all, err = idParts(ctx, cfg, dests, on, full, trusted, ids, o, errs)
	}
	if err != nil {
		return nil, err
	}
	sel, err := selectFrom(all, o.Parts)
	if err != nil {
		return nil, err
	}
	if o.All {
		return restoreAll(ctx, cfg, o, sel, ids, note)
	}
	res := newRestoreResult(sel, note)
	parts := make([]snapshot.Part, len(sel))
	for i, pf := range sel {
		parts[i] = pf.part
	}
	targets := make([]string, len(parts))
	for i, p := range parts {
		k, err := kindOf(p)
		if err != nil {
			return nil, err
		}
		t, err := k.plan(ctx, cfg, p, o, len(parts))
		if err != nil {
			return nil, err
		}
		targets[i] = t
		res.Parts = append(res.Parts, PlannedPart{Part: p.ID, Snapshot: sel[i].snapshotID(), Target: t, Size: p.Size, Status: StatusPlanned})
	}
	if o.DryRun {
		return res, nil
	}
	// Every part restores on its own (design.md §7): one that fails
	// (damaged, or its target refused) leaves its target as it was, and the
	// others are still restored. Only a wrong identity or a usage error
	// (every part would fail the same way) stops the restore there.
	var failed []string
	integrity := false
	for i, p := range parts {
		if err := ctx.Err(); err != nil {
			for j := i; j < len(parts); j++ {
				res.Parts[j].Status = StatusNotAttempted
			}
			return res, err
		}
		k, _ := kindOf(p)
		pd, err := sel[i].src.restore(ctx, cfg, p, ids, o.Log, func() (source.Restorer, error) {
			return k.restorer(ctx, cfg, p, targets[i], o)
		})
		if err != nil {
			res.Parts[i].Status, res.Parts[i].Error = StatusFailed, partReason(p.ID, err)
			if errors.Is(err, snapshot.ErrWrongIdentity) || exitcode.Code(err) != exitcode.Failure {
				for j := i + 1; j < len(parts); j++ {
					res.Parts[j].Status = StatusNotAttempted
				}
				if errors.Is(err, snapshot.ErrWrongIdentity) {
					return res, exitcode.New(exitcode.Usage, fmt.Errorf("%s: %w", restoreWhat(res), err), "pass --identity with the identity of a recipient the manifest names (the one kept offline)")
				}
				return res, err
			}
			failed = append(failed, p.ID)
			integrity = integrity || errors.Is(err, snapshot.ErrIntegrity)
			if o.Log != nil {
				o.Log.Error("part not restored; its target was left as it was", "part", p.ID, "err", err)
			}
			continue
		}
		res.Parts[i].Status = StatusRestored
		if pd != res.Destination {
			res.Parts[i].Destination = pd
		}
		if o.Log != nil {
			o.Log.Info("part restored", "part", p.ID, "snapshot", res.Parts[i].Snapshot, "target", targets[i], "destination", pd)
		}
	}
	settleDestination(res)
	if len(failed) > 0 {
		return res, partsFailed(restoreWhat(res), res, failed, len(parts), integrity)
	}
	return res, nil
}

// settleDestination names, as the result's destination, the one every
// restored part was read from when that is another than the one chosen
// first (its copy of each was missing or damaged).
func settleDestination(res *RestoreResult) {
	other := ""
	for _, p := range res.Parts {
		if p.Status != StatusRestored {
			continue
		}
		if p.Destination == "" || other != "" && p.Destination != other {
			return
		}
		other = p.Destination
	}
	if other == "" {
		return
	}
	res.Destination = other
	for i := range res.Parts {
		res.Parts[i].Destination = ""
	}
}

// partsFailed is the error of a restore in which some parts failed: it
// names them and their errors. The hint names the failed parts only: the
// others were restored, and an older snapshot is not what they need.
func partsFailed(what string, res *RestoreResult, failed []string, n int, integrity bool) error {
	var why []string
	for _, p := range res.Parts {
		if p.Status == StatusFailed {
			why = append(why, p.Part+": "+p.Error)
		}
	}
	restored := n - len(failed)
	code := exitcode.Failure
	hint := fmt.Sprintf("the parts not restored were left as they were (%d restored); fix the cause and restore them with --part %s", restored, strings.Join(failed, " --part "))
	if integrity {
		code = exitcode.CheckFailed
		hint = fmt.Sprintf("%s of the snapshot is damaged or missing on the destination (its target was left as it was; %d other part(s) restored): restore it with --part from another destination (--dest) if one has it intact, else from another snapshot; run fireops verify --level full to see every damaged part",
			strings.Join(failed, ", "), restored)
	}
	return exitcode.New(code, fmt.Errorf("%s: %d of %d parts NOT restored: %s (%s)", what, len(failed), n, strings.Join(failed, ", "), strings.Join(why, "; ")), hint)
}

// partSource is where the parts of one snapshot are read from: the
// destinations whose copy of its manifest is usable, the chosen one first.
type partSource struct {
	cands []*partCand
}

type partCand struct {
	d       Dest
	m       *snapshot.Manifest
	idx     *snapshot.Index
	present *snapshot.ObjectSet // the v2 objects listed, once
}

// part returns this destination's copy of part p (its own piece list or
// object), by the part's id.
func (c *partCand) part(p snapshot.Part) (snapshot.Part, error) {
	for _, q := range c.idx.Parts {
		if q.ID == p.ID {
			return q, nil
		}
	}
	return p, fmt.Errorf("%w: part %s is not in the index of %s on %s", snapshot.ErrIntegrity, p.ID, c.m.Snapshot, c.d.Name)
}

// restore restores part p from the first destination on which its
// objects are all present (a missing object is found before anything is
// downloaded or staged), and returns that destination's name. When the
// part is missing or damaged everywhere, the error is the first
// destination's.
func (s *partSource) restore(ctx context.Context, cfg *config.Config, p snapshot.Part, ids []age.Identity, log *slog.Logger, restorer func() (source.Restorer, error)) (string, error) {
	var first error
	for _, c := range s.cands {
		cp, err := c.part(p)
		if err == nil {
			err = c.checkPresent(ctx, cp)
		}
		if err == nil {
			var rs source.Restorer
			if rs, err = restorer(); err != nil {
				return "", err
			}
			if l, ok := rs.(loggerSetter); ok && log != nil {
				l.SetLogger(log) // leftovers of killed restores are logged
			}
			var st source.Stats
			st, err = snapshot.RestorePart(ctx, c.d.Store, c.m, cp, ids, rs)
			if err == nil {
				if n := st.Details["setid_dropped"]; n != "" && n != "0" && log != nil {
					log.Warn("setuid/setgid bits not restored (fireops never restores them)", "part", p.ID, "files", n,
						"hint", "check those files, then chmod u+s/g+s them by hand if they need it")
				}
				return c.d.Name, nil
			}
		}
		if errors.Is(err, snapshot.ErrIntegrity) {
			forgetDamaged(cfg, c.d.Name, err, log)
		}
		if first == nil {
			first = err
		}
		if !errors.Is(err, snapshot.ErrIntegrity) {
			return "", first // not the data: another copy would not help
		}
		if log != nil && len(s.cands) > 1 {
			log.Warn("part damaged on this destination; trying the others", "destination", c.d.Name, "part", p.ID, "err", err)
		}
	}
	return "", first
}

func (c *partCand) checkPresent(ctx context.Context, p snapshot.Part) error {
	if c.m.Version == snapshot.FormatVersion && c.present == nil {
		var err error
		if c.present, err = snapshot.ListObjects(ctx, c.d.Store, c.m.Host); err != nil {
			return err
		}
	}
	return snapshot.CheckPartPresent(ctx, c.d.Store, c.m, p, c.present)
}

// selectParts picks the parts named by ids or kinds ("files:stack",
// "sqlite"); empty selects all.
func selectParts(all []snapshot.Part, sel []string) ([]snapshot.Part, error) {
	if len(sel) == 0 {
		return all, nil
	}
	var out []snapshot.Part
	for _, s := range sel {
		n := 0
		for _, p := range all {
			if (p.ID == s || p.Kind == s) && !slices.ContainsFunc(out, func(q snapshot.Part) bool { return q.ID == p.ID }) {
				out = append(out, p)
				n++
			}
		}
		if n == 0 {
			var names []string
			for _, p := range all {
				names = append(names, p.ID)
			}
			return nil, exitcode.Usagef("the snapshot has: "+strings.Join(names, ", "), "no part %q in the snapshot", s)
		}
	}
	return out, nil
}
