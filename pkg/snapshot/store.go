package snapshot

import (
	"context"
	"errors"
	"io"
	"time"
)

// Store is one destination as the engine sees it: a folder tree of small
// files. pkg/destination adapts pkg/remote's rclone destinations to it;
// paths are slash separated and relative to the destination's root.
type Store interface {
	// Name is the destination's name from the config.
	Name() string
	// Put writes one file whole; it retries on its own.
	Put(ctx context.Context, path string, data []byte) error
	// Get opens a file for streaming.
	Get(ctx context.Context, path string) (io.ReadCloser, error)
	// GetBytes reads a file of at most max bytes; a longer file is an
	// error matching ErrTooLarge (not read whole).
	GetBytes(ctx context.Context, path string, max int64) ([]byte, error)
	// List lists a folder; a missing folder lists as empty.
	List(ctx context.Context, dir string) ([]Entry, error)
	// Delete removes a file; a missing file is not an error.
	Delete(ctx context.Context, path string) error
	// Rmdir removes a folder and everything in it; missing is not an error.
	Rmdir(ctx context.Context, dir string) error
}

// UploadLimiter is a Store that takes at most Uploads chunk uploads at
// once (destinations[].uploads); others get Options.Uploads.
type UploadLimiter interface {
	Uploads() int
}

// Entry is one item of a Store folder listing.
type Entry struct {
	Name    string
	Dir     bool
	Size    int64
	ModTime time.Time
}

// ErrNotFound is wrapped by Store errors for a missing file.
var ErrNotFound = errors.New("not found")

// ErrTooLarge is wrapped by a GetBytes error for a file longer than the
// max asked for: when the max is a size the signed manifest gives, the
// stored file is not the one written (an integrity error of the data, not
// a failure to read it).
var ErrTooLarge = errors.New("larger than expected")
