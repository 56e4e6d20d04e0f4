package users

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/exitcode"
)

// debianPython is Debian's python3, which has python3-bcrypt; the python3
// first on PATH may be a pyenv shim without it.
const debianPython = "/usr/bin/python3"

// fixture returns the path of a file in testdata/nativeauthenticator.
func fixture(name string) string {
	return filepath.Join("..", "..", "testdata", "nativeauthenticator", name)
}

// python runs a fixture script with Debian's python3 and returns its output.
func python(t testing.TB, script string, args ...string) string {
	t.Helper()
	out, err := exec.Command(debianPython, append([]string{fixture(script)}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", script, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// hubGet reads a user straight from the REST API, independently of the
// client under test: the HTTP status and the admin flag.
func hubGet(t testing.TB, apiURL, token, name string) (status int, admin bool) {
	t.Helper()
	req, _ := http.NewRequest("GET", apiURL+"/users/"+name, nil)
	req.Header.Set("Authorization", "token "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var u struct {
		Admin bool `json:"admin"`
	}
	json.NewDecoder(resp.Body).Decode(&u)
	return resp.StatusCode, u.Admin
}

func hubDelete(apiURL, token, name string) {
	req, _ := http.NewRequest("DELETE", apiURL+"/users/"+name, nil)
	req.Header.Set("Authorization", "token "+token)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
}

// closedPort returns a loopback URL where nothing listens.
func closedPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/hub/api"
}

// TestRealHub runs every command against the test JupyterHub (Debian's
// 3.0.0) and its real database, with sign-ups made by fixture scripts the
// way NativeAuthenticator makes them. Its users have a random suffix and are
// removed at the end.
func TestRealHub(t *testing.T) {
	t.Parallel()
	apiURL, token := testenv.RequireHub(t)
	dbPath := testenv.Env(testenv.EnvHubDB)
	if dbPath == "" {
		t.Fatalf("%s is not set; %s", testenv.EnvHubDB, testenv.SetupHint)
	}
	if _, err := os.Stat(debianPython); err != nil {
		t.Fatalf("%s: %v (install python3-bcrypt); %s", debianPython, err, testenv.SetupHint)
	}
	ctx := context.Background()
	b := make([]byte, 4)
	rand.Read(b)
	sfx := hex.EncodeToString(b)
	ann, bob := "fo-ann-"+sfx, "fo-bob-smith-"+sfx
	python(t, "signup.py", dbPath, ann, "old-ann-pw", "ann@example.org")
	python(t, "signup.py", dbPath, bob, "old-bob-pw")
	raw := rawDB(t, dbPath)
	t.Cleanup(func() {
		for _, n := range []string{ann, bob} {
			hubDelete(apiURL, token, n)
			raw.Exec(`DELETE FROM users_info WHERE username = ?`, n)
		}
	})

	manager := func(t *testing.T, url, tok string, busy time.Duration) *Manager {
		t.Helper()
		h, err := NewHub(url, tok, nil)
		if err != nil {
			t.Fatal(err)
		}
		m := NewManager(h, func(context.Context) (string, error) { return dbPath, nil }, busy)
		t.Cleanup(func() { m.Close() })
		return m
	}
	m := manager(t, apiURL, token, 0)

	t.Run("approve and reject set the state", func(t *testing.T) {
		for i, want := range []bool{true, false} { // first approve changes, second does not
			ch, err := m.SetApproved(ctx, []string{ann}, true)
			if err != nil || len(ch) != 1 || ch[0].Changed != want || ch[0].After != "approved" {
				t.Fatalf("approve #%d: %+v, %v", i+1, ch, err)
			}
		}
		if _, ok := approvedRows(t, raw, ann); ok != 1 {
			t.Fatal("ann is not approved after approving twice")
		}
		if _, err := m.SetApproved(ctx, []string{bob}, true); err != nil {
			t.Fatal(err)
		}
		ch, err := m.SetApproved(ctx, []string{bob}, false)
		if err != nil || !ch[0].Changed || ch[0].After != "pending" {
			t.Fatalf("reject: %+v, %v", ch, err)
		}
		if _, ok := approvedRows(t, raw, bob); ok != 0 {
			t.Fatal("bob is still approved after reject")
		}
	})

	t.Run("list", func(t *testing.T) {
		find := func(l *Listing, name string) *User {
			for i := range l.Users {
				if l.Users[i].Name == name {
					return &l.Users[i]
				}
			}
			return nil
		}
		l, err := m.List(ctx, All)
		if err != nil {
			t.Fatal(err)
		}
		a, b := find(l, ann), find(l, bob)
		if a == nil || b == nil {
			t.Fatalf("list misses ann or bob: %+v", l.Users)
		}
		if a.State() != "approved" || a.Email != "ann@example.org" || a.InHub || a.Admin || b.State() != "pending" {
			t.Errorf("ann %+v, bob %+v", a, b)
		}
		if b.Volume != "jupyterhub-user-fo-2dbob-2dsmith-2d"+sfx {
			t.Errorf("bob's volume %q", b.Volume)
		}
		p, err := m.List(ctx, Pending)
		if err != nil {
			t.Fatal(err)
		}
		if find(p, bob) == nil || find(p, ann) != nil {
			t.Errorf("--pending: %+v", p.Users)
		}
		js, _ := json.Marshal(a)
		for _, want := range []string{`"approved":true`, `"signed_up":true`, `"admin":false`, `"last_activity":null`} {
			if !strings.Contains(string(js), want) {
				t.Errorf("JSON %s lacks %s", js, want)
			}
		}
	})

	t.Run("admin grant and revoke", func(t *testing.T) {
		if st, _ := hubGet(t, apiURL, token, ann); st != 404 {
			t.Fatalf("ann already in the hub: %d", st)
		}
		res, err := m.SetAdmin(ctx, ann, true)
		if err != nil || !res.Changed || !res.Created {
			t.Fatalf("grant: %+v, %v", res, err)
		}
		if st, admin := hubGet(t, apiURL, token, ann); st != 200 || !admin {
			t.Fatalf("after grant the API says %d admin=%v", st, admin)
		}
		if res, err := m.SetAdmin(ctx, ann, true); err != nil || res.Changed {
			t.Fatalf("second grant: %+v, %v", res, err)
		}
		if res, err := m.SetAdmin(ctx, ann, false); err != nil || !res.Changed || res.Before != "admin" {
			t.Fatalf("revoke: %+v, %v", res, err)
		}
		if st, admin := hubGet(t, apiURL, token, ann); st != 200 || admin {
			t.Fatalf("after revoke the API says %d admin=%v", st, admin)
		}
		l, err := m.List(ctx, All)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range l.Users {
			if u.Name == ann && (!u.InHub || u.Admin) {
				t.Errorf("list after revoke: %+v", u)
			}
		}
		// A pending sign-up is not made an admin.
		_, err = m.SetAdmin(ctx, bob, true)
		if exitcode.Code(err) != exitcode.Usage || !strings.Contains(exitcode.Hint(err), "approve") {
			t.Errorf("grant to pending bob: %v", err)
		}
		if st, _ := hubGet(t, apiURL, token, bob); st != 404 {
			t.Errorf("bob got a hub user: %d", st)
		}
	})

	t.Run("reset-password is what NativeAuthenticator checks", func(t *testing.T) {
		if err := m.ResetPassword(ctx, ann, []byte("N3w-pässword")); err != nil {
			t.Fatal(err)
		}
		out := python(t, "checkpw.py", dbPath, ann, "N3w-pässword")
		if !strings.Contains(out, "type: bytes") || !strings.Contains(out, "valid: True") {
			t.Errorf("python check of the new password:\n%s", out)
		}
		out = python(t, "checkpw.py", dbPath, ann, "old-ann-pw")
		if !strings.Contains(out, "type: bytes") || !strings.Contains(out, "valid: False") {
			t.Errorf("python check of the old password:\n%s", out)
		}
		err := m.ResetPassword(ctx, ann, []byte(strings.Repeat("p", 73)))
		if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "73 bytes") {
			t.Errorf("73-byte password: %v", err)
		}
	})

	t.Run("unknown user", func(t *testing.T) {
		typo := strings.Replace(ann, "ann", "anne", 1)
		for name, err := range map[string]error{
			"approve": func() error { _, err := m.SetApproved(ctx, []string{typo}, true); return err }(),
			"admin":   func() error { _, err := m.SetAdmin(ctx, typo, true); return err }(),
			"delete":  func() error { _, err := m.Delete(ctx, typo); return err }(),
			"reset":   m.RequireSignup(ctx, typo),
		} {
			var ue *UnknownUserError
			if !errors.As(err, &ue) || exitcode.Code(err) != exitcode.Usage || !strings.Contains(exitcode.Hint(err), ann) {
				t.Errorf("%s %s: %v (hint %q)", name, typo, err, exitcode.Hint(err))
			}
		}
		if st, _ := hubGet(t, apiURL, token, typo); st != 404 {
			t.Errorf("the unknown user was created: %d", st)
		}
	})

	// unchanged checks that ann is still fully there.
	unchanged := func(t *testing.T) {
		t.Helper()
		if st, _ := hubGet(t, apiURL, token, ann); st != 200 {
			t.Errorf("ann's hub user is gone: %d", st)
		}
		if n, ok := approvedRows(t, raw, ann); n != 1 || ok != 1 {
			t.Errorf("ann's row changed: %d rows, %d approved", n, ok)
		}
	}

	t.Run("wrong token", func(t *testing.T) {
		bad := manager(t, apiURL, "not-the-token", 0)
		_, err := bad.Delete(ctx, ann)
		if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "refused the token") || !strings.Contains(exitcode.Hint(err), "hub.token_file") {
			t.Errorf("delete: %v (hint %q)", err, exitcode.Hint(err))
		}
		if _, err := bad.SetAdmin(ctx, ann, true); !strings.Contains(err.Error(), "refused the token") {
			t.Errorf("admin: %v", err)
		}
		if _, err := bad.List(ctx, All); !strings.Contains(err.Error(), "refused the token") {
			t.Errorf("list: %v", err)
		}
		unchanged(t)
	})

	t.Run("hub down", func(t *testing.T) {
		down := manager(t, closedPort(t), token, 0)
		_, err := down.Delete(ctx, ann)
		if exitcode.Code(err) != exitcode.Failure || !strings.Contains(err.Error(), "hub API unreachable") || !strings.Contains(err.Error(), "connection refused") ||
			!strings.Contains(exitcode.Hint(err), "is the hub running") {
			t.Errorf("delete: %v (hint %q)", err, exitcode.Hint(err))
		}
		if _, err := down.List(ctx, All); exitcode.Code(err) != exitcode.Failure {
			t.Errorf("list: %v", err)
		}
		unchanged(t)
	})

	t.Run("locked database", func(t *testing.T) {
		// Short waits: the lock is held on the shared hub's database.
		locked := manager(t, apiURL, token, 300*time.Millisecond)
		if _, err := locked.Store(ctx); err != nil {
			t.Fatal(err)
		}
		release := holdLock(t, dbPath)
		_, errDel := locked.Delete(ctx, ann)
		_, errApp := locked.SetApproved(ctx, []string{bob}, true)
		release()
		for name, err := range map[string]error{"delete": errDel, "approve": errApp} {
			if exitcode.Code(err) != exitcode.Failure || !strings.Contains(err.Error(), "is locked") || !strings.Contains(exitcode.Hint(err), "nothing was changed") {
				t.Errorf("%s: %v (hint %q)", name, err, exitcode.Hint(err))
			}
		}
		unchanged(t)
		if _, ok := approvedRows(t, raw, bob); ok != 0 {
			t.Error("bob was approved on a locked database")
		}
	})

	t.Run("delete removes both rows", func(t *testing.T) {
		res, err := m.Delete(ctx, ann)
		if err != nil || !res.HubUser || res.Rows != 1 || res.Volume != "jupyterhub-user-fo-2dann-2d"+sfx {
			t.Fatalf("delete ann: %+v, %v", res, err)
		}
		if st, _ := hubGet(t, apiURL, token, ann); st != 404 {
			t.Errorf("ann's hub user still answers %d", st)
		}
		if n, _ := approvedRows(t, raw, ann); n != 0 {
			t.Errorf("ann has %d rows left", n)
		}
		// bob never logged in: only the sign-up goes.
		res, err = m.Delete(ctx, bob)
		if err != nil || res.HubUser || res.Rows != 1 {
			t.Fatalf("delete bob: %+v, %v", res, err)
		}
		if _, err := m.Delete(ctx, bob); exitcode.Code(err) != exitcode.Usage {
			t.Errorf("second delete: %v", err)
		}
	})
}

// TestHubURLPasswordRedacted: an api_url with credentials in it never
// shows them in errors or hints.
func TestHubURLPasswordRedacted(t *testing.T) {
	t.Parallel()
	u := strings.Replace(closedPort(t), "http://", "http://admin:s3cret-pw@", 1)
	h, err := NewHub(u, "token", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Users(context.Background())
	if err == nil {
		t.Fatal("a hub where nothing listens answered")
	}
	for _, s := range []string{err.Error(), exitcode.Hint(err), h.URL()} {
		if strings.Contains(s, "s3cret-pw") {
			t.Errorf("the password shows: %q", s)
		}
	}
}
