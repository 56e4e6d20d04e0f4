package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path"
	"regexp"
	"strings"

	"filippo.io/age"
	"github.com/robfig/cron/v3"

	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/keys"
)

// problem is one invalid value: the key it is about, what is wrong, and
// optionally how to fix it.
type problem struct {
	key, msg, hint string
}

type problems []problem

func (p *problems) add(key, hint, format string, args ...any) {
	*p = append(*p, problem{key: key, msg: fmt.Sprintf(format, args...), hint: hint})
}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	// driverRE is an NVIDIA driver version such as 550.54.15.
	driverRE = regexp.MustCompile(`^\d+(\.\d+)*$`)
)

// Validate checks every value and the secret files the config names. It
// returns nil or a usage error (exit code 2) listing every problem, each
// naming its key, with the hint of the first.
func (c *Config) Validate() error {
	var p problems
	if !nameRE.MatchString(c.Host) {
		p.add("host", "set host: to a name made of letters, digits, '.', '_' and '-'", "%q is not a valid host name", c.Host)
	}
	c.validateKeys(&p)
	c.validateDestinations(&p)
	if c.ChunkSize < MiB || c.ChunkSize > GiB {
		p.add("chunk_size", "use a size from 1MiB to 1GiB; 32MiB is the default", "%s is out of range", c.ChunkSize)
	}
	switch c.Compression {
	case "fastest", "default", "better", "best":
	default:
		p.add("compression", "use fastest, default, better or best", "unknown level %q", c.Compression)
	}
	c.validateSources(&p)
	validateRetention(&p, "retention", c.Retention, false, false)
	for _, s := range []struct{ key, spec string }{
		{"schedule.snapshot", c.Schedule.Snapshot}, {"schedule.rotate", c.Schedule.Rotate},
		{"schedule.verify", c.Schedule.Verify}, {"schedule.gpu_check", c.Schedule.GPUCheck},
	} {
		if s.spec == "" {
			continue
		}
		if _, err := cron.ParseStandard(s.spec); err != nil {
			p.add(s.key, "use 5 cron fields (minute hour day month weekday) or @daily, @hourly, @every 1h", "invalid cron spec %q: %v", s.spec, err)
		}
	}
	switch c.Schedule.VerifyLevel {
	case "quick", "hashes", "full", "restore-test":
	default:
		p.add("schedule.verify_level", "use quick, hashes, full or restore-test", "unknown verify level %q", c.Schedule.VerifyLevel)
	}
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			p.add("metrics.listen", "use host:port, e.g. 127.0.0.1:9798", "invalid address %q: %v", c.Metrics.Listen, err)
		}
	}
	if u, err := url.Parse(c.Hub.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.add("hub.api_url", "use a URL like http://127.0.0.1:8000/hub/api", "invalid URL %q", c.Hub.APIURL)
	}
	if c.Hub.TokenFile != "" {
		checkSecretFile(&p, "hub.token_file", c.Hub.TokenFile, !c.WrittenByDeploy(c.Hub.TokenFile))
	}
	if c.GPU.ExpectCount < 0 {
		p.add("gpu.expect_count", "use 0 (any number, at least one) or the number of GPUs", "must not be negative")
	}
	if c.GPU.MaxTemperatureC <= 0 || c.GPU.MaxTemperatureC > 150 {
		p.add("gpu.max_temperature_c", "use a temperature in °C such as 85", "%d is out of range", c.GPU.MaxTemperatureC)
	}
	if c.GPU.MinDriver != "" && !driverRE.MatchString(c.GPU.MinDriver) {
		p.add("gpu.min_driver", "use a driver version such as 550.54.15", "invalid version %q", c.GPU.MinDriver)
	}
	c.validateStack(&p)
	return p.err(c.File)
}

// RetentionProblems reports what rotate would refuse in the retention
// settings: an empty policy, a global incomplete_grace of 0 (refused
// even when every destination sets its own grace). It is not
// part of Validate on purpose: a snapshot must still be taken when only
// rotation is misconfigured (rotate fails, and its alert fires); `config
// check` reports these as errors too.
func (c *Config) RetentionProblems() error {
	var p problems
	// The global keep_* rules count where a destination has no policy of
	// its own. A global incomplete_grace of 0 is refused even when every
	// destination sets its own (docs/retention.md): a destination added
	// later, or one whose grace is removed, would get it.
	globalUsed := len(c.Destinations) == 0
	for _, d := range c.Destinations {
		globalUsed = globalUsed || d.Retention == nil
	}
	validateRetention(&p, "retention", c.Retention, globalUsed, true)
	for i, d := range c.Destinations {
		if d.Retention != nil {
			validateRetention(&p, fmt.Sprintf("destinations[%d].retention", i), *d.Retention, true, false)
		}
	}
	return p.err(c.File)
}

// err is nil without problems, else a usage error listing every problem
// with the hint of the first.
func (p problems) err(file string) error {
	if len(p) == 0 {
		return nil
	}
	msgs := make([]string, len(p))
	hint := ""
	for i, pr := range p {
		msgs[i] = pr.key + ": " + pr.msg
		if hint == "" {
			hint = pr.hint
		}
	}
	return exitcode.Usagef(hint, "config %s: %s", file, strings.Join(msgs, "; "))
}

func (c *Config) validateKeys(p *problems) {
	for i, r := range c.Keys.Recipients {
		if _, err := age.ParseX25519Recipient(r); err != nil {
			p.add(fmt.Sprintf("keys.recipients[%d]", i), "use the age1... public key printed by `fireops init` or `age-keygen -y`", "%v", err)
		}
	}
	if c.Keys.RecipientsFile != "" {
		if _, err := readRecipientsFile(c.Keys.RecipientsFile); err != nil {
			p.add("keys.recipients_file", "put one age1... recipient a line in that file", "%v", err)
		}
	}
	if c.Keys.IdentityFile != "" {
		// The identity usually lives offline: a missing file is fine here,
		// restore says so when it needs it. A present one must be private.
		checkSecretFile(p, "keys.identity_file", c.Keys.IdentityFile, false)
	}
	if c.Keys.SigningKeyFile != "" && checkSecretFile(p, "keys.signing_key_file", c.Keys.SigningKeyFile, true) {
		if _, err := keys.LoadSigningKey(c.Keys.SigningKeyFile); err != nil {
			p.add("keys.signing_key_file", "point it at the signing.key written by `fireops init`", "%v", err)
		}
	}
	// The trusted keys: signing_public_keys, the single signing_public_key
	// of older configs, and signing_key_file's public half. Any of them
	// may name signing_key_file's key; the others are earlier signing
	// keys whose snapshots are still kept (docs/runbook.md).
	if c.Keys.SigningPublicKey != "" {
		if _, err := keys.ParsePublicKey(c.Keys.SigningPublicKey); err != nil {
			p.add("keys.signing_public_key", "copy the ed25519:... key printed by `fireops init`", "%v", err)
		}
	}
	for i, s := range c.Keys.SigningPublicKeys {
		if _, err := keys.ParsePublicKey(s); err != nil {
			p.add(fmt.Sprintf("keys.signing_public_keys[%d]", i), "copy the ed25519:... key printed by `fireops init` (the signing_public_key of the config it wrote)", "%v", err)
		}
	}
}

func readRecipientsFile(name string) ([]*age.X25519Recipient, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := keys.ParseRecipients(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return r, nil
}

// checkSecretFile refuses a secret file that group or others can read, one
// owned by neither root nor the running user, one the running user cannot
// read, and a missing one when required (keys.CheckSecretFile). It reports
// whether the file is usable.
func checkSecretFile(p *problems, key, name string, required bool) bool {
	err := keys.CheckSecretFile(name)
	var se *keys.SecretFileError
	switch {
	case err == nil:
		return true
	case errors.Is(err, fs.ErrNotExist):
		if required {
			p.add(key, "create the file or fix the path (relative paths start at the config file's folder)", "%s does not exist", name)
		}
	case errors.As(err, &se):
		p.add(key, se.Hint, "%s", se.Msg)
	default:
		p.add(key, "", "%v", err)
	}
	return false
}

func (c *Config) validateDestinations(p *problems) {
	seen := map[string]bool{}
	remotes := map[string]string{}
	rcloneConf := ""
	for i, d := range c.Destinations {
		if other, dup := remotes[strings.TrimRight(d.Remote, "/")]; dup && d.Remote != "" {
			p.add(fmt.Sprintf("destinations[%d].remote", i), "give every destination its own remote (or folder)",
				"%q is also the remote of destination %q: their retention policies would remove each other's snapshots", d.Remote, other)
		}
		remotes[strings.TrimRight(d.Remote, "/")] = d.Name
		if d.RcloneConfig != "" {
			if rcloneConf != "" && d.RcloneConfig != rcloneConf {
				p.add(fmt.Sprintf("destinations[%d].rclone_config", i), "put every named remote into one rclone.conf",
					"%s differs from %s: rclone reads one config file per process", d.RcloneConfig, rcloneConf)
			}
			rcloneConf = d.RcloneConfig
		}
		key := fmt.Sprintf("destinations[%d]", i)
		switch {
		case !nameRE.MatchString(d.Name):
			p.add(key+".name", "name it with letters, digits, '.', '_' and '-', e.g. local or yandex", "%q is not a valid name", d.Name)
		case seen[d.Name]:
			p.add(key+".name", "give every destination its own name", "%q is used twice", d.Name)
		}
		seen[d.Name] = true
		if strings.TrimSpace(d.Remote) == "" {
			p.add(key+".remote", "use a path, a remote from rclone.conf (yandex:fireops) or an inline :backend,...:path", "is empty")
		}
		if d.RcloneConfig != "" {
			checkSecretFile(p, key+".rclone_config", d.RcloneConfig, true)
		}
		if d.Uploads < 1 || d.Uploads > 64 {
			p.add(key+".uploads", "use 1 to 64 parallel chunk uploads", "%d is out of range", d.Uploads)
		}
		if d.Retention != nil {
			validateRetention(p, key+".retention", *d.Retention, false, false)
		}
	}
}

// validateRetention checks the retention section at key. rules: its keep_*
// rules are used (an empty policy is refused, as rotate would refuse it);
// grace: its incomplete_grace is used as it is, so 0 is refused (in a
// destination's section 0 or no value means the global grace).
func validateRetention(p *problems, key string, r Retention, rules, grace bool) {
	empty := r.KeepWithin <= 0
	for _, f := range []struct {
		name string
		v    int
	}{{"keep_last", r.KeepLast}, {"keep_hourly", r.KeepHourly}, {"keep_daily", r.KeepDaily},
		{"keep_weekly", r.KeepWeekly}, {"keep_monthly", r.KeepMonthly}, {"keep_yearly", r.KeepYearly}} {
		if f.v < 0 {
			p.add(key+"."+f.name, "use 0 (rule off) or a positive count", "%d is negative", f.v)
		}
		empty = empty && f.v <= 0
	}
	if rules && empty {
		p.add(key, "set at least one keep_* rule under "+key+", e.g. keep_last: 3 (docs/retention.md)",
			"the retention policy is empty: every keep_* rule is 0, so rotate would refuse it")
	}
	// Negative durations are refused when parsed.
	if grace && r.IncompleteGrace == 0 {
		p.add(key+".incomplete_grace", "set it to a time longer than any snapshot takes, e.g. 24h",
			"is 0: an upload in progress could be swept")
	}
}

func (c *Config) validateSources(p *problems) {
	names := map[string]bool{}
	part := func(key, kind, name string) {
		if !nameRE.MatchString(name) {
			p.add(key+".name", "name it with letters, digits, '.', '_' and '-'", "%q is not a valid name", name)
		} else if names[kind+":"+name] {
			p.add(key+".name", "give every "+kind+" source its own name", "%q is used twice", name)
		}
		names[kind+":"+name] = true
	}
	if m := c.Sources.Mongo; m != nil {
		if m.URIFile == "" {
			// The URI may come from the environment instead (docs/mongo.md).
			if os.Getenv("FIREOPS_MONGO_URI") == "" {
				p.add("sources.mongo.uri_file", "write the mongodb:// URI into a file (chmod 600) and name it here, or set FIREOPS_MONGO_URI", "is empty")
			}
		} else {
			// A missing file is not a config error: it fails the mongo
			// part only, at snapshot time (a host being rebuilt must still
			// list, verify and restore its backups); config check notes
			// it (HostProblems). One that exists is checked like every
			// secret file.
			checkSecretFile(p, "sources.mongo.uri_file", m.URIFile, false)
		}
	}
	for i, s := range c.Sources.SQLite {
		key := fmt.Sprintf("sources.sqlite[%d]", i)
		part(key, "sqlite", s.Name)
		byPath, byVolume := s.Path != "", s.Volume != "" || s.File != ""
		switch {
		case byPath == byVolume:
			p.add(key, "give either path: (a host file) or volume: and file: (a file inside a Docker volume)", "needs exactly one of path or volume+file")
		case byVolume && (s.Volume == "" || s.File == ""):
			p.add(key, "give both volume: and file:", "volume and file go together")
		case byVolume && (path.IsAbs(s.File) || strings.Contains("/"+s.File+"/", "/../")):
			p.add(key+".file", "give the path inside the volume, e.g. jupyterhub.sqlite", "%q must be relative and stay inside the volume", s.File)
		}
	}
	if v := c.Sources.Volumes; v != nil {
		switch v.Read {
		case "auto", "mountpoint", "api":
		default:
			p.add("sources.volumes.read", "use auto, mountpoint or api", "unknown mode %q", v.Read)
		}
		checkGlobs(p, "sources.volumes.include", v.Include)
		checkGlobs(p, "sources.volumes.exclude", v.Exclude)
	}
	for i, f := range c.Sources.Files {
		key := fmt.Sprintf("sources.files[%d]", i)
		part(key, "files", f.Name)
		if len(f.Paths) == 0 {
			p.add(key+".paths", "list the files and folders to back up", "is empty")
		}
		checkGlobs(p, key+".exclude", f.Exclude)
	}
}

func checkGlobs(p *problems, key string, globs []string) {
	for i, g := range globs {
		if _, err := path.Match(g, ""); err != nil {
			p.add(fmt.Sprintf("%s[%d]", key, i), "use shell globs: *, ?, [a-z]", "bad pattern %q", g)
		}
	}
}
