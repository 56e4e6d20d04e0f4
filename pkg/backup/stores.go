// Package backup runs the backup jobs from a config: it opens the
// destinations (pkg/remote), builds the sources (pkg/source/...), loads the
// keys, and drives the snapshot engine (pkg/snapshot) for the snapshot,
// snapshots, verify and restore commands. cmd/fireops only parses flags
// and prints what these functions return.
package backup

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

// notFound makes remote's not-found errors match snapshot.ErrNotFound too.
func notFound(err error) error {
	if err != nil && errors.Is(err, remote.ErrNotFound) {
		return fmt.Errorf("%w (%w)", snapshot.ErrNotFound, err)
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

// OpenDests opens the destinations of the config, or only those named.
// An unknown name is a usage error.
func OpenDests(ctx context.Context, cfg *config.Config, only []string) ([]Dest, error) {
	if len(cfg.Destinations) == 0 {
		return nil, exitcode.Usagef("add a destination to the config (docs/configuration.md)", "config %s has no destinations", cfg.File)
	}
	for _, n := range only {
		if !slices.ContainsFunc(cfg.Destinations, func(d config.Destination) bool { return d.Name == n }) {
			return nil, exitcode.Usagef("use one of the names under destinations: in the config", "unknown destination %q", n)
		}
	}
	var out []Dest
	for _, d := range cfg.Destinations {
		if len(only) > 0 && !slices.Contains(only, d.Name) {
			continue
		}
		r, err := remote.Open(ctx, remote.Options{Name: d.Name, Remote: d.Remote, RcloneConfig: d.RcloneConfig, Uploads: d.Uploads})
		if err != nil {
			CloseDests(ctx, out, nil)
			return nil, exitcode.New(exitcode.Failure, fmt.Errorf("open destination %s: %w", d.Name, err),
				"check that the destination answers (rclone lsd on its remote) and its credentials, or leave it out for this run with --dest OTHER")
		}
		out = append(out, Dest{Name: d.Name, Store: store{r}, Remote: r})
	}
	return out, nil
}

// CloseDests releases what the opened destinations hold (s3's upload
// pools, for example), so that the schedule daemon, which opens them for
// every job, keeps nothing from one run to the next. A failure is only
// logged (to log when not nil): the job's own result stands.
func CloseDests(ctx context.Context, dests []Dest, log *slog.Logger) {
	for _, d := range dests {
		if err := d.Remote.Close(context.WithoutCancel(ctx)); err != nil && log != nil {
			log.Warn("close destination", "destination", d.Name, "err", err)
		}
	}
}

// TrustedKey returns the public key manifests must be signed with:
// keys.signing_public_key, else the public half of keys.signing_key_file.
func TrustedKey(cfg *config.Config) (ed25519.PublicKey, error) {
	if cfg.Keys.SigningPublicKey != "" {
		return keys.ParsePublicKey(cfg.Keys.SigningPublicKey)
	}
	if cfg.Keys.SigningKeyFile != "" {
		k, err := keys.LoadSigningKey(cfg.Keys.SigningKeyFile)
		if err != nil {
			return nil, err
		}
		return k.Public().(ed25519.PublicKey), nil
	}
	return nil, exitcode.Usagef("set keys.signing_public_key (the ed25519:... key `fireops init` printed) or keys.signing_key_file",
		"no trusted signing key: manifests cannot be checked")
}

// Identities loads the private age identity: the file given (a flag), else
// keys.identity_file.
func Identities(cfg *config.Config, file string) ([]age.Identity, error) {
	if file == "" {
		file = cfg.Keys.IdentityFile
	}
	if file == "" {
		return nil, exitcode.Usagef("pass --identity FILE or set keys.identity_file", "no age identity: decrypting needs the private key")
	}
	ids, err := keys.LoadIdentities(file)
	if err != nil {
		return nil, exitcode.Usagef("pass --identity FILE with the identity kept offline (identity.txt)", "%w", err)
	}
	return ids, nil
}
