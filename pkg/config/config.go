// Package config loads, defaults, validates and prints the fireops
// configuration file (design.md §3, documented key by key in
// docs/configuration.md).
//
// Decoding is strict: an unknown key is an error naming the key and its
// line. Relative paths are resolved against the config file's folder.
// Secrets are never inline; the files that hold them must not be readable
// by group or others, and Load refuses them like ssh does.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/firetech/fireops/pkg/exitcode"
)

// DefaultPath is the config file used when neither --config nor
// FIREOPS_CONFIG names one.
const DefaultPath = "/etc/fireops/fireops.yaml"

// EnvPath is the environment variable that names the config file.
const EnvPath = "FIREOPS_CONFIG"

// Default returns the configuration with every documented default set and
// nothing configured to back up.
func Default() *Config {
	host, _ := os.Hostname()
	return &Config{
		Host:        host,
		ChunkSize:   32 * MiB,
		StateDir:    "/var/lib/fireops",
		Compression: "default",
		Retention: Retention{
			KeepLast: 3, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 6,
			IncompleteGrace: Duration(24 * 3600 * 1e9),
		},
		Schedule: Schedule{
			Snapshot: "0 3 * * *", Rotate: "30 4 * * *", Verify: "0 5 * * 0", GPUCheck: "*/15 * * * *",
			VerifyLevel: "hashes",
		},
		Metrics: Metrics{Listen: "127.0.0.1:9798"},
		Hub: Hub{
			APIURL: "http://127.0.0.1:8000/hub/api", DBVolume: "jupyterhub-data", DBFile: "jupyterhub.sqlite",
		},
		GPU:   GPU{MaxTemperatureC: 85, RequireContainerRuntime: true},
		Stack: defaultStack(),
	}
}

// defaultVolumeSource is what an empty `volumes:` section means.
func defaultVolumeSource() VolumeSource {
	return VolumeSource{Include: []string{"jupyterhub-user-*", "jupyterhub-data"}, Read: "auto"}
}

// Load reads, defaults, resolves and validates the config file at path.
// Every error it returns carries exit code 2 (usage or config error) and a
// hint.
func Load(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, exitcode.Usagef("pass an absolute --config path", "config %s: %w", path, err)
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		hint := "check the path given by --config or " + EnvPath
		if errors.Is(err, os.ErrNotExist) {
			hint = fmt.Sprintf("create one with `fireops init --dir %s`, or pass --config", filepath.Dir(abs))
		}
		return nil, exitcode.Usagef(hint, "read config: %w", err)
	}
	cfg, err := Parse(data, abs)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// Parse decodes config data as if read from the file at abs (which fixes
// the folder relative paths are resolved against), then defaults and
// validates it.
func Parse(data []byte, abs string) (*Config, error) {
	cfg := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		msg, hint := yamlError(err, data)
		return nil, exitcode.Usagef(hint, "config %s: %s", abs, msg)
	}
	cfg.File = abs
	cfg.sections = topKeys(data)
	if cfg.Sources.Volumes == nil && hasVolumesKey(data) {
		// A bare `volumes:` line means the same as `volumes: {}`.
		cfg.Sources.Volumes = &VolumeSource{}
	}
	if cfg.Sources.Volumes != nil {
		def := defaultVolumeSource()
		if cfg.Sources.Volumes.Include == nil {
			cfg.Sources.Volumes.Include = def.Include
		}
		if cfg.Sources.Volumes.Read == "" {
			cfg.Sources.Volumes.Read = def.Read
		}
	}
	for i := range cfg.Destinations {
		if cfg.Destinations[i].Uploads == 0 {
			cfg.Destinations[i].Uploads = 2
		}
	}
	cfg.resolvePaths(filepath.Dir(abs))
	if cfg.Hub.TokenFile == "" && cfg.sections["stack"] {
		// On the stack's own host the hub token for fireops is the one
		// deploy generates.
		cfg.Hub.TokenFile = filepath.Join(cfg.Stack.Dir, StackSecretsDir, HubTokenSecret)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// hasVolumesKey reports whether data has a sources.volumes key, even one
// with no value (YAML null, which decodes to no section at all).
func hasVolumesKey(data []byte) bool {
	var raw struct {
		Sources struct {
			Volumes yaml.Node `yaml:"volumes"`
		} `yaml:"sources"`
	}
	return yaml.Unmarshal(data, &raw) == nil && raw.Sources.Volumes.Kind != 0
}

// topKeys returns the top-level keys of data, even those with no value.
func topKeys(data []byte) map[string]bool {
	var raw map[string]yaml.Node
	if yaml.Unmarshal(data, &raw) != nil {
		return nil
	}
	keys := make(map[string]bool, len(raw))
	for k := range raw {
		keys[k] = true
	}
	return keys
}

// section names the YAML section a Go type of this package decodes.
func section(typ string) string {
	s := map[string]string{
		"Keys": "keys", "Destination": "destinations", "Sources": "sources",
		"MongoSource": "sources.mongo", "SQLiteSource": "sources.sqlite",
		"VolumeSource": "sources.volumes", "FileSource": "sources.files",
		"Retention": "retention", "Schedule": "schedule", "Metrics": "metrics",
		"Hub": "hub", "GPU": "gpu", "Stack": "stack",
		"StackPorts": "stack.ports", "StackNetworks": "stack.networks", "StackImages": "stack.images",
		"StackHub": "stack.hub", "StackNotebook": "stack.notebook", "StackMongo": "stack.mongo",
		"StackMonitoring": "stack.monitoring", "StackAlerts": "stack.alerts", "StackEmail": "stack.alerts.email",
		"StackTelegram": "stack.alerts.telegram", "StackLimits": "stack.limits",
		"StackTLS": "stack.tls",
	}[typ]
	if s == "" {
		return " at the top level"
	}
	return " in " + s
}

// IsLocalRemote reports whether an rclone remote string is a plain local
// path rather than "name:path" or an inline ":backend,...:path" string.
func IsLocalRemote(remote string) bool {
	if strings.HasPrefix(remote, "/") || strings.HasPrefix(remote, ".") {
		return true
	}
	before, _, found := strings.Cut(remote, ":")
	return !found || strings.Contains(before, "/")
}

func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.Keys.RecipientsFile)
	abs(&c.Keys.IdentityFile)
	abs(&c.Keys.SigningKeyFile)
	abs(&c.StateDir)
	abs(&c.Metrics.TextfileDir)
	abs(&c.Hub.TokenFile)
	abs(&c.Hub.DBPath)
	abs(&c.Stack.Dir)
	abs(&c.Stack.Alerts.Email.PasswordFile)
	abs(&c.Stack.TLS.CertFile)
	abs(&c.Stack.TLS.KeyFile)
	abs(&c.Stack.Alerts.Telegram.BotTokenFile)
	for i := range c.Destinations {
		d := &c.Destinations[i]
		abs(&d.RcloneConfig)
		if d.Remote != "" && IsLocalRemote(d.Remote) {
			abs(&d.Remote)
		}
	}
	if c.Sources.Mongo != nil {
		abs(&c.Sources.Mongo.URIFile)
	}
	for i := range c.Sources.SQLite {
		abs(&c.Sources.SQLite[i].Path)
	}
	for i := range c.Sources.Files {
		for j := range c.Sources.Files[i].Paths {
			abs(&c.Sources.Files[i].Paths[j])
		}
	}
}
