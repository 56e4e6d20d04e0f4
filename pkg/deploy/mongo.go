package deploy

import (
	"encoding/json"
	"fmt"
)

// The stack's MongoDB has one root user (MongoRootUser) and two service
// accounts with least privilege, created in the admin database by the
// mongodb service's healthcheck as soon as the replica set has a primary
// (and again on a new or restored server: a snapshot holds no users). The
// users' own accounts are pkg/users' (`fireops users approve`).
const (
	// MongoBackupUser is fireops' account for snapshots and restores:
	// sources.mongo.uri_file names its URI file (MongoBackupURIFile).
	MongoBackupUser = "fireops-backup"
	// MongoExporterUser is mongodb-exporter's account.
	MongoExporterUser = "mongodb-exporter"
	// MongoRestoreRole is the role that adds to MongoDB's built-in restore
	// role what fireops' restore does beyond mongorestore.
	MongoRestoreRole = "fireopsRestore"
	// MongoBackupURIFile is the secret holding the backup account's URI
	// on the host, written while stack.ports.mongodb is set.
	MongoBackupURIFile = "mongo-backup-uri"
)

// mongoRole is a role granted to a MongoDB user.
type mongoRole struct {
	Role string `json:"role"`
	DB   string `json:"db"`
}

// mongoServiceAccount is a MongoDB user the healthcheck keeps: its roles
// and the Compose secret (mounted into the mongodb service) with its
// password.
type mongoServiceAccount struct {
	User   string      `json:"user"`
	Secret string      `json:"secret"`
	Roles  []mongoRole `json:"roles"`
}

// mongoServiceAccounts are the service accounts, with their roles:
//
//   - fireops-backup: backup (list and read every database, for the dump),
//     restore (create collections and indexes, insert bypassing
//     validation, drop collections) and fireopsRestore;
//   - mongodb-exporter: clusterMonitor and read on local (the oplog), what
//     the exporter documents for its user.
var mongoServiceAccounts = []mongoServiceAccount{
	{User: MongoBackupUser, Secret: "mongo_backup_password", Roles: []mongoRole{
		{"backup", "admin"}, {"restore", "admin"}, {MongoRestoreRole, "admin"},
	}},
	{User: MongoExporterUser, Secret: "mongo_exporter_password", Roles: []mongoRole{
		{"clusterMonitor", "admin"}, {"read", "local"},
	}},
}

// mongoPrivilege is one privilege of a role: actions on a resource.
type mongoPrivilege struct {
	Resource struct {
		DB         string `json:"db"`
		Collection string `json:"collection"`
	} `json:"resource"`
	Actions []string `json:"actions"`
}

// mongoRestoreActions are what fireops' restore and restore-test need that
// the restore role does not give, on every database but admin, local and
// config ({db: "", collection: ""}): renameCollectionSameDB to move a
// staging collection over its target (the restore role has none of the
// rename actions), dropDatabase to drop a restore-test's scratch
// database (fireops-verify-*).
var mongoRestoreActions = []string{"dropDatabase", "renameCollectionSameDB"}

// mongoRestoreRoleDoc is MongoRestoreRole as createRole takes it.
func mongoRestoreRoleDoc() map[string]any {
	var p mongoPrivilege
	p.Actions = mongoRestoreActions
	return map[string]any{"role": MongoRestoreRole, "privileges": []mongoPrivilege{p}, "roles": []mongoRole{}}
}

// mongoHealthScript is the mongosh script of the mongodb service's
// healthcheck. It authenticates as root, initiates the single-node replica
// set once (rs.initiate runs only while rs.status says it is not), and on
// the primary creates what is missing of MongoRestoreRole and the service
// accounts, with the passwords of their secrets; roles that differ from
// these (an older fireops's) are set again. It changes nothing once all
// is in place, and reports healthy only then, so the services that wait
// for a healthy mongodb (mongodb-exporter) find their user.
func mongoHealthScript(replicaSet string) string {
	accounts, err := json.Marshal(mongoServiceAccounts)
	if err != nil {
		panic(err) // static data
	}
	role, err := json.Marshal(mongoRestoreRoleDoc())
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf(`const secret = (name) => require("fs").readFileSync("/run/secrets/" + name, "utf8").trim();
const admin = db.getSiblingDB("admin");
admin.auth(%[1]s, secret("mongo_root_password"));
let primary;
try {
  primary = rs.status().members.some((m) => m.self && m.stateStr === "PRIMARY");
} catch (e) {
  if (e.codeName !== "NotYetInitialized") throw e;
  rs.initiate({_id: %[2]s, members: [{_id: 0, host: "mongodb:27017"}]});
  primary = false;
}
if (primary) {
  const roles = (rs) => JSON.stringify(rs.map((r) => r.db + "." + r.role).sort());
  const privs = (ps) => JSON.stringify(ps.map((p) => [p.resource.db, p.resource.collection, [...p.actions].sort()]));
  const role = %[3]s;
  const have = admin.getRole(role.role, {showPrivileges: true});
  if (!have) {
    admin.createRole(role);
  } else if (privs(have.privileges) !== privs(role.privileges)) {
    admin.updateRole(role.role, {privileges: role.privileges, roles: role.roles});
  }
  for (const a of %[4]s) {
    const u = admin.getUser(a.user);
    if (!u) {
      admin.createUser({user: a.user, pwd: secret(a.secret), roles: a.roles});
    } else if (roles(u.roles) !== roles(a.roles)) {
      admin.updateUser(a.user, {roles: a.roles});
    }
  }
}
quit(primary ? 0 : 1);`, jsonString(MongoRootUser), jsonString(replicaSet), role, accounts)
}
