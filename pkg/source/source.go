// Package source defines what the snapshot engine needs from one part of a
// snapshot (files, sqlite, mongo, volume): a cheap fingerprint and a tar
// stream of its payload; and what restore needs: a staged write of that
// tar stream that replaces the live target only when committed.
//
// The kinds live in sub-packages (source/files, source/sqlite, ...). The
// engine (pkg/snapshot) hashes, compresses, encrypts and uploads whatever
// a Source writes, so a Source never sees keys or destinations.
package source

import (
	"context"
	"errors"
	"io"
)

// ErrGone is wrapped by the error of a Source whose data no longer exists
// when the engine comes to read it (a Docker volume removed between
// discovery and its read). Returned by Fingerprint, before anything was
// produced, it makes the engine leave the part out of the snapshot with a
// warning instead of failing the run: what no longer exists cannot be
// backed up, and a snapshot taken a moment later would not hold it either.
// From WriteTar it is an error like any other.
var ErrGone = errors.New("no longer exists")

// Source is one part of a snapshot.
type Source interface {
	// Kind is the part kind: "files", "sqlite", "mongo" or "volume".
	Kind() string
	// Name is the part's name within its kind (the config's name).
	Name() string
	// Fingerprint returns a cheap fingerprint of the content that changes
	// whenever the payload would change, or "" when none can be computed
	// without producing the payload. Equal fingerprints let the engine
	// reuse an object uploaded earlier.
	Fingerprint(ctx context.Context) (string, error)
	// WriteTar writes the part's payload, a tar stream, to w. It must fail
	// (not return a short stream) when the source cannot be read whole.
	WriteTar(ctx context.Context, w io.Writer) (Stats, error)
}

// Sizer is implemented by a Source that can estimate, cheaply, how many
// bytes its WriteTar writes, for a progress display's total and ETA. The
// engine asks after Fingerprint, which may have recorded it on its walk.
// An estimate is fine (a display holds its percentage below 100 until the
// part is done); 0 means unknown. Nothing but a display relies on it.
type Sizer interface {
	Size(ctx context.Context) (int64, error)
}

// Stats describes a payload; it is recorded in the encrypted index and
// checked again on restore.
type Stats struct {
	// Entries is the number of tar entries.
	Entries int64 `json:"entries"`
	// Documents counts records for database kinds (0 for files).
	Documents int64 `json:"documents,omitempty"`
	// Details holds kind-specific facts (integrity_check result,
	// per-collection counts, server versions, consistency).
	Details map[string]string `json:"details,omitempty"`
}

// ID returns "kind:name", the identifier of a part in output and flags.
func ID(s Source) string { return s.Kind() + ":" + s.Name() }

// Restorer writes a part's tar stream into a target through staging.
type Restorer interface {
	// Stage reads the whole tar stream r into a staging area next to
	// target and checks it (entry names, kind-specific checks such as
	// SQLite's integrity_check). The live target is not touched.
	Stage(ctx context.Context, r io.Reader) (Staged, error)
}

// Staged is a restored part waiting to replace its target.
type Staged interface {
	// Stats describes what was staged, to compare with the index.
	Stats() Stats
	// Commit replaces the live target with the staged copy.
	Commit(ctx context.Context) error
	// Abort removes the staged copy; the live target stays as it was.
	// It is safe to call after Commit (then it does nothing).
	Abort() error
}
