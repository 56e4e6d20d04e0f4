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
	// existed but its URI file did not), roles fixed, kept (nothing to
	// do), removed or absent (Remove found no MongoDB user).
	Action string `json:"action"`
	// DatabaseKept says Remove left the user's database, which exists
	// (MongoDB creates it at the first write).
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

// MongoDB's error codes that Ensure and Remove act on.
const (
	codeUserNotFound    = 11
	codeCommandNotFound = 59
)

// roles is what a user's MongoDB user may do: read and write their own
// database, nothing else.
func mongoRoles(db string) bson.A {
	return bson.A{bson.D{{Key: "role", Value: "readWrite"}, {Key: "db", Value: db}}}
}

// Ensure makes sure name has a MongoDB user with readWrite on their own
// database and a URI file that holds its password. It is idempotent: a
// second run keeps everything. The URI file is written before the MongoDB
// user is created or its password set, so a password never exists only in
// MongoDB; when the MongoDB user is missing (a new server, a server
// restored from a snapshot, which holds no users) it is created again with
// the password of the file. MongoDB creates the database itself at the
// user's first write.
func (a *MongoAccounts) Ensure(ctx context.Context, name string) (*MongoAccount, error) {
	db := MongoName(name)
	res := &MongoAccount{Name: name, Database: db, URIFile: filepath.Join(a.Dir, db)}
	pw, err := a.readPassword(res.URIFile)
	if err != nil {
		return nil, err
	}
	roles, exists, err := a.userRoles(ctx, db)
	if err != nil {
		return nil, err
	}
	switch {
	case exists && pw != "":
		if sameRoles(roles, db) {
			res.Action = MongoKept
			return res, nil
		}
		if _, err := a.run(ctx, "set the roles of MongoDB user "+db, bson.D{
			{Key: "updateUser", Value: db}, {Key: "roles", Value: mongoRoles(db)},
		}); err != nil {
			return nil, err
		}
		res.Action = MongoRolesFixed
		return res, nil
	case exists:
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
	res.Action = MongoCreated
	return res, nil
}

// Remove drops name's MongoDB user and removes their URI file. Their
// database stays (docs/users.md says how to archive and drop it).
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
	raw, err := a.run(ctx, "look up database "+db, bson.D{
		{Key: "listDatabases", Value: 1}, {Key: "nameOnly", Value: true},
		{Key: "filter", Value: bson.D{{Key: "name", Value: db}}},
	})
	if err != nil {
		return nil, err
	}
	var list struct {
		Databases []struct {
			Name string `bson:"name"`
		} `bson:"databases"`
	}
	if err := bson.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("look up database %s: %w", db, err)
	}
	res.DatabaseKept = len(list.Databases) > 0
	return res, nil
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

// run runs cmd in the admin database; a server without the command
// (FerretDB without its user management) is a clear error.
func (a *MongoAccounts) run(ctx context.Context, what string, cmd bson.D) (bson.Raw, error) {
	raw, err := a.Server.RunCommand(ctx, "admin", cmd)
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
	tmp, err := os.CreateTemp(a.Dir, "."+db+".tmp*")
	if err != nil {
		return fmt.Errorf("write the MongoDB URI file of %s: %w", db, err)
	}
	name := tmp.Name()
	defer os.Remove(name)
	_, err = tmp.WriteString(a.URI(db, pw) + "\n")
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, file)
	}
	if err != nil {
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

// StackMongo returns the MongoAccounts of the stack that `fireops deploy`
// runs in cfg.Stack.Dir, connected as root through MongoAdminURIFile, and
// a function that disconnects. When no stack is deployed there (no
// compose.yaml: a config that administers a hub fireops did not deploy)
// it returns nil: that hub's users get no MongoDB accounts.
func StackMongo(cfg *config.Config) (*MongoAccounts, func(), error) {
	dir := cfg.Stack.Dir
	if dir == "" {
		return nil, func() {}, nil
	}
	if _, err := os.Stat(filepath.Join(dir, "compose.yaml")); err != nil {
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
