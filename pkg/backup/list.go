package backup

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"strings"

	"filippo.io/age"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/destination"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/snapshot"
)

// DestListing is the snapshots of one destination.
type DestListing struct {
	Destination string             `json:"destination"`
	Error       string             `json:"error,omitempty"`
	Snapshots   []snapshot.Listing `json:"snapshots"`
	// Contents is, by snapshot id, what each complete snapshot holds,
	// when asked for (ListOptions.Contents) and keys.identity_file
	// decrypts its encrypted index; a snapshot whose index was not read
	// (no identity, incomplete, refused, not decrypted) has no entry.
	// The command prints it with the listing.
	Contents map[string]*Contents `json:"-"`
}

// Contents is what a complete snapshot holds, from its encrypted index.
type Contents struct {
	// Parts are the ids of the parts it holds ("files:stack"), in the
	// index's order.
	Parts []string `json:"parts"`
	// Raw is the plaintext (tar) size of its parts together.
	Raw int64 `json:"raw"`
	// Stored is the stored size of its parts' pieces (each part's
	// distinct pieces once), Uploaded the part of it this snapshot's run
	// uploaded: the rest was already on the destination.
	Stored   int64 `json:"stored"`
	Uploaded int64 `json:"uploaded"`
	// ReusedParts counts the parts referenced without being read (their
	// source had not changed).
	ReusedParts int `json:"reused_parts"`
}

// ReusedShare is the share (0 to 1) of the stored bytes of a snapshot's
// parts that its run found on the destination already instead of
// uploading; 0 for a snapshot that stores nothing.
func (c *Contents) ReusedShare() float64 {
	if c == nil || c.Stored <= 0 {
		return 0
	}
	return min(1, max(0, float64(c.Stored-c.Uploaded)/float64(c.Stored)))
}

// contentsOf sums up an index.
func contentsOf(idx *snapshot.Index) *Contents {
	c := &Contents{Parts: make([]string, 0, len(idx.Parts))}
	for _, p := range idx.Parts {
		c.Parts = append(c.Parts, p.ID)
		c.Raw += p.Size
		c.Stored += p.Stored
		c.Uploaded += p.Uploaded
		if p.Reused {
			c.ReusedParts++
		}
	}
	return c
}

// ListOptions says what List lists.
type ListOptions struct {
	// Dests are the destinations to list (all when empty).
	Dests []string
	// Contents reads every complete snapshot's encrypted index (one small
	// download each) to fill in SnapshotListing.Contents, when
	// keys.identity_file is set.
	Contents bool
}

// List lists the snapshots of every destination (or those named). A
// destination that cannot be listed is reported in its entry, not fatal.
// A partial snapshot's failed parts are named when keys.identity_file can
// decrypt its index; without it the listing only counts them.
func List(ctx context.Context, cfg *config.Config, only []string) ([]DestListing, error) {
	return ListWith(ctx, cfg, ListOptions{Dests: only})
}

// ListWith is List with options: with Contents, what each complete
// snapshot holds (the `fireops snapshots` table).
func ListWith(ctx context.Context, cfg *config.Config, o ListOptions) ([]DestListing, error) {
	only := o.Dests
	trusted, _ := destination.TrustedKeys(cfg) // listing works without one, and says so
	var ids []age.Identity
	if cfg.Keys.IdentityFile != "" {
		ids, _ = destination.Identities(cfg, "")
	}
	dests, unopened, err := destination.Open(ctx, cfg, only)
	if err != nil && len(unopened) == 0 {
		return nil, err
	}
	// When none opened, each is listed with its error all the same
	// (ListError gives the exit code).
	defer destination.Close(ctx, dests, nil)
	var out []DestListing
	for _, d := range cfg.Destinations {
		if i := slices.IndexFunc(unopened, func(u destination.OpenError) bool { return u.Name == d.Name }); i >= 0 {
			out = append(out, DestListing{Destination: d.Name, Error: unopened[i].Error(), Snapshots: []snapshot.Listing{}})
			continue
		}
		i := slices.IndexFunc(dests, func(o destination.Dest) bool { return o.Name == d.Name })
		if i < 0 {
			continue // left out with --dest
		}
		l := DestListing{Destination: d.Name, Snapshots: []snapshot.Listing{}}
		ls, err := snapshot.List(ctx, dests[i].Store, cfg.Host, trusted...)
		if err != nil {
			l.Error = err.Error()
		} else {
			l.Contents = readIndexes(ctx, cfg, dests[i], ls, trusted, ids, o.Contents)
			l.Snapshots = ls
		}
		out = append(out, l)
	}
	return out, nil
}

// readIndexes fills in, from the encrypted index when ids can decrypt it,
// which parts of each partial snapshot in ls failed, and why, and with
// contents what every complete snapshot holds (returned by id). A
// snapshot whose index cannot be read keeps only the manifest's counts.
func readIndexes(ctx context.Context, cfg *config.Config, d destination.Dest, ls []snapshot.Listing, trusted []ed25519.PublicKey, ids []age.Identity, contents bool) map[string]*Contents {
	out := map[string]*Contents{}
	if len(ids) == 0 {
		return out
	}
	for i := range ls {
		l := &ls[i]
		if !l.Complete || l.Problem != "" || (l.FailedParts == 0 && !contents) {
			continue
		}
		m, err := snapshot.Open(ctx, d.Store, cfg.Host, l.ID, trusted...)
		if err != nil {
			continue
		}
		idx, err := snapshot.ReadIndex(ctx, d.Store, m, ids)
		if err != nil {
			continue
		}
		if l.FailedParts > 0 {
			l.Failed = idx.FailedParts
		}
		if contents {
			out[l.ID] = contentsOf(idx)
		}
	}
	return out
}

// ListError is the error of a listing in which some destinations could not
// be listed (exit code 1: the listing of the others is still printed), or
// nil. Its hint names --dest OTHER only when another destination was
// listed.
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
	hint := destination.OpenHint
	if len(bad) == len(ls) {
		hint = destination.OpenAllHint
	}
	return exitcode.New(exitcode.Failure, fmt.Errorf("snapshots: %s could not be listed", strings.Join(bad, ", ")), hint)
}
