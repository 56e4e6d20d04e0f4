// Package restore is the restore job: which snapshot each part comes
// from (an id, or latest: per part the newest complete snapshot holding
// it, on any destination, with rollbacks found and said), the plan (each
// part's target, refused before anything is downloaded), and the restore
// itself, each part staged, checked and only then committed over its
// target (pkg/partkind plans and restores each kind). verify (pkg/backup)
// uses the same choice to check what restore latest would take.
package restore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"filippo.io/age"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/destination"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/interrupt"
	"github.com/firetech/fireops/pkg/partkind"
	"github.com/firetech/fireops/pkg/snapshot"
	"github.com/firetech/fireops/pkg/source"
	"github.com/firetech/fireops/pkg/source/mongo"
)

// Options select what restore writes where.
type Options struct {
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
	Mongo partkind.MongoRestoreOptions
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
	Confirm func(*Result) error
	// Log receives progress.
	Log *slog.Logger
	// Progress, when set, counts the bytes of every part read, for a
	// progress display on a terminal.
	Progress *snapshot.Progress
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

// Result says what restore did.
type Result struct {
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
func Restore(ctx context.Context, cfg *config.Config, o Options) (*Result, error) {
	ctx = snapshot.WithProgress(ctx, o.Progress)
	trusted, err := destination.TrustedKeys(cfg)
	if err != nil {
		return nil, err
	}
	ids, err := destination.Identities(cfg, o.Identity)
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
	objLock, err := destination.HoldObjects(ctx, cfg, "fireops restore", o.Log)
	if err != nil {
		return nil, err
	}
	defer objLock.Release()
	dests, unopened, err := destination.Open(ctx, cfg, only)
	if err != nil {
		return nil, err
	}
	defer destination.Close(ctx, dests, o.Log)
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
	full, on, unlisted, err := ResolveID(ctx, cfg, dests, unopened, o.Snapshot)
	if err != nil {
		return nil, err
	}
	for _, d := range dests {
		if err := unlisted[d.Name]; err != nil && o.Log != nil {
			o.Log.Warn("destination could not be listed; the snapshot is read from the others", "destination", d.Name, "err", err)
		}
	}
	// A snapshot's destinations are chosen by its manifest and index only:
	// those where both are usable, the first in the config's order first.
	// A part's objects are checked per part (partSource), so that an
	// object missing from one part never blocks another; a part whose
	// objects are missing there is read from the next destination holding
	// them.
	var all []PartFrom
	note := ""
	if full == "latest" {
		all, note, err = LatestParts(ctx, cfg, dests, trusted, ids, o, errs)
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
	parts := make([]plannedPart, len(sel))
	for i, pf := range sel {
		r := o.request(pf.part, len(sel))
		t, err := partkind.Plan(ctx, cfg, r)
		if err != nil {
			return nil, err
		}
		parts[i] = plannedPart{from: pf, req: r, target: t}
		res.Parts = append(res.Parts, PlannedPart{Part: r.Part.ID, Snapshot: pf.SnapshotID(), Target: t.String(), Size: r.Part.Size, Status: StatusPlanned})
	}
	if o.DryRun {
		return res, nil
	}
	return res, restoreParts(ctx, cfg, res, parts, ids, o.Log, "", true)
}

// plannedPart is one part of a restore, planned: where it is read from,
// what its kind was asked and the target the kind planned.
type plannedPart struct {
	from   PartFrom
	req    partkind.Request
	target partkind.Target
}

// restoreParts restores the planned parts (parts[i] is res.Parts[i]), each
// on its own (design.md §7): one that fails (damaged, or its target
// refused) leaves its target as it was, and the others are still
// restored; the error names the parts that were not. With stop, an error
// every later part would meet too (stopsRestore), or ctx ending, ends the
// restore there and is returned, the later parts not attempted; without
// it (restore --all) every part is attempted, and those ctx's end left
// out count as not restored. suffix follows the restore's name in the
// error (" --all").
func restoreParts(ctx context.Context, cfg *config.Config, res *Result, parts []plannedPart, ids []age.Identity, log *slog.Logger, suffix string, stop bool) error {
	notAttempted := func(from int) {
		for j := from; j < len(parts); j++ {
			res.Parts[j].Status = StatusNotAttempted
		}
	}
	var failed []string
	integrity := false
	for i, pp := range parts {
		p := pp.req.Part
		if err := ctx.Err(); err != nil {
			notAttempted(i)
			if stop {
				return err
			}
			for _, q := range parts[i:] {
				failed = append(failed, q.req.Part.ID)
			}
			break
		}
		pd, err := pp.from.src.restore(ctx, cfg, p, ids, log, func() (source.Restorer, error) {
			return partkind.Restorer(ctx, cfg, pp.req, pp.target)
		})
		if err != nil && interrupt.Is(ctx, err) {
			// Not a failure of the part: SIGINT or SIGTERM stopped it, and
			// its target was left as it was. The next pass stops there.
			res.Parts[i].Status, res.Parts[i].Error = StatusNotRestored, interrupt.Reason
			failed = append(failed, p.ID)
			if log != nil {
				log.Warn("part not restored: interrupted; its target was left as it was", "part", p.ID)
			}
			continue
		}
		if err != nil {
			res.Parts[i].Status, res.Parts[i].Error = StatusFailed, partReason(p.ID, err)
			if stop && stopsRestore(err) {
				notAttempted(i + 1)
				if errors.Is(err, snapshot.ErrWrongIdentity) {
					return exitcode.New(exitcode.Usage, fmt.Errorf("%s: %w", restoreWhat(res), err), "pass --identity with the identity of a recipient the manifest names (the one kept offline)")
				}
				return err
			}
			failed = append(failed, p.ID)
			integrity = integrity || errors.Is(err, snapshot.ErrIntegrity)
			if log != nil {
				log.Error("part not restored; its target was left as it was", "part", p.ID, "err", err)
			}
			continue
		}
		partRestored(res, i, pd, log)
	}
	settleDestination(res)
	if len(failed) > 0 {
		return partsFailed(restoreWhat(res)+suffix, res, failed, len(parts), integrity)
	}
	return nil
}

// stopsRestore reports whether a part's error ends a restore of several
// parts there: a wrong identity (every part would fail the same way), a
// refusal the admin must fix first (partkind.ErrRefused, or a MongoDB collection
// that has documents since the plan), or restored documents that differ
// from what the index records (reported as they are, exit code 3). Any
// other error (damaged or missing data, a destination or the Docker
// Engine failing) is the part's own: the others are still restored.
func stopsRestore(err error) bool {
	return errors.Is(err, snapshot.ErrWrongIdentity) || errors.Is(err, partkind.ErrRefused) ||
		errors.Is(err, mongo.ErrNotEmpty) || errors.Is(err, mongo.ErrIntegrity)
}

// partRestored marks part i of res restored into pd (kept as the part's
// own destination only when it differs from res's) and logs it.
func partRestored(res *Result, i int, pd string, log *slog.Logger) {
	res.Parts[i].Status = StatusRestored
	if pd != res.Destination {
		res.Parts[i].Destination = pd
	}
	if log != nil {
		pp := res.Parts[i]
		log.Info("part restored", "part", pp.Part, "snapshot", pp.Snapshot, "target", pp.Target, "destination", pd)
	}
}

// settleDestination names, as the result's destination, the one every
// restored part was read from when that is another than the one chosen
// first (its copy of each was missing or damaged).
func settleDestination(res *Result) {
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
func partsFailed(what string, res *Result, failed []string, n int, integrity bool) error {
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
	d       destination.Dest
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
// downloaded or staged), and returns that destination's name. A
// destination on which the part cannot be looked up (not in its index,
// its objects missing, or its listing of objects refused or broken off:
// anything before the restorer is made) is passed over for the next one,
// as is one whose data turns out damaged while it is read: another copy
// may be intact. Any other error (the restorer, the target) stops there.
// The error returned is the first integrity error met, if any (the data
// is damaged there: exit code 3), else the one that stopped, or the first
// destination's when every one was passed over; the others are logged.
func (s *partSource) restore(ctx context.Context, cfg *config.Config, p snapshot.Part, ids []age.Identity, log *slog.Logger, restorer func() (source.Restorer, error)) (string, error) {
	var first, damaged error
	for _, c := range s.cands {
		cp, err := c.part(p)
		if err == nil {
			err = c.checkPresent(ctx, cp)
		}
		lookup := err != nil // the part not found or not listed there
		if err == nil {
			var rs source.Restorer
			if rs, err = restorer(); err != nil {
				return "", err
			}
			if l, ok := rs.(partkind.LoggerSetter); ok && log != nil {
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
		integrity := errors.Is(err, snapshot.ErrIntegrity)
		if integrity {
			ForgetDamaged(cfg, c.d.Name, err, log)
			if damaged == nil {
				damaged = err
			}
		}
		if first == nil {
			first = err
		}
		if !integrity && (!lookup || ctx.Err() != nil) {
			// Not the data: another copy would not help.
			if damaged != nil {
				return "", damaged
			}
			return "", err
		}
		if log != nil && len(s.cands) > 1 {
			what := "part damaged on this destination; trying the others"
			if !integrity {
				what = "part could not be looked up on this destination; trying the others"
			}
			log.Warn(what, "destination", c.d.Name, "part", p.ID, "err", err)
		}
	}
	if damaged != nil {
		return "", damaged
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

// request is the restore request of part p, one of n parts restored
// together with the options o.
func (o Options) request(p snapshot.Part, n int) partkind.Request {
	return partkind.Request{Part: p, To: o.To, N: n, Force: o.Force, DryRun: o.DryRun, Mongo: o.Mongo, Log: o.Log}
}
