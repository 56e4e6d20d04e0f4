package remote

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rclone/rclone/fs"

	"github.com/firetech/fireops/internal/davtest"
	"github.com/firetech/fireops/pkg/exitcode"
)

// fakeYandex stands in for the network when the yandex backend runs: it
// is the HTTP proxy of the backend's context. It answers the OAuth token
// endpoint (a plain-HTTP token_url set in rclone.conf) itself, and refuses
// the HTTPS tunnels to Yandex's API, so that nothing leaves the machine.
type fakeYandex struct {
	mu         sync.Mutex
	refreshes  int
	tunnels    []string
	gotRefresh string
	*httptest.Server
}

func startFakeYandex(t *testing.T) *fakeYandex {
	t.Helper()
	y := &fakeYandex{}
	y.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		y.mu.Lock()
		defer y.mu.Unlock()
		switch {
		case r.Method == http.MethodConnect:
			y.tunnels = append(y.tunnels, r.Host)
			http.Error(w, "no network in tests", http.StatusForbidden)
		case r.URL.Host == "oauth.fireops.invalid" && r.URL.Path == "/token":
			_ = r.ParseForm()
			y.refreshes++
			y.gotRefresh = r.PostForm.Get("refresh_token")
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{
				"access_token": "new-access", "token_type": "OAuth",
				"refresh_token": "new-refresh", "expires_in": 3600,
			})
		default:
			http.Error(w, "unexpected request "+r.Method+" "+r.URL.String(), http.StatusBadGateway)
		}
	}))
	t.Cleanup(y.Close)
	return y
}

// TestNamedRemotes covers remotes named in an rclone.conf. rclone has one
// config file per process, so these subtests run in order, and no other
// test of this package uses a named remote.
func TestNamedRemotes(t *testing.T) {
	// Forget the config file of an earlier run (go test -count=N).
	forgetConfigFile()
	t.Cleanup(forgetConfigFile)
	dir := t.TempDir()
	dav := davtest.Start(t)
	davDir, davURL := dav.Dir, dav.URL
	conf := filepath.Join(dir, "rclone.conf")
	expired := `{"access_token":"old-access","token_type":"OAuth","refresh_token":"old-refresh","expiry":"2001-01-01T00:00:00Z"}`
	content := fmt.Sprintf(`# written by the test
[dav]
type = webdav
url = %s
vendor = rclone

[yandex]
type = yandex
token = %s
token_url = http://oauth.fireops.invalid/token
`, davURL, expired)
	if err := os.WriteFile(conf, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("missing config file", func(t *testing.T) {
		_, err := Open(context.Background(), Options{Name: "dav", Remote: "dav:fireops", RcloneConfig: filepath.Join(dir, "nope.conf")})
		if err == nil || !strings.Contains(err.Error(), `destination "dav"`) || !strings.Contains(err.Error(), "nope.conf does not exist") {
			t.Fatalf("Open with a missing rclone_config: %v", err)
		}
	})

	// The config holds the remotes' secrets: one that group or others can
	// read is refused (exit 2, chmod as the hint), set or rclone's default.
	t.Run("group-readable config file", func(t *testing.T) {
		loose := filepath.Join(dir, "loose.conf")
		if err := os.WriteFile(loose, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(loose, 0o640); err != nil {
			t.Fatal(err)
		}
		for _, set := range []bool{true, false} {
			o := Options{Name: "dav", Remote: "dav:fireops", RcloneConfig: loose}
			if !set {
				o.RcloneConfig = ""
				t.Setenv("RCLONE_CONFIG", loose)
			}
			_, err := Open(context.Background(), o)
			if err == nil || exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "loose.conf holds a secret but is readable by group or others (mode 0640)") ||
				exitcode.Hint(err) != "run: chmod 600 "+loose {
				t.Fatalf("Open with a group-readable rclone config (rclone_config set: %v): %v (hint %q)", set, err, exitcode.Hint(err))
			}
		}
	})

	t.Run("webdav", func(t *testing.T) {
		ctx := context.Background()
		r := mustOpen(t, ctx, Options{Name: "dav", Remote: "dav:fireops", RcloneConfig: conf})
		if err := r.Put(ctx, "objects/n/0", []byte("named")); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(davDir, "fireops", "objects", "n", "0")); err != nil || string(b) != "named" {
			t.Fatalf("on the server: %q, %v", b, err)
		}
		// The same file again is fine.
		mustOpen(t, ctx, Options{Name: "dav2", Remote: "dav:other", RcloneConfig: conf})
	})

	t.Run("unknown remote", func(t *testing.T) {
		_, err := Open(context.Background(), Options{Name: "x", Remote: "nosuch:fireops", RcloneConfig: conf})
		if err == nil || !strings.Contains(err.Error(), `destination "x"`) || !strings.Contains(err.Error(), "nosuch") {
			t.Fatalf("Open of a remote not in the config: %v", err)
		}
	})

	t.Run("second config file refused", func(t *testing.T) {
		other := filepath.Join(dir, "other.conf")
		if err := os.WriteFile(other, []byte("[dav]\ntype = local\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(context.Background(), Options{Name: "o", Remote: "dav:x", RcloneConfig: other})
		if err == nil || !strings.Contains(err.Error(), "must share one rclone_config") {
			t.Fatalf("Open with another rclone_config: %v", err)
		}
		// Paths and inline remotes do not read it.
		mustOpen(t, context.Background(), Options{Name: "l", Remote: t.TempDir(), RcloneConfig: other})
	})

	t.Run("yandex", func(t *testing.T) {
		y := startFakeYandex(t)
		ctx, ci := fs.AddConfig(context.Background())
		ci.HTTPProxy = y.URL
		_, err := Open(ctx, Options{Name: "yandex", Remote: "yandex:fireops", RcloneConfig: conf, Retries: -1, LowLevelRetries: -1, RetryBase: time.Millisecond})
		// The backend was built from the config and tried Yandex's API,
		// which the proxy refused: Open fails, naming the destination.
		if err == nil || !strings.HasPrefix(err.Error(), `destination "yandex": open: create root directory`) {
			t.Fatalf("Open = %v", err)
		}
		y.mu.Lock()
		defer y.mu.Unlock()
		if len(y.tunnels) == 0 || y.tunnels[0] != "cloud-api.yandex.com:443" {
			t.Errorf("tunnels = %v, want cloud-api.yandex.com:443", y.tunnels)
		}
		// The expired token was refreshed with its refresh_token, and the
		// new token was written back to rclone.conf.
		if y.refreshes != 1 || y.gotRefresh != "old-refresh" {
			t.Errorf("refreshes = %d with %q", y.refreshes, y.gotRefresh)
		}
		b, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "new-access") || !strings.Contains(string(b), "new-refresh") || !strings.Contains(string(b), "[dav]") {
			t.Errorf("rclone.conf after the refresh:\n%s", b)
		}
		if fi, err := os.Stat(conf); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("rclone.conf mode after the refresh: %v, %v", fi.Mode(), err)
		}
	})

	t.Run("yandex without refresh token", func(t *testing.T) {
		_, err := Open(context.Background(), Options{Name: "y", Remote: `:yandex,token='{"access_token":"a","token_type":"OAuth"}':x`})
		if err == nil || !strings.Contains(err.Error(), "RefreshToken") || strings.Contains(err.Error(), `"a"`) {
			t.Fatalf("Open = %v", err)
		}
	})
}

// forgetConfigFile lets the next named remote install its own config file.
func forgetConfigFile() {
	confMu.Lock()
	defer confMu.Unlock()
	confPath = ""
}

// TestEncryptedConfig: an encrypted rclone.conf without RCLONE_CONFIG_PASS
// is an error, not a password prompt nor an exit of the process (rclone's
// lazy loader exits on a config file it cannot read). It runs in a child
// process, which gets a config file of its own.
func TestEncryptedConfig(t *testing.T) {
	if os.Getenv("FIREOPS_REMOTE_CHILD") == "1" {
		for range 2 {
			_, err := Open(context.Background(), Options{Name: "enc", Remote: "enc:x", RcloneConfig: os.Getenv("FIREOPS_REMOTE_CONF")})
			fmt.Printf("RESULT: %v\n", err)
		}
		// A path still works after the failure.
		_, err := Open(context.Background(), Options{Name: "l", Remote: os.Getenv("FIREOPS_REMOTE_DIR")})
		fmt.Printf("RESULT: %v\n", err)
		return
	}
	t.Parallel()
	dir := t.TempDir()
	conf := filepath.Join(dir, "rclone.conf")
	if err := os.WriteFile(conf, []byte("# Encrypted rclone configuration File\n\nRCLONE_ENCRYPT_V0:\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestEncryptedConfig$", "-test.v")
	cmd.Env = append(os.Environ(), "FIREOPS_REMOTE_CHILD=1", "FIREOPS_REMOTE_CONF="+conf, "FIREOPS_REMOTE_DIR="+dir, "RCLONE_CONFIG_PASS=", "RCLONE_PASSWORD_COMMAND=")
	cmd.Stdin = nil
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	want := `RESULT: destination "enc": open: rclone config ` + conf + `: unable to decrypt configuration and not allowed to ask for password`
	if strings.Count(string(out), want) != 2 || !strings.Contains(string(out), "RESULT: <nil>") {
		t.Errorf("child output:\n%s\nwant twice: %s", out, want)
	}
}
