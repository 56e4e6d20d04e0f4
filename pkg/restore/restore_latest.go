package restore

// Which snapshot each part of a restore comes from.
//
// An id (or a unique prefix) names one snapshot: every part comes from it.
//
// "latest" is, for each part, the newest complete snapshot holding it, on
// any destination (ordered by start time; an ad hoc `snapshot --only X`
// never hides the other parts of last night's run). The snapshots are
// walked newest first, reading each one's index, until the newest full run
// (a snapshot not limited with --only; one written before fireops recorded
// that counts as full): each part is taken from the first snapshot in the
// walk that holds it. Parts held only by snapshots older than that full run
// are not restored: the full run read every configured part, so they were
// no longer on the server (a deleted user's volume, a source taken out of
// the config). The exception is a part that failed in that full run (its
// index names it): it comes from the newest older snapshot holding it, and
// when none does, the plan says so. A kind whose parts could not even be
// listed in that run (volume:*, the Docker Engine down) takes the parts of
// that kind from the snapshots walked on to the newest older full run
// holding any. The result names each part's snapshot, and Note says how
// the snapshots were chosen, and which parts come from snapshots older
// than the newest one this host wrote holding them (rollback_parts.go:
// that one is gone, incomplete or refused on a destination and no other
// has it). Refused snapshots newer than the newest, or than a snapshot a
// part comes from, are logged.

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"filippo.io/age"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/destination"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/partkind"
	"github.com/firetech/fireops/pkg/snapshot"
)

// PartFrom is one part of a restore and the snapshot it is read from.
type PartFrom struct {
	part snapshot.Part
	src  *partSource
}

// SnapshotID is the id of the snapshot the part is read from.
func (p PartFrom) SnapshotID() string { return p.src.cands[0].m.Snapshot }

// Destination is the destination the part is read from first (the
// others holding it are tried when its pieces are missing or damaged
// there).
func (p PartFrom) Destination() string { return p.src.cands[0].d.Name }

// PartID is the part's id.
func (p PartFrom) PartID() string { return p.part.ID }

// openSnapshot opens a snapshot's manifest and index on every destination
// of dests holding it (in the config's order); the destinations whose
// copy is usable are the part source, the first one's index is returned.
// A wrong identity is a usage error at once; other failures are added to
// errs, and a nil source means no destination had a usable copy.
func openSnapshot(ctx context.Context, cfg *config.Config, dests []destination.Dest, id string, trusted []ed25519.PublicKey, ids []age.Identity, log *slog.Logger, errs *[]error) (*partSource, *snapshot.Index, error) {
	var (
		idx *snapshot.Index
		src partSource
	)
	for _, cand := range dests {
		mm, err := destination.OpenManifest(ctx, cfg, cand, id, trusted)
		var ix *snapshot.Index
		if err == nil {
			// Every destination has its own pieces and piece lists: its
			// own index says which are a part's.
			ix, err = snapshot.ReadIndex(ctx, cand.Store, mm, ids)
			if errors.Is(err, snapshot.ErrWrongIdentity) {
				return nil, nil, exitcode.New(exitcode.Usage, err, "pass --identity with the identity of a recipient the manifest names (the one kept offline)")
			}
		}
		if err != nil {
			*errs = append(*errs, err)
			if log != nil && len(dests) > 1 {
				log.Warn("snapshot not usable on this destination; trying the others", "destination", cand.Name, "snapshot", id, "err", err)
			}
			continue
		}
		if idx == nil {
			idx = ix
		}
		src.cands = append(src.cands, &partCand{d: cand, m: mm, idx: ix})
	}
	if idx == nil {
		return nil, nil, nil
	}
	return &src, idx, nil
}

// snapshotNotFound is the error of a restore that found no usable copy of the
// snapshot it needs: what the destinations said.
func snapshotNotFound(what string, errs []error) error {
	err := errors.Join(errs...)
	if errors.Is(err, snapshot.ErrUntrustedSigner) {
		return exitcode.New(exitcode.CheckFailed, err, destination.UntrustedSignerHint)
	}
	if errors.Is(err, snapshot.ErrIntegrity) {
		return exitcode.New(exitcode.CheckFailed, err, "the snapshot's manifest or index is damaged or was altered; try another destination with --dest or another snapshot")
	}
	if w := new(*WipedError); errors.As(err, w) {
		return exitcode.New(exitcode.CheckFailed, fmt.Errorf("restore %s: %w", what, err), wipedHint)
	}
	if EmptyOnly(errs) {
		// Every destination answered but holds no snapshot of the host:
		// the hint is to take one, not that one is down.
		return exitcode.New(exitcode.Failure, fmt.Errorf("restore %s: %w", what, err), NoSnapshotHint)
	}
	err = fmt.Errorf("restore %s: %w", what, err)
	if exitcode.Code(err) == exitcode.Failure && exitcode.Hint(err) == "" {
		// The destinations could not be read (a download broke off, the
		// credentials): what a person checks next. Not --dest OTHER: every
		// destination that could hold the snapshot was tried.
		return exitcode.New(exitcode.Failure, err, destination.OpenAllHint)
	}
	return err
}

// idParts plans the restore of one snapshot, id, held by the destinations
// on names: every part of it.
func idParts(ctx context.Context, cfg *config.Config, dests []destination.Dest, on map[string]bool, id string, trusted []ed25519.PublicKey, ids []age.Identity, o Options, errs []error) ([]PartFrom, error) {
	var holding []destination.Dest
	for _, d := range dests {
		if on[d.Name] {
			holding = append(holding, d)
		}
	}
	src, idx, err := openSnapshot(ctx, cfg, holding, id, trusted, ids, o.Log, &errs)
	if err != nil {
		return nil, err
	}
	if src == nil {
		return nil, snapshotNotFound(o.Snapshot, errs)
	}
	out := make([]PartFrom, len(idx.Parts))
	for i, p := range idx.Parts {
		out[i] = PartFrom{part: p, src: src}
	}
	return out, nil
}

// latestCand is one complete snapshot of the walk and the destinations
// holding it.
type latestCand struct {
	l     snapshot.Listing
	dests []destination.Dest
}

// full reports whether the snapshot was a full run: not limited with
// --only (one that does not record its parts counts as full).
func (c latestCand) full() bool { return c.l.PartTags == nil || !c.l.Only }

// LatestParts plans a restore of "latest": per part, the newest complete
// snapshot holding it (see the top of this file). It lists each of dests
// (LatestListing) and plans from those listings (LatestPartsOf). It
// returns the parts and a note for the plan.
func LatestParts(ctx context.Context, cfg *config.Config, dests []destination.Dest, trusted []ed25519.PublicKey, ids []age.Identity, o Options, errs []error) ([]PartFrom, string, error) {
	var listed []*DestLatest
	var unread []string // the destinations not opened or listed
	for _, err := range errs {
		if oe := new(destination.OpenError); errors.As(err, oe) {
			unread = append(unread, oe.Name)
		}
	}
	for _, d := range dests {
		x, err := LatestListing(ctx, cfg, d, trusted)
		if err != nil {
			if w := new(*WipedError); errors.As(err, w) && o.Log != nil {
				o.Log.Warn("no usable snapshot left where this host wrote one (rollback): check who changed the destination; using the others", "destination", d.Name, "err", err)
			}
			errs = append(errs, err)
			unread = append(unread, d.Name)
			continue
		}
		listed = append(listed, x)
	}
	out, note, err := LatestPartsOf(ctx, cfg, listed, trusted, ids, o, errs)
	if err != nil {
		return nil, "", err
	}
	return out, JoinNote(note, unreadNote(cfg, out, unread)), nil
}

// unreadNote is the plan's note about the destinations that could not be
// opened or listed (or hold no usable snapshot) where this host wrote a
// snapshot newer than the one a part of out comes from: by the host's
// per-part record (snapshot.PartsWritten), the parts planned from older
// snapshots or not at all; for a host without one, its newest snapshot
// there (snapshot.LastWritten) when it is newer than every snapshot of
// the plan. The newest snapshot may be on that destination alone: the
// plan is not silently an older one.
func unreadNote(cfg *config.Config, out []PartFrom, unread []string) string {
	note := ""
	for _, dest := range unread {
		rec := snapshot.PartsWritten(cfg.StateDir, cfg.Host, dest)
		if len(rec) == 0 {
			last := snapshot.LastWritten(cfg.StateDir, cfg.Host, dest)
			newer := last != ""
			for _, pf := range out {
				if pf.SnapshotID() == last || snapshot.IDSecond(pf.SnapshotID()) > snapshot.IDSecond(last) {
					newer = false
				}
			}
			if newer {
				note = JoinNote(note, fmt.Sprintf("%s, the newest snapshot this host wrote to %s, is newer than every snapshot planned, and %s could not be read: the parts it holds may come from older snapshots",
					last, dest, dest))
			}
			continue
		}
		var byID []partRollback // the parts planned from older snapshots, per recorded snapshot
		for _, e := range rec {
			var r *partRollback
			for i := range byID {
				if byID[i].Snapshot == e.Snapshot {
					r = &byID[i]
				}
			}
			if r == nil {
				byID = append(byID, partRollback{Dest: dest, Snapshot: e.Snapshot})
				r = &byID[len(byID)-1]
			}
			r.Parts = append(r.Parts, e.Part)
		}
		for _, r := range byID {
			older, missing := rolledBackParts(out, r)
			if len(older) > 0 {
				note = JoinNote(note, fmt.Sprintf("%s from snapshots older than %s, the newest this host wrote holding them, which is on %s, which could not be read",
					namesOf(older), r.Snapshot, dest))
			}
			if len(missing) > 0 {
				note = JoinNote(note, fmt.Sprintf("%s not restored: %s, the newest snapshot this host wrote holding them, is on %s, which could not be read",
					namesOf(missing), r.Snapshot, dest))
			}
		}
	}
	return note
}

// LatestPartsOf is LatestParts from listings already made (LatestListing,
// one per destination): nothing is listed again, so the plan is made from
// the very listing the caller judged (verify latest's rollback finding,
// its newest snapshot). A provider answering a second listing otherwise
// than the first cannot hide a snapshot from the plan that the caller
// found to be the newest. errs are the errors of the destinations that
// could not be listed (said when no snapshot is found).
func LatestPartsOf(ctx context.Context, cfg *config.Config, listed []*DestLatest, trusted []ed25519.PublicKey, ids []age.Identity, o Options, errs []error) ([]PartFrom, string, error) {
	// Every complete snapshot on every destination, newest first.
	byID := map[string]*latestCand{}
	var cands []*latestCand
	for _, x := range listed {
		d := x.d
		if o.Log != nil {
			if x.rollback != "" {
				o.Log.Warn("the newest snapshot this host wrote is missing: restoring from older ones", "destination", d.Name, "problem", x.rollback)
			}
			for _, r := range x.partsOnly() {
				o.Log.Warn("a snapshot this host wrote, the newest holding some parts, is missing: those parts come from older ones (rollback: check who changed the destination)",
					"destination", d.Name, "snapshot", r.Snapshot, "parts", namesOf(r.Parts), "state", r.Why, "problem", r.Problem)
			}
			for _, r := range x.refused {
				if r.Newer(x.latest) {
					o.Log.Warn("a newer snapshot was refused: check who wrote it (fireops snapshots shows it)",
						"destination", d.Name, "snapshot", r.ID, "problem", r.Problem)
				}
			}
		}
		for _, l := range x.ls {
			if !l.Complete || l.Problem != "" {
				continue
			}
			c := byID[l.ID]
			if c == nil {
				c = &latestCand{l: l}
				byID[l.ID] = c
				cands = append(cands, c)
			}
			c.dests = append(c.dests, d)
		}
	}
	slices.SortStableFunc(cands, func(a, b *latestCand) int { return NewerFirst(a.l, b.l) })

	var (
		out      []PartFrom
		order    []string // part ids as first seen
		assigned = map[string]int{}
		closed   bool            // the newest full run was read
		pending  map[string]bool // parts that failed in it
		fullRun  string
		used     []string // the snapshots read, newest first
	)
	for _, c := range cands {
		if closed && len(pending) == 0 {
			break
		}
		src, idx, err := openSnapshot(ctx, cfg, c.dests, c.l.ID, trusted, ids, o.Log, &errs)
		if err != nil {
			return nil, "", err
		}
		if src == nil {
			// A newer snapshot that cannot be read is never skipped for an
			// older one in silence.
			return nil, "", snapshotNotFound("latest: snapshot "+c.l.ID, errs)
		}
		used = append(used, c.l.ID)
		var every []string // the kinds' pseudo-parts this full run resolves
		for _, p := range idx.Parts {
			kindFailed := pending[p.Kind+":"+partkind.EveryOfKind]
			if _, ok := assigned[p.ID]; ok || closed && !pending[p.ID] && !kindFailed {
				continue
			}
			assigned[p.ID] = len(out)
			out = append(out, PartFrom{part: p, src: src})
			order = append(order, p.ID)
			delete(pending, p.ID)
			if kindFailed && c.full() {
				every = append(every, p.Kind+":"+partkind.EveryOfKind)
			}
		}
		for _, e := range every {
			delete(pending, e)
		}
		if !closed && c.full() {
			closed, fullRun = true, c.l.ID
			pending = map[string]bool{}
			for _, f := range idx.FailedParts {
				if _, ok := assigned[f.ID]; !ok {
					pending[f.ID] = true
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, "", snapshotNotFound("latest", errs)
	}
	// The parts in the order of the last snapshot read (the full run:
	// usually all of them), then those it does not hold.
	var last []string
	for _, pf := range out {
		if pf.SnapshotID() == used[len(used)-1] {
			last = append(last, pf.part.ID)
		}
	}
	rank := func(id string) int {
		if i := slices.Index(last, id); i >= 0 {
			return i
		}
		return len(last) + slices.Index(order, id)
	}
	slices.SortStableFunc(out, func(a, b PartFrom) int { return rank(a.part.ID) - rank(b.part.ID) })

	// A refused snapshot older than the newest but newer than a snapshot a
	// part comes from may be that part's newest: said too.
	oldest := byID[used[0]].l
	for _, pf := range out {
		if l := byID[pf.SnapshotID()].l; oldest.Newer(l) {
			oldest = l
		}
	}
	var rolled []partRollback
	for _, x := range listed {
		rolled = append(rolled, x.parts...)
		for _, r := range x.refused {
			if o.Log != nil && !r.Newer(x.latest) && r.Newer(oldest) && !namedIn(x.parts, r.ID) {
				o.Log.Warn("a snapshot newer than one a part is restored from was refused: check who wrote it (fireops snapshots shows it)",
					"destination", x.d.Name, "snapshot", r.ID, "problem", r.Problem)
			}
		}
	}

	note := ""
	if len(used) > 1 {
		note = fmt.Sprintf("latest: each part from the newest snapshot holding it; %d snapshots read, newest first: %s", len(used), strings.Join(used, ", "))
	}
	if n := leftOut(cands, len(used)); n > 0 {
		note = JoinNote(note, fmt.Sprintf("%d part(s) that only snapshots older than %s hold are not restored: that full run no longer held them (restore one by the id of an older snapshot with --part)", n, fullRun))
	}
	if len(pending) > 0 {
		var miss []string
		for p := range pending {
			miss = append(miss, p)
		}
		slices.Sort(miss)
		note = JoinNote(note, fmt.Sprintf("%s failed in %s and no older snapshot holds it: not in the plan", strings.Join(miss, ", "), fullRun))
	}
	return out, JoinNote(note, rollbackNote(out, rolled)), nil
}

// leftOut counts the parts that the snapshots older than the first n of
// cands (those read) hold and none of those read does, by the manifests'
// part tags (no index is read); only snapshots that record their tags
// under a signer of one of those read are compared (another signing key
// tags the same parts otherwise).
func leftOut(cands []*latestCand, n int) int {
	held, signers := map[string]bool{}, map[string]bool{}
	for _, c := range cands[:n] {
		if c.l.PartTags == nil {
			return 0 // what an untagged snapshot held is unknown
		}
		signers[c.l.Signer] = true
		for _, t := range c.l.PartTags {
			held[t] = true
		}
	}
	gone := map[string]bool{}
	for _, c := range cands[n:] {
		if !signers[c.l.Signer] {
			continue
		}
		for _, t := range c.l.PartTags {
			if !held[t] {
				gone[t] = true
			}
		}
	}
	return len(gone)
}

// NewerFirst orders snapshot listings newest first (by Listing.Newer), for
// slices.SortStableFunc; listings neither of which is newer compare equal.
func NewerFirst(a, b snapshot.Listing) int {
	switch {
	case a.Newer(b):
		return -1
	case b.Newer(a):
		return 1
	}
	return 0
}

// LatestByTags returns, newest first, the usable snapshots of a
// destination that restore latest reads a part from, by their manifests'
// part tags (no index is read): the newest one, then each older one that
// holds a part no newer one does, back to the newest full run (a snapshot
// not limited with --only; one without tags counts as full and holds
// everything). When that run has failed parts, restore latest takes them
// from the newest older snapshot holding them, walking past clean full
// runs that do not hold them (the top of this file): which parts failed is in
// the encrypted index, so the walk then does not stop at a clean full run
// but goes on with every older snapshot holding a part none walked does,
// to the oldest (or to one without tags). It may check snapshots restore
// would not read (a part left out of the config since): checking more is
// harmless, leaving out one restore reads is not.
func LatestByTags(x *DestLatest) []snapshot.Listing {
	var cands []snapshot.Listing
	for _, l := range x.ls {
		if usable(l) {
			cands = append(cands, l)
		}
	}
	slices.SortStableFunc(cands, NewerFirst)
	seen := map[string]bool{}
	var out []snapshot.Listing
	failedRun := false // the newest full run had failed parts
	for i, l := range cands {
		fresh := i == 0 || l.PartTags == nil
		for _, t := range l.PartTags {
			if !seen[t] {
				seen[t], fresh = true, true
			}
		}
		if fresh {
			out = append(out, l)
		}
		switch {
		case !(latestCand{l: l}).full() || failedRun && l.PartTags != nil:
		case l.PartTags == nil || l.FailedParts == 0:
			// A full run that read every part (or one whose parts are not
			// known): while no newer full run had failed parts, older
			// snapshots hold none restore takes.
			return out
		default:
			failedRun = true
		}
	}
	return out
}

// JoinNote joins two notes of a plan with "; ", leaving out an empty one.
func JoinNote(a, b string) string {
	if a == "" || b == "" {
		return a + b
	}
	return a + "; " + b
}

// selectFrom picks the parts named by ids or kinds ("files:stack",
// "sqlite"); empty selects all (selectParts, for planned parts).
func selectFrom(all []PartFrom, sel []string) ([]PartFrom, error) {
	parts := make([]snapshot.Part, len(all))
	for i, pf := range all {
		parts[i] = pf.part
	}
	picked, err := selectParts(parts, sel)
	if err != nil {
		return nil, err
	}
	out := make([]PartFrom, 0, len(picked))
	for _, p := range picked {
		i := slices.IndexFunc(all, func(pf PartFrom) bool { return pf.part.ID == p.ID })
		out = append(out, all[i])
	}
	return out, nil
}

// newRestoreResult is the result of a restore of parts before anything
// is planned: the destination and snapshot of the newest part (every
// part's own in PlannedPart.Snapshot).
func newRestoreResult(sel []PartFrom, note string) *Result {
	newest := sel[0].src.cands[0]
	for _, pf := range sel[1:] {
		c := pf.src.cands[0]
		if c.m.Started.After(newest.m.Started) || c.m.Started.Equal(newest.m.Started) && c.m.Snapshot > newest.m.Snapshot {
			newest = c
		}
	}
	return &Result{Destination: newest.d.Name, Snapshot: newest.m.Snapshot, Note: note}
}

// restoreWhat names a restore in errors: "restore ID", or "restore
// latest" when its parts come from several snapshots.
func restoreWhat(res *Result) string {
	for _, p := range res.Parts {
		if p.Snapshot != "" && p.Snapshot != res.Snapshot {
			return "restore latest"
		}
	}
	return "restore " + res.Snapshot
}

// DestLatest is what LatestListing finds on a destination.
type DestLatest struct {
	// d is the destination listed.
	d  destination.Dest
	ls []snapshot.Listing
	// latest is the newest complete snapshot (snapshot.Latest).
	latest snapshot.Listing
	// refused are the listed snapshots whose manifest was refused, oldest
	// first.
	refused []snapshot.Listing
	// rollback is rolledBack's verdict on latest, parts partRollbacks'.
	rollback string
	parts    []partRollback
}

// Latest is the destination's newest complete snapshot.
func (x *DestLatest) Latest() snapshot.Listing { return x.latest }

// Listings are the destination's snapshots as listed.
func (x *DestLatest) Listings() []snapshot.Listing { return x.ls }

// LatestListing lists a destination's snapshots and finds its newest
// complete one (snapshot.Latest), the refused ones, and whether snapshots
// the host wrote there are missing (rolledBack, partRollbacks). trusted
// are the keys the caller loaded (TrustedKeys) before reading any
// destination: a config error stops a job there, so every error returned
// here is d's own, whatever its exit code, and the job goes on with the
// next destination. A destination without a usable snapshot of the host
// is a *WipedError when this host wrote one there (a rollback), else a
// *noSnapshotError.
func LatestListing(ctx context.Context, cfg *config.Config, d destination.Dest, trusted []ed25519.PublicKey) (*DestLatest, error) {
	ls, err := snapshot.List(ctx, d.Store, cfg.Host, trusted...)
	if err != nil {
		return nil, err
	}
	x := judge(cfg, d, ls)
	if x.latest.ID == "" {
		// None left where this host wrote one: a rollback, not an empty
		// destination.
		if err := wipedOn(cfg, d, ls); err != nil {
			return nil, err
		}
		return nil, noSnapshotOn(ctx, cfg, d, ls)
	}
	return x, nil
}

// judge finds in d's listing ls its newest complete snapshot
// (snapshot.Latest; none: latest is zero), the refused ones, and whether
// snapshots the host wrote there are missing (rolledBack, partRollbacks):
// what LatestListing and RollbackOn judge a listing by.
func judge(cfg *config.Config, d destination.Dest, ls []snapshot.Listing) *DestLatest {
	x := &DestLatest{d: d, ls: ls, parts: partRollbacks(cfg, d.Name, ls)}
	latest, ok := snapshot.Latest(ls)
	for _, l := range ls {
		if ok && l.ID == latest {
			x.latest = l
		}
		if l.Problem != "" {
			x.refused = append(x.refused, l)
		}
	}
	if x.latest.ID != "" {
		x.rollback = rolledBack(cfg, d, ls, x.latest)
	}
	return x
}
