// Package testenv gives tests access to the real components that
// scripts/test-deps.sh installs and starts (design §10): the Docker Engine,
// FerretDB speaking the MongoDB wire protocol, JupyterHub and command-line
// tools such as age, zstd, promtool and amtool.
//
// scripts/test-deps.sh writes the services' addresses and credentials to
// .cache/testenv.sh in the repository root. This package reads that file
// once per process and copies every variable it sets into the process
// environment, unless the variable is already set (and not empty), so that
// an environment prepared by hand or by CI wins and child processes (the
// docker CLI, for example) see the same values.
//
// Each Require function checks that its component really answers. When it
// does not, the test is skipped with a one-line message naming the component,
// the cause and the setup command; when the environment variable CI is true,
// the test fails instead, so that a CI run never passes by skipping.
package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// ModulePath is the module path of the repository whose root holds
// .cache/testenv.sh.
const ModulePath = "github.com/firetech/fireops"

// EnvFile is the path, relative to the repository root, of the file that
// scripts/test-deps.sh writes with the test services' settings.
const EnvFile = ".cache/testenv.sh"

// SetupHint names the commands that install and start the test components;
// it ends every skip or failure message of this package.
const SetupHint = "run scripts/test-deps.sh (or make test)"

// Names of the environment variables this package reads.
const (
	// EnvMongoURI is the MongoDB URI of the test FerretDB.
	EnvMongoURI = "FIREOPS_TEST_MONGO_URI"
	// EnvHubURL is the JupyterHub REST API base, e.g. http://127.0.0.1:18000/hub/api.
	EnvHubURL = "FIREOPS_TEST_HUB_URL"
	// EnvHubToken is an API token with the hub's admin role.
	EnvHubToken = "FIREOPS_TEST_HUB_TOKEN"
	// EnvHubDB is the path of the test hub's SQLite database.
	EnvHubDB = "FIREOPS_TEST_HUB_DB"
	// EnvDockerHost is the Docker Engine address, as the docker CLI reads it.
	EnvDockerHost = "DOCKER_HOST"
)

// defaultDockerHost is the Engine's address when DOCKER_HOST is not set.
const defaultDockerHost = "unix:///var/run/docker.sock"

var (
	loadOnce sync.Once
	loadErr  error // why the env file could not be used, if it exists
)

// load applies the env file to the process environment, once.
func load() {
	loadOnce.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			loadErr = err
			return
		}
		path := filepath.Join(root, EnvFile)
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			loadErr = fmt.Errorf("%s does not exist", EnvFile)
			return
		}
		if err != nil {
			loadErr = err
			return
		}
		defer f.Close()
		vars, err := parseEnvFile(f)
		if err != nil {
			loadErr = fmt.Errorf("%s: %w", EnvFile, err)
			return
		}
		for k, v := range vars {
			if os.Getenv(k) == "" {
				if err := os.Setenv(k, v); err != nil {
					loadErr = fmt.Errorf("%s: setting %s: %w", EnvFile, k, err)
				}
			}
		}
	})
}

// RepoRoot returns the repository root: the nearest folder, from the
// working directory up, whose go.mod declares module ModulePath.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modulePath(b) == ModulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above the working directory", ModulePath)
		}
		dir = parent
	}
}

// modulePath returns the path of the module directive of a go.mod file.
func modulePath(gomod []byte) string {
	for _, line := range strings.Split(string(gomod), "\n") {
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, "module")
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '\t') {
			continue
		}
		if i := strings.Index(rest, "//"); i >= 0 {
			rest = rest[:i]
		}
		return strings.Trim(strings.TrimSpace(rest), `"`+"`")
	}
	return ""
}

// Env returns the value of an environment variable, after the env file
// written by scripts/test-deps.sh has been applied to the environment.
func Env(key string) string {
	load()
	return os.Getenv(key)
}

// isCI reports whether the environment variable CI is true.
func isCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// Unavailable skips the test, or fails it under CI (CI=true), with one
// line naming the component the test needs and why it is missing. Every
// test that cannot run here must call it rather than t.Skip: in CI a
// missing component is a failure, never a silent skip.
func Unavailable(t testing.TB, component string, cause error) {
	t.Helper()
	msg := describe(cause)
	if isCI() {
		t.Fatalf("testenv: %s unavailable: %s; %s", component, msg, SetupHint)
		return
	}
	t.Skipf("testenv: %s unavailable: %s; %s", component, msg, SetupHint)
}

// Condition is the answer of a testscript condition such as [hub]: true
// when the component is there (err nil); otherwise false locally (the
// guarded lines are skipped) and, under CI, an error naming the component,
// so that a script never skips silently in CI.
func Condition(component string, err error) (bool, error) {
	if err == nil {
		return true, nil
	}
	if isCI() {
		return false, fmt.Errorf("testenv: %s unavailable: %s; %s", component, describe(err), SetupHint)
	}
	return false, nil
}

// describe is the one-line cause of an unavailable component, with why the
// env file could not be used when that is so.
func describe(cause error) string {
	load()
	msg := strings.Join(strings.Fields(cause.Error()), " ")
	if loadErr != nil {
		msg += " (" + strings.Join(strings.Fields(loadErr.Error()), " ") + ")"
	}
	return msg
}

// RequireRoot is Unavailable unless the test runs as root (tests that
// read Docker volumes through their host folders need it).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "root", fmt.Errorf("running as uid %d", os.Geteuid()))
	}
}

// notSet is the cause reported when a component's variable is empty.
func notSet(key string) error {
	return fmt.Errorf("%s is not set", key)
}

// RequireDocker returns the Docker Engine address (DOCKER_HOST, by default
// unix:///var/run/docker.sock) after checking that the Engine answers
// GET /_ping.
func RequireDocker(t testing.TB) string {
	t.Helper()
	host := Env(EnvDockerHost)
	if host == "" {
		host = defaultDockerHost
	}
	if err := pingDocker(host); err != nil {
		Unavailable(t, "Docker Engine", err)
		return ""
	}
	return host
}

// DockerHTTPClient returns an HTTP client and a base URL that reach the
// Docker Engine at host (unix:// or tcp://), for tests that talk to the
// Engine API directly.
func DockerHTTPClient(host string) (*http.Client, string, error) {
	u, err := url.Parse(host)
	if err != nil {
		return nil, "", fmt.Errorf("DOCKER_HOST %q: %w", host, err)
	}
	switch u.Scheme {
	case "unix":
		sock := u.Path
		if sock == "" {
			sock = u.Host
		}
		tr := &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
		}
		return &http.Client{Transport: tr, Timeout: 30 * time.Second}, "http://docker", nil
	case "tcp", "http":
		return &http.Client{Timeout: 30 * time.Second}, "http://" + u.Host, nil
	default:
		return nil, "", fmt.Errorf("DOCKER_HOST %q: unsupported scheme %q", host, u.Scheme)
	}
}

// pingDocker calls GET /_ping on the Engine at host.
func pingDocker(host string) error {
	c, base, err := DockerHTTPClient(host)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("ping %s: %w", host, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping %s: HTTP %d %s", host, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

var (
	mongoMu      sync.Mutex
	mongoClients = map[string]*mongo.Client{} // by URI, shared by all tests
	mongoDown    = map[string]error{}         // by URI: the first failed ping
)

// mongoClient returns the process-wide client for uri.
func mongoClient(uri string) (*mongo.Client, error) {
	mongoMu.Lock()
	defer mongoMu.Unlock()
	if c, ok := mongoClients[uri]; ok {
		return c, nil
	}
	c, err := mongo.Connect(options.Client().ApplyURI(uri).SetServerSelectionTimeout(5 * time.Second))
	if err != nil {
		return nil, err
	}
	mongoClients[uri] = c
	return c, nil
}

// pingMongo returns the shared client for uri after a ping. A failed ping
// is remembered, so that the tests of a run without a server do not each
// wait for the server selection timeout.
func pingMongo(uri string) (*mongo.Client, error) {
	mongoMu.Lock()
	err := mongoDown[uri]
	mongoMu.Unlock()
	if err != nil {
		return nil, err
	}
	c, err := mongoClient(uri)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = c.Ping(ctx, nil)
		cancel()
	}
	if err != nil {
		err = fmt.Errorf("ping %s: %w", uri, err)
		mongoMu.Lock()
		mongoDown[uri] = err
		mongoMu.Unlock()
		return nil, err
	}
	return c, nil
}

// RequireMongo returns the URI of the test MongoDB server (FerretDB) and the
// name of a fresh database, unique to this call, after pinging the server.
// The database is dropped when the test ends.
func RequireMongo(t testing.TB) (uri, db string) {
	t.Helper()
	uri = Env(EnvMongoURI)
	if uri == "" {
		Unavailable(t, "MongoDB (FerretDB)", notSet(EnvMongoURI))
		return "", ""
	}
	c, err := pingMongo(uri)
	if err != nil {
		Unavailable(t, "MongoDB (FerretDB)", err)
		return "", ""
	}
	db = "t_" + randomHex(8)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Database(db).Drop(ctx); err != nil {
			t.Logf("testenv: dropping test database %s: %v", db, err)
		}
	})
	return uri, db
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

// RequireHub returns the test JupyterHub's REST API base URL (no trailing
// slash) and an API token with the admin role, after checking that
// GET apiURL+"/" answers.
func RequireHub(t testing.TB) (apiURL, token string) {
	t.Helper()
	apiURL = strings.TrimRight(Env(EnvHubURL), "/")
	token = Env(EnvHubToken)
	switch {
	case apiURL == "":
		Unavailable(t, "JupyterHub", notSet(EnvHubURL))
		return "", ""
	case token == "":
		Unavailable(t, "JupyterHub", notSet(EnvHubToken))
		return "", ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, apiURL+"/", nil)
	if err != nil {
		Unavailable(t, "JupyterHub", err)
		return "", ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		Unavailable(t, "JupyterHub", err)
		return "", ""
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		Unavailable(t, "JupyterHub", fmt.Errorf("GET %s/: HTTP %d", apiURL, resp.StatusCode))
		return "", ""
	}
	return apiURL, token
}

// RequireTool returns the path of the command-line tool name, looked up in
// PATH.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "tool "+name, err)
		return ""
	}
	return path
}

// parseEnvFile reads the variables set by a shell file made of lines
// "export KEY=VALUE" or "KEY=VALUE", blank lines and # comments. VALUE is one
// shell word: bare characters, 'single-quoted' text, "double-quoted" text
// (where \ escapes $ ` " \ and newline) and \-escaped characters, possibly
// concatenated; a # after the word starts a comment. Variable expansion and
// command substitution are not supported and are an error.
func parseEnvFile(r io.Reader) (map[string]string, error) {
	vars := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "export"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			line = strings.TrimLeft(rest, " \t")
		}
		key, raw, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: want KEY=VALUE", n)
		}
		if !validKey(key) {
			return nil, fmt.Errorf("line %d: invalid variable name %q", n, key)
		}
		val, err := shellWord(raw)
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", n, key, err)
		}
		vars[key] = val
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return vars, nil
}

// validKey reports whether s is a shell variable name.
func validKey(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// shellWord decodes the one shell word at the start of s; only blanks and
// a comment may follow it.
func shellWord(s string) (string, error) {
	var b strings.Builder
	i := 0
	for i < len(s) {
		c := s[i]
		switch c {
		case ' ', '\t':
			rest := strings.TrimLeft(s[i:], " \t")
			if rest != "" && rest[0] != '#' {
				return "", fmt.Errorf("unexpected %q after the value (quote it)", rest)
			}
			return b.String(), nil
		case '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return "", errors.New("unterminated single quote")
			}
			b.WriteString(s[i+1 : i+1+end])
			i += end + 2
		case '"':
			i++
			closed := false
			for i < len(s) && !closed {
				switch d := s[i]; d {
				case '"':
					closed = true
				case '\\':
					if i+1 < len(s) && strings.IndexByte("$`\"\\", s[i+1]) >= 0 {
						i++
						b.WriteByte(s[i])
					} else {
						b.WriteByte(d)
					}
				case '$', '`':
					return "", fmt.Errorf("expansion %q is not supported", d)
				default:
					b.WriteByte(d)
				}
				i++
			}
			if !closed {
				return "", errors.New("unterminated double quote")
			}
		case '\\':
			if i+1 >= len(s) {
				return "", errors.New("trailing backslash")
			}
			b.WriteByte(s[i+1])
			i += 2
		case '$', '`':
			return "", fmt.Errorf("expansion %q is not supported", c)
		case ';', '&', '|', '<', '>', '(', ')':
			return "", fmt.Errorf("unexpected %q (quote it)", c)
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), nil
}
