package backup

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/destination"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/interrupt"
	"github.com/firetech/fireops/pkg/leftover"
	"github.com/firetech/fireops/pkg/partkind"
	"github.com/firetech/fireops/pkg/restore"
	"github.com/firetech/fireops/pkg/snapshot"
)

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
	Mongo partkind.MongoVerifyOptions
	// Log receives progress.
	Log *slog.Logger
	// Progress, when set, counts the bytes of every part levels full and
	// restore-test read, for a progress display on a terminal.
	Progress *snapshot.Progress
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
	// whose own verdict is OK and Error. When no usable snapshot is left
	// there (verify latest), it is on a row of its own, snapshot
	// "latest", not OK.
	Rollback string `json:"rollback,omitempty"`
	// Interrupted: SIGINT or SIGTERM stopped the check before its end
	// (OK is false, Error says "interrupted" after what the check found
	// before the stop, if anything). What was read up to then is not
	// found damaged.
	Interrupted bool `json:"interrupted,omitempty"`
	// Unchecked: the row is a destination that could not be opened or
	// listed (Snapshot is what was asked: an id, latest or all), not a
	// snapshot checked; the metrics do not count it as a snapshot.
	Unchecked bool `json:"-"`
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
	ctx = snapshot.WithProgress(ctx, o.Progress)
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
	trusted, err := destination.TrustedKeys(cfg)
	if err != nil {
		return nil, err
	}
	var ids []age.Identity
	if o.Level != LevelQuick && o.Level != LevelHashes {
		if ids, err = destination.Identities(cfg, o.Identity); err != nil {
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
	objLock, err := destination.HoldObjects(ctx, cfg, "fireops verify", o.Log)
	if err != nil {
		return nil, err
	}
	defer objLock.Release()
	dests, unopened, err := destination.Open(ctx, cfg, o.Dests)
	if err != nil && len(unopened) == 0 {
		return nil, err
	}
	// When none opened, each still gets its failed row (docs/json.md),
	// and the run fails below with the hint for them all.
	defer destination.Close(ctx, dests, o.Log)
	var results []VerifyResult
	var failed []string    // snapshots that failed their check
	var rollbacks []string // the destinations' rollback findings
	damaged, wrongKey := false, false
	// A destination that cannot be opened or listed is a failed result of
	// its own (exit code 1 unless a check failed too), not the end of the
	// run: the others are still checked.
	var unreachable, unreachableNames []string
	var unreachableErrs []error
	destFailed := func(name string, err error) {
		unreachableErrs = append(unreachableErrs, err)
		unreachableNames = append(unreachableNames, name)
		snap := o.Snapshot
		if o.All {
			snap = "all"
		}
		r := VerifyResult{Destination: name, Snapshot: snap, Level: o.Level, Error: err.Error(), Unchecked: true}
		if interrupt.Is(ctx, err) {
			r.Error, r.Interrupted = interrupt.Reason, true
		}
		results = append(results, r)
		unreachable = append(unreachable, fmt.Sprintf("%s: %v", name, err))
	}
	for _, u := range unopened {
		destFailed(u.Name, u.Err)
	}
	// An id (or a unique prefix of one) is looked up on every destination
	// at once: one it is on is enough, an unknown id is a usage error.
	var on map[string]bool
	var unlisted map[string]error // the destinations ResolveID could not list
	if !o.All {
		full, hosts, notListed, err := restore.ResolveID(ctx, cfg, dests, unopened, o.Snapshot)
		if err != nil && !errors.As(err, new(*restore.UnlistedError)) {
			return results, err
		}
		if err != nil {
			for _, d := range dests {
				destFailed(d.Name, err)
			}
			dests = nil
		}
		o.Snapshot, on, unlisted = full, hosts, notListed
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
			rollback, newest = restore.RollbackOn(cfg, d, ls)
		} else if o.Snapshot == "latest" {
			x, err := restore.LatestListing(ctx, cfg, d, trusted)
			if w := new(*restore.WipedError); errors.As(err, w) {
				// No usable snapshot left where this host wrote one: the
				// rollback finding (exit 3), not an empty destination.
				rollbacks = append(rollbacks, err.Error())
				results = append(results, VerifyResult{Destination: d.Name, Snapshot: o.Snapshot, Level: o.Level, Error: "no usable snapshot", Rollback: err.Error()})
				continue
			}
			if err != nil {
				destFailed(d.Name, err)
				continue
			}
			rollback, newest = x.RollbackAlarm(), x.Latest().ID
			targets = latestTargets(ctx, cfg, d, x, o, trusted, ids)
		} else {
			if err := unlisted[d.Name]; err != nil {
				// It may hold the id: not checked, not "not on it".
				destFailed(d.Name, err)
				continue
			}
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
	destination.SortByConfig(cfg, results, func(r VerifyResult) string { return r.Destination })
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
			hint = destination.UntrustedSignerHint
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
			hint = restore.JoinNote(hint, RollbackHint)
		}
		return results, exitcode.New(exitcode.CheckFailed, &checkFailedError{msg: msg}, hint)
	}
	if len(unreachable) > 0 {
		// --dest OTHER only when another destination may answer.
		hint := destination.FailedHint(cfg, unreachableNames)
		if restore.EmptyOnly(unreachableErrs) {
			hint = restore.NoSnapshotHint
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
func verifyOne(ctx context.Context, cfg *config.Config, d destination.Dest, id string, only []string, o VerifyOptions, trusted []ed25519.PublicKey, ids []age.Identity, vc *verifyCache) VerifyResult {
	begin := time.Now()
	r := VerifyResult{Destination: d.Name, Snapshot: id, Level: o.Level}
	// stopped: SIGINT or SIGTERM cut the check short (interrupted); a
	// part it stopped is neither failed nor checked.
	stopped := false
	err := func() error {
		m, err := destination.OpenManifest(ctx, cfg, d, id, trusted)
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
				err = restoreTestPart(ctx, cfg, d, m, ids, o.ScratchDir, partkind.ScratchRequest{Part: p, Snapshot: id, MongoURIFile: o.Mongo.ScratchURIFile, Log: o.Log})
			}
			if err == nil {
				continue
			}
			if interrupt.Is(ctx, err) {
				stopped = true
				break
			}
			r.FailedParts = append(r.FailedParts, p.ID)
			bad = append(bad, &snapshot.PartError{ID: p.ID, Err: err})
			if errors.Is(err, snapshot.ErrWrongIdentity) || ctx.Err() != nil {
				break // every other part would fail the same way
			}
		}
		return errors.Join(bad...)
	}()
	r.Seconds = time.Since(begin).Seconds()
	if !stopped && interrupt.Is(ctx, err) {
		// Stopped before the parts: reading the manifest, the listing or
		// the index, or hashing.
		stopped, err = true, nil
	}
	r.Interrupted = stopped
	if err != nil {
		// The row names the snapshot and the destination already.
		r.Error = strings.TrimPrefix(strings.ReplaceAll(err.Error(), "\n", "; "), "snapshot "+id+" on "+d.Name+": ")
		r.damaged = errors.Is(err, snapshot.ErrIntegrity)
		r.wrongKey = errors.Is(err, snapshot.ErrWrongIdentity)
		r.untrustedSigner = errors.Is(err, snapshot.ErrUntrustedSigner)
		restore.ForgetDamaged(cfg, d.Name, err, o.Log)
	}
	switch {
	case stopped && r.Error != "":
		r.Error += "; not finished: " + interrupt.Reason
	case stopped:
		r.Error = interrupt.Reason
	case err == nil:
		r.OK = true
	}
	if o.Log != nil && stopped && err == nil {
		o.Log.Info("verify not finished: interrupted", "destination", d.Name, "snapshot", id, "level", o.Level)
	} else if o.Log != nil {
		attrs := []any{"destination", d.Name, "snapshot", id, "level", o.Level, "ok", r.OK}
		if r.Error != "" {
			attrs = append(attrs, "err", r.Error)
		}
		o.Log.Info("verified", attrs...)
	}
	return r
}

// verifyPart downloads, hashes, decrypts, decompresses and parses a part.
func verifyPart(ctx context.Context, d destination.Dest, m *snapshot.Manifest, p snapshot.Part, ids []age.Identity) error {
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

// restoreTestPart restores a part (r.Part) into a private scratch target
// (under a new folder in scratch) and drops it, also when the restore
// failed.
func restoreTestPart(ctx context.Context, cfg *config.Config, d destination.Dest, m *snapshot.Manifest, ids []age.Identity, scratch string, r partkind.ScratchRequest) error {
	dir, err := os.MkdirTemp(scratch, leftover.Pattern(restoreTestPrefix))
	if err != nil {
		return fmt.Errorf("restore-test: %w", err)
	}
	defer os.RemoveAll(dir)
	r.Dir = dir
	rs, cleanup, err := partkind.Scratch(ctx, cfg, r)
	if err != nil {
		return err
	}
	defer cleanup()
	_, err = snapshot.RestorePart(ctx, d.Store, m, r.Part, ids, rs)
	return err
}

// untrustedOnly reports whether the verify results that found the data
// wrong were all refused for their signer alone (and there is one).
func untrustedOnly(rs []VerifyResult) bool {
	n := 0
	for _, r := range rs {
		switch {
		case r.untrustedSigner:
			n++
		case r.damaged:
			return false
		}
	}
	return n > 0
}
