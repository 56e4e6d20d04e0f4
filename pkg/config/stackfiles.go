package config

import "path/filepath"

// StackSecretsDir is the folder of stack.dir where `fireops deploy` writes
// the stack's secrets, among them the files a config reads: the MongoDB
// URI (mongo-uri) and the hub's API token for fireops (hub-fireops-token).
// pkg/deploy's SecretsDir is the same (a test there keeps them equal).
const StackSecretsDir = "secrets"

// HubTokenSecret is the file in StackSecretsDir that holds the hub API
// token deploy generates for fireops; hub.token_file defaults to it when
// the config has a stack section.
const HubTokenSecret = "hub-fireops-token"

// WrittenByDeploy reports whether name is a file in stack.dir's secrets
// folder, which `fireops deploy` writes. Such a file missing is not a
// config error: before the first deploy it cannot exist, and deploy itself
// must load the config to write it. `config check` says so instead
// (pkg/deploy's CheckCoverage).
func (c *Config) WrittenByDeploy(name string) bool {
	return c.Stack.Dir != "" && name != "" && within(filepath.Join(c.Stack.Dir, StackSecretsDir), name)
}
