package main

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/firetech/fireops/pkg/backup"
	"github.com/firetech/fireops/pkg/snapshot"
)

// The --json output of the backup commands, as docs/json.md documents it
// (schema 1): the result types of pkg/backup and pkg/snapshot, with the
// parts' details typed (numbers as numbers, lists as lists) and a
// listing's contents beside each snapshot. The encrypted index keeps the
// details as strings; only the output converts them.

// snapshotResultJSON is `fireops snapshot --json`.
type snapshotResultJSON struct {
	*snapshot.Result
	// Parts shadows Result.Parts with typed details.
	Parts []partJSON `json:"parts"`
}

// partJSON is one part of a snapshot with its details typed.
type partJSON struct {
	snapshot.Part
	// Details shadows Part.Stats.Details.
	Details map[string]any `json:"details,omitempty"`
}

// snapshotView is a snapshot result as --json prints it.
func snapshotView(res *snapshot.Result) snapshotResultJSON {
	out := snapshotResultJSON{Result: res, Parts: make([]partJSON, 0, len(res.Parts))}
	for _, p := range res.Parts {
		out.Parts = append(out.Parts, partJSON{Part: p, Details: typedDetails(p.Details)})
	}
	return out
}

// destListingJSON is one destination of `fireops snapshots --json`.
type destListingJSON struct {
	Destination string        `json:"destination"`
	Error       string        `json:"error,omitempty"`
	Snapshots   []listingJSON `json:"snapshots"`
}

// listingJSON is one snapshot of a listing with, when its index was read,
// what it holds.
type listingJSON struct {
	snapshot.Listing
	Contents *backup.Contents `json:"contents,omitempty"`
}

// listingView is a listing as --json prints it.
func listingView(ls []backup.DestListing) []destListingJSON {
	out := make([]destListingJSON, 0, len(ls))
	for _, d := range ls {
		v := destListingJSON{Destination: d.Destination, Error: d.Error, Snapshots: make([]listingJSON, 0, len(d.Snapshots))}
		for _, s := range d.Snapshots {
			// Times in UTC, as docs/json.md says: a local destination's
			// modification times come in the host's zone.
			s.Time, s.Modified, s.Started = s.Time.UTC(), s.Modified.UTC(), s.Started.UTC()
			v.Snapshots = append(v.Snapshots, listingJSON{Listing: s, Contents: d.Contents[s.ID]})
		}
		out = append(out, v)
	}
	return out
}

// numericDetails are the detail keys the sources record as counts (as
// decimal strings in the index); numericDetailPrefixes the prefixes of
// per-table and per-collection counts.
var (
	numericDetails = map[string]bool{
		"files": true, "dirs": true, "symlinks": true, "hardlinks": true, "bytes": true,
		"sockets_skipped": true, "special_skipped": true, "sparse_skipped": true, "vanished": true,
		"changed_during_read": true, "page_count": true, "page_size": true, "tables": true,
		"setid_dropped": true,
	}
	numericDetailPrefixes = []string{"rows.", "count:", "bytes:"}
	// listDetails are the keys whose value is a JSON list of strings.
	listDetails = map[string]bool{"roots": true, "left_out": true}
)

// typedDetails converts a part's details for output: the known counts to
// numbers, the known lists to lists, anything else (and a value that does
// not parse as its key says) as the string it is.
func typedDetails(d map[string]string) map[string]any {
	if len(d) == 0 {
		return nil
	}
	out := make(map[string]any, len(d))
	for k, v := range d {
		out[k] = typedDetail(k, v)
	}
	return out
}

func typedDetail(k, v string) any {
	if listDetails[k] {
		var l []string
		if json.Unmarshal([]byte(v), &l) == nil && l != nil {
			return l
		}
		return v
	}
	numeric := numericDetails[k]
	for _, p := range numericDetailPrefixes {
		numeric = numeric || strings.HasPrefix(k, p)
	}
	if numeric {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return v
}
