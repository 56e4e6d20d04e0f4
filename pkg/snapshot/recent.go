package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// RecentSnapshots returns the ids of the snapshots this host recorded, in
// stateDir, writing to a destination: the newest of each dedup space (the
// known-objects logs' companion files) and the newest holding each part
// (the per-part record, PartsWritten), newest first, each once. It reads
// state_dir only and contacts no destination, so that shell completion
// can offer them at once; a snapshot rotate removed since may still be
// named, and a fresh state_dir names none.
func RecentSnapshots(stateDir, host, dest string) []string {
	sum := sha256.Sum256([]byte(host + "\x00" + dest))
	files, _ := filepath.Glob(filepath.Join(stateDir, KnownDir, hex.EncodeToString(sum[:8])+"-*.log.last"))
	var ids []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if id, _, _ := strings.Cut(strings.TrimSpace(string(b)), " "); ValidSnapshotID(id) {
			ids = append(ids, id)
		}
	}
	for _, p := range PartsWritten(stateDir, host, dest) {
		ids = append(ids, p.Snapshot)
	}
	// Ids start with their UTC time: sorted backwards they are newest first.
	slices.Sort(ids)
	ids = slices.Compact(ids)
	slices.Reverse(ids)
	return ids
}
