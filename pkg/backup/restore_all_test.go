package backup

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/firetech/fireops/internal/davtest"
	"github.com/firetech/fireops/internal/mongotest"
	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/partkind"
	"github.com/firetech/fireops/pkg/restore"
	"github.com/firetech/fireops/pkg/snapshot"
	smongo "github.com/firetech/fireops/pkg/source/mongo"
	"github.com/firetech/fireops/pkg/source/volume/volumetest"
)

// TestMain removes the writer image the tests of this package build
// (volumetest.Image) once they are all done: several use it.
func TestMain(m *testing.M) {
	code := m.Run()
	volumetest.RemoveImage()
	os.Exit(code)
}

// server is the "server" of the disaster tests: a config folder (files
// part), two users' Docker volumes, the hub's data volume with its SQLite
// database (sqlite part), a MongoDB database on the test server
// (FerretDB), all snapshotted to a WebDAV destination.
type server struct {
	f        *fixture
	cfg      *config.Config
	cli      *client.Client
	mc       *mongo.Client
	dav      *davtest.Server
	prefix   string
	db       string
	users    []string // the users' volumes
	data     string   // the hub's data volume
	res      *snapshot.Result
	before   map[string]string // copies of the users' volumes
	hubDump  string
	mongoSum map[string]string
}

func newServer(t *testing.T) *server {
	t.Helper()
	cli := dockerClient(t)
	uri, db := testenv.RequireMongo(t)
	s := &server{cli: cli, db: db, dav: davtest.Start(t), prefix: "fireops-dr-" + randomSuffix()}
	s.mc = mongotest.Connect(t, uri)
	mongotest.Seed(t, s.mc, db, "", mongotest.Small)
	s.f = newFixture(t, "{name: local, remote: unused}")
	s.users = []string{s.prefix + "-user-ada", s.prefix + "-user-bob"}
	s.data = s.prefix + "-data"
	for i, u := range s.users {
		mp := testVolume(t, cli, u)
		testutil.Must(t, os.MkdirAll(filepath.Join(mp, "work", "empty"), 0o755))
		testutil.Must(t, os.WriteFile(filepath.Join(mp, "work", "policy.pt"), randomData((i+1)<<20), 0o600))
		testutil.Must(t, os.Link(filepath.Join(mp, "work", "policy.pt"), filepath.Join(mp, "policy-latest.pt")))
		testutil.Must(t, os.Symlink("work", filepath.Join(mp, "latest")))
		testutil.Must(t, os.Lchown(filepath.Join(mp, "work"), 1000, 100))
	}
	dmp := testVolume(t, cli, s.data)
	testutil.Must(t, os.WriteFile(filepath.Join(dmp, "jupyterhub_cookie_secret"), []byte("cookie"), 0o600))
	sqlite3(t, filepath.Join(dmp, "jupyterhub.sqlite"), "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users(name) VALUES ('ada'), ('bob');")
	uriFile := writeURIFile(t, s.f.dir, "mongo-uri", uri)
	y := fmt.Sprintf(`host: gpu01
keys:
  recipients: [%s]
  identity_file: identity.txt
  signing_key_file: signing.key
destinations:
  - {name: webdav, remote: "%s"}
chunk_size: 1MiB
state_dir: %s
compression: fastest
sources:
  files: [{name: stack, paths: [%s]}]
  sqlite: [{name: hub, volume: %s, file: jupyterhub.sqlite}]
  volumes: {include: ["%s-user-*", "%s"]}
  mongo: {uri_file: %s, databases: [%s]}
stack: {name: %s}
`, s.f.init.Recipient, s.dav.Remote("fireops"), filepath.Join(s.f.dir, "state"), s.f.data, s.data, s.prefix, s.data, uriFile, db, s.prefix)
	p := filepath.Join(s.f.dir, "etc", "server.yaml")
	testutil.Must(t, os.WriteFile(p, []byte(y), 0o644))
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	s.cfg = cfg
	res, err := Snapshot(context.Background(), cfg, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Parts) != 6 {
		t.Fatalf("parts: %+v", res.Parts)
	}
	s.res = res
	// What the server held, to compare with after the restore.
	s.before = map[string]string{}
	for _, u := range s.users {
		cp := filepath.Join(t.TempDir(), "copy")
		cpA(t, mountpoint(t, cli, u), cp)
		// Volume parts keep whole seconds (one format for both read paths).
		testutil.Must(t, filepath.WalkDir(cp, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.Type()&fs.ModeSymlink != 0 {
				return err
			}
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			mt := fi.ModTime().Truncate(time.Second)
			return os.Chtimes(p, mt, mt)
		}))
		s.before[u] = cp
	}
	s.hubDump = sqlite3(t, filepath.Join(dmp, "jupyterhub.sqlite"), ".dump")
	s.mongoSum = mongotest.SortedHash(t, s.mc, db)
	return s
}

// cpA copies src to dst with cp -a (modes, owners, times and links
// kept).
func cpA(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v %s", err, out)
	}
}

// dataCopy returns a copy (cp -a) of the server's data folder as it is
// now, before a test destroys it.
func (s *server) dataCopy(t *testing.T) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	cpA(t, s.f.data, data)
	return data
}

// destroy removes the volumes and the config folder.
func (s *server) destroy(t *testing.T) {
	t.Helper()
	for _, v := range append(slices.Clone(s.users), s.data) {
		dropVolume(t, s.cli, v)
	}
	testutil.Must(t, os.RemoveAll(s.f.data))
}

// checkRestored compares the volumes, the config folder and the hub
// database with what the snapshot held.
func (s *server) checkRestored(t *testing.T, data string) {
	t.Helper()
	for _, u := range s.users {
		sameTree(t, s.before[u], mountpoint(t, s.cli, u))
	}
	dmp := mountpoint(t, s.cli, s.data)
	if b, _ := os.ReadFile(filepath.Join(dmp, "jupyterhub_cookie_secret")); string(b) != "cookie" {
		t.Error("the cookie secret was not restored")
	}
	if got := sqlite3(t, filepath.Join(dmp, "jupyterhub.sqlite"), ".dump"); got != s.hubDump {
		t.Errorf("hub database:\n%s\nwant\n%s", got, s.hubDump)
	}
	sameTree(t, data, s.f.data)
}

// corruptMongo flips a byte of the mongo part's first piece on the
// destination.
func (s *server) corruptMongo(t *testing.T) {
	t.Helper()
	chunk := piecePath(t, filepath.Join(s.dav.Dir, "fireops"), s.res, "mongo:mongodb", 0)
	b, err := os.ReadFile(chunk)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	testutil.Must(t, os.WriteFile(chunk, b, 0o600))
}

func statuses(rr *restore.Result) map[string]string {
	out := map[string]string{}
	if rr != nil {
		for _, p := range rr.Parts {
			out[p.Part] = p.Status
		}
	}
	return out
}

// TestRestoreAllDisaster plays the disaster: everything destroyed, then
// restore --all from WebDAV; then a restore --all --force --stop-stack
// over a running "stack" container.
func TestRestoreAllDisaster(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	ctx := context.Background()
	data := s.dataCopy(t)

	// Dry run: the plan, nothing written.
	s.destroy(t)
	s.mc.Database(s.db).Drop(ctx)
	rr, err := restore.Restore(ctx, s.cfg, restore.Options{Snapshot: "latest", All: true, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, p := range rr.Parts {
		order = append(order, p.Part)
		if p.Status != restore.StatusPlanned {
			t.Errorf("dry run: %s %s", p.Part, p.Status)
		}
	}
	want := []string{"files:stack", "volume:" + s.data, "volume:" + s.users[0], "volume:" + s.users[1], "sqlite:hub", "mongo:mongodb"}
	if !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	if _, err := os.Stat(s.f.data); err == nil {
		t.Error("dry run wrote the files")
	}

	confirmed := false
	rr, err = restore.Restore(ctx, s.cfg, restore.Options{Snapshot: "latest", All: true, Confirm: func(*restore.Result) error { confirmed = true; return nil }})
	if err != nil {
		t.Fatalf("restore --all: %v %+v", err, rr)
	}
	for _, p := range rr.Parts {
		if p.Status != restore.StatusRestored {
			t.Errorf("%s: %s %s", p.Part, p.Status, p.Error)
		}
	}
	if !confirmed {
		t.Error("Confirm was not called")
	}
	s.checkRestored(t, data)
	if got := mongotest.SortedHash(t, s.mc, s.db); !maps.Equal(got, s.mongoSum) {
		t.Errorf("mongo after restore: %v, want %v", got, s.mongoSum)
	}
	if ents, _ := os.ReadDir(filepath.Dir(s.f.data)); slices.ContainsFunc(ents, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), ".fireops") }) {
		t.Errorf("staging left next to the config folder: %v", ents)
	}

	// Again over everything, with a running container of the stack using
	// bob's volume: without --force the existing targets are refused and
	// nothing is written; with --force --stop-stack the container is
	// stopped, everything replaced, and it runs again after.
	testutil.Must(t, os.WriteFile(filepath.Join(s.f.data, "policy.bin"), []byte("changed"), 0o600))
	id := stackContainer(t, s.cli, s.prefix, s.users[1])
	rr, err = restore.Restore(ctx, s.cfg, restore.Options{Snapshot: "latest", All: true})
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("restore --all over existing targets: %v", err)
	}
	if st := statuses(rr); st["volume:"+s.users[1]] != restore.StatusRefused || st["files:stack"] != restore.StatusPlanned {
		t.Errorf("plan over existing targets: %v", st)
	}
	rr, err = restore.Restore(ctx, s.cfg, restore.Options{Snapshot: "latest", All: true, Force: true, StopStack: true})
	if err != nil {
		t.Fatalf("restore --all --force --stop-stack: %v %+v", err, rr)
	}
	if rr.Stack == nil || len(rr.Stack.Containers) != 1 || len(rr.Stack.Started) != 1 || rr.Stack.Error != "" {
		t.Errorf("stack: %+v", rr.Stack)
	}
	if running, _ := volumetest.State(t, s.cli, id); !running {
		t.Error("the stack's container was not started again")
	}
	sameTree(t, data, s.f.data)
	if _, err := os.Stat(s.f.data + ".fireops-old"); err == nil {
		t.Error("--force kept the old copy")
	}
	nothingLeft(t, s.cli, s.prefix)
}

// stackContainer runs a container of the Compose project using vol.
func stackContainer(t *testing.T, cli *client.Client, project, vol string) string {
	t.Helper()
	ctx := context.Background()
	resp, err := cli.ContainerCreate(ctx, &container.Config{Image: volumetest.Image(t, cli), Labels: map[string]string{"com.docker.compose.project": project}},
		&container.HostConfig{NetworkMode: "none", Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: "/data"}}},
		nil, nil, project+"-app-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cli.ContainerRemove(context.Background(), resp.ID, container.RemoveOptions{Force: true}); err != nil {
			t.Errorf("remove container: %v", err)
		}
	})
	testutil.Must(t, cli.ContainerStart(ctx, resp.ID, container.StartOptions{}))
	return resp.ID
}

// TestRestoreAllCorruptMongo: a damaged chunk in the mongo part; every
// other part is restored, the error names the broken part with exit code
// 3, and the live database is untouched. The config folder that was there
// is kept as .fireops-old.
func TestRestoreAllCorruptMongo(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	ctx := context.Background()
	data := s.dataCopy(t)
	s.corruptMongo(t)
	for _, v := range append(slices.Clone(s.users), s.data) {
		dropVolume(t, s.cli, v)
	}
	testutil.Must(t, os.WriteFile(filepath.Join(s.f.data, "policy.bin"), []byte("damaged"), 0o600))
	if _, err := s.mc.Database(s.db).Collection("runs").InsertOne(ctx, bson.D{{Key: "live", Value: true}}); err != nil {
		t.Fatal(err)
	}
	live := mongotest.SortedHash(t, s.mc, s.db)

	rr, err := restore.Restore(ctx, s.cfg, restore.Options{Snapshot: "latest", All: true, Mongo: partkind.MongoRestoreOptions{Drop: true}})
	if exitcode.Code(err) != exitcode.CheckFailed || !strings.Contains(err.Error(), "1 of 6 parts NOT restored: mongo:mongodb") {
		t.Fatalf("restore --all with a damaged mongo part: code %d, %v", exitcode.Code(err), err)
	}
	st := statuses(rr)
	for _, p := range rr.Parts {
		wantStatus := restore.StatusRestored
		if p.Part == "mongo:mongodb" {
			wantStatus = restore.StatusFailed
		}
		if p.Status != wantStatus {
			t.Errorf("%s: %s, want %s (%v)", p.Part, p.Status, wantStatus, st)
		}
	}
	s.checkRestored(t, data)
	if b, _ := os.ReadFile(filepath.Join(s.f.data+".fireops-old", "policy.bin")); string(b) != "damaged" {
		t.Errorf("the replaced config folder was not kept as .fireops-old: %q", b)
	}
	if got := mongotest.SortedHash(t, s.mc, s.db); !maps.Equal(got, live) {
		t.Errorf("the live database changed: %v, want %v", got, live)
	}
	nothingLeft(t, s.cli, s.prefix)
}

// TestRestoreDrillLeavesNothing (not parallel: it compares the scratch
// volumes before and after): verify --level restore-test restores every
// part kind into scratch targets and removes them, also when a part is
// damaged.
func TestRestoreDrillLeavesNothing(t *testing.T) {
	s := newServer(t)
	ctx := context.Background()
	before := scratchVolumes(t, s.cli, s.res.ID)
	scratch := t.TempDir()
	check := func(stage string) {
		t.Helper()
		if got := scratchVolumes(t, s.cli, s.res.ID); !slices.Equal(got, before) {
			t.Errorf("%s: scratch volumes left: %v (before: %v)", stage, got, before)
		}
		if left := mongotest.Databases(t, s.mc, smongo.ScratchPrefix+s.res.ID); len(left) > 0 {
			t.Errorf("%s: scratch databases left: %v", stage, left)
		}
		if ents, _ := os.ReadDir(scratch); len(ents) > 0 {
			t.Errorf("%s: scratch folders left: %v", stage, ents)
		}
	}
	vr, err := Verify(ctx, s.cfg, VerifyOptions{Level: LevelRestoreTest, ScratchDir: scratch})
	if err != nil || len(vr) != 1 || !vr[0].OK || len(vr[0].PartIDs) != 6 {
		t.Fatalf("drill: %v %+v", err, vr)
	}
	check("after a good drill")
	s.corruptMongo(t)
	vr, err = Verify(ctx, s.cfg, VerifyOptions{Level: LevelRestoreTest, ScratchDir: scratch})
	if exitcode.Code(err) != exitcode.CheckFailed || len(vr) != 1 || vr[0].OK {
		t.Fatalf("drill with a damaged part: %v %+v", err, vr)
	}
	check("after a failed drill")
}
