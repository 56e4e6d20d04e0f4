package users

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
)

func TestEscapeUsername(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, want string }{
		{"alice", "alice"},
		{"bob-smith", "bob-2dsmith"},
		{"user.name", "user-2ename"},
		{"user@host", "user-40host"},
		{"Bob", "-42ob"},
		{"a_b", "a-5fb"},
		{"jörg", "j-c3-b6rg"},
		{"x y", "x-20y"},
		{"123", "123"},
		{"", ""},
	} {
		if got := EscapeUsername(tc.name); got != tc.want {
			t.Errorf("EscapeUsername(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := VolumeName("bob-smith"); got != "jupyterhub-user-bob-2dsmith" {
		t.Errorf("VolumeName(bob-smith) = %q", got)
	}
	// The escape character is escaped too, so names never collide.
	if EscapeUsername("a-2d") == EscapeUsername("a--2d") || EscapeUsername("a-") == EscapeUsername("a-2d") {
		t.Error("escaping is not injective")
	}
}

func TestCloseMatches(t *testing.T) {
	t.Parallel()
	known := []string{"alice", "alicia", "bob", "bob-smith", "carol", "Alice2", "zed"}
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"alcie", []string{"alice", "alicia"}},
		{"ALICE", []string{"alice", "Alice2", "alicia"}},
		{"bobsmith", []string{"bob", "bob-smith"}},
		{"smith", []string{"bob-smith"}},
		{"xyz", nil},
		{"zd", []string{"zed"}},
		{"bob", []string{"bob-smith"}},
	} {
		got := CloseMatches(tc.name, known, 5)
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("CloseMatches(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := CloseMatches("alice", known, 1); len(got) != 1 {
		t.Errorf("max not honoured: %q", got)
	}
}

func TestPasswords(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", MaxPasswordBytes)
	for _, tc := range []struct {
		name string
		pw   string
		ok   bool
	}{
		{"simple", "correct horse", true},
		{"72 bytes", long, true},
		{"73 bytes", long + "y", false},
		{"72 bytes of UTF-8", strings.Repeat("ü", 36), true},
		{"74 bytes of UTF-8", strings.Repeat("ü", 37), false},
		{"empty", "", false},
		{"NUL", "a\x00b", false},
		{"not UTF-8", "a\xffb", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := CheckPassword([]byte(tc.pw))
			if (err == nil) != tc.ok {
				t.Fatalf("CheckPassword: %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				if exitcode.Code(err) != exitcode.Usage || exitcode.Hint(err) == "" {
					t.Errorf("error %v: want a usage error with a hint", err)
				}
				return
			}
			if tc.name != "simple" && tc.name != "72 bytes" {
				return // bcrypt at cost 12 is slow; two are enough
			}
			h, err := HashPassword([]byte(tc.pw))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(h), "$2b$12$") || len(h) != 60 {
				t.Errorf("hash %q: want $2b$12$ and 60 bytes", h)
			}
			if err := bcrypt.CompareHashAndPassword(h, []byte(tc.pw)); err != nil {
				t.Errorf("hash does not verify: %v", err)
			}
			if bcrypt.CompareHashAndPassword(h, []byte("!"+tc.pw[1:])) == nil {
				t.Error("hash verifies a wrong password")
			}
		})
	}
	seen := map[string]bool{}
	for range 20 {
		p, err := GeneratePassword()
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != 20 || strings.Trim(p, passwordAlphabet) != "" || seen[p] {
			t.Fatalf("generated %q: want 20 fresh characters of the alphabet", p)
		}
		seen[p] = true
	}
}

// schema returns the users_info fixture (NativeAuthenticator 1.3.0).
func schema(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "nativeauthenticator", "users_info.sql"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// rawDB opens a database file with a plain connection, for setting up and
// checking rows behind the Store's back.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

// signUp inserts a users_info row the way NativeAuthenticator's sign-up
// does (password as bcrypt bytes, not approved).
func signUp(t testing.TB, db *sql.DB, name, email string, approved bool) {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte("pw-"+name), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`INSERT INTO users_info (username, password, is_authorized, login_email_sent, email, has_2fa, otp_secret) VALUES (?, ?, ?, 0, ?, 0, 'ABCDEFGHIJKLMNOP')`,
		name, h, approved, email)
	if err != nil {
		t.Fatal(err)
	}
}

func approvedRows(t testing.TB, db *sql.DB, name string) (n, approved int) {
	t.Helper()
	err := db.QueryRow(`SELECT count(*), coalesce(sum(is_authorized), 0) FROM users_info WHERE username = ?`, name).Scan(&n, &approved)
	if err != nil {
		t.Fatal(err)
	}
	return n, approved
}

// tempDB returns a fresh database file with the users_info table.
func tempDB(t testing.TB) (string, *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jupyterhub.sqlite")
	db := rawDB(t, path)
	if _, err := db.Exec(schema(t)); err != nil {
		t.Fatal(err)
	}
	return path, db
}

// noHubUsers answers as a hub API that knows no users: an empty list,
// and 404 for every user.
func noHubUsers(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/hub/api/users" {
		w.Write([]byte("[]"))
		return
	}
	http.Error(w, `{"status": 404, "message": "no such user"}`, http.StatusNotFound)
}

// hubManager returns a Manager on the hub database at path whose hub API
// (at /hub/api) handler answers; the manager and the API's server are
// closed when the test ends.
func hubManager(t testing.TB, path string, handler http.HandlerFunc) *Manager {
	t.Helper()
	hubSrv := httptest.NewServer(handler)
	t.Cleanup(hubSrv.Close)
	hub, err := NewHub(hubSrv.URL+"/hub/api", "token", nil)
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(hub, func(context.Context) (string, error) { return path, nil }, 0)
	t.Cleanup(func() { m.Close() })
	return m
}

func TestStoreApproveReject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path, db := tempDB(t)
	signUp(t, db, "alice", "alice@example.org", false)
	signUp(t, db, "bob", "", true)
	s, err := OpenStore(ctx, path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	steps := []struct {
		name    string
		names   []string
		approve bool
		want    []Change
	}{
		{"approve", []string{"alice"}, true, []Change{{"alice", "pending", "approved", true}}},
		{"approve twice", []string{"alice"}, true, []Change{{"alice", "approved", "approved", false}}},
		{"approve mixed", []string{"alice", "bob"}, true, []Change{{"alice", "approved", "approved", false}, {"bob", "approved", "approved", false}}},
		{"reject", []string{"bob", "bob"}, false, []Change{{"bob", "approved", "pending", true}, {"bob", "pending", "pending", false}}},
		{"reject twice", []string{"bob"}, false, []Change{{"bob", "pending", "pending", false}}},
	}
	for _, st := range steps {
		got, err := s.SetApproved(ctx, st.names, st.approve)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(st.want)
		if string(gj) != string(wj) {
			t.Errorf("%s: got %s, want %s", st.name, gj, wj)
		}
	}
	if _, ok := approvedRows(t, db, "alice"); ok != 1 {
		t.Error("alice is not approved in the table")
	}
	if _, ok := approvedRows(t, db, "bob"); ok != 0 {
		t.Error("bob is still approved in the table")
	}

	// An unknown name among known ones changes nothing at all.
	_, err = s.SetApproved(ctx, []string{"bob", "alcie"}, true)
	var ue *UnknownUserError
	if !errors.As(err, &ue) || exitcode.Code(err) != exitcode.Usage {
		t.Fatalf("unknown name: got %v, want a usage error", err)
	}
	if !strings.Contains(err.Error(), `"alcie"`) || !strings.Contains(exitcode.Hint(err), "alice") {
		t.Errorf("unknown name: %v (hint %q): want the name and the close match alice", err, exitcode.Hint(err))
	}
	if _, ok := approvedRows(t, db, "bob"); ok != 0 {
		t.Error("bob was approved although the command failed")
	}
}

func TestStoreDuplicateRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path, db := tempDB(t)
	signUp(t, db, "dup", "", true)
	signUp(t, db, "dup", "", false)
	s, err := OpenStore(ctx, path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Approved only when every row is: approve must fix the second one.
	ch, err := s.SetApproved(ctx, []string{"dup"}, true)
	if err != nil || len(ch) != 1 || !ch[0].Changed {
		t.Fatalf("approve dup: %v %+v", err, ch)
	}
	if n, ok := approvedRows(t, db, "dup"); n != 2 || ok != 2 {
		t.Errorf("after approve: %d of %d rows approved", ok, n)
	}
	if err := s.SetPassword(ctx, "dup", []byte("$2b$04$abcdefghijklmnopqrstuu5555555555555555555555555555555")); err != nil {
		t.Fatal(err)
	}
	var blobs int
	if err := db.QueryRow(`SELECT count(*) FROM users_info WHERE username = 'dup' AND typeof(password) = 'blob'`).Scan(&blobs); err != nil || blobs != 2 {
		t.Errorf("passwords stored as BLOB: %d of 2 (%v)", blobs, err)
	}
	n, err := s.Delete(ctx, "dup")
	if err != nil || n != 2 {
		t.Errorf("delete dup: %d rows, %v", n, err)
	}
}

func TestStoreSetPassword(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path, db := tempDB(t)
	signUp(t, db, "carol", "", true)
	s, err := OpenStore(ctx, path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h, err := HashPassword([]byte("new secret"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword(ctx, "carol", h); err != nil {
		t.Fatal(err)
	}
	var typ string
	var stored []byte
	if err := db.QueryRow(`SELECT typeof(password), password FROM users_info WHERE username = 'carol'`).Scan(&typ, &stored); err != nil {
		t.Fatal(err)
	}
	if typ != "blob" || bcrypt.CompareHashAndPassword(stored, []byte("new secret")) != nil {
		t.Errorf("stored %s %q: want a blob holding the hash", typ, stored)
	}
	err = s.SetPassword(ctx, "carl", h)
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(exitcode.Hint(err), "carol") {
		t.Errorf("unknown user: %v (hint %q)", err, exitcode.Hint(err))
	}
}

func TestOpenStoreErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sqlite")
	_, err := OpenStore(ctx, missing, 0)
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "does not exist") || exitcode.Hint(err) == "" {
		t.Errorf("missing file: %v", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Error("OpenStore created the missing database")
	}

	empty := filepath.Join(dir, "empty.sqlite")
	if _, err := rawDB(t, empty).Exec(`CREATE TABLE users (id INTEGER)`); err != nil {
		t.Fatal(err)
	}
	_, err = OpenStore(ctx, empty, 0)
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "no users_info table") {
		t.Errorf("no table: %v", err)
	}

	junk := filepath.Join(dir, "junk.sqlite")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not a database ", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = OpenStore(ctx, junk, 0)
	if err == nil || !strings.Contains(err.Error(), "not a usable SQLite database") {
		t.Errorf("junk file: %v", err)
	}

	_, err = OpenStore(ctx, dir, 0)
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("folder: %v", err)
	}
}

// holdLock holds an exclusive transaction on the database at path until
// the returned function is called.
func holdLock(t testing.TB, path string) (release func()) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_txlock=exclusive")
	if err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		tx.Rollback()
		db.Close()
	}
}

func TestStoreLocked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path, db := tempDB(t)
	signUp(t, db, "dave", "", false)
	s, err := OpenStore(ctx, path, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	release := holdLock(t, path)
	start := time.Now()
	_, err = s.SetApproved(ctx, []string{"dave"}, true)
	release()
	if err == nil {
		t.Fatal("approve succeeded on a locked database")
	}
	if !strings.Contains(err.Error(), "is locked") || exitcode.Code(err) != exitcode.Failure || !strings.Contains(exitcode.Hint(err), "nothing was changed") {
		t.Errorf("locked: %v (hint %q)", err, exitcode.Hint(err))
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 5*time.Second {
		t.Errorf("waited %s, want about the busy timeout", d)
	}
	if _, ok := approvedRows(t, db, "dave"); ok != 0 {
		t.Error("dave was approved")
	}
	// Released: the same store works again.
	if _, err := s.SetApproved(ctx, []string{"dave"}, true); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

type fakeVolumes map[string]string

func (f fakeVolumes) Mountpoint(_ context.Context, v string) (string, error) {
	if mp, ok := f[v]; ok {
		return mp, nil
	}
	return "", exitcode.Usagef("check hub.db_volume", "hub database volume %q does not exist", v)
}

func TestDBPath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	vols := fakeVolumes{"jupyterhub-data": "/var/lib/docker/volumes/jupyterhub-data/_data"}
	for _, tc := range []struct {
		name string
		hub  config.Hub
		want string
		err  string
	}{
		{"path wins", config.Hub{DBPath: "/srv/hub.sqlite", DBVolume: "jupyterhub-data", DBFile: "x"}, "/srv/hub.sqlite", ""},
		{"volume", config.Hub{DBVolume: "jupyterhub-data", DBFile: "jupyterhub.sqlite"}, "/var/lib/docker/volumes/jupyterhub-data/_data/jupyterhub.sqlite", ""},
		{"volume subdir", config.Hub{DBVolume: "jupyterhub-data", DBFile: "/db/jupyterhub.sqlite"}, "/var/lib/docker/volumes/jupyterhub-data/_data/db/jupyterhub.sqlite", ""},
		{"escape", config.Hub{DBVolume: "jupyterhub-data", DBFile: "../x.sqlite"}, "", "invalid hub.db_file"},
		{"unknown volume", config.Hub{DBVolume: "nope", DBFile: "jupyterhub.sqlite"}, "", `volume "nope" does not exist`},
		{"nothing", config.Hub{}, "", "names no hub database"},
	} {
		got, err := DBPath(ctx, tc.hub, vols)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: got %q, %v; want error %q", tc.name, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

// TestHubClientErrors checks how API answers map to errors, with a fake
// server for what the real hub cannot be made to do.
func TestHubClientErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Authorization") != "token good":
			w.WriteHeader(403)
			w.Write([]byte(`{"status": 403, "message": "Action is not authorized"}`))
		case strings.HasPrefix(r.URL.Path, "/hub/api/users/ghost"):
			w.WriteHeader(404)
			w.Write([]byte(`{"status": 404, "message": "Not Found"}`))
		case r.URL.Path == "/hub/api/users":
			// Two pages, the way JupyterHub paginates.
			if r.URL.Query().Get("offset") == "0" {
				w.Write([]byte(`{"items": [{"name": "a", "admin": true, "server": "/user/a/", "last_activity": "2024-05-01T10:00:00.123456Z"}], "_pagination": {"offset": 0, "limit": 1, "total": 2, "next": {"offset": 1, "limit": 1}}}`))
				return
			}
			w.Write([]byte(`{"items": [{"name": "b", "admin": false, "server": null, "last_activity": null}], "_pagination": {"offset": 1, "limit": 1, "total": 2, "next": null}}`))
		case r.URL.Path == "/hub/api/users/boom":
			w.WriteHeader(500)
			w.Write([]byte(`{"status": 500, "message": "Unhandled error"}`))
		default:
			w.WriteHeader(404)
			w.Write([]byte(`<html>404: Not Found</html>`))
		}
	}))
	defer srv.Close()

	h, _ := NewHub(srv.URL+"/hub/api/", "good", nil)
	us, err := h.Users(ctx)
	if err != nil || len(us) != 2 || us[0].Name != "a" || !us[0].Admin || !us[0].Running() || us[1].Running() || us[1].LastActivity != nil {
		t.Fatalf("Users: %+v, %v", us, err)
	}
	if want := time.Date(2024, 5, 1, 10, 0, 0, 123456000, time.UTC); !us[0].LastActivity.Equal(want) {
		t.Errorf("last activity %v", us[0].LastActivity)
	}
	if _, err := h.User(ctx, "ghost"); !errors.Is(err, ErrNoHubUser) {
		t.Errorf("ghost: %v", err)
	}
	if _, err := h.User(ctx, "boom"); err == nil || exitcode.Code(err) != exitcode.Failure || !strings.Contains(err.Error(), "HTTP 500: Unhandled error") {
		t.Errorf("boom: %v", err)
	}

	bad, _ := NewHub(srv.URL+"/hub/api", "wrong", nil)
	_, err = bad.User(ctx, "a")
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "refused the token") || !strings.Contains(exitcode.Hint(err), "hub.token_file") {
		t.Errorf("wrong token: %v (hint %q)", err, exitcode.Hint(err))
	}

	// A wrong api_url gets a non-API 404: that is not "no such user".
	wrong, _ := NewHub(srv.URL+"/elsewhere", "good", nil)
	_, err = wrong.User(ctx, "a")
	if errors.Is(err, ErrNoHubUser) || exitcode.Code(err) != exitcode.Usage || !strings.Contains(exitcode.Hint(err), "hub.api_url") {
		t.Errorf("wrong URL: %v", err)
	}

	if _, err := NewHub("ftp://x", "t", nil); exitcode.Code(err) != exitcode.Usage {
		t.Errorf("bad URL: %v", err)
	}
	if _, err := NewHub("http://x", "", nil); exitcode.Code(err) != exitcode.Usage {
		t.Errorf("empty token: %v", err)
	}
}

func TestReadToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "tok")
	if err := os.WriteFile(p, []byte("  abc123 \nrest\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := ReadToken(p); err != nil || tok != "abc123" {
		t.Errorf("ReadToken = %q, %v", tok, err)
	}
	if err := os.WriteFile(p, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadToken(p); exitcode.Code(err) != exitcode.Usage {
		t.Errorf("empty token file: %v", err)
	}
	if _, err := ReadToken(""); exitcode.Code(err) != exitcode.Usage || !strings.Contains(exitcode.Hint(err), "hub.token_file") {
		t.Errorf("unset: %v", err)
	}
}
