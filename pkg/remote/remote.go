// Package remote is the snapshot engine's access to one destination: an
// rclone remote (a local path, a remote named in rclone.conf, or an inline
// ":backend,key=value:path" connection string) used through rclone as a
// library.
//
// It uploads chunks of a known size as ordinary puts that it retries with
// exponential backoff, checks what it uploaded (size, and the backend's hash
// where it has one), does not upload a chunk again that is already there, and
// names the destination and the object path in every error, so that one
// failed destination can be told apart from the others.
//
// Only the backends fireops supports are linked in: local, webdav, yandex
// and s3. This package never prints to stdout and never prompts: rclone's
// own log lines go to stderr (or, redacted, to the handler given to SetLogHandler), and
// an encrypted rclone.conf needs RCLONE_CONFIG_PASS.
//
// rclone keeps one config file per process: every destination that names a
// remote from rclone.conf must use the same rclone_config. Paths and inline
// connection strings need no config file.
package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"math/rand/v2"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	// The backends fireops supports; the others are left out on purpose.
	_ "github.com/rclone/rclone/backend/local"
	_ "github.com/rclone/rclone/backend/s3"
	_ "github.com/rclone/rclone/backend/webdav"
	_ "github.com/rclone/rclone/backend/yandex"

	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/fserrors"
	"github.com/rclone/rclone/fs/fspath"
	"github.com/rclone/rclone/fs/hash"
	"github.com/rclone/rclone/fs/object"
	"github.com/rclone/rclone/fs/operations"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/redact"
)

// Defaults for the zero values of Options.
const (
	DefaultUploads   = 2
	DefaultRetries   = 5
	DefaultRetryBase = time.Second
	// DefaultLowLevelRetries is 1 (one try): every retry goes through
	// Retries, which counts it (the RETRIES column and metric) and waits
	// with backoff. rclone's own quick retries used to absorb dropped
	// connections of listings and downloads uncounted, and format v2's
	// many small requests made that the common case.
	DefaultLowLevelRetries = 1

	// maxBackoff caps one wait between two attempts.
	maxBackoff = time.Minute
)

// ErrNotFound is matched (with errors.Is) by the error of Stat, Get and
// GetBytes when the object is not on the destination. The same error also
// matches rclone's fs.ErrorObjectNotFound or fs.ErrorDirNotFound.
var ErrNotFound = errors.New("not found")

// ErrTooLarge is matched by the error of GetBytes when the object is larger
// than the limit it was given.
var ErrTooLarge = errors.New("object too large")

// Options says which destination to open and how hard to try.
type Options struct {
	// Name is the destination's name in the config; every error names it.
	// Empty means the remote string (with credentials redacted).
	Name string
	// Remote is a local path, "name:path" from rclone.conf, or an inline
	// connection string ":webdav,url='http://host/',vendor=rclone:path".
	Remote string
	// RcloneConfig is the rclone.conf holding named remotes. Empty means
	// $RCLONE_CONFIG, else rclone's default (~/.config/rclone/rclone.conf).
	// rclone writes refreshed OAuth tokens back to it.
	RcloneConfig string
	// Uploads is how many chunks the engine uploads to this destination at
	// once (default 2). Remote itself does not limit concurrency: Put is safe
	// for concurrent use. It also sizes rclone's HTTP connection pool.
	Uploads int
	// Retries is how many times a failed operation is tried again: 0 means
	// DefaultRetries, a negative number means no retry.
	Retries int
	// RetryBase is the first wait before a retry; each next wait doubles,
	// with jitter, up to a minute. 0 means DefaultRetryBase.
	RetryBase time.Duration
	// LowLevelRetries is how many times rclone itself tries one HTTP request
	// that failed in a retryable way (429, 5xx, a dropped connection) before
	// the error reaches Retries: 0 means DefaultLowLevelRetries, a negative
	// number means one try. Uploads of a whole chunk are not retried at this
	// level by every backend (webdav's PUT is not), Retries always covers them.
	LowLevelRetries int
}

func (o Options) withDefaults() Options {
	if o.Uploads <= 0 {
		o.Uploads = DefaultUploads
	}
	o.Retries = zeroOrNegative(o.Retries, DefaultRetries, 0)
	if o.RetryBase <= 0 {
		o.RetryBase = DefaultRetryBase
	}
	o.LowLevelRetries = zeroOrNegative(o.LowLevelRetries, DefaultLowLevelRetries, 1)
	return o
}

// zeroOrNegative reads a count option where 0 means the default def and a
// negative number means none (the smallest count, least).
func zeroOrNegative(v, def, least int) int {
	switch {
	case v == 0:
		return def
	case v < 0:
		return least
	}
	return v
}

// Entry is one item of a directory listing.
type Entry struct {
	// Name is the entry's name inside the listed directory (no slash).
	Name string
	// Dir is true for a directory.
	Dir bool
	// Size is the object's size in bytes; -1 when unknown (directories).
	Size int64
	// ModTime is the time the destination reports (the upload time for
	// most backends; the server's time on s3, see Open).
	ModTime time.Time
}

// Stats counts what one Remote did since Open.
type Stats struct {
	// Uploaded is the number of chunks sent, UploadedBytes their bytes.
	Uploaded, UploadedBytes int64
	// Skipped is the number of Puts that found the object already there.
	Skipped int64
	// Retries is the number of attempts that failed and were tried again.
	Retries int64
}

// Remote is one opened destination. Its methods are safe for concurrent use.
type Remote struct {
	opt   Options
	label string          // destination name used in errors
	f     fs.Fs           // the rclone file system at the destination's root
	base  context.Context // carries this destination's rclone config
	ht    hash.Type       // hash compared on Put; hash.None means size only
	// verifyHash: check the backend's hash of each uploaded object (off on
	// the local backend, where it means reading the file back).
	verifyHash bool

	uploaded, uploadedBytes, skipped, retries atomic.Int64
}

// Error is the error of every Remote operation: it names the destination,
// what was done and the object path.
type Error struct {
	// Dest is the destination's name (Options.Name, or the redacted remote).
	Dest string
	// Op is what failed: open, put, get, read, stat, list, delete, rmdir,
	// close.
	Op string
	// Path is the object or directory path under the destination's root.
	Path string
	// Err is the cause, as rclone or this package reported it.
	Err error
	// Retries, on an error of Open, counts the attempts that failed and
	// were tried again while opening (Open returns no Remote whose Stats
	// would count them); 0 for other operations.
	Retries int64

	// hidden are the credentials of the remote string, hidden in the
	// message wherever rclone repeats them (see redact.Values).
	hidden []string
}

// Error says which destination, operation and path failed, and why. The
// remote's credentials are redacted: rclone repeats parts of an inline
// remote in its errors, URL-escaped.
func (e *Error) Error() string {
	var msg string
	if e.Path == "" {
		msg = fmt.Sprintf("destination %q: %s: %v", e.Dest, e.Op, e.Err)
	} else {
		msg = fmt.Sprintf("destination %q: %s %s: %v", e.Dest, e.Op, e.Path, e.Err)
	}
	// The cause may carry the server's own text (an error body): one line,
	// no control characters.
	return redact.Line(redact.Known(redact.String(msg), e.hidden))
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Destination returns the name of the destination the error names, so
// that a caller whose own message names that destination can leave the
// error's text as it is instead of naming it twice.
func (e *Error) Destination() string { return e.Dest }

// Is makes errors.Is(err, ErrNotFound) true for rclone's not-found errors.
func (e *Error) Is(target error) bool {
	return target == ErrNotFound && isNotFound(e.Err)
}

func isNotFound(err error) bool {
	return errors.Is(err, fs.ErrorObjectNotFound) || errors.Is(err, fs.ErrorDirNotFound)
}

// Open opens the destination o describes and creates its root directory if
// it is missing (on s3 that creates the bucket).
//
// The rclone backend keeps a context that outlives ctx (OAuth token
// refreshes happen in the background), so ctx only bounds Open itself.
// rclone is set up for unattended use: no password prompt, LowLevelRetries
// per request, Uploads transfers, and the server's modification times (no
// extra request per object when listing s3).
func Open(ctx context.Context, o Options) (*Remote, error) {
	o = o.withDefaults()
	r := &Remote{opt: o, label: o.Name}
	if r.label == "" {
		r.label = config.RedactRemote(o.Remote)
	}
	if strings.TrimSpace(o.Remote) == "" {
		return nil, r.wrap("open", "", errors.New("the remote is empty"))
	}
	setupRclone()
	parsed, err := fspath.Parse(o.Remote)
	if err != nil {
		return nil, r.wrap("open", "", fmt.Errorf("remote %s: %w", config.RedactRemote(o.Remote), err))
	}
	if o.RcloneConfig != "" {
		if err := checkConfigFile(o.RcloneConfig); err != nil {
			return nil, r.wrap("open", "", err)
		}
	}
	// Only a named remote reads rclone.conf; paths and inline strings do not.
	if parsed.Name != "" && !strings.HasPrefix(parsed.Name, ":") {
		if err := useConfigFile(o.RcloneConfig); err != nil {
			return nil, r.wrap("open", "", err)
		}
	}

	base, ci := fs.AddConfig(context.WithoutCancel(ctx))
	ci.LowLevelRetries = o.LowLevelRetries
	ci.Transfers = o.Uploads
	ci.UseServerModTime = true
	ci.AskPassword = false
	ci.Progress = false
	r.base = base

	// Opening talks to the server (webdav and yandex ask for the root's
	// properties): a network failure is tried again like any other
	// request, so that a blip at 3 a.m. does not cost the night's
	// snapshot; a configuration error is not.
	err = r.retry(ctx, "open", "", func(ctx context.Context) error {
		f, err := newFs(ctx, base, o.Remote)
		switch {
		case errors.Is(err, fs.ErrorIsFile):
			return fserrors.NoRetryError(fmt.Errorf("remote %s is a file, not a directory", config.RedactRemote(o.Remote)))
		case err != nil && !fserrors.ShouldRetry(err):
			return fserrors.NoRetryError(fmt.Errorf("remote %s: %w", config.RedactRemote(o.Remote), err))
		case err != nil:
			return fmt.Errorf("remote %s: %w", config.RedactRemote(o.Remote), err)
		}
		r.f = f
		return nil
	})
	if err != nil {
		return nil, r.openFailed(err)
	}
	r.ht = pickHash(r.f.Hashes())
	// A local disk keeps no hash: rclone would read every chunk back after
	// writing it to compute one, doubling the disk and CPU work of a
	// snapshot. There the upload is checked by size; the chunk's SHA-256 in
	// the signed manifest is checked on every read. (An object already at
	// the path is still compared by hash before it is skipped: that is rare.)
	r.verifyHash = !r.f.Features().IsLocal
	err = r.retry(ctx, "open", "", func(ctx context.Context) error {
		if err := r.f.Mkdir(ctx, ""); err != nil {
			return fmt.Errorf("create root directory: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, r.openFailed(err)
	}
	return r, nil
}

// openFailed is Open's error err with the retries spent opening
// (Error.Retries).
func (r *Remote) openFailed(err error) error {
	var e *Error
	if errors.As(err, &e) {
		e.Retries = r.retries.Load()
	}
	return err
}

// newFs is fs.NewFs bounded by ctx: the backend itself keeps base (which
// outlives ctx), so a server that never answers would hold Open forever.
func newFs(ctx context.Context, base context.Context, remote string) (fs.Fs, error) {
	type result struct {
		f   fs.Fs
		err error
	}
	done := make(chan result, 1)
	go func() {
		f, err := fs.NewFs(base, remote)
		done <- result{f, err}
	}()
	select {
	case res := <-done:
		return res.f, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// pickHash chooses the hash that Put compares, in order of preference.
// fireops' own SHA-256 of a chunk is not what backends store, so it uses
// one that the backend keeps for every object: MD5 (local, s3, yandex),
// SHA-1 (some webdav servers). A backend without one (webdav with vendor
// rclone or other) is compared by size only.
func pickHash(set hash.Set) hash.Type {
	for _, t := range []hash.Type{hash.MD5, hash.SHA1, hash.SHA256} {
		if set.Contains(t) {
			return t
		}
	}
	return hash.None
}

// Name returns the destination's name.
func (r *Remote) Name() string { return r.label }

// String returns the remote string with credentials redacted.
func (r *Remote) String() string { return config.RedactRemote(r.opt.Remote) }

// Uploads returns how many chunks the engine should upload at once.
func (r *Remote) Uploads() int { return r.opt.Uploads }

// HashType names the hash Put compares ("md5", "sha1"), or "none" when
// only sizes are compared.
func (r *Remote) HashType() string { return r.ht.String() }

// Stats returns what this Remote did since Open.
func (r *Remote) Stats() Stats {
	return Stats{
		Uploaded:      r.uploaded.Load(),
		UploadedBytes: r.uploadedBytes.Load(),
		Skipped:       r.skipped.Load(),
		Retries:       r.retries.Load(),
	}
}

// Close releases what the backend holds (s3's upload pools, for example).
func (r *Remote) Close(ctx context.Context) error {
	if s, ok := r.f.(fs.Shutdowner); ok {
		if err := s.Shutdown(r.ctx(ctx)); err != nil {
			return r.wrap("close", "", err)
		}
	}
	return nil
}

// Put stores data at p, as PutChunk does, without saying whether it was
// already there (Stats counts it).
func (r *Remote) Put(ctx context.Context, p string, data []byte) error {
	_, err := r.PutChunk(ctx, p, data)
	return err
}

// PutChunk stores data at p (a path under the destination's root, parent
// folders are created as needed). The upload is an ordinary put of a known
// size, tried again with backoff after a failure, and checked afterwards:
// the stored size, and the backend's hash where it keeps one. If an object
// with the same size and hash is already at p, nothing is sent and skipped
// is true; this check runs before every attempt, so an upload that
// succeeded although its reply was lost is not sent twice. Where the
// backend keeps no hash an existing object is always replaced: a
// snapshot's pieces are named by their plaintext, and an object of the
// same size may hold another encryption of it (left by a run killed before
// it recorded the upload), whose stored hash is not the one this upload's
// snapshot will record.
func (r *Remote) PutChunk(ctx context.Context, p string, data []byte) (skipped bool, err error) {
	p, err = cleanPath(p)
	if err != nil {
		return false, r.wrap("put", p, err)
	}
	ctx = r.ctx(ctx)
	size := int64(len(data))
	var sum string
	hashes := map[hash.Type]string{}
	hashData := func() error {
		if sum != "" || r.ht == hash.None {
			return nil
		}
		h, err := hash.NewMultiHasherTypes(hash.NewHashSet(r.ht))
		if err != nil {
			return err
		}
		_, _ = h.Write(data)
		sum, _ = h.SumString(r.ht, false)
		hashes[r.ht] = sum
		return nil
	}
	if r.verifyHash {
		// Backends that keep a hash get it with the upload and check it.
		if err := hashData(); err != nil {
			return false, r.wrap("put", p, err)
		}
	}
	attempt := 0
	err = r.retry(ctx, "put", p, func(ctx context.Context) error {
		skipped = false
		attempt++
		o, err := r.f.NewObject(ctx, p)
		switch {
		case err == nil:
			if err := hashData(); err != nil {
				return err
			}
			// Only a hash can vouch for an existing object's bytes.
			if r.ht == hash.None {
				break
			}
			if same, err := r.matches(ctx, o, size, sum); err != nil {
				return err
			} else if same {
				skipped = true
				return nil
			}
		case isNotFound(err):
			o = nil
		default:
			return err
		}
		src := object.NewStaticObjectInfo(p, time.Now(), size, true, hashes, nil)
		if o != nil {
			err = o.Update(ctx, bytes.NewReader(data), src)
		} else {
			o, err = r.f.Put(ctx, bytes.NewReader(data), src)
		}
		if err != nil {
			return err
		}
		if o == nil {
			return errors.New("backend returned no object")
		}
		return r.verify(ctx, o, size, sum)
	})
	if err != nil {
		return false, err
	}
	if skipped {
		r.skipped.Add(1)
	} else {
		r.uploaded.Add(1)
		r.uploadedBytes.Add(size)
	}
	return skipped, nil
}

// matches reports whether o has the given size and, when the backend keeps
// one, the given hash. An object whose hash the backend does not know (an
// empty hash) does not match.
func (r *Remote) matches(ctx context.Context, o fs.Object, size int64, sum string) (bool, error) {
	if o.Size() != size || r.ht == hash.None {
		return false, nil
	}
	got, err := o.Hash(ctx, r.ht)
	if err != nil {
		return false, fmt.Errorf("read %s of %s: %w", r.ht, o.Remote(), err)
	}
	return got != "" && got == sum, nil
}

// verify checks an object just uploaded: its size, and its hash when the
// backend reports one (a backend that cannot tell this object's hash is
// trusted on the size alone, rather than failing every upload).
func (r *Remote) verify(ctx context.Context, o fs.Object, size int64, sum string) error {
	if o.Size() >= 0 && o.Size() != size {
		return fmt.Errorf("uploaded object has %d bytes, want %d", o.Size(), size)
	}
	if r.ht == hash.None || !r.verifyHash {
		return nil
	}
	got, err := o.Hash(ctx, r.ht)
	switch {
	case errors.Is(err, hash.ErrUnsupported):
		return nil
	case err != nil:
		return fmt.Errorf("read %s of the uploaded object: %w", r.ht, err)
	case got != "" && got != sum:
		return fmt.Errorf("uploaded object has %s %s, want %s", r.ht, got, sum)
	}
	return nil
}

// Get opens the object at p for a streaming read; the caller closes it.
// Opening is retried; a read error later on names the destination and path.
func (r *Remote) Get(ctx context.Context, p string) (io.ReadCloser, error) {
	p, err := cleanPath(p)
	if err != nil {
		return nil, r.wrap("get", p, err)
	}
	ctx = r.ctx(ctx)
	var rc io.ReadCloser
	err = r.retry(ctx, "get", p, func(ctx context.Context) error {
		o, err := r.f.NewObject(ctx, p)
		if err != nil {
			return err
		}
		rc, err = o.Open(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &reader{rc: rc, r: r, path: p}, nil
}

type reader struct {
	rc   io.ReadCloser
	r    *Remote
	path string
}

func (rd *reader) Read(b []byte) (int, error) {
	n, err := rd.rc.Read(b)
	if err != nil && err != io.EOF {
		err = rd.r.wrap("read", rd.path, err)
	}
	return n, err
}

func (rd *reader) Close() error {
	if err := rd.rc.Close(); err != nil {
		return rd.r.wrap("read", rd.path, err)
	}
	return nil
}

// GetBytes reads the whole object at p (a manifest, a signature, an index)
// and refuses one larger than limit bytes. The read is retried as a whole.
func (r *Remote) GetBytes(ctx context.Context, p string, limit int64) ([]byte, error) {
	p, err := cleanPath(p)
	if err != nil {
		return nil, r.wrap("get", p, err)
	}
	ctx = r.ctx(ctx)
	var out []byte
	err = r.retry(ctx, "get", p, func(ctx context.Context) error {
		o, err := r.f.NewObject(ctx, p)
		if err != nil {
			return err
		}
		if o.Size() > limit {
			return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, o.Size(), limit)
		}
		rc, err := o.Open(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = rc.Close() }()
		b, err := io.ReadAll(io.LimitReader(rc, limit+1))
		if err != nil {
			return err
		}
		if int64(len(b)) > limit {
			return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
		}
		if o.Size() >= 0 && int64(len(b)) != o.Size() {
			return fmt.Errorf("short read: %d of %d bytes", len(b), o.Size())
		}
		out = b
		return nil
	})
	return out, err
}

// Stat returns the size and modification time of the object at p. A
// missing object gives an error matching ErrNotFound.
func (r *Remote) Stat(ctx context.Context, p string) (size int64, modTime time.Time, err error) {
	p, err = cleanPath(p)
	if err != nil {
		return 0, time.Time{}, r.wrap("stat", p, err)
	}
	ctx = r.ctx(ctx)
	err = r.retry(ctx, "stat", p, func(ctx context.Context) error {
		o, err := r.f.NewObject(ctx, p)
		if err != nil {
			return err
		}
		size, modTime = o.Size(), o.ModTime(ctx)
		return nil
	})
	return size, modTime, err
}

// List returns the entries directly inside dir ("" is the root), sorted by
// name. A missing directory gives an empty list.
func (r *Remote) List(ctx context.Context, dir string) ([]Entry, error) {
	dir, err := cleanDir(dir)
	if err != nil {
		return nil, r.wrap("list", dir, err)
	}
	ctx = r.ctx(ctx)
	var out []Entry
	err = r.retry(ctx, "list", dir, func(ctx context.Context) error {
		entries, err := r.f.List(ctx, dir)
		if errors.Is(err, fs.ErrorDirNotFound) {
			out = nil
			return nil
		}
		if err != nil {
			return err
		}
		out = make([]Entry, 0, len(entries))
		for _, e := range entries {
			_, isDir := e.(fs.Directory)
			out = append(out, Entry{
				Name:    path.Base(e.Remote()),
				Dir:     isDir,
				Size:    e.Size(),
				ModTime: e.ModTime(ctx),
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Delete removes the object at p; a missing object is not an error.
func (r *Remote) Delete(ctx context.Context, p string) error {
	p, err := cleanPath(p)
	if err != nil {
		return r.wrap("delete", p, err)
	}
	ctx = r.ctx(ctx)
	return r.retry(ctx, "delete", p, func(ctx context.Context) error {
		o, err := r.f.NewObject(ctx, p)
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := o.Remove(ctx); err != nil && !isNotFound(err) {
			return err
		}
		return nil
	})
}

// Rmdir removes dir and everything under it; a missing directory is not an
// error. The destination's root cannot be removed this way.
func (r *Remote) Rmdir(ctx context.Context, dir string) error {
	dir, err := cleanDir(dir)
	if err == nil && dir == "" {
		err = errors.New("refusing to remove the destination's root")
	}
	if err != nil {
		return r.wrap("rmdir", dir, err)
	}
	ctx = r.ctx(ctx)
	return r.retry(ctx, "rmdir", dir, func(ctx context.Context) error {
		// Backends disagree on purging a missing directory (local: a stat
		// error, webdav: a 404), so look first.
		if _, err := r.f.List(ctx, dir); isNotFound(err) {
			return nil
		} else if err != nil {
			return err
		}
		err := operations.Purge(ctx, r.f, dir)
		if err == nil || isNotFound(err) {
			return nil
		}
		return err
	})
}

// ctx gives a call's context this destination's rclone config.
func (r *Remote) ctx(ctx context.Context) context.Context {
	return fs.CopyConfig(ctx, r.base)
}

func (r *Remote) wrap(op, p string, err error) error {
	var e *Error
	if errors.As(err, &e) && e.Dest == r.label {
		return err
	}
	return &Error{Dest: r.label, Op: op, Path: p, Err: err, hidden: redact.Values(r.opt.Remote)}
}

// retry runs fn until it succeeds, fails in a way that another try cannot
// fix, ctx ends, or 1+Retries attempts failed; the waits grow exponentially
// from RetryBase, with jitter.
func (r *Remote) retry(ctx context.Context, op, p string, fn func(context.Context) error) error {
	attempts := r.opt.Retries + 1
	for i := 1; ; i++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if de := deniedError(err, p); de != nil {
			return r.wrap(op, p, de)
		}
		if ne := notDirError(err, p); ne != nil {
			return r.wrap(op, p, ne)
		}
		if !retryable(ctx, err) {
			return r.wrap(op, p, err)
		}
		if i >= attempts {
			if attempts > 1 {
				err = fmt.Errorf("%d attempts failed, last: %w", attempts, err)
			}
			return r.wrap(op, p, err)
		}
		r.retries.Add(1)
		fs.Debugf(nil, "destination %q: %s %s: attempt %d failed, retrying: %v", r.label, op, p, i, err)
		t := time.NewTimer(backoff(r.opt.RetryBase, i))
		select {
		case <-ctx.Done():
			t.Stop()
			return r.wrap(op, p, fmt.Errorf("%w (after: %v)", ctx.Err(), err))
		case <-t.C:
		}
	}
}

// backoff returns the wait before attempt n+1: base*2^(n-1), capped, then
// scaled by a random factor in [0.5, 1.5).
func backoff(base time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < maxBackoff; i++ {
		d *= 2
	}
	d = min(d, maxBackoff)
	return d/2 + rand.N(d+1)
}

// DeniedError is a local permission or read-only error (EACCES, EPERM,
// EROFS) on the destination's file system, or one the remote reports the
// same way: another attempt cannot fix it, so it is never retried.
type DeniedError struct {
	// Path is the local path that was refused (the object path when the
	// cause names none).
	Path string
	// User is who fireops runs as: "uid 0 (root)".
	User string
	// Errno is the cause's error number.
	Errno syscall.Errno
	// Err is the cause.
	Err error
	// Refused is the folder or file where the write was refused: Path
	// when it exists, else its nearest ancestor that does (a mkdir in an
	// immutable or read-only folder names the folder it would create).
	// Empty when Path is not a local absolute path.
	Refused string
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("%v (running as %s; not retried)", e.Err, e.User)
}

// Unwrap returns the cause.
func (e *DeniedError) Unwrap() error { return e.Err }

// Hint says what to do about it, naming the folder where the write was
// refused (Refused, else Path).
func (e *DeniedError) Hint() string {
	p := e.Refused
	if p == "" {
		p = e.Path
	}
	if e.Errno == syscall.EROFS {
		return fmt.Sprintf("%s is on a read-only file system: mount it read-write, or point the destination elsewhere (destinations[].remote)", p)
	}
	return fmt.Sprintf("let %s write %s (fix its permissions, owner or immutable flag), or point the destination elsewhere (destinations[].remote)", e.User, p)
}

// existingAncestor returns p when it exists, else its nearest ancestor
// that does; "" when p is not an absolute path. A link is not followed.
func existingAncestor(p string) string {
	if !filepath.IsAbs(p) {
		return ""
	}
	p = filepath.Clean(p)
	for {
		if _, err := os.Lstat(p); err == nil {
			return p
		}
		parent := filepath.Dir(p)
		if parent == p {
			return ""
		}
		p = parent
	}
}

// deniedErrnos are the local errors another attempt cannot fix.
var deniedErrnos = []syscall.Errno{syscall.EACCES, syscall.EPERM, syscall.EROFS}

// deniedError returns err as a *DeniedError when it is a local permission
// or read-only error, or nil. p is the object path, named when the cause
// names no local path.
func deniedError(err error, p string) *DeniedError {
	var de *DeniedError
	if errors.As(err, &de) {
		return de
	}
	for _, n := range deniedErrnos {
		if !errors.Is(err, n) {
			continue
		}
		de = &DeniedError{Path: p, User: runningUser(), Errno: n, Err: err}
		var pe *iofs.PathError
		var le *os.LinkError
		var se *os.SyscallError
		switch {
		case errors.As(err, &pe):
			de.Path = pe.Path
		case errors.As(err, &le):
			de.Path = le.New
		case errors.As(err, &se) && de.Path == "":
			de.Path = se.Syscall
		}
		de.Refused = existingAncestor(de.Path)
		return de
	}
	return nil
}

// NotDirError is a local path of the destination that goes through a
// regular file (ENOTDIR: "/srv/backups/file.txt/fireops", or an object
// path below a file left in the destination's folder): another attempt
// cannot fix it, so it is never retried.
type NotDirError struct {
	// Path is the local path that failed.
	Path string
	// File is the element of Path that is a file, not a folder (the
	// nearest ancestor of Path that exists); empty when none is found.
	File string
	// Err is the cause.
	Err error
}

// Error says what failed and which element of the path is a file; Hint
// says what to do about it.
func (e *NotDirError) Error() string {
	if e.File == "" {
		return fmt.Sprintf("%v (an element of %s is a file, not a folder; not retried)", e.Err, e.Path)
	}
	return fmt.Sprintf("%v (%s is a file, not a folder; not retried)", e.Err, e.File)
}

// Unwrap returns the cause.
func (e *NotDirError) Unwrap() error { return e.Err }

// Hint names the fix.
func (e *NotDirError) Hint() string {
	what := e.File
	if what == "" {
		what = "the file in the way of " + e.Path
	}
	return fmt.Sprintf("move %s away, or point the destination elsewhere (destinations[].remote)", what)
}

// notDirError returns err as a *NotDirError when it is ENOTDIR, or nil.
// p is the object path, named when the cause names no local path.
func notDirError(err error, p string) *NotDirError {
	var ne *NotDirError
	if errors.As(err, &ne) {
		return ne
	}
	if !errors.Is(err, syscall.ENOTDIR) {
		return nil
	}
	ne = &NotDirError{Path: p, Err: err}
	var pe *iofs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		ne.Path = pe.Path
	case errors.As(err, &le):
		ne.Path = le.New
	}
	// os.MkdirAll names the file itself; lstat and open name the whole
	// path below it: the nearest element that exists is the file.
	if f := existingAncestor(ne.Path); f != "" {
		if fi, err := os.Lstat(f); err == nil && !fi.IsDir() {
			ne.File = f
		}
	}
	return ne
}

// runningUser names the process's user: "uid 1000 (backup)".
func runningUser() string {
	uid := os.Getuid()
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("uid %d (%s)", uid, u.Username)
	}
	return fmt.Sprintf("uid %d", uid)
}

// retryable reports whether another attempt could succeed.
func retryable(ctx context.Context, err error) bool {
	switch {
	case ctx.Err() != nil,
		errors.Is(err, context.Canceled),
		isNotFound(err),
		errors.Is(err, ErrTooLarge),
		errors.Is(err, fs.ErrorIsDir),
		errors.Is(err, fs.ErrorIsFile),
		errors.Is(err, fs.ErrorNotAFile),
		errors.Is(err, fs.ErrorPermissionDenied),
		deniedError(err, "") != nil,
		errors.Is(err, syscall.ENOTDIR),
		fserrors.IsFatalError(err),
		fserrors.IsNoRetryError(err):
		return false
	}
	return true
}

// cleanPath checks an object path: relative, not empty, no "..".
func cleanPath(p string) (string, error) {
	c, err := cleanDir(p)
	if err == nil && c == "" {
		err = errors.New("empty object path")
	}
	return c, err
}

// cleanDir checks a directory path; "" (or ".") is the root.
func cleanDir(p string) (string, error) {
	if strings.HasPrefix(p, "/") || strings.Contains(p, `\`) {
		return p, fmt.Errorf("path %q must be relative to the destination's root, with forward slashes", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			//lint:ignore ST1005 ".." is the parent folder's name, not punctuation
			return p, fmt.Errorf("path %q must not contain ..", p)
		}
	}
	c := path.Clean(p)
	if c == "." {
		c = ""
	}
	return c, nil
}
