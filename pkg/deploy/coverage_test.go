package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/firetech/fireops/pkg/config"
)

// coveredStack is a config that backs up the whole stack, like the one
// `fireops init` writes; STACK is replaced by the stack folder.
const coveredStack = `
sources:
  files: [{name: stack, paths: [STACK]}]
  sqlite: [{name: jupyterhub, volume: jupyterhub-data, file: jupyterhub.sqlite}]
  mongo: {uri_file: STACK/secrets/mongo-backup-uri}
  volumes: {include: ["jupyterhub-user-*", "jupyterhub-data"]}
hub: {token_file: STACK/secrets/hub-fireops-token}
stack: {dir: STACK, gpus: false, alerts: {webhook_url: "https://alerts.example.org/hook"}}
`

// loadCoverage writes the config (STACK replaced by stack) into dir and
// loads it, as `config check` does.
func loadCoverage(t *testing.T, dir, stack, y string) *config.Config {
	t.Helper()
	file := filepath.Join(dir, "fireops.yaml")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(y, "STACK", stack)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestCheckCoverage(t *testing.T) {
	t.Parallel()
	edit := func(pairs ...string) string {
		t.Helper()
		y := coveredStack
		for i := 0; i < len(pairs); i += 2 {
			if !strings.Contains(y, pairs[i]) {
				t.Fatalf("%q is not in the test config", pairs[i])
			}
			y = strings.Replace(y, pairs[i], pairs[i+1], 1)
		}
		return y
	}
	for _, tc := range []struct {
		name     string
		config   string
		deployed bool // stack.dir holds compose.yaml
		// uriElsewhere writes DIR/mongo-uri.
		uriElsewhere bool
		secrets      []string // files written into stack.dir/secrets
		// uncovered: one substring per wanted warning, in order; notes:
		// substrings of NotDeployed, in order.
		uncovered, notes []string
	}{
		{name: "all covered: not deployed", config: coveredStack,
			notes: []string{
				"sources.sqlite[0]: the hub creates its database in volume jupyterhub-data when it first starts: stack not deployed yet: run `fireops deploy`",
				"sources.mongo.uri_file: STACK/secrets/mongo-backup-uri does not exist yet: stack not deployed yet: run `fireops deploy`",
				"hub.token_file: STACK/secrets/hub-fireops-token does not exist yet: stack not deployed yet",
			}},
		{name: "all covered: deployed", config: coveredStack, deployed: true, secrets: []string{"mongo-backup-uri", "hub-fireops-token"}},
		{name: "deployed: mongo-backup-uri missing", config: coveredStack, deployed: true, secrets: []string{"mongo-uri", "hub-fireops-token"},
			notes: []string{"sources.mongo.uri_file: STACK/secrets/mongo-backup-uri does not exist yet: run `fireops deploy` again to write it"}},
		// Root's URI, which configs written before the backup account named.
		{name: "root's URI: deployed", config: edit("secrets/mongo-backup-uri", "secrets/mongo-uri"), deployed: true, secrets: []string{"mongo-uri", "hub-fireops-token"}},
		{name: "root's URI: not deployed", config: edit("secrets/mongo-backup-uri", "secrets/mongo-uri"),
			notes: []string{"sources.sqlite[0]", "sources.mongo.uri_file: STACK/secrets/mongo-uri does not exist yet: stack not deployed yet", "hub.token_file"}},
		{name: "no mongo source", config: edit("  mongo: {uri_file: STACK/secrets/mongo-backup-uri}\n", ""),
			uncovered: []string{"MongoDB (volume mongo-data) is not backed up: add to sources: mongo: {uri_file: STACK/secrets/mongo-backup-uri}"},
			notes:     []string{"sources.sqlite[0]", "hub.token_file"}},
		{name: "no mongo source: no mongo port", config: edit("  mongo: {uri_file: STACK/secrets/mongo-backup-uri}\n", "", "gpus: false", "gpus: false, ports: {mongodb: 0}"),
			uncovered: []string{"MongoDB (volume mongo-data) is not backed up: add to sources: mongo: {uri_file: STACK/secrets/mongo-backup-uri} (written by `fireops deploy`), and set stack.ports.mongodb"},
			notes:     []string{"sources.sqlite[0]", "hub.token_file"}},
		{name: "mongo-backup-uri without mongo port", config: edit("gpus: false", "gpus: false, ports: {mongodb: 0}"), deployed: true, secrets: []string{"mongo-backup-uri", "hub-fireops-token"},
			uncovered: []string{"MongoDB is not backed up: sources.mongo.uri_file is STACK/secrets/mongo-backup-uri, which `fireops deploy` writes and keeps current only while stack.ports.mongodb is set (it is 0)"}},
		{name: "mongo-uri without mongo port", config: edit("gpus: false", "gpus: false, ports: {mongodb: 0}", "secrets/mongo-backup-uri", "secrets/mongo-uri"), deployed: true, secrets: []string{"mongo-uri", "hub-fireops-token"},
			uncovered: []string{"MongoDB is not backed up: sources.mongo.uri_file is STACK/secrets/mongo-uri, which `fireops deploy` writes and keeps current only while stack.ports.mongodb is set (it is 0)"}},
		{name: "a URI file deploy never writes", config: edit("secrets/mongo-backup-uri", "secrets/mongo-exporter-uri"),
			uncovered: []string{"sources.mongo.uri_file: STACK/secrets/mongo-exporter-uri does not exist and `fireops deploy` writes no such file (MongoDB's URI is STACK/secrets/mongo-backup-uri)"},
			notes:     []string{"sources.sqlite[0]", "hub.token_file"}},
		{name: "a URI file elsewhere", config: edit("STACK/secrets/mongo-backup-uri", "DIR/mongo-uri"), uriElsewhere: true,
			notes: []string{"sources.sqlite[0]", "hub.token_file"}},
		{name: "no sqlite source", config: edit("  sqlite: [{name: jupyterhub, volume: jupyterhub-data, file: jupyterhub.sqlite}]\n", ""),
			uncovered: []string{"the hub database (jupyterhub.sqlite in volume jupyterhub-data) is not backed up (sources.volumes copies the live file raw, which can be corrupt): add to sources: sqlite: [{name: jupyterhub, volume: jupyterhub-data, file: jupyterhub.sqlite}]"},
			notes:     []string{"sources.mongo.uri_file", "hub.token_file"}},
		{name: "sqlite source of another file", config: edit("file: jupyterhub.sqlite}]", "file: other.sqlite}]", `"jupyterhub-data"]`, `"jupyterhub-data"], exclude: ["jupyterhub-data"]`),
			uncovered: []string{"the hub database (jupyterhub.sqlite in volume jupyterhub-data) is not backed up: add"},
			notes:     []string{"sources.mongo.uri_file", "hub.token_file"}},
		{name: "no volumes", config: edit(`  volumes: {include: ["jupyterhub-user-*", "jupyterhub-data"]}`+"\n", ""),
			uncovered: []string{`the users' volumes (jupyterhub-user-*: every user's notebooks and files) are not backed up: add to sources: volumes: {include: ["jupyterhub-user-*", "jupyterhub-data"]}`},
			notes:     []string{"sources.sqlite[0]", "sources.mongo.uri_file", "hub.token_file"}},
		{name: "bare volumes line", config: edit(`  volumes: {include: ["jupyterhub-user-*", "jupyterhub-data"]}`, "  volumes:"),
			notes: []string{"sources.sqlite[0]", "sources.mongo.uri_file", "hub.token_file"}},
		{name: "some users' volumes", config: edit(`"jupyterhub-user-*"`, `"jupyterhub-user-a*"`),
			uncovered: []string{"the users' volumes (jupyterhub-user-*) are not all backed up: sources.volumes leaves out jupyterhub-user-bob.smith"},
			notes:     []string{"sources.sqlite[0]", "sources.mongo.uri_file", "hub.token_file"}},
		{name: "users' volumes excluded", config: edit(`"jupyterhub-data"]}`, `"jupyterhub-data"], exclude: ["*-x"]}`),
			uncovered: []string{"sources.volumes leaves out jupyterhub-user-x"},
			notes:     []string{"sources.sqlite[0]", "sources.mongo.uri_file", "hub.token_file"}},
		{name: "no stack folder", config: edit("  files: [{name: stack, paths: [STACK]}]\n", ""),
			uncovered: []string{"the stack folder STACK (compose.yaml, the rendered configs, the stack's secrets) is not backed up: add to sources: files: [{name: stack, paths: [STACK]}]"},
			notes:     []string{"sources.sqlite[0]", "sources.mongo.uri_file", "hub.token_file"}},
		{name: "a folder above the stack folder", config: edit("paths: [STACK]", "paths: [DIR]"),
			notes: []string{"sources.sqlite[0]", "sources.mongo.uri_file", "hub.token_file"}},
		{name: "a folder inside the stack folder only", config: edit("paths: [STACK]", "paths: [STACK/hub]"),
			uncovered: []string{"the stack folder STACK "},
			notes:     []string{"sources.sqlite[0]", "sources.mongo.uri_file", "hub.token_file"}},
		{name: "nothing: with a stack section", config: "stack: {dir: STACK}\n",
			uncovered: []string{"the hub database", "MongoDB", "the users' volumes", "the stack folder", "stack.alerts has no receiver"},
			// hub.token_file defaults to the token deploy writes.
			notes: []string{"hub.token_file"}},
		{name: "nothing: no stack section: not deployed", config: "sources: {files: [{name: x, paths: [DIR]}]}\n"},
		{name: "nothing: no stack section: deployed", config: "sources: {files: [{name: x, paths: [DIR/data]}]}\n", deployed: true,
			uncovered: []string{"the hub database", "MongoDB", "the users' volumes", "the stack folder", "stack.alerts has no receiver"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			stack := filepath.Join(dir, "stack")
			y := strings.ReplaceAll(tc.config, "DIR", dir)
			if tc.uriElsewhere {
				mustWrite(t, filepath.Join(dir, "mongo-uri"), "mongodb://127.0.0.1/\n", 0o600)
			}
			cfg := loadCoverage(t, dir, stack, y)
			if !strings.Contains(y, "stack:") {
				// stack.dir is its default, /opt/firetech: look at the
				// test's own folder instead.
				cfg.Stack.Dir = stack
			}
			if tc.deployed {
				mustWrite(t, filepath.Join(stack, "compose.yaml"), "name: firetech\n", 0o644)
			}
			for _, s := range tc.secrets {
				mustWrite(t, filepath.Join(stack, SecretsDir, s), "x\n", 0o600)
			}
			cov, err := CheckCoverage(cfg)
			if err != nil {
				t.Fatal(err)
			}
			check := func(what string, got, want []string) {
				t.Helper()
				if len(got) != len(want) {
					t.Errorf("%s: got %d lines, want %d:\n%s", what, len(got), len(want), strings.Join(got, "\n"))
					return
				}
				for i, w := range want {
					if w = strings.ReplaceAll(w, "STACK", stack); !strings.Contains(got[i], w) {
						t.Errorf("%s[%d] = %q\nwant it to contain %q", what, i, got[i], w)
					}
				}
			}
			check("Uncovered", cov.Uncovered, tc.uncovered)
			check("NotDeployed", cov.NotDeployed, tc.notes)
		})
	}
}

func mustWrite(t *testing.T, name, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

// TestCoverageKnowsTheStack: what CheckCoverage assumes of the stack is
// what deploy renders: the secrets folder config names, the secrets a
// config reads, the users' volume names DockerSpawner mounts.
func TestCoverageKnowsTheStack(t *testing.T) {
	t.Parallel()
	if SecretsDir != config.StackSecretsDir {
		t.Errorf("deploy.SecretsDir %q, config.StackSecretsDir %q", SecretsDir, config.StackSecretsDir)
	}
	st := render(t, "cpu", RenderOptions{})
	var names []string
	for _, s := range st.Secrets {
		names = append(names, s.Name)
	}
	for _, want := range []string{"mongo-uri", MongoBackupURIFile, "hub-fireops-token"} {
		if !slices.Contains(names, want) {
			t.Errorf("deploy writes no secret %s (it writes %v)", want, names)
		}
	}
	for _, f := range st.Files {
		if f.Path == "hub/jupyterhub_config.py" {
			if want := `"` + UserVolumePrefix + `{username}"`; !strings.Contains(string(f.Data), want) {
				t.Errorf("jupyterhub_config.py does not mount %s", want)
			}
			return
		}
	}
	t.Error("no hub/jupyterhub_config.py rendered")
}
