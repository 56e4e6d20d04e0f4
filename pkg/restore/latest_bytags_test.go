package restore

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firetech/fireops/pkg/snapshot"
)

// TestLatestByTags: without the indexes (levels quick and hashes), verify
// latest checks the snapshots restore latest reads a part from, by the
// manifests' part tags: newest first, each one holding a part no newer one
// does, back to the newest full run that read every part.
func TestLatestByTags(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC)
	// snap is a usable snapshot started h hours after base holding the
	// parts tags ("a,b"; "-" holds no tag list: written before tags).
	snap := func(h int, tags string, only bool, failed int) snapshot.Listing {
		at := base.Add(time.Duration(h) * time.Hour)
		l := snapshot.Listing{ID: snapshot.NewSnapshotID(at), Time: at.Truncate(time.Second), Started: at, Complete: true, Only: only, FailedParts: failed, PartTags: []string{}}
		switch tags {
		case "-":
			l.PartTags = nil
		case "":
		default:
			l.PartTags = strings.Split(tags, ",")
		}
		return l
	}
	full := func(h int, tags string) snapshot.Listing { return snap(h, tags, false, 0) }
	only := func(h int, tags string) snapshot.Listing { return snap(h, tags, true, 0) }
	refused := func(l snapshot.Listing) snapshot.Listing { l.Problem = "signature does not verify"; return l }
	incomplete := func(l snapshot.Listing) snapshot.Listing { l.Complete = false; return l }
	sameSecond := func(l snapshot.Listing, suffix string, later time.Duration) snapshot.Listing {
		l.ID = l.ID[:17] + suffix
		l.Started = l.Started.Add(later)
		return l
	}

	for _, tc := range []struct {
		name string
		ls   []snapshot.Listing // oldest first, as List gives them
		want []int              // indexes into ls, newest first
	}{
		{"one full run", []snapshot.Listing{full(0, "a,b")}, []int{0}},
		{"full runs: the newest", []snapshot.Listing{full(0, "a,b"), full(24, "a,b")}, []int{1}},
		{"an --only run after the full run: both", []snapshot.Listing{full(0, "a,b"), full(24, "a,b"), only(33, "b")}, []int{2, 1}},
		{"two --only runs of one part: the newer", []snapshot.Listing{full(24, "a,b"), only(30, "b"), only(33, "b")}, []int{2, 0}},
		{"--only runs of two parts", []snapshot.Listing{full(24, "a,b,c"), only(30, "b"), only(33, "c")}, []int{2, 1, 0}},
		{"an --only run older than the full run: not read", []snapshot.Listing{only(20, "d"), full(24, "a,b")}, []int{1}},
		{"a failed part comes from older snapshots", []snapshot.Listing{full(0, "a,b"), only(10, "c"), snap(24, "a", false, 1)}, []int{2, 1, 0}},
		{"back to the newest full run that read every part", []snapshot.Listing{full(0, "a,b"), snap(12, "a,b", false, 0), snap(24, "a", false, 1)}, []int{2, 1}},
		{"a failed part held by no older snapshot", []snapshot.Listing{snap(24, "a", false, 1)}, []int{0}},
		// restore latest walks past a clean full run that does not hold a
		// part that failed in the newest full run: so does the check.
		{"a failed part past a clean full run without it", []snapshot.Listing{full(0, "a,b"), full(12, "a"), snap(24, "a", false, 1)}, []int{2, 0}},
		{"past a clean full run: to one without tags", []snapshot.Listing{full(0, "c"), full(6, "-"), full(12, "a"), snap(24, "a", false, 1)}, []int{3, 1}},
		{"written before part tags: a full run", []snapshot.Listing{full(0, "-"), only(10, "b")}, []int{1, 0}},
		{"the newest holds nothing new: still checked", []snapshot.Listing{full(0, "a,b"), only(10, "")}, []int{1, 0}},
		{"refused and incomplete ones left out", []snapshot.Listing{full(0, "a,b"), refused(only(10, "b")), incomplete(full(12, "a,b"))}, []int{0}},
		// The --only run started a moment after the full run, in the same
		// second, its id sorting first.
		{"same second: by start time", []snapshot.Listing{sameSecond(full(0, "a,b"), "ffffff", 0), sameSecond(only(0, "b"), "000000", time.Millisecond)}, []int{1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls := tc.ls
			var got, want []string
			for _, l := range LatestByTags(&DestLatest{ls: ls}) {
				got = append(got, l.ID)
			}
			for _, i := range tc.want {
				want = append(want, ls[i].ID)
			}
			if !slices.Equal(got, want) {
				t.Errorf("latestByTags = %v, want %v", got, want)
			}
		})
	}
}
