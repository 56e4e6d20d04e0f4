package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"slices"
	"time"

	"filippo.io/age"
	"go.yaml.in/yaml/v3"

	"github.com/firetech/fireops/pkg/redact"
)

// Recipients returns every age recipient of the config: the inline ones and
// those of recipients_file.
func (c *Config) Recipients() ([]*age.X25519Recipient, error) {
	var out []*age.X25519Recipient
	for i, r := range c.Keys.Recipients {
		rcp, err := age.ParseX25519Recipient(r)
		if err != nil {
			return nil, fmt.Errorf("keys.recipients[%d]: %w", i, err)
		}
		out = append(out, rcp)
	}
	if c.Keys.RecipientsFile != "" {
		more, err := readRecipientsFile(c.Keys.RecipientsFile)
		if err != nil {
			return nil, fmt.Errorf("keys.recipients_file: %w", err)
		}
		out = append(out, more...)
	}
	return out, nil
}

// RedactRemote hides the credentials an inline rclone connection string may
// hold (pass=, token=, secret_access_key=, headers=, user:password@ in a
// URL, in every quoting rclone accepts); see package redact.
func RedactRemote(remote string) string { return redact.String(remote) }

// Redacted returns a copy of c fit for printing: credentials in remote
// strings and the stack's URLs are hidden. Secrets are otherwise never
// inline in the config.
func (c *Config) Redacted() *Config {
	cp := *c
	cp.Destinations = make([]Destination, len(c.Destinations))
	for i, d := range c.Destinations {
		d.Remote = RedactRemote(d.Remote)
		cp.Destinations[i] = d
	}
	// The stack's URLs: a webhook URL is a secret as a whole (Slack and
	// others put the token in its path); the others may carry a password
	// or a token parameter.
	cp.Stack.Alerts.WebhookURL = redact.Webhook(c.Stack.Alerts.WebhookURL)
	cp.Stack.Monitoring.GrafanaRootURL = redact.URL(c.Stack.Monitoring.GrafanaRootURL)
	cp.Hub.APIURL = redact.URL(c.Hub.APIURL)
	return &cp
}

// FileStatus is what `config check` says of one file the config names.
type FileStatus struct {
	// Key is the config key naming the file.
	Key string `json:"key"`
	// Path is the resolved path.
	Path string `json:"path"`
	// Status is "ok", "missing" or a short description.
	Status string `json:"status"`
}

// Report is the result of `fireops config check`: the effective config
// with secrets redacted, the status of every file it names, and notes about
// what the config does not cover yet.
type Report struct {
	// File is the config file checked.
	File string `json:"file"`
	// Config is the effective configuration, redacted.
	Config *Config `json:"config"`
	// Files lists the key and secret files with their status.
	Files []FileStatus `json:"files"`
	// Notes are warnings that do not make the config invalid.
	Notes []string `json:"notes"`
}

// Check builds the report of a config that Load accepted.
func (c *Config) Check() *Report {
	r := &Report{File: c.File, Config: c.Redacted(), Notes: []string{}}
	add := func(key, name string) {
		if name == "" {
			return
		}
		st, err := os.Stat(name)
		var status string
		switch {
		case errors.Is(err, fs.ErrNotExist):
			status = "missing"
		case err != nil:
			status = err.Error()
		default:
			status = fmt.Sprintf("ok (%04o)", st.Mode().Perm())
		}
		r.Files = append(r.Files, FileStatus{Key: key, Path: name, Status: status})
	}
	add("keys.recipients_file", c.Keys.RecipientsFile)
	add("keys.identity_file", c.Keys.IdentityFile)
	add("keys.signing_key_file", c.Keys.SigningKeyFile)
	for i, d := range c.Destinations {
		add(fmt.Sprintf("destinations[%d].rclone_config", i), d.RcloneConfig)
	}
	if c.Sources.Mongo != nil {
		add("sources.mongo.uri_file", c.Sources.Mongo.URIFile)
	}
	add("hub.token_file", c.Hub.TokenFile)
	add("stack.alerts.email.password_file", c.Stack.Alerts.Email.PasswordFile)
	add("stack.tls.cert_file", c.Stack.TLS.CertFile)
	add("stack.tls.key_file", c.Stack.TLS.KeyFile)
	r.Notes = append(r.Notes, c.TLSNotes(time.Now())...)
	add("stack.alerts.telegram.bot_token_file", c.Stack.Alerts.Telegram.BotTokenFile)

	if len(c.Keys.Recipients) == 0 && c.Keys.RecipientsFile == "" {
		r.Notes = append(r.Notes, "no keys.recipients: snapshot cannot encrypt until one is set")
	}
	if c.Keys.SigningKeyFile == "" {
		r.Notes = append(r.Notes, "no keys.signing_key_file: snapshot cannot sign manifests until one is set")
	}
	if len(c.Destinations) == 0 {
		r.Notes = append(r.Notes, "no destinations: snapshot has nowhere to write")
	}
	s := c.Sources
	if s.Mongo == nil && len(s.SQLite) == 0 && s.Volumes == nil && len(s.Files) == 0 {
		r.Notes = append(r.Notes, "no sources: snapshot has nothing to back up")
	}
	if c.Keys.IdentityFile != "" {
		if _, err := os.Stat(c.Keys.IdentityFile); err == nil {
			r.Notes = append(r.Notes, "the private identity "+c.Keys.IdentityFile+" is on this host: keep a copy offline; a backup host needs only the recipients")
		} else {
			r.Notes = append(r.Notes, "the private identity "+c.Keys.IdentityFile+" is not on this host: restore and verify --level full need it")
		}
	}
	return r
}

// optionalSections are the top-level sections `config check` prints only
// when they are in use (InUse): deploy's, the hub's and the GPU check's,
// which a backup-only host does not use (but for gpu:, while schedule
// runs the GPU check). The others (keys, destinations,
// sources, retention, schedule, metrics, ...) are what every job reads.
var optionalSections = []string{"hub", "gpu", "stack"}

// InUse returns the top-level sections of the report's config that are
// in use: every one but the optional ones (hub, gpu, stack), and of
// those the ones the file names, whose values differ from the defaults,
// or that something configured uses. A config with a stack: section (a
// stack host) uses all three: deploy renders the hub and the GPU check
// from them. A schedule.gpu_check (set by default) uses gpu: `fireops
// schedule` runs the GPU check with its thresholds, also on a
// backup-only host; only gpu_check: "" leaves gpu: unused there.
func (r *Report) InUse() map[string]bool {
	def := Default().Redacted()
	cfg := r.Config
	stack := cfg.sections["stack"] || !reflect.DeepEqual(cfg.Stack, def.Stack)
	return map[string]bool{
		"stack": stack,
		"hub":   stack || cfg.sections["hub"] || !reflect.DeepEqual(cfg.Hub, def.Hub),
		"gpu":   stack || cfg.sections["gpu"] || !reflect.DeepEqual(cfg.GPU, def.GPU) || cfg.Schedule.GPUCheck != "",
	}
}

// Hidden returns the optional sections YAML leaves out unless all: those
// not in use, in the config's order.
func (r *Report) Hidden() []string {
	use := r.InUse()
	var out []string
	for _, s := range optionalSections {
		if !use[s] {
			out = append(out, s)
		}
	}
	return out
}

// YAML returns the report's effective config as YAML: every key of every
// section, defaults included (`config check --all`).
func (r *Report) YAML() ([]byte, error) { return r.yaml(true) }

// YAMLInUse returns the report's effective config as YAML as `config
// check` prints it: the sections in use (Hidden names those left out),
// without the keys that are unset (an empty string or list, no section):
// what the jobs of this host read.
func (r *Report) YAMLInUse() ([]byte, error) { return r.yaml(false) }

func (r *Report) yaml(all bool) ([]byte, error) {
	var root yaml.Node
	if err := root.Encode(r.Config); err != nil {
		return nil, err
	}
	if !all {
		hidden := r.Hidden()
		if root.Kind == yaml.MappingNode {
			var keep []*yaml.Node
			for i := 0; i+1 < len(root.Content); i += 2 {
				if !slices.Contains(hidden, root.Content[i].Value) {
					keep = append(keep, root.Content[i], root.Content[i+1])
				}
			}
			root.Content = keep
		}
		pruneUnset(&root)
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// pruneUnset removes from every mapping under n the keys whose value is
// unset: null, an empty string, an empty list, or a mapping left empty.
// It reports whether n itself is unset.
func pruneUnset(n *yaml.Node) bool {
	switch n.Kind {
	case yaml.MappingNode:
		var keep []*yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if !pruneUnset(n.Content[i+1]) {
				keep = append(keep, n.Content[i], n.Content[i+1])
			}
		}
		n.Content = keep
		return len(n.Content) == 0
	case yaml.SequenceNode:
		for _, c := range n.Content {
			pruneUnset(c)
		}
		return len(n.Content) == 0
	case yaml.ScalarNode:
		return n.Tag == "!!null" || (n.Tag == "!!str" && n.Value == "")
	}
	return false
}
