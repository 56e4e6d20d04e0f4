package config

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/keys"
)

// fixture is a folder with a valid identity, signing key and recipient.
type fixture struct {
	dir       string
	recipient string
	pub       string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	dir := t.TempDir()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.WriteNewFile(filepath.Join(dir, "identity.txt"), keys.IdentityFile(id, time.Now()), 0o600); err != nil {
		t.Fatal(err)
	}
	sk, _ := keys.GenerateSigningKey()
	pemData, _ := keys.MarshalSigningKey(sk)
	if err := keys.WriteNewFile(filepath.Join(dir, "signing.key"), pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	return fixture{dir: dir, recipient: id.Recipient().String(), pub: keys.FormatPublicKey(sk.Public().(ed25519.PublicKey))}
}

func (f fixture) parse(t *testing.T, yaml string) (*Config, error) {
	t.Helper()
	yaml = strings.ReplaceAll(yaml, "RECIPIENT", f.recipient)
	return Parse([]byte(yaml), filepath.Join(f.dir, "fireops.yaml"))
}

// refused parses yaml and returns why it was refused; it ends the test
// when the YAML is accepted.
func (f fixture) refused(t *testing.T, yaml string) error {
	t.Helper()
	_, err := f.parse(t, yaml)
	if err == nil {
		t.Fatal("accepted")
	}
	return err
}

// refuseAll parses each case's YAML in a parallel subtest and wants it
// refused as a usage error with a hint, in words that contain want.
func (f fixture) refuseAll(t *testing.T, tests []struct{ name, yaml, want string }) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := f.refused(t, tc.yaml)
			if exitcode.Code(err) != exitcode.Usage || exitcode.Hint(err) == "" {
				t.Errorf("exit code %d, hint %q", exitcode.Code(err), exitcode.Hint(err))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

const minimal = `
keys:
  recipients: [RECIPIENT]
  identity_file: identity.txt
  signing_key_file: signing.key
destinations:
  - {name: local, remote: backups}
sources:
  files: [{name: stack, paths: [stack]}]
`

func TestParseMinimalDefaultsAndPaths(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg, err := f.parse(t, minimal)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, got, want string }{
		{"remote resolved", cfg.Destinations[0].Remote, filepath.Join(f.dir, "backups")},
		{"files path resolved", cfg.Sources.Files[0].Paths[0], filepath.Join(f.dir, "stack")},
		{"identity resolved", cfg.Keys.IdentityFile, filepath.Join(f.dir, "identity.txt")},
		{"chunk size default", cfg.ChunkSize.String(), "32MiB"},
		{"state dir default", cfg.StateDir, "/var/lib/fireops"},
		{"compression default", cfg.Compression, "default"},
		{"grace default", cfg.Retention.IncompleteGrace.String(), "1d"},
		{"hub default", cfg.Hub.DBVolume, "jupyterhub-data"},
		{"schedule default", cfg.Schedule.Snapshot, "0 3 * * *"},
		{"verify level default", cfg.Schedule.VerifyLevel, "hashes"},
		{"jitter default", cfg.Schedule.Jitter.String(), "0s"},
		{"stack default", cfg.Stack.Dir, "/opt/firetech"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
	if cfg.Destinations[0].Uploads != 2 || cfg.GPU.MaxTemperatureC != 85 || !cfg.GPU.RequireContainerRuntime {
		t.Errorf("numeric defaults not filled: %+v %+v", cfg.Destinations[0], cfg.GPU)
	}
	rcp, err := cfg.Recipients()
	if err != nil || len(rcp) != 1 {
		t.Fatalf("Recipients() = %v, %v", rcp, err)
	}
}

func TestParseEmptyIsValid(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if _, err := f.parse(t, ""); err != nil {
		t.Fatalf("empty config: %v", err)
	}
}

func TestParseVolumesDefaults(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// A bare `volumes:` line (null) means the same as `volumes: {}`.
	for _, text := range []string{"sources:\n  volumes: {}\n", "sources:\n  volumes:\n", "sources:\n  volumes: ~\n", "sources:\n  volumes:\n  files: []\n"} {
		cfg, err := f.parse(t, text)
		if err != nil {
			t.Fatal(err)
		}
		v := cfg.Sources.Volumes
		if v == nil || v.Read != "auto" || strings.Join(v.Include, ",") != "jupyterhub-user-*,jupyterhub-data" {
			t.Fatalf("%q: volume defaults: %+v", text, v)
		}
	}
	cfg, err := f.parse(t, "sources:\n  files: []\n")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Sources.Volumes != nil {
		t.Fatalf("no volumes key: got %+v", cfg.Sources.Volumes)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"unknown top-level key", "host: a\ncolour: blue\n", []string{"line 2", `unknown key "colour"`, "top level"}},
		{"unknown nested key", "keys:\n  recipients: []\n  identty_file: x\n", []string{"line 3", `unknown key "identty_file"`, "in keys"}},
		{"unknown key in list item", "destinations:\n  - name: a\n    remote: /x\n    remot: y\n", []string{"line 4", `"remot"`, "destinations"}},
		{"bad recipient", "keys: {recipients: [age1bogus]}\n", []string{"keys.recipients[0]"}},
		{"missing signing key", "keys: {signing_key_file: nope.key}\n", []string{"keys.signing_key_file", "does not exist"}},
		{"bad chunk size", "chunk_size: lots\n", []string{"line 1", "invalid size"}},
		{"chunk size too small", "chunk_size: 4KiB\n", []string{"chunk_size", "out of range"}},
		{"bad compression", "compression: max\n", []string{"compression", `"max"`}},
		{"duplicate destination", "destinations:\n  - {name: a, remote: /x}\n  - {name: a, remote: /y}\n", []string{"destinations[1].name", "used twice"}},
		{"empty remote", "destinations:\n  - {name: a, remote: ''}\n", []string{"destinations[0].remote", "empty"}},
		{"same remote twice", "destinations:\n  - {name: a, remote: /x}\n  - {name: b, remote: /x/}\n", []string{"destinations[1].remote", `destination "a"`}},
		{"sqlite both path and volume", "sources:\n  sqlite: [{name: hub, path: /a.db, volume: v, file: f}]\n", []string{"sources.sqlite[0]", "exactly one"}},
		{"sqlite file escapes volume", "sources:\n  sqlite: [{name: hub, volume: v, file: ../x.db}]\n", []string{"sources.sqlite[0].file"}},
		{"files without paths", "sources:\n  files: [{name: s}]\n", []string{"sources.files[0].paths"}},
		{"bad part name", "sources:\n  files: [{name: 'a b', paths: [/x]}]\n", []string{"sources.files[0].name"}},
		{"bad volume read", "sources:\n  volumes: {read: fast}\n", []string{"sources.volumes.read"}},
		{"bad glob", "sources:\n  volumes: {include: ['[']}\n", []string{"sources.volumes.include[0]"}},
		{"mongo without uri file", "sources:\n  mongo: {databases: [a]}\n", []string{"sources.mongo.uri_file"}},
		{"bad cron", "schedule: {snapshot: 'every night'}\n", []string{"schedule.snapshot"}},
		{"bad verify level", "schedule: {verify_level: deep}\n", []string{"schedule.verify_level"}},
		{"bad jitter", "schedule: {jitter: soon}\n", []string{"invalid duration"}},
		{"negative retention", "retention: {keep_last: -1}\n", []string{"retention.keep_last"}},
		{"bad duration", "retention: {incomplete_grace: soon}\n", []string{"invalid duration"}},
		{"bad listen", "metrics: {listen: nowhere}\n", []string{"metrics.listen"}},
		{"bad hub url", "hub: {api_url: 'ftp://x'}\n", []string{"hub.api_url"}},
		{"bad min driver", "gpu: {min_driver: new}\n", []string{"gpu.min_driver"}},
		{"hot threshold", "gpu: {max_temperature_c: 500}\n", []string{"gpu.max_temperature_c"}},
		{"bad signing public key", "keys: {signing_key_file: signing.key, signing_public_key: 'ssh-ed25519 AAAA'}\n", []string{"keys.signing_public_key", `does not start with "ed25519:"`}},
		{"bad key in the trusted list", "keys:\n  signing_public_keys:\n    - 'ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='\n    - 'ed25519:AAAA'\n", []string{"keys.signing_public_keys[1]", "not 32 bytes"}},
		{"trusted list entry not a key", "keys:\n  signing_public_keys: ['age1xyz']\n", []string{"keys.signing_public_keys[0]", `does not start with "ed25519:"`}},
		{"trusted list not a list", "keys:\n  signing_public_keys: {a: b}\n", []string{"line 2", "signing_public_keys"}},
		{"not yaml", "keys: [\n", []string{"fireops.yaml"}},
		{"two rclone configs", "destinations:\n  - {name: a, remote: 'x:a', rclone_config: a.conf}\n  - {name: b, remote: 'y:b', rclone_config: b.conf}\n", []string{"destinations[1].rclone_config", "one config file"}},
	}
	f := newFixture(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := f.refused(t, tc.yaml)
			if exitcode.Code(err) != exitcode.Usage {
				t.Errorf("exit code %d, want %d", exitcode.Code(err), exitcode.Usage)
			}
			if exitcode.Hint(err) == "" {
				t.Errorf("no hint for %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestSecretFileModes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file, key string
		mode      os.FileMode
		ok        bool
	}{
		{"identity.txt", "keys.identity_file", 0o600, true},
		{"identity.txt", "keys.identity_file", 0o400, true},
		{"identity.txt", "keys.identity_file", 0o644, false},
		{"identity.txt", "keys.identity_file", 0o640, false},
		{"signing.key", "keys.signing_key_file", 0o604, false},
	}
	for _, tc := range tests {
		t.Run(tc.file+tc.mode.String(), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			path := filepath.Join(f.dir, tc.file)
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			_, err := f.parse(t, minimal)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), "readable by group or others") {
				t.Fatalf("err = %v, want a refusal naming %s", err, tc.key)
			}
			if h := exitcode.Hint(err); h != "run: chmod 600 "+path {
				t.Fatalf("hint = %q", h)
			}
		})
	}
}

// TestMongoURIFromEnv: sources.mongo needs no uri_file when the URI is in
// FIREOPS_MONGO_URI (not parallel: it sets the environment).
func TestMongoURIFromEnv(t *testing.T) {
	f := newFixture(t)
	t.Setenv("FIREOPS_MONGO_URI", "")
	if _, err := f.parse(t, "sources:\n  mongo: {databases: [a]}\n"); err == nil || !strings.Contains(err.Error(), "sources.mongo.uri_file") || !strings.Contains(exitcode.Hint(err), "FIREOPS_MONGO_URI") {
		t.Fatalf("without the variable: err = %v, want a refusal naming FIREOPS_MONGO_URI", err)
	}
	t.Setenv("FIREOPS_MONGO_URI", "mongodb://127.0.0.1:1/")
	cfg, err := f.parse(t, "sources:\n  mongo: {databases: [a]}\n")
	if err != nil {
		t.Fatalf("with the variable: %v", err)
	}
	if cfg.Sources.Mongo.URIFile != "" {
		t.Fatalf("uri_file = %q", cfg.Sources.Mongo.URIFile)
	}
}

// TestSigningPublicKeys: during a signing key change the config lists the
// old key beside signing_key_file's; the one of signing_key_file may be
// listed too, and the single signing_public_key of older configs is one
// more trusted key, even when it is not signing_key_file's.
func TestSigningPublicKeys(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	old, _ := keys.GenerateSigningKey()
	older, _ := keys.GenerateSigningKey()
	oldPub := keys.FormatPublicKey(old.Public().(ed25519.PublicKey))
	olderPub := keys.FormatPublicKey(older.Public().(ed25519.PublicKey))
	cfg, err := f.parse(t, "keys:\n  signing_key_file: signing.key\n  signing_public_key: "+olderPub+"\n  signing_public_keys:\n    - "+f.pub+"\n    - "+oldPub+"\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{f.pub, oldPub}; !slices.Equal(cfg.Keys.SigningPublicKeys, want) {
		t.Fatalf("signing_public_keys = %v, want %v", cfg.Keys.SigningPublicKeys, want)
	}
	if cfg.Keys.SigningPublicKey != olderPub {
		t.Fatalf("signing_public_key = %q", cfg.Keys.SigningPublicKey)
	}
}

func TestMissingIdentityIsFine(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	os.Remove(filepath.Join(f.dir, "identity.txt"))
	cfg, err := f.parse(t, minimal)
	if err != nil {
		t.Fatalf("a backup host without the identity was refused: %v", err)
	}
	rep := cfg.Check()
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "is not on this host") {
		t.Fatalf("notes do not mention the absent identity: %v", rep.Notes)
	}
}

func TestRecipientsFile(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	os.WriteFile(filepath.Join(f.dir, "recipients.txt"), []byte("# team\n"+f.recipient+"\n"), 0o644)
	cfg, err := f.parse(t, "keys: {recipients: [RECIPIENT], recipients_file: recipients.txt}\n")
	if err != nil {
		t.Fatal(err)
	}
	r, err := cfg.Recipients()
	if err != nil || len(r) != 2 {
		t.Fatalf("Recipients() = %d, %v; want 2", len(r), err)
	}
	os.WriteFile(filepath.Join(f.dir, "recipients.txt"), []byte("nope\n"), 0o644)
	if _, err := f.parse(t, "keys: {recipients_file: recipients.txt}\n"); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("bad recipients file: err = %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	_, err := Load(filepath.Join(t.TempDir(), "none.yaml"))
	if err == nil || exitcode.Code(err) != exitcode.Usage || !strings.Contains(exitcode.Hint(err), "fireops init") {
		t.Fatalf("err = %v (hint %q)", err, exitcode.Hint(err))
	}
}

func TestRedactRemote(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"/var/backups/fireops", "/var/backups/fireops"},
		{"yandex:fireops", "yandex:fireops"},
		{":webdav,url='http://127.0.0.1:8080',user=bob,pass=s3cret:fireops", ":webdav,url='http://127.0.0.1:8080',user=bob,pass=REDACTED:fireops"},
		{":s3,access_key_id=AK,secret_access_key='x,y':b", ":s3,access_key_id=REDACTED,secret_access_key='REDACTED':b"},
		{":yandex,token='{\"access_token\":\"t\"}':x", ":yandex,token='REDACTED':x"},
		{":webdav,url=https://bob:pw@dav.example/:p", ":webdav,url=https://bob:REDACTED@dav.example/:p"},
	}
	for _, tc := range tests {
		if got := RedactRemote(tc.in); got != tc.want {
			t.Errorf("RedactRemote(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestIsLocalRemote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{
		"/var/backups": true, "backups": true, "./b": true, "a/b:c": true,
		"yandex:fireops": false, ":webdav,url=x:p": false, "remote:": false,
	} {
		if got := IsLocalRemote(in); got != want {
			t.Errorf("IsLocalRemote(%q) = %v", in, got)
		}
	}
}

func TestByteSizeAndDuration(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]ByteSize{"32MiB": 32 * MiB, "1GiB": GiB, "512 KiB": 512 * KiB, "4096": 4096, "8M": 8 * MiB} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "-1MiB", "1.5GiB", "lots"} {
		if _, err := ParseByteSize(bad); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", bad)
		}
	}
	for in, want := range map[string]time.Duration{"24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "90m": 90 * time.Minute, "0": 0} {
		got, err := ParseDuration(in)
		if err != nil || time.Duration(got) != want {
			t.Errorf("ParseDuration(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"soon", "-1h", "1.5d"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}

// TestRetentionAccepted: what the retention checks let through: the
// defaults, init's config (no retention keys), an empty global policy that
// every destination overrides, and a destination without incomplete_grace
// or with 0 (both: the global grace).
func TestRetentionAccepted(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tc := range []struct {
		name, yaml string
		grace      string // destinations[0]'s incomplete_grace after parsing
	}{
		{"defaults", minimal, ""},
		{"global policy unused", testutil.Replace(t, minimal, "remote: backups}", "remote: backups, retention: {keep_daily: 7}}") +
			"retention: {keep_last: 0, keep_daily: 0, keep_weekly: 0, keep_monthly: 0}\n", "0s"},
		{"destination grace left out", testutil.Replace(t, minimal, "remote: backups}", "remote: backups, retention: {keep_last: 2}}"), "0s"},
		{"destination grace 0", testutil.Replace(t, minimal, "remote: backups}", "remote: backups, retention: {keep_last: 2, incomplete_grace: 0s}}"), "0s"},
		{"destination grace", testutil.Replace(t, minimal, "remote: backups}", "remote: backups, retention: {keep_last: 2, incomplete_grace: 48h}}"), "2d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := f.parse(t, tc.yaml)
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.RetentionProblems(); err != nil {
				t.Errorf("RetentionProblems: %v", err)
			}
			if r := cfg.Destinations[0].Retention; tc.grace != "" && (r == nil || r.IncompleteGrace.String() != tc.grace) {
				t.Errorf("destination retention %+v, want incomplete_grace %s", r, tc.grace)
			}
		})
	}
}

// TestRetentionProblems: what rotate would refuse is reported by
// RetentionProblems (config check), naming the key, while the config
// still loads: the other jobs run.
func TestRetentionProblems(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	dest := func(retention string) string {
		return testutil.Replace(t, minimal, "remote: backups}", "remote: backups"+retention+"}")
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"empty global policy", minimal + "retention: {keep_last: 0, keep_daily: 0, keep_weekly: 0, keep_monthly: 0}\n", "retention: the retention policy is empty"},
		{"empty destination policy", dest(", retention: {incomplete_grace: 48h}"), "destinations[0].retention: the retention policy is empty"},
		{"zero global grace", minimal + "retention: {incomplete_grace: 0s}\n", "retention.incomplete_grace: is 0"},
		{"zero global grace, every destination its own", dest(", retention: {keep_last: 2, incomplete_grace: 48h}") + "retention: {incomplete_grace: 0s}\n", "retention.incomplete_grace: is 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := f.parse(t, tc.yaml)
			if err != nil {
				t.Fatalf("the config must still load: %v", err)
			}
			err = cfg.RetentionProblems()
			if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), tc.want) || exitcode.Hint(err) == "" {
				t.Fatalf("RetentionProblems = %v (hint %q), want %q", err, exitcode.Hint(err), tc.want)
			}
		})
	}
}
