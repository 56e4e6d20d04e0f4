package main

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	_ "modernc.org/sqlite"

	"github.com/firetech/fireops/internal/testenv"
)

// scriptCondition answers the custom testscript conditions; when the
// component is missing and CI=true the condition is an error, so that CI
// never passes by skipping (testenv.Condition):
//
//	[hub]        the test JupyterHub of scripts/test-deps.sh answers
//	[mongo]      the test MongoDB (FerretDB) answers
//	[docker]     the test Docker Engine answers and the test runs as root
//	[need:TOOL]  TOOL is on PATH (use it instead of [exec:TOOL])
func scriptCondition(cond string) (bool, error) {
	switch {
	case cond == "hub":
		return testenv.Condition("JupyterHub", testHubAvailable())
	case cond == "mongo":
		_, _, err := testMongo()
		return testenv.Condition("MongoDB (FerretDB)", err)
	case cond == "docker":
		return testenv.Condition("Docker Engine (as root)", dockerAvailable())
	case strings.HasPrefix(cond, "need:"):
		tool := strings.TrimPrefix(cond, "need:")
		_, err := exec.LookPath(tool)
		return testenv.Condition("the "+tool+" tool", err)
	}
	return false, fmt.Errorf("unknown condition %q", cond)
}

// testHubAvailable says why the test hub cannot be used, or nil.
func testHubAvailable() error {
	apiURL := testenv.Env(testenv.EnvHubURL)
	if apiURL == "" || testenv.Env(testenv.EnvHubToken) == "" || testenv.Env(testenv.EnvHubDB) == "" {
		return fmt.Errorf("%s, %s or %s is not set", testenv.EnvHubURL, testenv.EnvHubToken, testenv.EnvHubDB)
	}
	return hubGetOK(strings.TrimRight(apiURL, "/")+"/", "")
}

// cmdTestHub is the testscript command `testhub`: it prepares a script for
// the test JupyterHub (guard it with `[!hub] skip`). It writes
//
//	$WORK/fireops.yaml     hub.api_url, hub.token_file, hub.db_path of the test hub
//	$WORK/badtoken.yaml    the same with a token the hub does not know
//	$WORK/down.yaml        the same with a loopback port where nothing listens
//
// and sets $HUB_DB (the hub's database), $NA (testdata/nativeauthenticator,
// with the sign-up and password-check scripts) and $SFX, a random suffix:
// scripts name their users NAME-$SFX, and every hub user and users_info row
// ending in -$SFX is removed when the script ends.
func cmdTestHub(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: testhub")
	}
	if err := testHubAvailable(); err != nil {
		ts.Fatalf("testhub: %v (guard the script with [!hub] skip)", err)
	}
	apiURL := strings.TrimRight(testenv.Env(testenv.EnvHubURL), "/")
	token := testenv.Env(testenv.EnvHubToken)
	db := testenv.Env(testenv.EnvHubDB)

	b := make([]byte, 4)
	rand.Read(b)
	sfx := hex.EncodeToString(b)
	root, err := testenv.RepoRoot()
	ts.Check(err)
	work := ts.Getenv("WORK")
	write := func(name, content string, mode os.FileMode) {
		ts.Check(os.WriteFile(filepath.Join(work, name), []byte(content), mode))
	}
	write("hub-token", token+"\n", 0o600)
	write("bad-token", "not-the-hub-token\n", 0o600)
	cfg := func(api, tokenFile string) string {
		return fmt.Sprintf("hub:\n  api_url: %s\n  token_file: %s\n  db_path: %s\n", api, tokenFile, db)
	}
	write("fireops.yaml", cfg(apiURL, "hub-token"), 0o644)
	write("badtoken.yaml", cfg(apiURL, "bad-token"), 0o644)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	down := "http://" + l.Addr().String() + "/hub/api"
	l.Close()
	write("down.yaml", cfg(down, "hub-token"), 0o644)

	ts.Setenv("SFX", sfx)
	ts.Setenv("HUB_DB", db)
	ts.Setenv("NA", filepath.Join(root, "testdata", "nativeauthenticator"))
	ts.Defer(func() { cleanupHubUsers(apiURL, token, db, "-"+sfx) })
}

// hubGetOK sends GET url (with a token when not "") and wants a 2xx.
func hubGetOK(u, token string) error {
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "token "+token)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: HTTP %d", u, resp.StatusCode)
	}
	return nil
}

// cleanupHubUsers removes, best effort, the hub users and users_info rows
// whose names end in suffix.
func cleanupHubUsers(apiURL, token, db, suffix string) {
	c := &http.Client{Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", apiURL+"/users?limit=200", nil)
	req.Header.Set("Authorization", "token "+token)
	if resp, err := c.Do(req); err == nil {
		var us []struct {
			Name string `json:"name"`
		}
		json.NewDecoder(resp.Body).Decode(&us)
		resp.Body.Close()
		for _, u := range us {
			if strings.HasSuffix(u.Name, suffix) {
				del, _ := http.NewRequest("DELETE", apiURL+"/users/"+url.PathEscape(u.Name), nil)
				del.Header.Set("Authorization", "token "+token)
				if resp, err := c.Do(del); err == nil {
					resp.Body.Close()
				}
			}
		}
	}
	if d, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(10000)"); err == nil {
		d.Exec(`DELETE FROM users_info WHERE substr(username, -length(?)) = ?`, suffix, suffix)
		d.Close()
	}
}
