package users

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/exitcode"
)

func TestMongoName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 58)
	for _, c := range []struct{ name, want string }{
		{"maria", "user_maria"},
		{"ivan.petrov", "user_ivan-2epetrov"},
		{"bob-smith", "user_bob-2dsmith"},
		{"Maria", "user_-4daria"},
		{"a/b\\c d\"e$f", "user_a-2fb-5cc-20d-22e-24f"},
		{"0@lab", "user_0-40lab"},
		{"ü", "user_-c3-bc"},
		{long, "user_" + long}, // 63 bytes: MongoDB's limit, kept whole
	} {
		if got := MongoName(c.name); got != c.want {
			t.Errorf("MongoName(%q) = %q, want %q", c.name, got, c.want)
		}
	}
	// Longer: cut short with a hash, still distinct, still a valid name.
	a, b := MongoName(long+"a"), MongoName(long+"b")
	if a == b || len(a) > 63 || len(b) > 63 || !strings.HasPrefix(a, "user_"+long[:40]+"_") {
		t.Errorf("long names: %q %q", a, b)
	}
	if MongoName(long+"a") != a {
		t.Error("MongoName is not deterministic")
	}
	for _, n := range []string{"x", "Ab.C", strings.Repeat("é", 40), "a b/c.d$e\x00f"} {
		if m := MongoName(n); strings.ContainsAny(m, "/\\. \"$*<>:|?\x00") || len(m) > 63 || !strings.HasPrefix(m, MongoPrefix) {
			t.Errorf("MongoName(%q) = %q: not a valid MongoDB database name", n, m)
		}
	}
}

// fakeMongo keeps MongoDB users the way the admin database does and
// records every command it is sent.
type fakeMongo struct {
	users    map[string]bson.D // name -> {pwd, roles}
	dbs      []string          // databases that exist
	marks    map[string]bson.D // database -> the deleted user's mark in it
	commands []string
	missing  string // a command the server does not know
}

func newFakeMongo() *fakeMongo {
	return &fakeMongo{users: map[string]bson.D{}, marks: map[string]bson.D{}}
}

func (f *fakeMongo) RunCommand(_ context.Context, db string, cmd bson.D) (bson.Raw, error) {
	name := cmd[0].Key
	f.commands = append(f.commands, db+"."+name)
	if name == f.missing {
		return nil, mongo.CommandError{Code: 59, Name: "CommandNotFound", Message: "no such command: '" + name + "'"}
	}
	get := func(k string) any {
		for _, e := range cmd {
			if e.Key == k {
				return e.Value
			}
		}
		return nil
	}
	ok := bson.D{{Key: "ok", Value: 1.0}}
	if db != "admin" {
		// In a user's database: only the deleted user's mark.
		if coll, _ := cmd[0].Value.(string); coll != MongoDeletedCollection {
			return nil, mongo.CommandError{Code: 13, Message: "users live in admin; the only collection here is the mark"}
		}
		switch name {
		case "update":
			u := get("updates").(bson.A)[0].(bson.D)
			if !slices.Contains(f.dbs, db) {
				f.dbs = append(f.dbs, db) // a write creates the database
			}
			f.marks[db] = u[1].Value.(bson.D)
			return bson.Marshal(bson.D{{Key: "n", Value: 1}, {Key: "nModified", Value: 0}, {Key: "ok", Value: 1.0}})
		case "find":
			var batch bson.A
			if m, ok := f.marks[db]; ok {
				batch = append(batch, append(bson.D{{Key: "_id", Value: MongoDeletedID}}, m...))
			}
			return bson.Marshal(bson.D{{Key: "cursor", Value: bson.D{{Key: "firstBatch", Value: batch}, {Key: "id", Value: int64(0)}}}, {Key: "ok", Value: 1.0}})
		case "drop":
			if _, ok := f.marks[db]; !ok {
				return nil, mongo.CommandError{Code: 26, Name: "NamespaceNotFound", Message: "ns not found"}
			}
			delete(f.marks, db)
			return bson.Marshal(ok)
		}
		return nil, mongo.CommandError{Code: 59, Message: "no such command"}
	}
	switch name {
	case "usersInfo":
		q := get("usersInfo").(bson.D)
		var users bson.A
		if u, ok := f.users[q[0].Value.(string)]; ok {
			users = append(users, bson.D{{Key: "user", Value: q[0].Value}, {Key: "db", Value: "admin"}, u[1]})
		}
		return bson.Marshal(bson.D{{Key: "users", Value: users}, {Key: "ok", Value: 1.0}})
	case "createUser":
		u := get("createUser").(string)
		if _, ok := f.users[u]; ok {
			return nil, mongo.CommandError{Code: 51, Message: "User already exists"}
		}
		f.users[u] = bson.D{{Key: "pwd", Value: get("pwd")}, {Key: "roles", Value: get("roles")}}
	case "updateUser":
		u := get("updateUser").(string)
		cur, ok := f.users[u]
		if !ok {
			return nil, mongo.CommandError{Code: 11, Message: "User not found"}
		}
		if pw := get("pwd"); pw != nil {
			cur[0].Value = pw
		}
		if r := get("roles"); r != nil {
			cur[1].Value = r
		}
	case "listDatabases":
		var dbs bson.A
		name := get("filter").(bson.D)[0].Value
		for _, d := range f.dbs {
			if d == name {
				dbs = append(dbs, bson.D{{Key: "name", Value: d}})
			}
		}
		return bson.Marshal(bson.D{{Key: "databases", Value: dbs}, {Key: "ok", Value: 1.0}})
	case "dropUser":
		u := get("dropUser").(string)
		if _, ok := f.users[u]; !ok {
			return nil, mongo.CommandError{Code: 11, Message: "User not found"}
		}
		delete(f.users, u)
	default:
		return nil, mongo.CommandError{Code: 59, Message: "no such command"}
	}
	return bson.Marshal(ok)
}

func (f *fakeMongo) take() string {
	s := strings.Join(f.commands, " ")
	f.commands = nil
	return s
}

// uriPassword reads the password from a URI file, checking its form.
func uriPassword(t *testing.T, file, db string) string {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %04o, want 0600", file, fi.Mode().Perm())
	}
	b, _ := os.ReadFile(file)
	u, err := url.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	if u.Scheme != "mongodb" || u.Host != "mongodb:27017" || u.Path != "/"+db || u.User.Username() != db ||
		u.Query().Get("authSource") != "admin" || len(pw) != 48 {
		t.Errorf("URI file %s: %s", file, b)
	}
	return pw
}

func TestMongoAccountLifeCycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newFakeMongo()
	dir := filepath.Join(t.TempDir(), "secrets", MongoUsersDir)
	acc := &MongoAccounts{Server: srv, Dir: dir}
	const db = "user_ivan-2epetrov"
	file := filepath.Join(dir, db)
	wantRoles := bson.A{bson.D{{Key: "role", Value: "readWrite"}, {Key: "db", Value: db}}}
	pwOf := func() any { return srv.users[db][0].Value }

	steps := []struct {
		name     string
		before   func()
		action   string
		dbKept   bool
		commands string
	}{
		{"new user", nil, MongoCreated, false, "admin.usersInfo admin.listDatabases admin.createUser"},
		// Both exist: the password and roles are set again from the
		// file (MongoDB cannot show a password to compare).
		{"second approve", nil, MongoKept, false, "admin.usersInfo admin.updateUser"},
		{"URI file lost", func() { os.Remove(file) }, MongoPasswordSet, false, "admin.usersInfo admin.updateUser"},
		{"server without the user (restored from a snapshot)", func() {
			delete(srv.users, db)
			srv.dbs = []string{db}
		}, MongoCreated, true, "admin.usersInfo admin.listDatabases " + db + ".find admin.createUser"},
		{"roles changed by hand", func() {
			srv.users[db][1].Value = bson.A{bson.D{{Key: "role", Value: "readWriteAnyDatabase"}, {Key: "db", Value: "admin"}}}
		}, MongoRolesFixed, false, "admin.usersInfo admin.updateUser"},
		{"unchanged", nil, MongoKept, false, "admin.usersInfo admin.updateUser"},
	}
	var lastPW string
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		fileBefore, _ := os.ReadFile(file)
		res, err := acc.Ensure(ctx, "ivan.petrov", EnsureOptions{})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if res.Action != s.action || res.Database != db || res.URIFile != file || res.DatabaseKept != s.dbKept {
			t.Errorf("%s: %+v, want action %s", s.name, res, s.action)
		}
		if got := srv.take(); got != s.commands {
			t.Errorf("%s: commands %q, want %q", s.name, got, s.commands)
		}
		pw := uriPassword(t, file, db)
		if pwOf() != pw {
			t.Errorf("%s: the server's password is not the URI file's", s.name)
		}
		if got, _ := bson.Marshal(bson.D{{Key: "r", Value: srv.users[db][1].Value}}); string(got) != string(must(bson.Marshal(bson.D{{Key: "r", Value: wantRoles}}))) {
			t.Errorf("%s: roles %v, want readWrite on %s only", s.name, srv.users[db][1].Value, db)
		}
		switch s.action {
		case MongoPasswordSet:
			if pw == lastPW {
				t.Errorf("%s: the lost password was reused", s.name)
			}
		default:
			if lastPW != "" && pw != lastPW {
				t.Errorf("%s: the password changed", s.name)
			}
			if len(fileBefore) > 0 && string(fileBefore) != string(must(os.ReadFile(file))) {
				t.Errorf("%s: the URI file was rewritten", s.name)
			}
		}
		lastPW = pw
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("URI folder: %v %v", fi.Mode(), err)
	}

	// Remove drops the MongoDB user and the URI file, never the database.
	srv.dbs = []string{"user_ivan", db, "user_ivan-2epetrov2"}
	res, err := acc.Remove(ctx, "ivan.petrov")
	if err != nil || res.Action != MongoRemoved || !res.DatabaseKept {
		t.Fatalf("remove: %+v %v", res, err)
	}
	if got := srv.take(); got != "admin.dropUser admin.listDatabases "+db+".update" {
		t.Errorf("remove: commands %q (the database must stay, marked)", got)
	}
	if m := srv.marks[db]; len(m) != 2 || m[0].Value != "ivan.petrov" || time.Since(m[1].Value.(time.Time)) > time.Hour {
		t.Errorf("the deleted user's mark: %v", m)
	}
	if len(srv.marks) != 1 {
		t.Errorf("marks in other databases: %v", srv.marks)
	}
	srv.dbs, srv.marks = nil, map[string]bson.D{}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("URI file after remove: %v", err)
	}
	if res, err := acc.Remove(ctx, "ivan.petrov"); err != nil || res.Action != MongoAbsent || res.DatabaseKept {
		t.Errorf("second remove: %+v %v", res, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left in the URI folder: %v", entries)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestMongoAccountServerWithoutUserManagement(t *testing.T) {
	t.Parallel()
	srv := newFakeMongo()
	srv.missing = "createUser"
	acc := &MongoAccounts{Server: srv, Dir: t.TempDir()}
	_, err := acc.Ensure(context.Background(), "maria", EnsureOptions{})
	if err == nil || !strings.Contains(err.Error(), "create MongoDB user user_maria: the server has no createUser command") {
		t.Fatalf("err = %v", err)
	}
	if exitcode.Code(err) != exitcode.Failure || exitcode.Hint(err) == "" {
		t.Errorf("exit code %d, hint %q", exitcode.Code(err), exitcode.Hint(err))
	}
}

// FerretDB v1.24 implements createUser and dropUser only behind a test
// flag, and then only without roles, so the life cycle cannot run against
// it: the fake above plays MongoDB. Against FerretDB this checks that the
// driver's errors reach Ensure with their code, through the redaction,
// and that a deleted user's mark is written, found and removed with the
// commands a real server takes.
func TestMongoAccountFerretDB(t *testing.T) {
	uri, db := testenv.RequireMongo(t)
	srv, err := DialMongo(uri)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	acc := &MongoAccounts{Server: srv, Dir: t.TempDir()}
	_, err = acc.Ensure(context.Background(), "maria", EnsureOptions{})
	if err == nil || !strings.Contains(err.Error(), "the server has no usersInfo command") || exitcode.Hint(err) == "" {
		t.Fatalf("err = %v", err)
	}

	// The mark, in the test's own database standing in for a user's.
	ctx := context.Background()
	at := time.Date(2026, 11, 1, 12, 30, 0, 0, time.UTC)
	if m, err := acc.deletedMark(ctx, db); err != nil || m != nil {
		t.Fatalf("mark before any delete: %+v %v", m, err)
	}
	for range 2 { // a second delete writes it again
		if err := acc.markDeleted(ctx, db, "maria", at); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := acc.databaseExists(ctx, db); err != nil || !ok {
		t.Errorf("databaseExists(%s) = %v, %v", db, ok, err)
	}
	if ok, err := acc.databaseExists(ctx, db+"x"); err != nil || ok {
		t.Errorf("databaseExists(%sx) = %v, %v", db, ok, err)
	}
	m, err := acc.deletedMark(ctx, db)
	if err != nil || m == nil || m.User != "maria" || !m.DeletedAt.Equal(at) {
		t.Fatalf("mark: %+v %v", m, err)
	}
	for range 2 { // the second finds nothing to drop
		if err := acc.dropMark(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	if m, err := acc.deletedMark(ctx, db); err != nil || m != nil {
		t.Errorf("mark after dropMark: %+v %v", m, err)
	}
}

// TestManagerMongo: approve gives every approved name an account; delete
// drops the MongoDB user first, and a failure there deletes nothing.
func TestManagerMongo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path, db := tempDB(t)
	signUp(t, db, "ann", "", false)
	signUp(t, db, "bob.s", "", false)
	m := hubManager(t, path, noHubUsers)
	srv := newFakeMongo()
	dir := t.TempDir()
	m.SetMongo(&MongoAccounts{Server: srv, Dir: dir})

	changes, accs, err := m.Approve(ctx, []string{"ann", "bob.s", "ann"}, ApproveOptions{})
	if err != nil || len(accs) != 2 || accs[0].Database != "user_ann" || accs[1].Database != "user_bob-2es" || accs[1].Action != MongoCreated {
		t.Fatalf("Approve: %+v %v", accs, err)
	}
	if len(changes) != 2 || !changes[0].Changed || changes[1].After != "approved" {
		t.Errorf("Approve: changes %+v", changes)
	}
	if len(srv.users) != 2 {
		t.Errorf("MongoDB users: %v", srv.users)
	}

	srv.missing = "dropUser"
	_, err = m.Delete(ctx, "ann")
	if err == nil || !strings.Contains(err.Error(), "nothing was deleted") || exitcode.Hint(err) == "" {
		t.Fatalf("delete with a failing MongoDB: %v", err)
	}
	if n, _ := approvedRows(t, db, "ann"); n != 1 {
		t.Errorf("ann's sign-up was deleted although the MongoDB user was not")
	}
	srv.missing = ""
	res, err := m.Delete(ctx, "ann")
	if err != nil || res.Mongo == nil || res.Mongo.Action != MongoRemoved || res.Rows != 1 {
		t.Fatalf("delete: %+v %v", res, err)
	}
	if _, ok := srv.users["user_ann"]; ok {
		t.Error("ann's MongoDB user is still there")
	}
	if _, err := os.Stat(filepath.Join(dir, "user_ann")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ann's URI file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "user_bob-2es")); err != nil {
		t.Errorf("bob's URI file: %v", err)
	}

	// A failing account is named, with the way to finish.
	srv.missing = "createUser"
	signUp(t, db, "cy", "", true)
	_, _, err = m.Approve(ctx, []string{"cy"}, ApproveOptions{})
	if err == nil || !strings.Contains(err.Error(), "MongoDB account of cy") || !strings.Contains(exitcode.Hint(err), "fireops users approve cy") {
		t.Errorf("failing account: %v (hint %q)", err, exitcode.Hint(err))
	}
}
