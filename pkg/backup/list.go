package backup

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"strings"

	"filippo.io/age"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/snapshot"
)

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
