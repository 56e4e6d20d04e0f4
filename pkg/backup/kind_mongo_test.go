package backup

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	mongodriver "go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/firetech/fireops/internal/mongotest"
	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/bootstrap"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/partkind"
	"github.com/firetech/fireops/pkg/restore"
	"github.com/firetech/fireops/pkg/snapshot"
	"github.com/firetech/fireops/pkg/source/mongo"
)

// seededMongo returns the test server's URI and a fresh database on it,
// seeded with mongotest.Small, a client of the server, and mongoConfig's
// config for that database and the folder it is in.
func seededMongo(t *testing.T) (uri, db string, c *mongodriver.Client, cfg *config.Config, dir string) {
	t.Helper()
	uri, db = testenv.RequireMongo(t)
	c = mongotest.Connect(t, uri)
	mongotest.Seed(t, c, db, "", mongotest.Small)
	cfg, dir = mongoConfig(t, uri, db)
	return uri, db, c, cfg, dir
}

// mongoBehindProxy seeds a fresh test database with 3000 runs and 20
// events, a dump long enough to cut, and returns a proxy to the server,
// and mongoConfig's config for that database through the proxy and the
// folder it is in.
func mongoBehindProxy(t *testing.T) (*mongotest.Proxy, *config.Config, string) {
	t.Helper()
	uri, db := testenv.RequireMongo(t)
	c := mongotest.Connect(t, uri)
	mongotest.Seed(t, c, db, "", mongotest.Dataset{Runs: 3000, Events: 20})
	p := mongotest.StartProxy(t, mongotest.Target(uri))
	cfg, dir := mongoConfig(t, p.URI(uri), db)
	return p, cfg, dir
}

// mongoConfig writes keys, a URI file (0600) for uri and a config with a
// local destination and sources.mongo limited to db.
func mongoConfig(t *testing.T, uri, db string) (*config.Config, string) {
	t.Helper()
	dir := t.TempDir()
	res, err := bootstrap.Init(bootstrap.Options{Dir: filepath.Join(dir, "etc"), Host: "gpu01"})
	if err != nil {
		t.Fatal(err)
	}
	uriFile := writeURIFile(t, dir, "mongo-uri", uri)
	y := fmt.Sprintf(`host: gpu01
keys:
  recipients: [%s]
  identity_file: identity.txt
  signing_key_file: signing.key
destinations:
  - {name: local, remote: %s}
chunk_size: 1MiB
state_dir: %s
sources:
  mongo: {uri_file: %s, databases: [%s]}
`, res.Recipient, filepath.Join(dir, "backups"), filepath.Join(dir, "state"), uriFile, db)
	p := filepath.Join(dir, "etc", "fireops.yaml")
	testutil.Must(t, os.WriteFile(p, []byte(y), 0o644))
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, dir
}

func writeURIFile(t *testing.T, dir, name, uri string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	testutil.Must(t, os.WriteFile(p, []byte(uri+"\n"), 0o600))
	return p
}

func mongoPart(t *testing.T, res *snapshot.Result) snapshot.Part {
	t.Helper()
	for _, p := range res.Parts {
		if p.ID == "mongo:mongodb" {
			return p
		}
	}
	t.Fatalf("no mongo part in %+v", res.Parts)
	return snapshot.Part{}
}

// TestMongoSnapshotVerifyRestore: the mongo part through the whole life
// cycle against the test server.
func TestMongoSnapshotVerifyRestore(t *testing.T) {
	t.Parallel()
	uri, db, c, cfg, dir := seededMongo(t)
	orig := mongotest.SortedHash(t, c, db)
	ctx := context.Background()

	res, err := Snapshot(ctx, cfg, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := mongoPart(t, res)
	if p.Details["consistency"] != mongo.PerCollection || p.Details["count:"+db+".runs"] != "200" || p.Documents != 200+50+3 {
		t.Errorf("part: %+v", p)
	}
	data, err := os.ReadFile(filepath.Join(dir, "backups", "gpu01", "snapshots", res.ID, "manifest.json"))
	testutil.Must(t, err)
	if strings.Contains(string(data), db) || strings.Contains(string(data), "127.0.0.1") {
		t.Errorf("the manifest names the database or the server: %s", data)
	}

	// restore-test restores into fireops-verify-<id> and drops it.
	vr, err := Verify(ctx, cfg, VerifyOptions{Snapshot: res.ID, Level: LevelRestoreTest})
	if err != nil || len(vr) != 1 || !vr[0].OK {
		t.Fatalf("restore-test: %+v %v", vr, err)
	}
	if left := mongotest.Databases(t, c, mongo.ScratchPrefix+res.ID); len(left) > 0 {
		t.Errorf("scratch databases left: %v", left)
	}

	// Into the live database without --drop: refused before anything is
	// downloaded, also in a dry run.
	for _, dry := range []bool{true, false} {
		_, err = restore.Restore(ctx, cfg, restore.Options{Snapshot: "latest", DryRun: dry})
		if exitcode.Code(err) != exitcode.Usage || !errors.Is(err, mongo.ErrNotEmpty) || !strings.Contains(exitcode.Hint(err), "--drop") {
			t.Fatalf("restore over live data (dry run %v): %v", dry, err)
		}
	}

	// Next to the live data with --to-db; the plan names the targets.
	prefix := "b" + strings.ToLower(res.ID[len(res.ID)-6:]) + "_"
	mongotest.DropLater(t, c, prefix+db)
	rr, err := restore.Restore(ctx, cfg, restore.Options{Snapshot: res.ID, Parts: []string{"mongo"}, Mongo: partkind.MongoRestoreOptions{ToDB: prefix}})
	if err != nil {
		t.Fatal(err)
	}
	if got := rr.Parts[0].Target; !strings.Contains(got, prefix+db+".* (4)") || !strings.Contains(got, "the configured server") || strings.Contains(got, uri) {
		t.Errorf("target %q", got)
	}
	if got := mongotest.SortedHash(t, c, prefix+db); !maps.Equal(got, orig) {
		t.Errorf("restored %v, want %v", got, orig)
	}

	// --ns and --drop over a changed live collection.
	_, err = c.Database(db).Collection("runs").DeleteMany(ctx, bson.D{})
	testutil.Must(t, err)
	_, err = restore.Restore(ctx, cfg, restore.Options{Snapshot: res.ID, Mongo: partkind.MongoRestoreOptions{NS: []string{db + ".runs"}, Drop: true}})
	if err != nil {
		t.Fatal(err)
	}
	if got := mongotest.SortedHash(t, c, db); !maps.Equal(got, orig) {
		t.Errorf("after --drop: %v, want %v", got, orig)
	}

	// --to-uri-file must be a private file; --ns must name something.
	open := filepath.Join(dir, "open-uri")
	testutil.Must(t, os.WriteFile(open, []byte(uri), 0o644))
	testutil.Must(t, os.Chmod(open, 0o644))
	_, err = restore.Restore(ctx, cfg, restore.Options{Snapshot: res.ID, Mongo: partkind.MongoRestoreOptions{ToURIFile: open, ToDB: prefix, Drop: true}})
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "readable by group or others") {
		t.Errorf("open URI file: %v", err)
	}
	_, err = restore.Restore(ctx, cfg, restore.Options{Snapshot: res.ID, Mongo: partkind.MongoRestoreOptions{NS: []string{db + ".nope"}, ToDB: prefix}})
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "matches nothing") {
		t.Errorf("--ns of nothing: %v", err)
	}
}

// TestMongoSnapshotServerStopped: the server goes away in the middle of
// the dump: the snapshot fails with the cause, and nothing on the
// destination looks complete.
func TestMongoSnapshotServerStopped(t *testing.T) {
	t.Parallel()
	p, cfg, _ := mongoBehindProxy(t)
	p.CutAfter(150_000, true)
	_, err := Snapshot(context.Background(), cfg, SnapshotOptions{})
	if err == nil || !p.Cut() {
		t.Fatalf("snapshot through a cut connection: %v (cut: %v)", err, p.Cut())
	}
	if exitcode.Code(err) != exitcode.Failure || !strings.Contains(err.Error(), "lost the connection to the server") {
		t.Errorf("err = %v (code %d)", err, exitcode.Code(err))
	}
	ls, err := List(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ls[0].Snapshots {
		if s.Complete {
			t.Errorf("snapshot %s looks complete", s.ID)
		}
	}
}

// TestMongoRestoreTestFailureDropsScratch: the connection breaks while
// restore-test loads the scratch database: verify fails (exit 3) and the
// scratch database is dropped all the same.
func TestMongoRestoreTestFailureDropsScratch(t *testing.T) {
	t.Parallel()
	uri, _, c, cfg, dir := seededMongo(t)
	ctx := context.Background()
	res, err := Snapshot(ctx, cfg, SnapshotOptions{Only: []string{"mongo"}})
	if err != nil {
		t.Fatal(err)
	}
	p := mongotest.StartProxy(t, mongotest.Target(uri))
	scratchURI := writeURIFile(t, dir, "scratch-uri", p.URI(uri))
	p.CutAfter(40_000, false)
	vr, err := Verify(ctx, cfg, VerifyOptions{Snapshot: res.ID, Level: LevelRestoreTest, Mongo: partkind.MongoVerifyOptions{ScratchURIFile: scratchURI}})
	if exitcode.Code(err) != exitcode.CheckFailed || len(vr) != 1 || vr[0].OK || !p.Cut() {
		t.Fatalf("restore-test through a cut connection: %+v %v (cut: %v)", vr, err, p.Cut())
	}
	if !strings.Contains(vr[0].Error, "lost the connection to the server") {
		t.Errorf("restore-test failed for another reason: %s", vr[0].Error)
	}
	if left := mongotest.Databases(t, c, mongo.ScratchPrefix+res.ID); len(left) > 0 {
		t.Errorf("scratch database left after a failed restore-test: %v", left)
	}
}
