// Package bootstrap implements `fireops init`: it writes a commented config
// file, a new age identity and a new Ed25519 signing key into a folder,
// never overwriting anything that is already there.
package bootstrap

import (
	"bytes"
	"crypto/ed25519"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"text/template"
	"time"

	"filippo.io/age"

	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/keys"
)

// The file names init writes. Runbooks depend on them.
const (
	ConfigName     = "fireops.yaml"
	IdentityName   = "identity.txt"
	SigningKeyName = "signing.key"
)

//go:embed fireops.yaml.tmpl
var configTemplate string

var tmpl = template.Must(template.New(ConfigName).Parse(configTemplate))

// Options says where and for which host init writes.
type Options struct {
	// Dir is the folder to write into; it is created (0750) if missing.
	Dir string
	// Host is written as the config's host; empty means the hostname.
	Host string
	// Now is the creation time written into the files.
	Now time.Time
}

// Result tells what init wrote.
type Result struct {
	Config           string `json:"config"`
	Identity         string `json:"identity"`
	SigningKey       string `json:"signing_key"`
	Recipient        string `json:"recipient"`
	SigningPublicKey string `json:"signing_public_key"`
}

// Init writes the three files. It checks first that none exists, so it
// either writes all of them or none (a failed write removes what it wrote).
func Init(opts Options) (*Result, error) {
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("init %s: %w", opts.Dir, err)
	}
	res := &Result{
		Config:     filepath.Join(dir, ConfigName),
		Identity:   filepath.Join(dir, IdentityName),
		SigningKey: filepath.Join(dir, SigningKeyName),
	}
	for _, p := range []string{res.Config, res.Identity, res.SigningKey} {
		if _, err := os.Lstat(p); err == nil {
			return nil, exitcode.Usagef("move it away, or choose another folder with --dir",
				"init: %s already exists; refusing to overwrite it", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("init: %w", err)
		}
	}
	if opts.Host == "" {
		opts.Host, _ = os.Hostname()
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}

	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("init: generate age identity: %w", err)
	}
	sk, err := keys.GenerateSigningKey()
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	skPEM, err := keys.MarshalSigningKey(sk)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	res.Recipient = id.Recipient().String()
	res.SigningPublicKey = keys.FormatPublicKey(sk.Public().(ed25519.PublicKey))

	var cfg bytes.Buffer
	err = tmpl.Execute(&cfg, map[string]string{
		"Created": opts.Now.UTC().Format(time.RFC3339), "Host": opts.Host,
		"Recipient": res.Recipient, "SigningPublicKey": res.SigningPublicKey,
	})
	if err != nil {
		return nil, fmt.Errorf("init: render config: %w", err)
	}

	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("init: create %s: %w", dir, err)
	}
	var written []string
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{res.Identity, keys.IdentityFile(id, opts.Now), 0o600},
		{res.SigningKey, skPEM, 0o600},
		{res.Config, cfg.Bytes(), 0o644},
	} {
		if err := keys.WriteNewFile(f.path, f.data, f.mode); err != nil {
			for _, w := range written {
				os.Remove(w)
			}
			return nil, fmt.Errorf("init: %w", err)
		}
		written = append(written, f.path)
	}
	return res, nil
}
