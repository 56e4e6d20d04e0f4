package restore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/destination"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/snapshot"
)

// EmptyIDError is the usage error of a snapshot id given but empty (a
// script's unset $ID): it never stands for latest.
func EmptyIDError() error {
	return exitcode.Usagef("`fireops snapshots` lists the ids; in a script, check that the variable holding the id is set",
		"an empty snapshot id: give an id, a unique prefix, or latest")
}

// ResolveID turns a snapshot id, or any unique prefix of one (like git and
// restic), into the full id, looking at the snapshot folders of every
// destination given; on says which of them hold it. "latest" is returned
// as it is (each caller finds the newest its own way). A prefix that
// matches several ids, or none, is a usage error that lists the matches or
// the closest ids; when a destination could not be listed, an id found on
// none of the others is a failure of that destination instead (it may be
// there). unlisted holds, by name, the listing error of each of dests
// that could not be listed (absent from on, though it may hold the id).
func ResolveID(ctx context.Context, cfg *config.Config, dests []destination.Dest, unopened []destination.OpenError, id string) (full string, on map[string]bool, unlisted map[string]error, err error) {
	if id == "latest" {
		return id, nil, nil, nil
	}
	if id == "" {
		return "", nil, nil, EmptyIDError()
	}
	if !snapshot.ValidIDPrefix(id) {
		return "", nil, nil, exitcode.Usagef("give an id (or a unique prefix of one) as listed by `fireops snapshots`, or latest",
			"%q is not a snapshot id (YYYYMMDDTHHMMSSZ-xxxxxx)", id)
	}
	holders := map[string][]string{} // id -> the destinations holding it
	var all []string
	var notListed []string
	for _, u := range unopened {
		notListed = append(notListed, fmt.Sprintf("%s: %v", u.Name, u.Err))
	}
	unlisted = map[string]error{}
	for _, d := range dests {
		ids, err := snapshot.IDs(ctx, d.Store, cfg.Host)
		if err != nil && !errors.Is(err, snapshot.ErrNotFound) {
			notListed = append(notListed, fmt.Sprintf("%s: %v", d.Name, err))
			unlisted[d.Name] = err
			continue
		}
		for _, c := range ids {
			if _, ok := holders[c]; !ok {
				all = append(all, c)
			}
			holders[c] = append(holders[c], d.Name)
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
		return matches[0], on, unlisted, nil
	case len(matches) > 1:
		shown := matches
		if len(shown) > 10 {
			shown = append(slices.Clone(shown[:10]), fmt.Sprintf("and %d more", len(matches)-10))
		}
		return "", nil, nil, exitcode.Usagef("give more of the id", "snapshot id prefix %q is ambiguous: it matches %s", id, strings.Join(shown, ", "))
	case len(notListed) > 0:
		return "", nil, nil, exitcode.New(exitcode.Failure, &UnlistedError{fmt.Errorf("no snapshot %q on the destinations that could be listed; not listed: %s", id, strings.Join(notListed, "; "))}, destination.OpenAllHint)
	case len(all) == 0:
		return "", nil, nil, exitcode.Usagef("take one with `fireops snapshot`, or check host and destinations in the config",
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
	return "", nil, nil, exitcode.Usagef("give an id as listed by `fireops snapshots`, or latest",
		"no snapshot %q on %s; closest, newest first: %s", id, destNames(dests), strings.Join(closestIDs(all, id, 3, started), ", "))
}

// UnlistedError is ResolveID's error when the id is on none of the
// destinations it listed and some could not be listed: a failure of those
// destinations (the id may be there), not of the id. Every other error of
// ResolveID is about the id (a usage error).
type UnlistedError struct{ error }

// Unwrap returns the error.
func (e *UnlistedError) Unwrap() error { return e.error }

// destNames names the destinations given ("local, yandex").
func destNames(dests []destination.Dest) string {
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
func rolledBack(cfg *config.Config, d destination.Dest, ls []snapshot.Listing, latest snapshot.Listing) string {
	last := snapshot.LastWritten(cfg.StateDir, cfg.Host, d.Name)
	if last == "" || last == latest.ID || snapshot.IDSecond(last) < snapshot.IDSecond(latest.ID) {
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

// noSnapshotError says that a destination answered but holds no usable
// snapshot of the host: what it holds instead, so that an empty (or
// misnamed) destination is not taken for one that is down.
type noSnapshotError struct {
	Dest, Host string
	// Incomplete counts the host's snapshots without a usable manifest.
	Incomplete int
	// OtherHosts are the hosts that do have snapshots there.
	OtherHosts []string
}

// EmptyOnly reports whether every error says a destination holds no
// snapshot of the host (and there is at least one).
func EmptyOnly(errs []error) bool {
	for _, err := range errs {
		var ns *noSnapshotError
		if !errors.As(err, &ns) {
			return false
		}
	}
	return len(errs) > 0
}

// NoSnapshotHint is what to do about a destination that holds no
// snapshot of the host (EmptyOnly).
const NoSnapshotHint = "take one with `fireops snapshot`, or check `host:` in the config (and --dest)"

// Error names the destination and the host, and what the destination
// holds instead.
func (e *noSnapshotError) Error() string {
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
func noSnapshotOn(ctx context.Context, cfg *config.Config, d destination.Dest, ls []snapshot.Listing) error {
	e := &noSnapshotError{Dest: d.Name, Host: cfg.Host, Incomplete: len(ls)}
	if e.Incomplete == 0 {
		hosts, _ := snapshot.Hosts(ctx, d.Store)
		for _, h := range hosts {
			if h != cfg.Host {
				e.OtherHosts = append(e.OtherHosts, h)
			}
		}
	}
	return e
}

// WipedError says that a destination holds no usable snapshot of the host
// although this host wrote one there (state_dir: snapshot.LastWritten, or
// the per-part record): its snapshots were deleted, or their manifests
// removed or refused. A rollback, a finding of the destination (exit 3),
// not an empty destination on which to take a first snapshot.
type WipedError struct {
	Dest, Host string
	// Snapshot is the newest snapshot this host wrote there; Why says
	// what became of it (gone, incomplete, refused).
	Snapshot, Why string
}

// Error names the destination and the snapshot the host wrote there.
func (e *WipedError) Error() string {
	return fmt.Sprintf("destination %s holds no usable snapshot of host %s, but this host wrote %s there, which is %s (rollback): check who changed the destination",
		e.Dest, e.Host, e.Snapshot, e.Why)
}

// wipedHint is what to do about a WipedError.
const wipedHint = "a snapshot this host wrote is gone or refused: check who changed the destination (fireops snapshots shows what is there); take a new snapshot"

// wipedOn is the WipedError of destination d, whose listing ls holds no
// usable snapshot of the host, when this host wrote one there; nil when
// it has no record of one (a destination never written to, a new
// state_dir, another host's name).
func wipedOn(cfg *config.Config, d destination.Dest, ls []snapshot.Listing) error {
	last := snapshot.LastWritten(cfg.StateDir, cfg.Host, d.Name)
	if last == "" {
		for _, r := range partRollbacks(cfg, d.Name, ls) {
			if r.Snapshot > last {
				last = r.Snapshot
			}
		}
	}
	if last == "" {
		return nil
	}
	e := &WipedError{Dest: d.Name, Host: cfg.Host, Snapshot: last, Why: "gone"}
	for _, l := range ls {
		if l.ID != last {
			continue
		}
		e.Why = "incomplete (no manifest)"
		if l.Problem != "" {
			e.Why = "refused (" + l.Problem + ")"
		}
	}
	return e
}
