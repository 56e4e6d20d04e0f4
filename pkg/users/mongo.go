package users

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/firetech/fireops/internal/atomicfile"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/redact"
	mongosrc "github.com/firetech/fireops/pkg/source/mongo"
)

// Every approved hub user has a MongoDB database of their own and a
// MongoDB user (in the admin database) with readWrite on it and on nothing
// else. The user's URI, with the password, is a file in the stack's
// secrets folder that only root reads; the hub mounts that folder
// read-only and hands the URI to the user's server as MONGODB_URI when it
// spawns it (templates/hub/jupyterhub_config.py.tmpl in pkg/deploy), so
// no user server ever sees the root password.

// MongoPrefix starts the name of every user's database and MongoDB user.
// No service account of the stack (root, fireops-backup,
// mongodb-exporter) starts with it.
const MongoPrefix = "user_"

// MongoUsersDir is the folder of the stack's secrets folder that holds one
// URI file per user, named MongoName(user).
const MongoUsersDir = "mongo-users"

// MongoAdminURIFile is the file in the stack's secrets folder that holds
// the URI of MongoDB's root user on the host (written by `fireops deploy`
// while stack.ports.mongodb is set). fireops users creates and drops the
// users' MongoDB accounts with it.
const MongoAdminURIFile = "mongo-uri"

// MongoUserHost is where user servers reach MongoDB: its service name and
// port on the jupyter network.
const MongoUserHost = "mongodb:27017"

// maxMongoDBName is MongoDB's limit on a database name: fewer than 64
// bytes.
const maxMongoDBName = 63

// MongoName returns the name of the MongoDB database of the hub user name,
// which is also the name of their MongoDB user: MongoPrefix followed by
// EscapeUsername(name) (only [a-z0-9-] remain, so none of the characters
// MongoDB forbids in a database name (/\. "$*<>:|? and NUL) can occur,
// and two names that differ only in case, which MongoDB refuses as two
// databases, give different results). When that is longer than MongoDB's
// 63 bytes, it is MongoPrefix, the first 40 bytes of the escaped name,
// "_" and 16 hex digits of the SHA-256 of name: an escaped name has no
// "_", so a shortened name never equals an unshortened one.
// jupyterhub_config.py computes the same name (a test runs both).
func MongoName(name string) string {
	n := MongoPrefix + EscapeUsername(name)
	if len(n) <= maxMongoDBName {
		return n
	}
	sum := sha256.Sum256([]byte(name))
	return MongoPrefix + EscapeUsername(name)[:40] + "_" + hex.EncodeToString(sum[:8])
}

// MongoCommander runs a database command on a MongoDB server as a user
// that may create and drop users (root).
type MongoCommander interface {
	RunCommand(ctx context.Context, db string, cmd bson.D) (bson.Raw, error)
}

// MongoAccounts creates and removes the users' MongoDB accounts.
type MongoAccounts struct {
	// Server runs the commands (createUser, updateUser, dropUser,
	// usersInfo) in the admin database.
	Server MongoCommander
	// Dir is the folder of the URI files (stack.dir/secrets/mongo-users).
	Dir string
	// Host is host:port in the URIs, as user servers reach MongoDB;
	// empty means MongoUserHost.
	Host string
	// AdminURIFile is the file Server's URI came from, for messages.
	AdminURIFile string
}

// MongoAccount says what Ensure or Remove did with one user's account. It
// never holds the password.
type MongoAccount struct {
	// Name is the hub username.
	Name string `json:"name"`
	// Database is the user's database, also their MongoDB user's name.
	Database string `json:"database"`
	// URIFile is the file with the user's URI.
	URIFile string `json:"uri_file"`
	// Action is what changed: created, password set (the MongoDB user
	// existed but its URI file did not), roles fixed, kept (the password
	// and roles set again from the URI file, which changes nothing unless
	// they were changed by hand), removed or absent (Remove found no
	// MongoDB user).
	Action string `json:"action"`
	// DatabaseKept says the user's database exists (MongoDB creates it at
	// the first write) and was kept: Remove left it, or Ensure created the
	// MongoDB user on it (a restored server, or --reuse-database).
	DatabaseKept bool `json:"database_kept,omitempty"`
}

// The Actions of MongoAccount.
const (
	MongoCreated     = "created"
	MongoPasswordSet = "password set"
	MongoRolesFixed  = "roles fixed"
	MongoKept        = "kept"
	MongoRemoved     = "removed"
	MongoAbsent      = "absent"
)

// MongoDeletedCollection is the collection Remove writes into a deleted
// user's database when it keeps it: one document (MongoDeletedID) with the
// username and the time of the delete. It travels with the database
// (snapshots, restores) and goes with it when it is dropped; Ensure
// refuses to give a database that holds it to a new MongoDB user unless
// told to (approve --reuse-database), which removes it.
const MongoDeletedCollection = "fireops_deleted_user"

// MongoDeletedID is the _id of the document in MongoDeletedCollection.
const MongoDeletedID = "deleted"

// MongoDB's error codes that Ensure and Remove act on.
const (
	codeUserNotFound      = 11
	codeNamespaceNotFound = 26
	codeCommandNotFound   = 59
)

// roles is what a user's MongoDB user may do: read and write their own
// database, nothing else.
func mongoRoles(db string) bson.A {
	return bson.A{bson.D{{Key: "role", Value: "readWrite"}, {Key: "db", Value: db}}}
}

// EnsureOptions say whom a database that exists without its MongoDB user
// belongs to.
type EnsureOptions struct {
	// NewApproval says the user was not approved before this approve (a
	// new sign-up, or one rejected before): a database without its
	// MongoDB user, and no URI file, then holds someone else's data (a
	// user of that name deleted before deletes marked their database).
	NewApproval bool
	// ReuseDatabase gives the user's new MongoDB user such a database all
	// the same, even one a deleted user left (approve --reuse-database);
	// the deleted user's mark goes.
	ReuseDatabase bool
}

// mongoState is what Ensure finds before it changes anything.
type mongoState struct {
	name, db, file string
	// pw is the URI file's password, "" without one.
	pw string
	// roles are the MongoDB user's roles when userExists.
	roles      []bson.Raw
	userExists bool
	// dbExists and deleted are only looked up when the MongoDB user does
	// not exist: deleted is the mark Remove left in the database.
	dbExists bool
	deleted  *deletedMark
}

// deletedMark is the document of MongoDeletedCollection.
type deletedMark struct {
	User      string    `bson:"user"`
	DeletedAt time.Time `bson:"deleted_at"`
}

// state looks at name's account without changing anything.
func (a *MongoAccounts) state(ctx context.Context, name string) (*mongoState, error) {
	st := &mongoState{name: name, db: MongoName(name)}
	st.file = filepath.Join(a.Dir, st.db)
	var err error
	if st.pw, err = a.readPassword(st.file); err != nil {
		return nil, err
	}
	if st.roles, st.userExists, err = a.userRoles(ctx, st.db); err != nil || st.userExists {
		return st, err
	}
	if st.dbExists, err = a.databaseExists(ctx, st.db); err != nil || !st.dbExists {
		return st, err
	}
	st.deleted, err = a.deletedMark(ctx, st.db)
	return st, err
}

// refusal is the error for giving st's database to a new MongoDB user
// against opts, or nil.
func (a *MongoAccounts) refusal(st *mongoState, opts EnsureOptions) error {
	if st.userExists || !st.dbExists || opts.ReuseDatabase {
		return nil
	}
	var whose string
	switch {
	case st.deleted != nil:
		whose = fmt.Sprintf("it holds the data of a user %q deleted on %s", st.deleted.User, st.deleted.DeletedAt.UTC().Format("2006-01-02 15:04 UTC"))
	case opts.NewApproval && st.pw == "":
		whose = fmt.Sprintf("%s was not approved before, so it may hold the data of a deleted user of that name", st.name)
	default:
		return nil
	}
	return exitcode.New(exitcode.Usage, &InheritedDatabaseError{Name: st.name, Database: st.db, msg: fmt.Sprintf(
		"%s: MongoDB database %s exists without its MongoDB user: %s", st.name, st.db, whose)},
		"nothing was changed; if the data is "+st.name+"'s own, add --reuse-database; if not, archive and drop it first: "+
			DropDatabaseCommand(a.AdminURIFile, st.db))
}

// InheritedDatabaseError is Ensure's and Check's refusal to give a user a
// database that exists without its MongoDB user and may be someone else's.
// It comes wrapped in an exit code 2 error with the hint: the admin
// decides, with --reuse-database, or drops the database.
type InheritedDatabaseError struct {
	// Name is the hub username, Database their database.
	Name, Database string
	msg            string
}

// Error returns the one-line reason.
func (e *InheritedDatabaseError) Error() string { return e.msg }

// DropDatabaseCommand is the shell command that archives every database
// (a snapshot of the mongo part) and then drops db, as root through the
// URI in adminURIFile ("" means the stack's secrets/mongo-uri).
func DropDatabaseCommand(adminURIFile, db string) string {
	if adminURIFile == "" {
		adminURIFile = "STACK_DIR/" + config.StackSecretsDir + "/" + MongoAdminURIFile
	}
	return fmt.Sprintf(`fireops snapshot --only mongo && mongosh "$(cat %s)" --quiet --eval 'db.getSiblingDB("%s").dropDatabase()'`, adminURIFile, db)
}

// Check returns Ensure's refusal for name under opts (an
// *InheritedDatabaseError), or nil; it changes nothing. approve checks
// every name before it approves any.
func (a *MongoAccounts) Check(ctx context.Context, name string, opts EnsureOptions) error {
	st, err := a.state(ctx, name)
	if err != nil {
		return err
	}
	return a.refusal(st, opts)
}

// Ensure makes sure name has a MongoDB user with readWrite on their own
// database and a URI file that holds its password. It is idempotent: a
// second run changes nothing. The URI file is written before the MongoDB
// user is created or its password set, so a password never exists only in
// MongoDB; when both exist, the MongoDB user's password and roles are set
// again from the file (MongoDB cannot show a password, so one changed by
// hand could not be noticed otherwise). When the MongoDB user is missing
// (a new server, a server restored from a snapshot, which holds no users)
// it is created again with the password of the file. MongoDB creates the
// database itself at the user's first write.
//
// A database that exists without its MongoDB user is given to the new
// MongoDB user only when it is the same person's: Ensure refuses (an
// *InheritedDatabaseError, nothing changed) when the database holds the
// mark of a deleted user (Remove), or when opts.NewApproval and there is
// no URI file, unless opts.ReuseDatabase.
func (a *MongoAccounts) Ensure(ctx context.Context, name string, opts EnsureOptions) (*MongoAccount, error) {
	st, err := a.state(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := a.refusal(st, opts); err != nil {
		return nil, err
	}
	db, pw := st.db, st.pw
	res := &MongoAccount{Name: name, Database: db, URIFile: st.file}
	switch {
	case st.userExists && pw != "":
		res.Action = MongoKept
		if !sameRoles(st.roles, db) {
			res.Action = MongoRolesFixed
		}
		if _, err := a.run(ctx, "set the password and roles of MongoDB user "+db+" from its URI file", bson.D{
			{Key: "updateUser", Value: db}, {Key: "pwd", Value: pw}, {Key: "roles", Value: mongoRoles(db)},
		}); err != nil {
			return nil, err
		}
		return res, nil
	case st.userExists:
		if pw, err = newMongoPassword(); err != nil {
			return nil, err
		}
		if err := a.writeURI(res.URIFile, db, pw); err != nil {
			return nil, err
		}
		if _, err := a.run(ctx, "set the password of MongoDB user "+db, bson.D{
			{Key: "updateUser", Value: db}, {Key: "pwd", Value: pw}, {Key: "roles", Value: mongoRoles(db)},
		}); err != nil {
			return nil, err
		}
		res.Action = MongoPasswordSet
		return res, nil
	}
	if pw == "" {
		if pw, err = newMongoPassword(); err != nil {
			return nil, err
		}
		if err := a.writeURI(res.URIFile, db, pw); err != nil {
			return nil, err
		}
	}
	if _, err := a.run(ctx, "create MongoDB user "+db, bson.D{
		{Key: "createUser", Value: db}, {Key: "pwd", Value: pw}, {Key: "roles", Value: mongoRoles(db)},
	}); err != nil {
		return nil, err
	}
	res.Action, res.DatabaseKept = MongoCreated, st.dbExists
	if st.deleted != nil {
		// Reused on purpose: the database is the new user's now.
		if err := a.dropMark(ctx, db); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// Remove drops name's MongoDB user and removes their URI file. Their
// database stays (docs/users.md says how to archive and drop it); when it
// exists, Remove marks it as a deleted user's (MongoDeletedCollection), so
// that a later sign-up under the same name does not get it without the
// admin saying so. When the mark cannot be written after the MongoDB user
// was dropped, Remove returns the result with the error: a second Remove
// writes it.
func (a *MongoAccounts) Remove(ctx context.Context, name string) (*MongoAccount, error) {
	db := MongoName(name)
	res := &MongoAccount{Name: name, Database: db, URIFile: filepath.Join(a.Dir, db), Action: MongoRemoved}
	if _, err := a.run(ctx, "drop MongoDB user "+db, bson.D{{Key: "dropUser", Value: db}}); err != nil {
		if !hasCode(err, codeUserNotFound) {
			return nil, err
		}
		res.Action = MongoAbsent
	}
	if err := os.Remove(res.URIFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("remove the MongoDB URI file of %s: %w", name, err)
	}
	kept, err := a.databaseExists(ctx, db)
	if err != nil {
		return res, fmt.Errorf("MongoDB user %s is gone, but %w", db, err)
	}
	res.DatabaseKept = kept
	if !kept {
		return res, nil
	}
	if err := a.markDeleted(ctx, db, name, time.Now()); err != nil {
		return res, fmt.Errorf("MongoDB user %s is gone, but %w", db, err)
	}
	return res, nil
}

// markDeleted writes the deleted user's mark into db (an upsert: a second
// delete writes it again).
func (a *MongoAccounts) markDeleted(ctx context.Context, db, name string, at time.Time) error {
	mark := bson.D{{Key: "user", Value: name}, {Key: "deleted_at", Value: at.UTC()}}
	raw, err := a.RunIn(ctx, db, "mark database "+db+" as a deleted user's", bson.D{
		{Key: "update", Value: MongoDeletedCollection},
		{Key: "updates", Value: bson.A{bson.D{
			{Key: "q", Value: bson.D{{Key: "_id", Value: MongoDeletedID}}},
			{Key: "u", Value: mark},
			{Key: "upsert", Value: true},
		}}},
	})
	if err != nil {
		return err
	}
	if err := writeError(raw); err != nil {
		return fmt.Errorf("mark database %s as a deleted user's: %w", db, err)
	}
	return nil
}

// dropMark removes the deleted user's mark from db, if there is one.
func (a *MongoAccounts) dropMark(ctx context.Context, db string) error {
	_, err := a.RunIn(ctx, db, "remove the deleted user's mark from database "+db,
		bson.D{{Key: "drop", Value: MongoDeletedCollection}})
	if err != nil && !hasCode(err, codeNamespaceNotFound) {
		return err
	}
	return nil
}

// writeError returns the first write error of a write command's reply
// (MongoDB answers ok: 1 with writeErrors when a write failed).
func writeError(raw bson.Raw) error {
	var r struct {
		WriteErrors []struct {
			Code   int    `bson:"code"`
			ErrMsg string `bson:"errmsg"`
		} `bson:"writeErrors"`
	}
	if err := bson.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("read the write's reply: %w", err)
	}
	if len(r.WriteErrors) > 0 {
		return fmt.Errorf("write error %d: %s", r.WriteErrors[0].Code, r.WriteErrors[0].ErrMsg)
	}
	return nil
}

// databaseExists reports whether MongoDB lists db.
func (a *MongoAccounts) databaseExists(ctx context.Context, db string) (bool, error) {
	raw, err := a.run(ctx, "look up database "+db, bson.D{
		{Key: "listDatabases", Value: 1}, {Key: "nameOnly", Value: true},
		{Key: "filter", Value: bson.D{{Key: "name", Value: db}}},
	})
	if err != nil {
		return false, err
	}
	var list struct {
		Databases []struct {
			Name string `bson:"name"`
		} `bson:"databases"`
	}
	if err := bson.Unmarshal(raw, &list); err != nil {
		return false, fmt.Errorf("look up database %s: %w", db, err)
	}
	return len(list.Databases) > 0, nil
}

// deletedMark returns the mark Remove left in db, or nil.
func (a *MongoAccounts) deletedMark(ctx context.Context, db string) (*deletedMark, error) {
	raw, err := a.RunIn(ctx, db, "look for a deleted user's mark in database "+db, bson.D{
		{Key: "find", Value: MongoDeletedCollection},
		{Key: "filter", Value: bson.D{{Key: "_id", Value: MongoDeletedID}}},
		{Key: "limit", Value: 1}, {Key: "singleBatch", Value: true},
	})
	if err != nil {
		return nil, err
	}
	var r struct {
		Cursor struct {
			FirstBatch []deletedMark `bson:"firstBatch"`
		} `bson:"cursor"`
	}
	if err := bson.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("look for a deleted user's mark in database %s: %w", db, err)
	}
	if len(r.Cursor.FirstBatch) == 0 {
		return nil, nil
	}
	return &r.Cursor.FirstBatch[0], nil
}

// userRoles returns the roles of the MongoDB user db in admin, and whether
// it exists.
func (a *MongoAccounts) userRoles(ctx context.Context, db string) ([]bson.Raw, bool, error) {
	raw, err := a.run(ctx, "look up MongoDB user "+db, bson.D{
		{Key: "usersInfo", Value: bson.D{{Key: "user", Value: db}, {Key: "db", Value: "admin"}}},
	})
	if err != nil {
		return nil, false, err
	}
	var res struct {
		Users []struct {
			Roles []bson.Raw `bson:"roles"`
		} `bson:"users"`
	}
	if err := bson.Unmarshal(raw, &res); err != nil {
		return nil, false, fmt.Errorf("look up MongoDB user %s: %w", db, err)
	}
	if len(res.Users) == 0 {
		return nil, false, nil
	}
	return res.Users[0].Roles, true, nil
}

// sameRoles reports whether roles is exactly readWrite on db.
func sameRoles(roles []bson.Raw, db string) bool {
	if len(roles) != 1 {
		return false
	}
	var r struct {
		Role string `bson:"role"`
		DB   string `bson:"db"`
	}
	return bson.Unmarshal(roles[0], &r) == nil && r.Role == "readWrite" && r.DB == db
}

// run runs cmd in the admin database.
func (a *MongoAccounts) run(ctx context.Context, what string, cmd bson.D) (bson.Raw, error) {
	return a.RunIn(ctx, "admin", what, cmd)
}

// RunIn runs cmd in db; what names it in errors. A server without the
// command (FerretDB without its user management) is a clear error.
func (a *MongoAccounts) RunIn(ctx context.Context, db, what string, cmd bson.D) (bson.Raw, error) {
	raw, err := a.Server.RunCommand(ctx, db, cmd)
	if err == nil {
		return raw, nil
	}
	if hasCode(err, codeCommandNotFound) {
		return nil, exitcode.New(exitcode.Failure, fmt.Errorf("%s: the server has no %s command: %w", what, cmd[0].Key, err),
			"the stack's MongoDB manages users; a MongoDB-compatible server without user management cannot give users their own accounts")
	}
	return nil, fmt.Errorf("%s: %w", what, err)
}

// hasCode reports whether err is a server error with code.
func hasCode(err error, code int) bool {
	var se mongo.ServerError
	return errors.As(err, &se) && se.HasErrorCode(code)
}

// readPassword returns the password in a user's URI file, or "" when the
// file does not exist or holds no URI with a password (it is then written
// again).
func (a *MongoAccounts) readPassword(file string) (string, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the MongoDB URI file %s: %w", file, err)
	}
	u, err := url.Parse(strings.TrimSpace(string(b)))
	if err != nil || u.User == nil {
		return "", nil
	}
	pw, _ := u.User.Password()
	return pw, nil
}

// URI returns the URI of db's MongoDB user with password pw, as user
// servers reach MongoDB: its database is the default database of the
// URI (pymongo's get_default_database()).
func (a *MongoAccounts) URI(db, pw string) string {
	host := a.Host
	if host == "" {
		host = MongoUserHost
	}
	u := url.URL{Scheme: "mongodb", User: url.UserPassword(db, pw), Host: host, Path: "/" + db,
		RawQuery: "authSource=admin&directConnection=true"}
	return u.String()
}

// writeURI writes the URI file (0600, in a 0700 folder) atomically.
func (a *MongoAccounts) writeURI(file, db, pw string) error {
	if err := os.MkdirAll(a.Dir, 0o700); err != nil {
		return fmt.Errorf("MongoDB URI files: %w", err)
	}
	if err := atomicfile.WriteFile(file, []byte(a.URI(db, pw)+"\n"), 0o600); err != nil {
		return fmt.Errorf("write the MongoDB URI file of %s: %w", db, err)
	}
	return nil
}

// newMongoPassword returns 24 random bytes in hex: nothing to escape in a
// URI.
func newMongoPassword() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate a MongoDB password: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// MongoServer is a MongoCommander on a MongoDB server reached through a
// URI.
type MongoServer struct {
	c      *mongo.Client
	hidden []string
}

// DialMongo connects to the server of uri (the root URI of
// MongoAdminURIFile). Nothing is sent before the first command; errors
// never quote the URI or its password.
func DialMongo(uri string) (*MongoServer, error) {
	hidden := redact.Values(uri)
	if u, err := url.Parse(uri); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			hidden = append(hidden, pw)
		}
	}
	c, err := mongo.Connect(options.Client().SetAppName("fireops users").
		SetServerSelectionTimeout(10 * time.Second).ApplyURI(uri))
	if err != nil {
		return nil, fmt.Errorf("connect to MongoDB: %w", redact.Error(err, hidden...))
	}
	return &MongoServer{c: c, hidden: hidden}, nil
}

// RunCommand runs cmd in db.
func (s *MongoServer) RunCommand(ctx context.Context, db string, cmd bson.D) (bson.Raw, error) {
	raw, err := s.c.Database(db).RunCommand(ctx, cmd).Raw()
	if err != nil {
		return nil, redact.Error(err, s.hidden...)
	}
	return raw, nil
}

// Close disconnects.
func (s *MongoServer) Close(ctx context.Context) error {
	return s.c.Disconnect(ctx)
}

// stackDeployed reports whether `fireops deploy` runs a stack in
// cfg.Stack.Dir: it holds the stack's compose.yaml.
func stackDeployed(cfg *config.Config) bool {
	if cfg.Stack.Dir == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(cfg.Stack.Dir, "compose.yaml"))
	return err == nil
}

// StackMongo returns the MongoAccounts of the stack that `fireops deploy`
// runs in cfg.Stack.Dir, connected as root through MongoAdminURIFile, and
// a function that disconnects. When no stack is deployed there (no
// compose.yaml: a config that administers a hub fireops did not deploy)
// it returns nil: that hub's users get no MongoDB accounts.
func StackMongo(cfg *config.Config) (*MongoAccounts, func(), error) {
	dir := cfg.Stack.Dir
	if !stackDeployed(cfg) {
		return nil, func() {}, nil
	}
	secrets := filepath.Join(dir, config.StackSecretsDir)
	file := filepath.Join(secrets, MongoAdminURIFile)
	if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, exitcode.Usagef("set stack.ports.mongodb and run `fireops deploy` (it writes "+file+"), or add --no-mongo",
			"the users' MongoDB accounts need MongoDB's root URI, and %s does not exist", file)
	}
	uri, err := mongosrc.ReadURIFile(file)
	if err != nil {
		return nil, nil, err
	}
	srv, err := DialMongo(uri)
	if err != nil {
		return nil, nil, err
	}
	acc := &MongoAccounts{Server: srv, Dir: filepath.Join(secrets, MongoUsersDir), AdminURIFile: file}
	return acc, func() { srv.Close(context.Background()) }, nil
}
