package snapshot

import (
	"context"
	"path"
	"strings"
	"time"
)

// snapshotIDForm is the form of a snapshot id, position by position: d a
// digit, h a lowercase hex digit, anything else itself.
const snapshotIDForm = "ddddddddTddddddZ-hhhhhh"

// ValidIDPrefix reports whether id is a non-empty prefix of a snapshot id
// (what a user may give instead of a whole id).
func ValidIDPrefix(id string) bool {
	if id == "" || len(id) > len(snapshotIDForm) {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch snapshotIDForm[i] {
		case 'd':
			if c < '0' || c > '9' {
				return false
			}
		case 'h':
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		default:
			if c != snapshotIDForm[i] {
				return false
			}
		}
	}
	return true
}

// IDSecond is the part of a snapshot id that names its UTC second
// (YYYYMMDDTHHMMSSZ): ids of one second differ only after it, and the
// seconds of two ids compare as their times do. A string without the
// id's dash is returned whole.
func IDSecond(id string) string {
	if i := strings.IndexByte(id, '-'); i >= 0 {
		return id[:i]
	}
	return id
}

// IDs returns the names of the snapshot folders of host on a store, in the
// store's order, without reading them: those that have the snapshot id
// form. The store's error is returned as it is (ErrNotFound for a host
// without any snapshot folder on some stores).
func IDs(ctx context.Context, st Store, host string) ([]string, error) {
	entries, err := st.List(ctx, path.Join(host, SnapshotsDir))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if e.Dir && ValidSnapshotID(e.Name) {
			ids = append(ids, e.Name)
		}
	}
	return ids, nil
}

// Hosts returns the folders at the root of a store that hold anything
// under their snapshots folder: the hosts that have snapshots there, in
// the store's order. A host whose snapshots folder cannot be listed is
// left out; only the root's listing error is returned.
func Hosts(ctx context.Context, st Store) ([]string, error) {
	entries, err := st.List(ctx, "")
	var hosts []string
	for _, h := range entries {
		if !h.Dir {
			continue
		}
		if snaps, err := st.List(ctx, h.Name+"/"+SnapshotsDir); err == nil && len(snaps) > 0 {
			hosts = append(hosts, h.Name)
		}
	}
	return hosts, err
}

// StartedTime is the start time in snapshot id's started file (written
// when the run began, to the nanosecond); zero when the file is missing
// or unreadable. Only for ordering: nothing of it is checked.
func StartedTime(ctx context.Context, st Store, host, id string) time.Time {
	b, err := st.GetBytes(ctx, path.Join(SnapshotPath(host, id), StartedFile), 128)
	if err != nil {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	return t
}
