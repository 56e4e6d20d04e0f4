// Package destination opens the destinations a job writes to or reads
// from, as the config names them: each one's rclone remote (pkg/remote)
// adapted to the snapshot engine's Store, with the errors of one that
// cannot be opened kept apart from the others. It also loads what every
// job needs to trust and read a destination's snapshots: the trusted
// signing keys, the age identity, and a snapshot's signed manifest.
package destination

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"

	"filippo.io/age"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/keys"
	"github.com/firetech/fireops/pkg/remote"
	"github.com/firetech/fireops/pkg/snapshot"
)

// store adapts a remote.Remote to the engine's snapshot.Store.
type store struct {
	r *remote.Remote
}

func (s store) Name() string { return s.r.Name() }

// Uploads is the destination's own limit of chunk uploads at once.
func (s store) Uploads() int { return s.r.Uploads() }

func (s store) Put(ctx context.Context, p string, data []byte) error {
	return s.r.Put(ctx, p, data)
}

func (s store) Get(ctx context.Context, p string) (io.ReadCloser, error) {
	rc, err := s.r.Get(ctx, p)
	return rc, notFound(err)
}

func (s store) GetBytes(ctx context.Context, p string, max int64) ([]byte, error) {
	b, err := s.r.GetBytes(ctx, p, max)
	return b, notFound(err)
}

func (s store) List(ctx context.Context, dir string) ([]snapshot.Entry, error) {
	es, err := s.r.List(ctx, dir)
	if err != nil {
		return nil, err
	}
	out := make([]snapshot.Entry, len(es))
	for i, e := range es {
		out[i] = snapshot.Entry{Name: e.Name, Dir: e.Dir, Size: e.Size, ModTime: e.ModTime}
	}
	return out, nil
}

func (s store) Delete(ctx context.Context, p string) error  { return s.r.Delete(ctx, p) }
func (s store) Rmdir(ctx context.Context, dir string) error { return s.r.Rmdir(ctx, dir) }

// notFound makes remote's not-found errors match snapshot.ErrNotFound too,
// and its too-large ones snapshot.ErrTooLarge.
func notFound(err error) error {
	switch {
	case err == nil:
	case errors.Is(err, remote.ErrNotFound):
		return fmt.Errorf("%w (%w)", snapshot.ErrNotFound, err)
	case errors.Is(err, remote.ErrTooLarge):
		return fmt.Errorf("%w (%w)", snapshot.ErrTooLarge, err)
	}
	return err
}

// Dest is one opened destination.
type Dest struct {
	// Name is the destination's name in the config.
	Name string
	// Store is the engine's view of it.
	Store snapshot.Store
	// Remote is the rclone destination.
	Remote *remote.Remote
}

// OpenError is a destination that could not be opened.
type OpenError struct {
	// Name is the destination's name in the config.
	Name string
	// Err is why it could not be opened.
	Err error
	// Retries counts the attempts to open it that failed and were tried
	// again: the destination's RETRIES although it never opened.
	Retries int64
}

// Error says which destination could not be opened and why, naming it
// once: a cause of pkg/remote names it already (`destination "NAME":
// open: ...`).
func (e OpenError) Error() string {
	var re *remote.Error
	if errors.As(e.Err, &re) && re.Dest == e.Name {
		return e.Err.Error()
	}
	return fmt.Sprintf("open destination %s: %v", e.Name, e.Err)
}

// Unwrap returns the cause.
func (e OpenError) Unwrap() error { return e.Err }

// OpenHint is the hint for a destination that cannot be opened.
const OpenHint = "check that the destination answers (rclone lsd on its remote) and its credentials, or leave it out for this run with --dest OTHER"

// OpenAllHint is the hint when no configured destination could be
// opened: there is no other one to choose with --dest.
const OpenAllHint = "check that the destination answers (rclone lsd on its remote) and its credentials"

// FailedHint is the hint for the destinations named failed of the
// config: OpenAllHint when they are all of them, else OpenHint.
func FailedHint(cfg *config.Config, failed []string) string {
	for _, d := range cfg.Destinations {
		if !slices.Contains(failed, d.Name) {
			return OpenHint
		}
	}
	return OpenAllHint
}

// Open opens the destinations of the config, or only those named.
// An unknown name is a usage error. One destination that cannot be opened
// does not stop the others: it is returned in failed (the caller reports
// it with its own results) as long as another one opened; when none
// opened, the error names them all and failed still lists them (for a
// caller that reports each, such as the listing). A usage error (an
// rclone config that group or others can read) is returned at once: it
// is the config to fix, like a bad config file.
func Open(ctx context.Context, cfg *config.Config, only []string) (dests []Dest, failed []OpenError, err error) {
	if len(cfg.Destinations) == 0 {
		return nil, nil, exitcode.Usagef("add a destination to the config (docs/configuration.md)", "config %s has no destinations", cfg.File)
	}
	for _, n := range only {
		if !slices.ContainsFunc(cfg.Destinations, func(d config.Destination) bool { return d.Name == n }) {
			return nil, nil, exitcode.Usagef("use one of the names under destinations: in the config", "unknown destination %q", n)
		}
	}
	for _, d := range cfg.Destinations {
		if len(only) > 0 && !slices.Contains(only, d.Name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			Close(ctx, dests, nil)
			return nil, nil, err
		}
		r, err := remote.Open(ctx, remote.Options{Name: d.Name, Remote: d.Remote, RcloneConfig: d.RcloneConfig, Uploads: d.Uploads})
		if err != nil && errors.As(err, new(*keys.SecretFileError)) {
			// An rclone config that others can read (exit 2, the
			// refusal's hint): the config to fix before any job runs,
			// like a bad config file, not one destination that is down.
			Close(ctx, dests, nil)
			return nil, nil, OpenError{Name: d.Name, Err: err}
		}
		if err != nil {
			de := OpenError{Name: d.Name, Err: err}
			var re *remote.Error
			if errors.As(err, &re) {
				de.Retries = re.Retries
			}
			failed = append(failed, de)
			continue
		}
		dests = append(dests, Dest{Name: d.Name, Store: store{r}, Remote: r})
	}
	if len(dests) == 0 {
		errs := make([]error, len(failed))
		names := make([]string, len(failed))
		for i, f := range failed {
			errs[i], names[i] = f, f.Name
		}
		return nil, failed, exitcode.New(exitcode.Failure, errors.Join(errs...), FailedHint(cfg, names))
	}
	return dests, failed, nil
}

// SortByConfig orders items (one per destination, named by name) as the
// destinations are in the config.
func SortByConfig[T any](cfg *config.Config, items []T, name func(T) string) {
	order := func(n string) int {
		return slices.IndexFunc(cfg.Destinations, func(d config.Destination) bool { return d.Name == n })
	}
	slices.SortStableFunc(items, func(a, b T) int { return order(name(a)) - order(name(b)) })
}

// Failures joins the errors of the destinations that could not be
// opened (nil when there are none), for a job's own error.
func Failures(failed []OpenError) error {
	var errs []error
	for _, f := range failed {
		errs = append(errs, f)
	}
	return errors.Join(errs...)
}

// Close releases what the opened destinations hold (s3's upload
// pools, for example), so that the schedule daemon, which opens them for
// every job, keeps nothing from one run to the next. A failure is only
// logged (to log when not nil): the job's own result stands.
func Close(ctx context.Context, dests []Dest, log *slog.Logger) {
	for _, d := range dests {
		if err := d.Remote.Close(context.WithoutCancel(ctx)); err != nil && log != nil {
			log.Warn("close destination", "destination", d.Name, "err", err)
		}
	}
}

// TrustedKeys returns the public keys a manifest may be signed with:
// every key of keys.signing_public_keys, keys.signing_public_key, and the
// public half of keys.signing_key_file, each once. After a signing key
// change the old public key stays listed until the snapshots it signed are
// rotated away (docs/runbook.md).
func TrustedKeys(cfg *config.Config) ([]ed25519.PublicKey, error) {
	var out []ed25519.PublicKey
	add := func(k ed25519.PublicKey) {
		if !slices.ContainsFunc(out, func(o ed25519.PublicKey) bool { return o.Equal(k) }) {
			out = append(out, k)
		}
	}
	const fix = "copy the ed25519:... key printed by `fireops init` (docs/configuration.md)"
	for i, s := range cfg.Keys.SigningPublicKeys {
		k, err := keys.ParsePublicKey(s)
		if err != nil {
			return nil, exitcode.Usagef(fix, "keys.signing_public_keys[%d]: %w", i, err)
		}
		add(k)
	}
	if cfg.Keys.SigningPublicKey != "" {
		k, err := keys.ParsePublicKey(cfg.Keys.SigningPublicKey)
		if err != nil {
			return nil, exitcode.Usagef(fix, "keys.signing_public_key: %w", err)
		}
		add(k)
	}
	if cfg.Keys.SigningKeyFile != "" {
		k, err := keys.LoadSigningKey(cfg.Keys.SigningKeyFile)
		if err != nil {
			return nil, err
		}
		add(k.Public().(ed25519.PublicKey))
	}
	if len(out) == 0 {
		return nil, exitcode.Usagef("set keys.signing_public_keys (the ed25519:... key `fireops init` printed) or keys.signing_key_file",
			"no trusted signing key: manifests cannot be checked")
	}
	return out, nil
}

// UntrustedSignerHint is the hint for a manifest refused because it names
// a signer outside the trusted keys (snapshot.ErrUntrustedSigner).
const UntrustedSignerHint = "if it was signed by an earlier signing key of this site, add that key's ed25519:... public key to keys.signing_public_keys until its snapshots are rotated away (docs/runbook.md, \"Changing the signing key\"); otherwise the snapshot is not this site's"

// OpenManifest opens a snapshot's manifest (its signature checked with the
// trusted keys) and, where this host has the signing key that signed it,
// has its pieces' keyed ids checked as they are read. A snapshot signed by
// another trusted key (one signed before a signing key change) was keyed
// with that key, which this host no longer has: its pieces are checked by
// the SHA-256s its signed manifest binds and by age's authentication, as
// on a restore host without signing.key.
func OpenManifest(ctx context.Context, cfg *config.Config, d Dest, id string, trusted []ed25519.PublicKey) (*snapshot.Manifest, error) {
	m, signer, err := snapshot.OpenSigned(ctx, d.Store, cfg.Host, id, trusted...)
	if err != nil {
		return nil, err
	}
	if cfg.Keys.SigningKeyFile != "" {
		if k, err := keys.LoadSigningKey(cfg.Keys.SigningKeyFile); err == nil && k.Public().(ed25519.PublicKey).Equal(signer) {
			if err := m.CheckPieceIDs(k); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// Identities loads the private age identity: the file given (a flag), else
// keys.identity_file. The file is checked like every secret file
// (keys.OpenSecretFile: not readable by group or others, owned by root or
// the running user): a refusal is a usage error with the fix as its hint.
func Identities(cfg *config.Config, file string) ([]age.Identity, error) {
	if file == "" {
		file = cfg.Keys.IdentityFile
	}
	if file == "" {
		return nil, exitcode.Usagef("pass --identity FILE or set keys.identity_file", "no age identity: decrypting needs the private key")
	}
	f, err := keys.OpenSecretFile(file)
	if err != nil {
		var se *keys.SecretFileError
		if errors.As(err, &se) && se.Hint != "" {
			return nil, exitcode.Usagef(se.Hint, "identity file: %w", err)
		}
		return nil, exitcode.Usagef("pass --identity FILE with the identity kept offline (identity.txt)", "identity file: %w", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, exitcode.Usagef("pass --identity FILE with the identity kept offline (identity.txt)", "parse identity file %s: %w", file, err)
	}
	return ids, nil
}
