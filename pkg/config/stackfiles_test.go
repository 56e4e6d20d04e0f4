package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recipientOnLocal is the least a config needs here: one recipient and a
// local destination; tests append the sections they are about.
const recipientOnLocal = `
keys:
  recipients: [RECIPIENT]
destinations:
  - {name: local, remote: backups}
`

// TestDeployWrittenSecretsMayBeMissing: the MongoDB URI and the hub token
// that `fireops deploy` writes into stack.dir/secrets may be missing when
// the config is loaded (deploy itself loads it to write them); a hub token
// elsewhere, or a deploy-written file with loose modes, is refused. A
// MongoDB URI file may be missing wherever it is: that fails the mongo
// part of a snapshot only, and config check notes it (HostProblems).
func TestDeployWrittenSecretsMayBeMissing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	stack := recipientOnLocal + `stack: {dir: stack}
hub: {token_file: %TOKEN%}
sources:
  mongo: {uri_file: %URI%}
`
	for _, tc := range []struct {
		name, uri, token string
		wantErr          []string
	}{
		{"in stack secrets, not deployed", "stack/secrets/mongo-uri", "stack/secrets/hub-fireops-token", nil},
		{"elsewhere", "etc/mongo-uri", "etc/hub-token", []string{"hub.token_file: ", "etc/hub-token does not exist"}},
		{"in stack.dir but not in its secrets", "stack/mongo-uri", "stack/hub-token", []string{"hub.token_file: ", "stack/hub-token does not exist"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := strings.NewReplacer("%URI%", tc.uri, "%TOKEN%", tc.token).Replace(stack)
			cfg, err := f.parse(t, y)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !cfg.WrittenByDeploy(cfg.Sources.Mongo.URIFile) || !cfg.WrittenByDeploy(cfg.Hub.TokenFile) {
					t.Errorf("WrittenByDeploy(%s, %s) = false", cfg.Sources.Mongo.URIFile, cfg.Hub.TokenFile)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "sources.mongo.uri_file") {
				t.Errorf("a missing URI file is a config error: %v", err)
			}
		})
	}

	// A URI file outside stack.dir/secrets that is missing is accepted
	// and noted; one that exists is checked like every secret file.
	y := strings.NewReplacer("%URI%", "etc/mongo-uri", "%TOKEN%", "stack/secrets/hub-fireops-token").Replace(stack)
	cfg, err := f.parse(t, y)
	if err != nil {
		t.Fatalf("a missing URI file outside stack.dir/secrets: %v", err)
	}
	notes, err := cfg.HostProblems()
	if err != nil {
		t.Fatal(err)
	}
	if want := "sources.mongo.uri_file: " + cfg.Sources.Mongo.URIFile + " does not exist: the mongo part of every snapshot fails until it does"; len(notes) != 1 || !strings.HasPrefix(notes[0], want) {
		t.Errorf("notes %q, want one starting %q", notes, want)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Sources.Mongo.URIFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.Sources.Mongo.URIFile, []byte("mongodb://x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.parse(t, y); err == nil || !strings.Contains(err.Error(), "sources.mongo.uri_file") || !strings.Contains(err.Error(), "readable by group or others") {
		t.Errorf("a world-readable URI file outside stack.dir/secrets: %v", err)
	}
	if err := os.Remove(cfg.Sources.Mongo.URIFile); err != nil {
		t.Fatal(err)
	}

	// Once deploy wrote it, it is checked like every secret file.
	dir := filepath.Join(f.dir, "stack", StackSecretsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mongo-uri"), []byte("mongodb://x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	y = strings.NewReplacer("%URI%", "stack/secrets/mongo-uri", "%TOKEN%", "stack/secrets/hub-fireops-token").Replace(stack)
	if _, err := f.parse(t, y); err == nil || !strings.Contains(err.Error(), "readable by group or others") {
		t.Errorf("a world-readable mongo-uri in stack secrets: %v", err)
	}
}

// TestHubTokenDefault: with a stack section, hub.token_file defaults to the
// token deploy generates; without one (a backup-only host) it stays unset,
// and a configured one always wins.
func TestHubTokenDefault(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tc := range []struct {
		name, extra string
		want        func(cfg *Config) string
	}{
		{"stack section", "stack: {dir: stack}\n", func(cfg *Config) string {
			return filepath.Join(cfg.Stack.Dir, StackSecretsDir, HubTokenSecret)
		}},
		{"bare stack key", "stack:\n", func(cfg *Config) string {
			return filepath.Join(cfg.Stack.Dir, StackSecretsDir, HubTokenSecret)
		}},
		{"no stack", "", func(*Config) string { return "" }},
		{"configured", "stack: {dir: stack}\nhub: {token_file: stack/secrets/other}\n", func(cfg *Config) string {
			return filepath.Join(cfg.Stack.Dir, StackSecretsDir, "other")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := f.parse(t, recipientOnLocal+tc.extra)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := cfg.Hub.TokenFile, tc.want(cfg); got != want {
				t.Errorf("hub.token_file = %q, want %q", got, want)
			}
		})
	}
}
