package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/firetech/fireops/internal/atomicfile"
)

// StateFile is the name of the reuse state inside state_dir.
const StateFile = "state.json"

// stateVersion is the version of the state file's content (2 for format
// v2's piece lists).
const stateVersion = 2

// State remembers, per destination and part, the fingerprint and the
// piece list of the last snapshot of the part, so that an unchanged part
// is referenced without being read again (design.md §4). It also keeps
// what the index needs for a reused part, since the host cannot decrypt
// old indexes. Losing it only means the next snapshot reads every part
// again (its pieces still deduplicate against the known-objects logs).
type State struct {
	path string
	mu   sync.Mutex
	data stateData
}

type stateData struct {
	Version int `json:"version"`
	// Destinations maps "host/destination" to part id to entry.
	Destinations map[string]map[string]StateEntry `json:"destinations"`
}

// StateEntry is what the state keeps about one stored part.
type StateEntry struct {
	Fingerprint string `json:"fingerprint"`
	// Space is the dedup space the pieces are in (Dedup.Space): after
	// keys.recipients or the signing key changes, pieces encrypted to the
	// old recipients must not be referenced, or the new identity could
	// not restore them.
	Space string `json:"space"`
	// List is the part's piece list on the destination.
	List Ref  `json:"list"`
	Part Part `json:"part"`
}

// LoadState reads the state file in dir, or starts an empty state when it
// does not exist or cannot be decoded (reuse is an optimisation only).
func LoadState(dir string) (*State, error) {
	s := &State{path: filepath.Join(dir, StateFile)}
	data, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read state: %w", err)
	default:
		if json.Unmarshal(data, &s.data) != nil {
			s.data = stateData{}
		}
	}
	if s.data.Version != stateVersion {
		// A v1 state names v1 objects, which v2 parts never reuse.
		s.data.Destinations = nil
	}
	if s.data.Destinations == nil {
		s.data.Destinations = map[string]map[string]StateEntry{}
	}
	s.data.Version = stateVersion
	return s, nil
}

// consistent reports whether an entry holds together as the manifest and
// index of a new snapshot need it (a state file that decodes may still be
// damaged); an entry that does not is uploaded again instead of reused.
func (e StateEntry) consistent(part string) bool {
	return e.Part.ID == part && ValidPieceID(e.List.ID) && e.Part.List == e.List.ID && e.List.Size > 0
}

func stateKey(host, dest string) string { return host + "/" + dest }

// Get returns the entry of a part for a destination.
func (s *State) Get(host, dest, part string) (StateEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.data.Destinations[stateKey(host, dest)][part]
	return e, ok
}

// Put records the entry of a part for a destination (in memory).
func (s *State) Put(host, dest, part string, e StateEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := stateKey(host, dest)
	if s.data.Destinations[k] == nil {
		s.data.Destinations[k] = map[string]StateEntry{}
	}
	s.data.Destinations[k][part] = e
}

// Save writes the state atomically (temp file, fsync, rename), 0600 in a
// 0700 folder.
func (s *State) Save() error {
	s.mu.Lock()
	data, err := json.MarshalIndent(s.data, "", " ")
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	return writeFileAtomic(s.path, data, 0o600)
}

// writeFileAtomic writes data to path with atomicfile (a temp file in
// the same folder, fsync, rename, folder fsync), so a reader never sees a
// half-written file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := atomicfile.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
