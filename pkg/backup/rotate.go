package backup

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/destination"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/lock"
	"github.com/firetech/fireops/pkg/partkind"
	"github.com/firetech/fireops/pkg/remote"
	"github.com/firetech/fireops/pkg/retention"
	"github.com/firetech/fireops/pkg/snapshot"
)

// RotateOptions select what rotate does.
type RotateOptions struct {
	// Dests limits rotate to these destinations; empty means all.
	Dests []string
	// DryRun plans and reports, and removes nothing.
	DryRun bool
	// SweepWait is how long to wait for the objects lock, held shared by
	// a running snapshot, verify or restore, before the removals and the
	// sweep are skipped (the next rotate does them).
	SweepWait time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Log receives what is removed.
	Log *slog.Logger
	// Progress, when set, counts each destination's object sweep, for a
	// progress display on a terminal.
	Progress *snapshot.Progress
}

// RotateResult is what rotate did (or, with DryRun, would do).
type RotateResult struct {
	DryRun       bool         `json:"dry_run"`
	Time         time.Time    `json:"time"`
	Destinations []RotateDest `json:"destinations"`
}

// RotateDest is rotate's work on one destination.
type RotateDest struct {
	Destination string `json:"destination"`
	// Policy and Grace are the rules applied to this destination.
	Policy string `json:"policy"`
	Grace  string `json:"incomplete_grace"`
	// Snapshots is every snapshot folder, newest first, with keep or
	// remove and the rules that decided it.
	Snapshots []retention.Decision `json:"snapshots"`
	// Parts counts the parts the complete snapshots hold (the policy is
	// counted per part, docs/retention.md), RetiredParts those a newer
	// full snapshot no longer holds.
	Parts        int `json:"parts"`
	RetiredParts int `json:"retired_parts"`
	// Kept counts the complete snapshots kept; Removed those removed by
	// the policy; IncompleteRemoved the incomplete folders removed.
	Kept              int `json:"kept"`
	Removed           int `json:"removed"`
	IncompleteRemoved int `json:"incomplete_removed"`
	// Objects is the sweep of unreferenced objects. Objects.Skipped says
	// why the sweep did not run: the objects lock was held, or (with Err
	// set) the destination could not be opened, listed or rotated
	// ("removing snapshot ID failed"): its counts are then not the
	// destination's.
	Objects Sweep `json:"objects"`
	// Err is why this destination was not rotated completely.
	Err   error  `json:"-"`
	Error string `json:"error,omitempty"`
}

// Sweep is what the object sweep found and did on one destination.
type Sweep = snapshot.Sweep

// PolicyFor returns the retention rules and grace period of a destination:
// its own retention section when it has one, else the global one. An
// override without incomplete_grace, or with 0 (the two cannot be told
// apart once parsed), takes the global grace: a destination cannot turn
// the grace period off (docs/retention.md).
func PolicyFor(cfg *config.Config, dest string) (retention.Policy, time.Duration) {
	r := cfg.Retention
	grace := time.Duration(cfg.Retention.IncompleteGrace)
	for _, d := range cfg.Destinations {
		if d.Name == dest && d.Retention != nil {
			r = *d.Retention
			if r.IncompleteGrace > 0 {
				grace = time.Duration(r.IncompleteGrace)
			}
		}
	}
	return retention.Policy{
		KeepLast: r.KeepLast, KeepHourly: r.KeepHourly, KeepDaily: r.KeepDaily, KeepWeekly: r.KeepWeekly,
		KeepMonthly: r.KeepMonthly, KeepYearly: r.KeepYearly, KeepWithin: time.Duration(r.KeepWithin),
	}, grace
}

// Rotate applies the retention policy on every destination (or those
// named): it removes the snapshots no rule keeps, whole and manifest first
// (so that a half-removed one reads as incomplete), the incomplete
// snapshots older than the grace period, and then the objects no remaining
// manifest references that are older than the grace period. It removes
// only while it holds the objects lock exclusively: while a snapshot,
// verify or restore of this host holds it past SweepWait, it plans and
// removes nothing (the next rotate does). It needs no private key. A
// destination that fails is reported in its entry and in the returned
// error; the others are still rotated.
func Rotate(ctx context.Context, cfg *config.Config, o RotateOptions) (*RotateResult, error) {
	ctx = snapshot.WithProgress(ctx, o.Progress)
	now := o.Now
	if now == nil {
		now = time.Now
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Refuse a bad policy before touching anything.
	names := o.Dests
	if len(names) == 0 {
		for _, d := range cfg.Destinations {
			names = append(names, d.Name)
		}
	}
	for _, n := range names {
		p, grace := PolicyFor(cfg, n)
		if err := p.Validate(); err != nil {
			key := "retention"
			for i, d := range cfg.Destinations {
				if d.Name == n && d.Retention != nil {
					key = fmt.Sprintf("destinations[%d].retention", i)
				}
			}
			return nil, exitcode.Usagef("set at least one keep_* rule under "+key+" (docs/retention.md)", "destination %s: %s: %w", n, key, err)
		}
		if grace <= 0 {
			return nil, exitcode.Usagef("set retention.incomplete_grace to a time longer than any snapshot takes, e.g. 24h",
				"destination %s: incomplete_grace is 0: an upload in progress could be swept", n)
		}
	}
	if !o.DryRun {
		partkind.RemoveStateLeftovers(cfg, log)
		partkind.RemoveStagingVolumes(ctx, cfg, log)
	}
	dests, unopened, err := destination.Open(ctx, cfg, o.Dests)
	if err != nil {
		return nil, err
	}
	defer destination.Close(ctx, dests, o.Log)
	// A manifest counts only when its signature verifies: without the
	// check, anyone who can write to the destination could make rotate
	// remove real snapshots by adding newer forged ones.
	trusted, err := destination.TrustedKeys(cfg)
	if err != nil {
		return nil, err
	}
	res := &RotateResult{DryRun: o.DryRun, Time: now().UTC()}

	// Nothing is removed while a run of this host holds the objects lock:
	// the sweep could remove objects a running snapshot references that no
	// manifest names yet, and a policy removal would pull a snapshot from
	// under a verify or restore reading it.
	var objLock *lock.Lock
	skip := ""
	if !o.DryRun {
		objLock, err = lock.Acquire(ctx, lock.Dir(cfg.StateDir), destination.ObjectsLock, lock.Options{Wait: o.SweepWait, Command: "fireops rotate"})
		if err != nil {
			var be *lock.BusyError
			if !errors.As(err, &be) {
				return nil, err
			}
			skip = "the objects lock is held by " + be.Holder.String() + " (a snapshot, verify or restore runs); the next rotate removes and sweeps"
			log.Warn("removals and sweep skipped: a snapshot, verify or restore runs", "holder", be.Holder.String())
		} else {
			defer objLock.Release()
		}
	}

	var failed oneLineErrors
	for _, u := range unopened {
		p, grace := PolicyFor(cfg, u.Name)
		rd := RotateDest{Destination: u.Name, Policy: p.String(), Grace: retention.FormatDuration(grace),
			Snapshots: []retention.Decision{}, Err: u, Error: u.Error()}
		rd.Objects.Skipped = "opening the destination failed"
		res.Destinations = append(res.Destinations, rd)
		failed = append(failed, u)
	}
	for _, d := range dests {
		rd := rotateDest(ctx, cfg, d, o, trusted, res.Time, skip, log)
		if rd.Err != nil {
			rd.Error = rd.Err.Error()
			failed = append(failed, fmt.Errorf("%s: %w", d.Name, rd.Err))
		}
		res.Destinations = append(res.Destinations, rd)
	}
	destination.SortByConfig(cfg, res.Destinations, func(d RotateDest) string { return d.Destination })
	if len(failed) == 0 {
		return res, nil
	}
	err = fmt.Errorf("rotate: %w", failed)
	// A destination it may not write (a read-only mount, an immutable
	// folder): the same hint as a snapshot's, naming the folder.
	var denied *remote.DeniedError
	if errors.As(err, &denied) {
		err = exitcode.New(exitcode.Failure, err, denied.Hint())
	}
	return res, err
}

// oneLineErrors joins errors like errors.Join, on one line ("; "
// between them); errors.Is and errors.As see each.
type oneLineErrors []error

func (e oneLineErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap returns the errors.
func (e oneLineErrors) Unwrap() []error { return e }

func rotateDest(ctx context.Context, cfg *config.Config, d destination.Dest, o RotateOptions, trusted []ed25519.PublicKey, now time.Time, skip string, log *slog.Logger) RotateDest {
	p, grace := PolicyFor(cfg, d.Name)
	rd := RotateDest{Destination: d.Name, Policy: p.String(), Grace: retention.FormatDuration(grace), Snapshots: []retention.Decision{}}
	// failed ends the destination's rotate at step: the sweep does not
	// run, and says why.
	failed := func(step string, err error) RotateDest {
		rd.Err = err
		rd.Objects = Sweep{Skipped: step + " failed"}
		return rd
	}
	ls, err := snapshot.List(ctx, d.Store, cfg.Host, trusted...)
	if err != nil {
		return failed("listing the snapshots", err)
	}
	snaps := make([]retention.Snapshot, 0, len(ls))
	for _, l := range ls {
		// Ordered by the full start time: ids have whole seconds.
		s := retention.Snapshot{ID: l.ID, Time: l.Start(), State: retention.Complete}
		switch {
		case l.Complete:
			s.Parts, s.PartCount, s.Only, s.FailedParts = l.PartTags, l.Parts, l.Only, l.FailedParts
		case l.Problem != "":
			s.State = retention.Damaged
		case !l.Complete:
			s.State = retention.Incomplete
			s.Activity = l.Modified
			if l.Started.After(s.Activity) {
				s.Activity = l.Started
			}
		}
		snaps = append(snaps, s)
	}
	plan, err := retention.Plan(p, snaps, now, grace)
	if err != nil {
		return failed("planning", err)
	}
	rd.Parts, rd.RetiredParts = retention.PartCounts(snaps)
	rd.Snapshots = plan
	if err := finishHalfRemoved(ctx, d, cfg.Host, rd.Snapshots); err != nil {
		return failed("looking for half-removed snapshots", err)
	}
	for _, dec := range plan {
		if dec.State == retention.Complete && dec.Keep {
			rd.Kept++
		}
	}
	if !o.DryRun && skip != "" {
		// Without the objects lock nothing is removed: an incomplete folder
		// may belong to the running snapshot, a complete one may be read by
		// a running verify or restore. The next rotate removes them.
		for i := range rd.Snapshots {
			if dec := &rd.Snapshots[i]; !dec.Keep {
				dec.Keep = true
				dec.Reasons = append(dec.Reasons, "left while the objects lock is held")
			}
		}
	}

	// Remove what the policy does not keep: manifest first.
	removed := map[string]bool{}
	for _, dec := range rd.Snapshots {
		if dec.Keep {
			continue
		}
		if !o.DryRun {
			var err error
			if dec.State == retention.Incomplete {
				err = snapshot.RemoveIncomplete(ctx, d.Store, cfg.Host, dec.ID)
			} else {
				// Removed by the policy, not lost: never a rollback (see
				// snapshot.ForgetPartsWritten), even if rotate stops half
				// way through the removal.
				if err := snapshot.ForgetPartsWritten(cfg.StateDir, cfg.Host, d.Name, dec.ID); err != nil {
					log.Warn("per-part record not updated", "destination", d.Name, "snapshot", dec.ID, "err", err)
				}
				err = snapshot.RemoveSnapshot(ctx, d.Store, cfg.Host, dec.ID)
			}
			if err != nil {
				return failed("removing snapshot "+dec.ID, err)
			}
			log.Info("snapshot removed", "destination", d.Name, "snapshot", dec.ID, "state", dec.State, "reasons", strings.Join(dec.Reasons, ", "))
		}
		removed[dec.ID] = true
		if dec.State == retention.Incomplete {
			rd.IncompleteRemoved++
		} else {
			rd.Removed++
		}
	}

	if skip != "" {
		rd.Objects.Skipped = skip
		return rd
	}
	sw, err := snapshot.SweepObjects(ctx, d.Store, cfg.Host, now, grace, removed, o.DryRun, log)
	rd.Objects = sw
	if err != nil {
		rd.Err = err
	}
	return rd
}

// ReasonHalfRemoved is why rotate removes an incomplete folder within the
// grace period: an earlier rotate began to remove it.
const ReasonHalfRemoved = "half removed by an earlier rotate: finished now"

// finishHalfRemoved turns the plan's incomplete folders kept within the
// grace period that an earlier rotate began to remove (neither a manifest
// nor a started file left: snapshot.HalfRemoved) into removals: their
// time is that of the interrupted removal, not of a snapshot being
// written.
func finishHalfRemoved(ctx context.Context, d destination.Dest, host string, plan []retention.Decision) error {
	for i := range plan {
		dec := &plan[i]
		if dec.State != retention.Incomplete || !dec.Keep {
			continue
		}
		half, err := snapshot.HalfRemoved(ctx, d.Store, host, dec.ID)
		if err != nil {
			return err
		}
		if half {
			dec.Keep, dec.Reasons = false, []string{ReasonHalfRemoved}
		}
	}
	return nil
}
