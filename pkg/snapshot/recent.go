package snapshot

import (
	"io"
	"os"
	"slices"
	"syscall"
)

// maxLastRecord bounds what is read of a known-objects log's .last file:
// it holds one line, "ID SHA256" (a 23-byte id, a space, 64 hex digits).
const maxLastRecord = 512

// readLastRecord returns the content of a .last file, or false for one
// that is not a regular file (a symlink, a FIFO: opened without following
// or blocking), cannot be read or is longer than maxLastRecord (garbage:
// it is not read whole into memory).
func readLastRecord(p string) (string, bool) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return "", false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return "", false
	}
	b, err := io.ReadAll(io.LimitReader(f, maxLastRecord+1))
	if err != nil || len(b) > maxLastRecord {
		return "", false
	}
	return string(b), true
}

// RecentSnapshots returns the ids of the snapshots this host recorded, in
// stateDir, writing to a destination: the newest of each dedup space (the
// known-objects logs' companion files) and the newest holding each part
// (the per-part record, PartsWritten), newest first, each once. It reads
// state_dir only and contacts no destination, so that shell completion
// can offer them at once; a snapshot rotate removed since may still be
// named, and a fresh state_dir names none.
func RecentSnapshots(stateDir, host, dest string) []string {
	ids := lastRecordIDs(stateDir, host, dest)
	for _, p := range PartsWritten(stateDir, host, dest) {
		ids = append(ids, p.Snapshot)
	}
	// Ids start with their UTC time: sorted backwards they are newest first.
	slices.Sort(ids)
	ids = slices.Compact(ids)
	slices.Reverse(ids)
	return ids
}
