package users

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/firetech/fireops/pkg/exitcode"
)

// TestReapproveInheritsDatabase: a deleted user's database stays, marked;
// a new user of the same name does not get it unless the admin says so
// (--reuse-database), however they were approved.
func TestReapproveInheritsDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newFakeMongo()
	dir := filepath.Join(t.TempDir(), MongoUsersDir)
	acc := &MongoAccounts{Server: srv, Dir: dir, AdminURIFile: "/opt/firetech/secrets/mongo-uri"}
	if _, err := acc.Ensure(ctx, "maria", EnsureOptions{NewApproval: true}); err != nil {
		t.Fatal(err)
	}
	srv.dbs = []string{"user_maria"} // she wrote to it
	if res, err := acc.Remove(ctx, "maria"); err != nil || !res.DatabaseKept {
		t.Fatalf("%+v %v", res, err)
	}

	// A new maria signs up. Approved by `users approve` (a new approval),
	// or on the hub's page or with open_signup (approved already): both
	// refused, nothing changed.
	for _, opts := range []EnsureOptions{{NewApproval: true}, {}} {
		srv.take()
		res, err := acc.Ensure(ctx, "maria", opts)
		if err == nil {
			t.Fatalf("approve of a new maria (%+v): %q, readWrite on the deleted maria's database", opts, res.Action)
		}
		var inh *InheritedDatabaseError
		if exitcode.Code(err) != exitcode.Usage || !errors.As(err, &inh) || inh.Database != "user_maria" ||
			!strings.Contains(err.Error(), `MongoDB database user_maria exists without its MongoDB user: it holds the data of a user "maria" deleted on `) {
			t.Errorf("refusal (%+v): %v (code %d)", opts, err, exitcode.Code(err))
		}
		hint := exitcode.Hint(err)
		for _, want := range []string{"nothing was changed", "--reuse-database", "fireops snapshot --only mongo", `"$(cat /opt/firetech/secrets/mongo-uri)"`, `db.getSiblingDB("user_maria").dropDatabase()`} {
			if !strings.Contains(hint, want) {
				t.Errorf("hint %q: want %q", hint, want)
			}
		}
		if got := srv.take(); got != "admin.usersInfo admin.listDatabases user_maria.find" {
			t.Errorf("commands %q: only look-ups", got)
		}
		if _, err := os.Stat(filepath.Join(dir, "user_maria")); !errors.Is(err, os.ErrNotExist) || len(srv.users) != 0 {
			t.Errorf("refused, yet URI file %v, MongoDB users %v", err, srv.users)
		}
		if err := acc.Check(ctx, "maria", opts); exitcode.Code(err) != exitcode.Usage {
			t.Errorf("Check: %v", err)
		}
	}

	// The admin says it is hers: created on the database, the mark goes.
	srv.take()
	res, err := acc.Ensure(ctx, "maria", EnsureOptions{NewApproval: true, ReuseDatabase: true})
	if err != nil || res.Action != MongoCreated || !res.DatabaseKept {
		t.Fatalf("--reuse-database: %+v %v", res, err)
	}
	if got := srv.take(); got != "admin.usersInfo admin.listDatabases user_maria.find admin.createUser user_maria.drop" {
		t.Errorf("--reuse-database: commands %q", got)
	}
	if len(srv.marks) != 0 {
		t.Errorf("the mark stayed: %v", srv.marks)
	}
	if pw := uriPassword(t, filepath.Join(dir, "user_maria"), "user_maria"); srv.users["user_maria"][0].Value != pw {
		t.Error("the new MongoDB user's password is not the URI file's")
	}
	if res, err := acc.Ensure(ctx, "maria", EnsureOptions{NewApproval: true}); err != nil || res.Action != MongoKept {
		t.Errorf("approve again: %+v %v", res, err)
	}
}

// TestEnsureDatabaseWithoutUser: which database without its MongoDB user
// Ensure gives to the user and which it refuses.
func TestEnsureDatabaseWithoutUser(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		opts    EnsureOptions
		uriFile bool // a URI file of the user is there
		marked  bool // a delete marked the database
		refused bool
	}{
		// A server rebuilt from snapshots: the hub knows them as approved.
		{name: "restored, approved", opts: EnsureOptions{}, refused: false},
		{name: "restored, approved, URI file restored", opts: EnsureOptions{}, uriFile: true, refused: false},
		// Deleted by a fireops without the mark, a new sign-up approved.
		{name: "new approval, no URI file", opts: EnsureOptions{NewApproval: true}, refused: true},
		// A URI file is only ever written for this user; delete removes it.
		{name: "new approval, URI file restored", opts: EnsureOptions{NewApproval: true}, uriFile: true, refused: false},
		{name: "marked, approved", opts: EnsureOptions{}, marked: true, refused: true},
		{name: "marked, URI file", opts: EnsureOptions{}, marked: true, uriFile: true, refused: true},
		{name: "new approval, reuse", opts: EnsureOptions{NewApproval: true, ReuseDatabase: true}, refused: false},
		{name: "marked, reuse", opts: EnsureOptions{ReuseDatabase: true}, marked: true, refused: false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			srv := newFakeMongo()
			dir := t.TempDir()
			acc := &MongoAccounts{Server: srv, Dir: dir}
			if c.uriFile {
				if err := acc.writeURI(filepath.Join(dir, "user_ann"), "user_ann", strings.Repeat("ab", 24)); err != nil {
					t.Fatal(err)
				}
			}
			srv.dbs = []string{"user_ann"}
			if c.marked {
				if _, err := acc.Remove(ctx, "ann"); err != nil {
					t.Fatal(err)
				}
				if c.uriFile {
					acc.writeURI(filepath.Join(dir, "user_ann"), "user_ann", strings.Repeat("ab", 24))
				}
			}
			res, err := acc.Ensure(ctx, "ann", c.opts)
			if c.refused {
				if exitcode.Code(err) != exitcode.Usage || len(srv.users) != 0 {
					t.Errorf("want a refusal: %+v %v, users %v", res, err, srv.users)
				}
				return
			}
			if err != nil || res.Action != MongoCreated || !res.DatabaseKept || len(srv.users) != 1 {
				t.Errorf("want created on the existing database: %+v %v", res, err)
			}
			if c.uriFile && srv.users["user_ann"][0].Value != strings.Repeat("ab", 24) {
				t.Error("the URI file's password was not used")
			}
		})
	}
}

// TestEnsureFixesWrongPassword: when both exist, approve sets the MongoDB
// user's password to the URI file's (a password changed by hand cannot be
// read back to compare).
func TestEnsureFixesWrongPassword(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newFakeMongo()
	dir := filepath.Join(t.TempDir(), MongoUsersDir)
	acc := &MongoAccounts{Server: srv, Dir: dir}
	if _, err := acc.Ensure(ctx, "maria", EnsureOptions{}); err != nil {
		t.Fatal(err)
	}
	srv.users["user_maria"][0].Value = "some-other-password"
	res, err := acc.Ensure(ctx, "maria", EnsureOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pw := uriPassword(t, filepath.Join(dir, "user_maria"), "user_maria"); srv.users["user_maria"][0].Value != pw {
		t.Errorf("Ensure: %s, but MongoDB's password is not the URI file's", res.Action)
	}
}

// TestApproveRefusesDeletedUsersDatabase: the whole approve, through the
// hub database: a new sign-up under a deleted user's name is neither
// approved nor given the database until the admin decides; a user the hub
// knows as approved (a server rebuilt from snapshots) gets theirs back.
func TestApproveRefusesDeletedUsersDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path, db := tempDB(t)
	m := hubManager(t, path, noHubUsers)
	srv := newFakeMongo()
	dir := t.TempDir()
	m.SetMongo(&MongoAccounts{Server: srv, Dir: dir, AdminURIFile: "/opt/firetech/secrets/mongo-uri"})

	signUp(t, db, "maria", "", false)
	signUp(t, db, "olga", "", false)
	if _, _, err := m.Approve(ctx, []string{"maria", "olga"}, ApproveOptions{}); err != nil {
		t.Fatal(err)
	}
	srv.dbs = []string{"user_maria", "user_olga"}
	for _, n := range []string{"maria", "olga"} {
		if res, err := m.Delete(ctx, n); err != nil || !res.Mongo.DatabaseKept {
			t.Fatalf("delete %s: %+v %v", n, res, err)
		}
	}

	// New people sign up under both names.
	signUp(t, db, "maria", "", false)
	signUp(t, db, "olga", "", false)
	_, _, err := m.Approve(ctx, []string{"maria"}, ApproveOptions{})
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "user_maria") || !strings.Contains(exitcode.Hint(err), "--reuse-database") {
		t.Fatalf("approve of a new maria: %v (hint %q)", err, exitcode.Hint(err))
	}
	_, _, err = m.Approve(ctx, []string{"maria", "olga"}, ApproveOptions{})
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "maria (user_maria), olga (user_olga)") {
		t.Fatalf("approve of both: %v", err)
	}
	for _, n := range []string{"maria", "olga"} {
		if _, approved := approvedRows(t, db, n); approved != 0 {
			t.Errorf("%s was approved although approve refused", n)
		}
	}
	if len(srv.users) != 0 {
		t.Errorf("MongoDB users after the refusal: %v", srv.users)
	}

	// An unknown name is still the first thing said.
	if _, _, err := m.Approve(ctx, []string{"maria", "nobody"}, ApproveOptions{}); !strings.Contains(err.Error(), `no user "nobody"`) {
		t.Errorf("unknown name: %v", err)
	}

	// maria approved on the hub's page first: still refused (the mark).
	if _, err := m.SetApproved(ctx, []string{"maria"}, true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Approve(ctx, []string{"maria"}, ApproveOptions{}); exitcode.Code(err) != exitcode.Usage {
		t.Errorf("approved on the hub's page, then approve: %v", err)
	}

	// The admin decides it is hers.
	changes, accs, err := m.Approve(ctx, []string{"maria"}, ApproveOptions{ReuseDatabase: true})
	if err != nil || len(accs) != 1 || accs[0].Action != MongoCreated || !accs[0].DatabaseKept || changes[0].Changed {
		t.Fatalf("--reuse-database: %+v %+v %v", changes, accs, err)
	}

	// A new server from snapshots: no MongoDB users, no URI files, the
	// databases restored without marks; the hub knows maria as approved.
	srv.users = map[string]bson.D{}
	os.Remove(filepath.Join(dir, "user_maria"))
	_, accs, err = m.Approve(ctx, []string{"maria"}, ApproveOptions{})
	if err != nil || accs[0].Action != MongoCreated || !accs[0].DatabaseKept {
		t.Fatalf("approve after a restore: %+v %v", accs, err)
	}
}
