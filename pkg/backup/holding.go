package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/keys"
	"github.com/firetech/fireops/pkg/restore"
	"github.com/firetech/fireops/pkg/snapshot"
)

// Holding is a snapshot that holds a part and passed a verify.
type Holding struct {
	// Part is the part's id ("volume:jupyterhub-user-ada").
	Part string `json:"part"`
	// Destination and Snapshot name the snapshot.
	Destination string `json:"destination"`
	Snapshot    string `json:"snapshot"`
	// Level is the verify level it passed.
	Level string `json:"level"`
}

// NotHeldError says that no verified snapshot holds a part: none holds
// it, or those that do failed or could not finish their verify.
type NotHeldError struct {
	Part   string
	Reason string
	// CheckFailed says a snapshot holding the part failed its verify
	// (exit code 3 of verify): the data on a destination needs a look.
	CheckFailed bool
	err         error // the verify errors, if any
}

// Error names the part and why no verified snapshot holds it.
func (e *NotHeldError) Error() string {
	return fmt.Sprintf("no verified snapshot holds %s: %s", e.Part, e.Reason)
}

// IsCheckFailed reports CheckFailed (pkg/deploy's prune asks it).
func (e *NotHeldError) IsCheckFailed() bool { return e.CheckFailed }

// Unwrap returns the errors of the verifies that failed (nil when no
// snapshot holds the part).
func (e *NotHeldError) Unwrap() error { return e.err }

// errCheckFailed is matched (errors.Is) by Verify's error when a check
// found a problem (exit code 3): a snapshot failed its check, or a
// destination shows a rollback. Not by a wrong identity alone, nor by a
// destination that could not be read.
var errCheckFailed = errors.New("verify: a check failed")

// checkFailedError is Verify's error when a check found a problem: msg
// says what; it matches errCheckFailed.
type checkFailedError struct{ msg string }

func (e *checkFailedError) Error() string        { return e.msg }
func (e *checkFailedError) Is(target error) bool { return target == errCheckFailed }

// HolderOptions configure a Holder.
type HolderOptions struct {
	// Level is the verify level a snapshot must pass: quick, hashes (the
	// default: every stored byte against the signed manifest, no private
	// key) or full.
	Level string
	// Log receives what the verifies do.
	Log *slog.Logger
}

// Holder finds, for a part, the newest complete snapshot on any
// destination that holds it and verifies it (`fireops deploy prune
// --volumes` removes a deleted user's volume only once one does).
//
// Which snapshots hold a part comes from the part tags of their signed
// manifests (Listing.PartTags): the keyed tag of the part id under the
// signing key (keys.signing_key_file), so no private identity is needed.
// Only snapshots in which the part succeeded carry its tag; snapshots
// signed by another key, or written before part tags were recorded, do not
// count. A snapshot is verified at most once per Holder.
//
// Only the newest snapshot holding the part counts (its copy on any
// destination): when every copy of it fails its verify, the part is not
// held, and older snapshots holding it are not tried. The live data is
// removed on Find's word, and an older snapshot lacks what was written
// since: the newest must be repaired first (the next snapshot of the part
// uploads the damaged pieces again). Likewise a rollback: when a
// destination's listing shows that the newest snapshot this host wrote
// there holding the part is gone, incomplete or refused
// (restore.PartRollback, from the host's record in state_dir), no
// snapshot older than that one counts, on any destination; the part is
// not held and the check failed (exit code 3, as verify latest reports
// it). A provider deleting the newest snapshot cannot make prune remove
// live data against a stale archive. Nor can one refusing to list its
// snapshots: when the host's record names a snapshot holding the part on a
// destination that could not be listed, newer than those listed, no older
// snapshot counts either (the part is not held; not a failed check).
type Holder struct {
	cfg    *config.Config
	opts   HolderOptions
	tagger *snapshot.PartTagger
	// listed is the listing of every destination, once.
	listed   []DestListing
	listErr  error
	isListed bool
	verdicts map[string]error // destination + "/" + snapshot -> verify error (nil: passed)
}

// NewHolder returns a Holder for the config. It needs the signing key
// (keys.signing_key_file): the part tags are derived from it.
func NewHolder(cfg *config.Config, o HolderOptions) (*Holder, error) {
	switch o.Level {
	case "":
		o.Level = LevelHashes
	case LevelQuick, LevelHashes, LevelFull:
	default:
		return nil, exitcode.Usagef("use quick, hashes or full", "unknown verify level %q", o.Level)
	}
	if cfg.Keys.SigningKeyFile == "" {
		return nil, exitcode.Usagef("set keys.signing_key_file (fireops init writes it): snapshots name their parts by tags derived from it",
			"no signing key: cannot tell which snapshots hold a part")
	}
	signer, err := keys.LoadSigningKey(cfg.Keys.SigningKeyFile)
	if err != nil {
		return nil, exitcode.New(exitcode.Usage, fmt.Errorf("keys.signing_key_file: %w", err), "")
	}
	tagger, err := snapshot.NewPartTagger(signer)
	if err != nil {
		return nil, err
	}
	return &Holder{cfg: cfg, opts: o, tagger: tagger, verdicts: map[string]error{}}, nil
}

type holdingCand struct {
	dest string
	l    snapshot.Listing
}

// Find returns the newest snapshot holding part, on a destination where
// it passes a verify at the Holder's level (see Holder: an older snapshot
// never stands in for it, nor for one a destination lost). A
// *NotHeldError says why there is none; it wraps (errors.Is) the error of
// a verify that found the data damaged, or the rollback finding, so the
// caller can tell a failed check (exit code 3) from a missing archive.
func (h *Holder) Find(ctx context.Context, part string) (Holding, error) {
	if !h.isListed {
		h.listed, h.listErr = List(ctx, h.cfg, nil)
		h.isListed = true
	}
	if h.listErr != nil {
		return Holding{}, h.listErr
	}
	tag := h.tagger.Tag(part)
	var cands []holdingCand
	var unlisted []DestListing
	type rolledBack struct{ id, finding string }
	var rolled []rolledBack // the rollbacks of the part, per destination
	for _, d := range h.listed {
		if d.Error != "" {
			unlisted = append(unlisted, d)
			continue
		}
		if id, finding := restore.PartRollback(h.cfg, d.Destination, d.Snapshots, part); id != "" {
			rolled = append(rolled, rolledBack{id, finding})
		}
		for _, l := range d.Snapshots {
			if l.Complete && l.Problem == "" && slices.Contains(l.PartTags, tag) {
				cands = append(cands, holdingCand{dest: d.Destination, l: l})
			}
		}
	}
	slices.SortStableFunc(cands, func(a, b holdingCand) int { return restore.NewerFirst(a.l, b.l) })
	if len(cands) > 0 {
		// Only the newest snapshot holding the part counts: its copies.
		newest := cands[0].l.ID
		cands = slices.DeleteFunc(cands, func(c holdingCand) bool { return c.l.ID != newest })
		var findings []string
		for _, r := range rolled {
			if newest != r.id && snapshot.IDSecond(newest) <= snapshot.IDSecond(r.id) {
				findings = append(findings, r.finding)
			}
		}
		if len(findings) > 0 {
			msg := fmt.Sprintf("a destination shows a rollback of it (%s): the newest snapshot left holding it, %s, is older and lacks what the missing one held",
				strings.Join(findings, "; "), newest)
			return Holding{}, &NotHeldError{Part: part, Reason: msg, CheckFailed: true,
				err: exitcode.New(exitcode.CheckFailed, &checkFailedError{msg: msg}, RollbackHint)}
		}
		if w, d := h.unlistedNewer(unlisted, part, newest); w != "" {
			msg := fmt.Sprintf("the newest snapshot this host wrote holding it, %s, is on %s, which could not be listed (%s): the older %s does not stand in for it",
				w, d.Destination, d.Error, newest)
			return Holding{}, &NotHeldError{Part: part, Reason: msg}
		}
		if len(rolled) > 0 && h.opts.Log != nil {
			h.opts.Log.Warn("a destination lost the newest snapshot holding the part; another holds it", "part", part, "snapshot", newest, "rollback", rolled[0].finding)
		}
	} else if len(rolled) > 0 {
		msg := fmt.Sprintf("a destination shows a rollback of it (%s) and no snapshot left holds it", rolled[0].finding)
		return Holding{}, &NotHeldError{Part: part, Reason: msg, CheckFailed: true,
			err: exitcode.New(exitcode.CheckFailed, &checkFailedError{msg: msg}, RollbackHint)}
	}
	var failed []error
	checkFailed := false
	for _, c := range cands {
		key := c.dest + "/" + c.l.ID
		verr, done := h.verdicts[key]
		if !done {
			verr = h.verify(ctx, c.dest, c.l.ID)
			h.verdicts[key] = verr
		}
		if ctx.Err() != nil {
			return Holding{}, ctx.Err()
		}
		if verr == nil {
			return Holding{Part: part, Destination: c.dest, Snapshot: c.l.ID, Level: h.opts.Level}, nil
		}
		failed = append(failed, fmt.Errorf("%s on %s: %w", c.l.ID, c.dest, verr))
		checkFailed = checkFailed || errors.Is(verr, errCheckFailed)
	}
	reason := "no snapshot signed with keys.signing_key_file holds it (take one: fireops snapshot --only " + part + ")"
	if len(failed) > 0 {
		reason = fmt.Sprintf("%d snapshot(s) hold it but failed verify --level %s: %v", len(failed), h.opts.Level, errors.Join(failed...))
		reason = strings.ReplaceAll(reason, "\n", "; ")
		reason += "; older snapshots holding it are not tried (they lack what the newest holds): repair the newest first (fireops snapshot --only " + part + " uploads damaged pieces again)"
	}
	if len(unlisted) > 0 {
		names := make([]string, len(unlisted))
		for i, d := range unlisted {
			names[i] = d.Destination
		}
		reason += fmt.Sprintf(" (not listed: %s)", strings.Join(names, ", "))
	}
	return Holding{}, &NotHeldError{Part: part, Reason: reason, CheckFailed: checkFailed, err: errors.Join(failed...)}
}

// unlistedNewer returns a snapshot this host wrote to one of the
// destinations that could not be listed, and that destination, when it
// may be a newer snapshot holding part than newest, the newest one listed
// (not the same, and not of an earlier second): the host's per-part
// record of that destination (snapshot.PartsWritten), or, for a host
// without one, its newest snapshot there (snapshot.LastWritten: what it
// held is not known). "" when none is: the destinations listed hold the
// newest snapshot the host knows of.
func (h *Holder) unlistedNewer(unlisted []DestListing, part, newest string) (string, DestListing) {
	newer := func(id string) bool {
		return id != "" && id != newest && snapshot.IDSecond(id) >= snapshot.IDSecond(newest)
	}
	for _, d := range unlisted {
		rec := snapshot.PartsWritten(h.cfg.StateDir, h.cfg.Host, d.Destination)
		if len(rec) == 0 {
			if last := snapshot.LastWritten(h.cfg.StateDir, h.cfg.Host, d.Destination); newer(last) {
				return last, d
			}
			continue
		}
		for _, e := range rec {
			if e.Part == part && newer(e.Snapshot) {
				return e.Snapshot, d
			}
		}
	}
	return "", DestListing{}
}

// verify runs verify at the Holder's level on one snapshot of one
// destination; nil means it passed.
func (h *Holder) verify(ctx context.Context, dest, id string) error {
	res, err := Verify(ctx, h.cfg, VerifyOptions{Snapshot: id, Level: h.opts.Level, Dests: []string{dest}, Log: h.opts.Log})
	if err != nil {
		return err
	}
	for _, r := range res {
		if r.Destination == dest && r.Snapshot == id && r.OK {
			return nil
		}
	}
	return fmt.Errorf("verify gave no result for %s on %s", id, dest)
}
