package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/users"
)

// mongoHarness runs the healthcheck's mongosh script under node against a
// MongoDB played in memory: db.getSiblingDB("admin") with users and roles,
// rs.status/rs.initiate, require("fs") serving /run/secrets, and quit. It
// prints the exit code, the calls that changed something and the state.
const mongoHarness = `
const fs = require("fs");
const script = fs.readFileSync(process.argv[2], "utf8");
const state = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
state.users = state.users || {};
state.roles = state.roles || {};
const calls = [];
const fakeFs = {readFileSync: (p) => {
  const n = p.replace(/^\/run\/secrets\//, "");
  if (!(n in state.secrets)) throw new Error("no secret " + p);
  return state.secrets[n] + "\n";
}};
const admin = {
  auth: (u, p) => { if (u !== "root" || p !== state.secrets.mongo_root_password) throw new Error("authentication failed"); return 1; },
  getRole: (n, o) => {
    const r = state.roles[n];
    if (!r) return null;
    if (!o || !o.showPrivileges) throw new Error("privileges not asked for");
    return {role: n, db: "admin", privileges: r.privileges, roles: r.roles};
  },
  createRole: (r) => { calls.push("createRole " + r.role); state.roles[r.role] = {privileges: r.privileges, roles: r.roles}; },
  updateRole: (n, r) => { calls.push("updateRole " + n); state.roles[n] = {privileges: r.privileges, roles: r.roles}; },
  getUser: (n) => state.users[n] ? {user: n, db: "admin", roles: state.users[n].roles} : null,
  createUser: (u) => { calls.push("createUser " + u.user); state.users[u.user] = {pwd: u.pwd, roles: u.roles}; },
  updateUser: (n, u) => { calls.push("updateUser " + n); if (u.pwd) throw new Error("password changed"); state.users[n].roles = u.roles; },
};
const db = {getSiblingDB: (n) => { if (n !== "admin") throw new Error("db " + n); return admin; }};
const rs = {
  status: () => {
    if (!state.initiated) { const e = new Error("no replset config"); e.codeName = "NotYetInitialized"; throw e; }
    return {members: [{self: true, stateStr: state.primary ? "PRIMARY" : "SECONDARY"}]};
  },
  initiate: (c) => { calls.push("initiate " + c._id + " " + c.members[0].host); state.initiated = true; },
};
class Quit { constructor(code) { this.code = code; } }
let code = null;
try {
  new Function("require", "db", "rs", "quit", script)(
    (m) => { if (m !== "fs") throw new Error("require " + m); return fakeFs; }, db, rs, (c) => { throw new Quit(c); });
} catch (e) {
  if (!(e instanceof Quit)) throw e;
  code = e.code;
}
console.log(JSON.stringify({code, calls, state}));
`

type mongoState struct {
	Initiated bool              `json:"initiated"`
	Primary   bool              `json:"primary"`
	Secrets   map[string]string `json:"secrets"`
	Users     map[string]struct {
		Pwd   string      `json:"pwd"`
		Roles []mongoRole `json:"roles"`
	} `json:"users"`
	Roles map[string]struct {
		Privileges []mongoPrivilege `json:"privileges"`
		Roles      []mongoRole      `json:"roles"`
	} `json:"roles"`
}

// renderedMongoHealth returns the mongosh script of the rendered
// compose.yaml's mongodb healthcheck, as the container runs it.
func renderedMongoHealth(t *testing.T) string {
	t.Helper()
	st := render(t, "cpu", RenderOptions{})
	var doc struct {
		Services map[string]struct {
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
			Secrets []string `yaml:"secrets"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(st.File("compose.yaml"), &doc); err != nil {
		t.Fatal(err)
	}
	m := doc.Services["mongodb"]
	test := m.Healthcheck.Test
	if len(test) != 6 || strings.Join(test[:5], " ") != "CMD mongosh --quiet --norc --eval" {
		t.Fatalf("mongodb healthcheck: %q", test)
	}
	for _, a := range mongoServiceAccounts {
		if !strings.Contains(strings.Join(m.Secrets, " "), a.Secret) {
			t.Errorf("the mongodb service does not mount %s: %v", a.Secret, m.Secrets)
		}
	}
	// Compose reads $$ as $.
	return strings.ReplaceAll(test[5], "$$", "$")
}

func TestMongoHealthCreatesServiceAccounts(t *testing.T) {
	t.Parallel()
	node := testenv.RequireTool(t, "node")
	dir := t.TempDir()
	script := filepath.Join(dir, "health.js")
	harness := filepath.Join(dir, "harness.js")
	stateFile := filepath.Join(dir, "state.json")
	for p, data := range map[string]string{script: renderedMongoHealth(t), harness: mongoHarness} {
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	state := mongoState{Secrets: map[string]string{
		"mongo_root_password": "rootpw", "mongo_backup_password": "backuppw", "mongo_exporter_password": "exporterpw",
	}}
	step := func(name string, wantCode int, wantCalls ...string) {
		t.Helper()
		b, _ := json.Marshal(state)
		if err := os.WriteFile(stateFile, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(node, harness, script, stateFile).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		var res struct {
			Code  int        `json:"code"`
			Calls []string   `json:"calls"`
			State mongoState `json:"state"`
		}
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		if res.Code != wantCode || strings.Join(res.Calls, ", ") != strings.Join(wantCalls, ", ") {
			t.Errorf("%s: exit %d, calls %q; want exit %d, calls %q", name, res.Code, res.Calls, wantCode, wantCalls)
		}
		state = res.State
	}

	step("first start", 1, "initiate rs0 mongodb:27017")
	if len(state.Users) != 0 {
		t.Errorf("users before the replica set has a primary: %v", state.Users)
	}
	step("not primary yet", 1)
	state.Primary = true
	step("primary", 0, "createRole fireopsRestore", "createUser fireops-backup", "createUser mongodb-exporter")
	want := map[string]string{
		"fireops-backup":   "backuppw admin.backup admin.restore admin.fireopsRestore",
		"mongodb-exporter": "exporterpw admin.clusterMonitor local.read",
	}
	check := func(when string) {
		t.Helper()
		for user, w := range want {
			u := state.Users[user]
			got := u.Pwd
			for _, r := range u.Roles {
				got += " " + r.DB + "." + r.Role
			}
			if got != w {
				t.Errorf("%s: user %s: %q, want %q", when, user, got, w)
			}
		}
		r := state.Roles[MongoRestoreRole]
		if len(r.Privileges) != 1 || r.Privileges[0].Resource.DB != "" || r.Privileges[0].Resource.Collection != "" ||
			strings.Join(slices.Sorted(slices.Values(r.Privileges[0].Actions)), " ") != "dropDatabase renameCollectionSameDB" || len(r.Roles) != 0 {
			t.Errorf("%s: role %s: %+v", when, MongoRestoreRole, r)
		}
	}
	check("created")
	step("healthy, nothing to do", 0)

	// An older fireops's roles, or a hand-made change, are set again; the
	// password is left alone; the server may list actions in any order.
	u := state.Users["mongodb-exporter"]
	u.Roles = []mongoRole{{"root", "admin"}}
	state.Users["mongodb-exporter"] = u
	r := state.Roles[MongoRestoreRole]
	r.Privileges[0].Actions = []string{"dropDatabase"}
	state.Roles[MongoRestoreRole] = r
	step("drifted", 0, "updateRole fireopsRestore", "updateUser mongodb-exporter")
	check("repaired")
	r = state.Roles[MongoRestoreRole]
	r.Privileges[0].Actions = []string{"renameCollectionSameDB", "dropDatabase"}
	b := state.Users["fireops-backup"]
	b.Roles = []mongoRole{{MongoRestoreRole, "admin"}, {"restore", "admin"}, {"backup", "admin"}}
	state.Users["fireops-backup"] = b
	step("same roles in another order", 0)

	// A server restored from a snapshot has no users: they come back.
	state.Users = nil
	step("restored server", 0, "createUser fireops-backup", "createUser mongodb-exporter")
	check("restored")
}

// hubEnvScript executes a rendered jupyterhub_config.py (argv[1]) with
// traitlets' Config, as the hub does, and prints for each user name of
// argv[2] (a JSON list) the environment DockerSpawner would give their
// server: callables are called with a spawner of that user, as
// Spawner.get_env does.
const hubEnvScript = `
import json, logging, sys
from traitlets.config import Config
c = Config()
src = open(sys.argv[1]).read()
exec(compile(src, "jupyterhub_config.py", "exec"), {"get_config": lambda: c, "__name__": "__main__"})
class User:
    pass
class Spawner:
    log = logging.getLogger("spawner")
    def __init__(self, name):
        self.user = User()
        self.user.name = name
out = {}
for name in json.loads(sys.argv[2]):
    s = Spawner(name)
    out[name] = {k: (v(s) if callable(v) else v) for k, v in c.DockerSpawner.environment.items()}
print(json.dumps(out))
`

// TestHubGivesEachUserTheirMongoURI runs the rendered hub config: each
// user's server gets MONGODB_URI from the user's own file in
// secrets/mongo-users (named as `fireops users approve` names it, for
// any user name), MONGODB_DATABASE, and the rest of the environment.
func TestHubGivesEachUserTheirMongoURI(t *testing.T) {
	t.Parallel()
	py := debianPython(t)
	st := render(t, "cpu", RenderOptions{})
	dir := t.TempDir()
	data, secrets, mongoUsers, mod := filepath.Join(dir, "data"), filepath.Join(dir, "secrets"), filepath.Join(dir, "mongo-users"), filepath.Join(dir, "py", "nativeauthenticator")
	for _, d := range []string{data, secrets, mongoUsers, mod} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	src := string(st.File("hub/jupyterhub_config.py"))
	for from, to := range map[string]string{
		`"/srv/jupyterhub/data"`:     `"` + data + `"`,
		`"/run/secrets"`:             `"` + secrets + `"`,
		`"/run/fireops/mongo-users"`: `"` + mongoUsers + `"`,
	} {
		if !strings.Contains(src, from) {
			t.Fatalf("jupyterhub_config.py has no %s", from)
		}
		src = strings.ReplaceAll(src, from, to)
	}
	for _, m := range regexp.MustCompile(`secret\("([a-z_]+)"\)`).FindAllStringSubmatch(src, -1) {
		if err := os.WriteFile(filepath.Join(secrets, m[1]), []byte("s3cret-"+m[1]+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(mod, "__init__.py"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "jupyterhub_config.py")
	if err := os.WriteFile(config, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}

	long := strings.Repeat("ab", 30)
	names := []string{"maria", "ivan.petrov", "Bob", "jörg", "0@lab", long, long + "x", "not-approved"}
	for _, n := range names[:len(names)-1] {
		uri := "mongodb://" + users.MongoName(n) + ":pw@mongodb:27017/" + users.MongoName(n) + "?authSource=admin\n"
		if err := os.WriteFile(filepath.Join(mongoUsers, users.MongoName(n)), []byte(uri), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	arg, _ := json.Marshal(names)
	cmd := exec.Command(py, "-c", hubEnvScript, config, string(arg))
	cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Dir(mod))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("run jupyterhub_config.py: %v\n%s", err, out)
	}
	var env map[string]map[string]string
	if err := json.Unmarshal(out, &env); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, n := range names {
		e, db := env[n], users.MongoName(n)
		want := "mongodb://" + db + ":pw@mongodb:27017/" + db + "?authSource=admin"
		if n == "not-approved" {
			want = ""
		}
		if e["MONGODB_URI"] != want || e["MONGODB_DATABASE"] != db || e["TF_FORCE_GPU_ALLOW_GROWTH"] != "true" {
			t.Errorf("%s: environment %v; want MONGODB_URI %q, MONGODB_DATABASE %q", n, e, want, db)
		}
	}
	if strings.Contains(string(out), "mongo_root_password") || strings.Contains(string(out), "s3cret") {
		t.Errorf("a secret of the hub reached a user's environment: %s", out)
	}
}
