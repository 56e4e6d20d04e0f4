package deploy

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"

	"go.yaml.in/yaml/v3"

	"github.com/firetech/fireops/internal/atomicfile"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/users"
)

// SecretsDir is the folder of stack.dir that holds the secrets (0700).
const SecretsDir = "secrets"

// Owners of secret files: the user the container that reads a secret runs
// as. Root-run containers read any file; the others need to own theirs.
const (
	uidRoot       = 0
	uidMongoDB    = 999   // mongo image: mongodb
	uidGrafana    = 472   // grafana image: grafana
	uidPrometheus = 65534 // prom/* images: nobody
)

// SecretSpec is one secret file in stack.dir/secrets/.
type SecretSpec struct {
	// Name is the file name.
	Name string `json:"name"`
	// UID owns the file: the user of the container that reads it.
	UID int `json:"uid"`
	// Derived secrets are computed from other secrets or files and kept in
	// step with them; the others are random and never replaced.
	Derived bool `json:"derived"`

	// make returns the content of a new secret; read reads another
	// secret's content (for derived ones).
	make func(read func(name string) ([]byte, error)) ([]byte, error)
}

// randomHex is a generator of n random bytes in hex.
func randomHex(n int) func(func(string) ([]byte, error)) ([]byte, error) {
	return func(func(string) ([]byte, error)) ([]byte, error) {
		b := make([]byte, n)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		return []byte(hex.EncodeToString(b) + "\n"), nil
	}
}

// secretSpecs lists the stack's secrets.
func secretSpecs(cfg *config.Config) []SecretSpec {
	password := func(read func(string) ([]byte, error), name string) (string, error) {
		pw, err := read(name)
		if err != nil {
			return "", err
		}
		return string(bytes.TrimSpace(pw)), nil
	}
	mongoPassword := func(read func(string) ([]byte, error)) (string, error) {
		return password(read, "mongo-root-password")
	}
	specs := []SecretSpec{
		{Name: "jupyterhub-cookie-secret", UID: uidRoot, make: randomHex(32)},
		{Name: "hub-prometheus-token", UID: uidPrometheus, make: randomHex(32)},
		{Name: "hub-fireops-token", UID: uidRoot, make: randomHex(32)},
		{Name: "mongo-root-password", UID: uidMongoDB, make: randomHex(24)},
		{Name: "mongo-keyfile", UID: uidMongoDB, make: func(func(string) ([]byte, error)) ([]byte, error) {
			// A keyfile holds 6 to 1024 base64 characters.
			b := make([]byte, 504)
			if _, err := rand.Read(b); err != nil {
				return nil, err
			}
			return []byte(base64.StdEncoding.EncodeToString(b) + "\n"), nil
		}},
		{Name: "grafana-admin-password", UID: uidGrafana, make: randomHex(16)},
		// The service accounts' passwords, which the mongodb service's
		// healthcheck gives their MongoDB users (mongo.go).
		{Name: "mongo-backup-password", UID: uidMongoDB, make: randomHex(24)},
		{Name: "mongo-exporter-password", UID: uidMongoDB, make: randomHex(24)},
		{Name: "mongodb-exporter.env", UID: uidRoot, Derived: true, make: func(read func(string) ([]byte, error)) ([]byte, error) {
			pw, err := password(read, "mongo-exporter-password")
			if err != nil {
				return nil, err
			}
			return fmt.Appendf(nil, "MONGODB_URI=mongodb://%s:%s@mongodb:27017/admin?directConnection=true\n", MongoExporterUser, pw), nil
		}},
	}
	if port := cfg.Stack.Ports.MongoDB; port != 0 {
		// Root's URI on the host: `fireops users` creates and drops the
		// users' MongoDB accounts with it.
		specs = append(specs, SecretSpec{Name: users.MongoAdminURIFile, UID: uidRoot, Derived: true, make: func(read func(string) ([]byte, error)) ([]byte, error) {
			pw, err := mongoPassword(read)
			if err != nil {
				return nil, err
			}
			return fmt.Appendf(nil, "mongodb://%s:%s@127.0.0.1:%d/?authSource=admin&directConnection=true\n", MongoRootUser, pw, port), nil
		}})
		// The backup account's URI on the host: sources.mongo.uri_file.
		specs = append(specs, SecretSpec{Name: MongoBackupURIFile, UID: uidRoot, Derived: true, make: func(read func(string) ([]byte, error)) ([]byte, error) {
			pw, err := password(read, "mongo-backup-password")
			if err != nil {
				return nil, err
			}
			return fmt.Appendf(nil, "mongodb://%s:%s@127.0.0.1:%d/?authSource=admin&directConnection=true\n", MongoBackupUser, pw, port), nil
		}})
	}
	if file := cfg.Stack.Alerts.Email.PasswordFile; file != "" {
		specs = append(specs, SecretSpec{Name: "alertmanager-smtp-password", UID: uidPrometheus, Derived: true, make: func(func(string) ([]byte, error)) ([]byte, error) {
			b, err := os.ReadFile(file)
			if err != nil {
				return nil, fmt.Errorf("stack.alerts.email.password_file: %w", err)
			}
			return bytes.TrimRight(b, "\r\n"), nil
		}})
	}
	if file := cfg.Stack.Alerts.Telegram.BotTokenFile; file != "" {
		specs = append(specs, SecretSpec{Name: "alertmanager-telegram-token", UID: uidPrometheus, Derived: true, make: func(func(string) ([]byte, error)) ([]byte, error) {
			b, err := os.ReadFile(file)
			if err != nil {
				return nil, fmt.Errorf("stack.alerts.telegram.bot_token_file: %w", err)
			}
			return bytes.TrimSpace(b), nil
		}})
	}
	// node-exporter's basic auth (it listens on the host's every address).
	specs = append(specs, nodeExporterSecretSpecs()...)
	specs = append(specs, exposureSecretSpecs(cfg)...)
	return specs
}

// servicesMounting returns the services of a rendered compose.yaml that
// mount any of the named secret files (names in secrets/, sorted).
func servicesMounting(compose []byte, files []string) ([]string, error) {
	var doc struct {
		Services map[string]struct {
			Secrets []yaml.Node `yaml:"secrets"`
		} `yaml:"services"`
		Secrets map[string]struct {
			File string `yaml:"file"`
		} `yaml:"secrets"`
	}
	if err := yaml.Unmarshal(compose, &doc); err != nil {
		return nil, fmt.Errorf("read the rendered compose.yaml: %w", err)
	}
	// Compose's secret names (mongo_root_password) -> their files.
	var secrets []string
	for name, s := range doc.Secrets {
		if slices.Contains(files, filepath.Base(s.File)) {
			secrets = append(secrets, name)
		}
	}
	var out []string
	for name, svc := range doc.Services {
		for _, n := range svc.Secrets {
			src := n.Value // short form: the secret's name
			if n.Kind == yaml.MappingNode {
				var long struct {
					Source string `yaml:"source"`
				}
				if err := n.Decode(&long); err != nil {
					return nil, fmt.Errorf("read the rendered compose.yaml: service %s: %w", name, err)
				}
				src = long.Source
			}
			if slices.Contains(secrets, src) {
				out = append(out, name)
				break
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// SecretResult says what EnsureSecrets did with one secret. It never holds
// the secret's content.
type SecretResult struct {
	Name string `json:"name"`
	// Action is generated, kept, updated (a derived secret that changed)
	// or missing (a plan: it would be generated).
	Action string `json:"action"`
	// Note explains a problem that deploy could not fix (ownership).
	Note string `json:"note,omitempty"`
}

// PlanSecrets says which secrets EnsureSecrets would generate, without
// reading any secret's content.
func PlanSecrets(dir string, specs []SecretSpec) []SecretResult {
	out := make([]SecretResult, 0, len(specs))
	for _, s := range specs {
		action := "kept"
		if _, err := os.Lstat(filepath.Join(dir, SecretsDir, s.Name)); err != nil {
			action = "missing"
		} else if s.Derived {
			action = "kept (derived, updated when its source changes)"
		}
		out = append(out, SecretResult{Name: s.Name, Action: action})
	}
	return out
}

// EnsureSecrets creates the missing secrets in dir/secrets/ (0700) with
// mode 0600, owned by the user of the container that reads them when
// running as root. A random secret that exists is never replaced; a derived
// one is rewritten only when what it derives from changed. Secret contents
// are never returned or logged.
func EnsureSecrets(dir string, specs []SecretSpec) ([]SecretResult, error) {
	sdir := filepath.Join(dir, SecretsDir)
	if err := os.MkdirAll(sdir, 0o700); err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	if err := os.Chmod(sdir, 0o700); err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	// The users' MongoDB URIs (`fireops users approve`): the hub mounts
	// the folder, which must exist before it starts (Docker would create
	// it 0755).
	if err := os.MkdirAll(filepath.Join(sdir, users.MongoUsersDir), 0o700); err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(sdir, name))
		if err != nil {
			return nil, fmt.Errorf("secret %s: %w", name, err)
		}
		return b, nil
	}
	out := make([]SecretResult, 0, len(specs))
	for _, s := range specs {
		p := filepath.Join(sdir, s.Name)
		res := SecretResult{Name: s.Name, Action: "kept"}
		st, err := os.Lstat(p)
		switch {
		case err == nil && !st.Mode().IsRegular():
			return out, fmt.Errorf("secret %s: not a regular file", p)
		case err == nil && s.Derived:
			want, err := s.make(read)
			if err != nil {
				return out, fmt.Errorf("secret %s: %w", s.Name, err)
			}
			have, err := os.ReadFile(p)
			if err != nil {
				return out, fmt.Errorf("secret %s: %w", s.Name, err)
			}
			if !bytes.Equal(have, want) {
				if err := atomicfile.WriteFile(p, want, 0o600); err != nil {
					return out, fmt.Errorf("secret %s: %w", s.Name, err)
				}
				res.Action = "updated"
			}
		case err == nil:
		case errors.Is(err, fs.ErrNotExist):
			data, err := s.make(read)
			if err != nil {
				return out, fmt.Errorf("secret %s: %w", s.Name, err)
			}
			if err := atomicfile.Create(p, data, 0o600); err != nil {
				return out, fmt.Errorf("secret %s: %w", s.Name, err)
			}
			res.Action = "generated"
		default:
			return out, fmt.Errorf("secret %s: %w", p, err)
		}
		if err := os.Chmod(p, 0o600); err != nil {
			return out, fmt.Errorf("secret %s: %w", s.Name, err)
		}
		res.Note = ensureOwner(p, s.UID)
		out = append(out, res)
	}
	return out, nil
}

// ensureOwner makes uid own p when running as root; otherwise it returns a
// note when p is owned by someone else.
func ensureOwner(p string, uid int) string {
	st, err := os.Stat(p)
	if err != nil {
		return err.Error()
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || int(sys.Uid) == uid {
		return ""
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(p, uid, uid); err != nil {
			return "chown: " + err.Error()
		}
		return ""
	}
	if uid == uidRoot {
		return ""
	}
	return "must be owned by uid " + strconv.Itoa(uid) + " for its container to read it: run `fireops deploy` as root, or chown " + strconv.Itoa(uid) + " " + p
}
