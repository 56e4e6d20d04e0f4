package backup

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	dvolume "github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/restore"
	"github.com/firetech/fireops/pkg/snapshot"
	"github.com/firetech/fireops/pkg/source/volume"
	"github.com/firetech/fireops/pkg/source/volume/volumetest"
)

// dockerClient returns a client of the test Engine; the test needs root
// (it fills and reads volumes through their folders).
func dockerClient(t *testing.T) *client.Client {
	t.Helper()
	testenv.RequireDocker(t)
	testenv.RequireRoot(t) // the volume tests fill volumes through their folders
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func randomSuffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// testVolume creates a volume (removed when the test ends) and returns its
// host folder.
func testVolume(t *testing.T, cli *client.Client, name string) string {
	t.Helper()
	v, err := cli.VolumeCreate(context.Background(), dvolume.CreateOptions{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropVolume(t, cli, name) })
	return v.Mountpoint
}

func dropVolume(t *testing.T, cli *client.Client, name string) {
	if err := cli.VolumeRemove(context.Background(), name, true); err != nil && !cerrdefs.IsNotFound(err) {
		t.Errorf("remove volume %s: %v", name, err)
	}
}

func mountpoint(t *testing.T, cli *client.Client, name string) string {
	t.Helper()
	v, err := cli.VolumeInspect(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return v.Mountpoint
}

// nothingLeft fails when fireops left helper containers, staging or
// scratch volumes for the volumes of this test (prefix).
func nothingLeft(t *testing.T, cli *client.Client, prefix string) {
	t.Helper()
	ctx := context.Background()
	cs, err := cli.ContainerList(ctx, containerListAll(volume.LabelHelper))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if strings.HasPrefix(c.Labels[volume.LabelVolume], prefix) {
			t.Errorf("helper container %s for %s left behind", c.ID[:12], c.Labels[volume.LabelVolume])
		}
	}
	vs, err := cli.VolumeList(ctx, dvolume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", volume.LabelStaging))})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs.Volumes {
		if strings.HasPrefix(v.Labels[volume.LabelStaging], prefix) {
			t.Errorf("staging volume %s left behind", v.Name)
		}
	}
}

// volumeConfig writes a config backing up the volumes prefix-user-* and
// prefix-data, with the hub database prefix-data/jupyterhub.sqlite as an
// sqlite source, to a local destination.
// volumeSetup returns a prefix for the test's volumes (tag and a random
// suffix), a fixture whose destination is unused, and its config
// (volumeConfig) backing up the volumes of that prefix, read as read says.
func volumeSetup(t *testing.T, tag, read string) (prefix string, f *fixture, cfg *config.Config) {
	t.Helper()
	prefix = tag + randomSuffix()
	f = newFixture(t, "{name: local, remote: "+filepath.Join(t.TempDir(), "unused")+"}")
	return prefix, f, volumeConfig(t, f, prefix, read)
}

func volumeConfig(t *testing.T, f *fixture, prefix, read string) *config.Config {
	t.Helper()
	return loadTestConfig(t, f.dir, "volumes", f.init, fmt.Sprintf(`compression: fastest
sources:
  sqlite: [{name: hub, volume: %s-data, file: jupyterhub.sqlite}]
  volumes: {include: ["%s-user-*", "%s-data"], read: %s}
hub: {db_volume: %s-data}
`, prefix, prefix, prefix, read, prefix))
}

// hubWriter keeps inserting rows into a WAL-mode SQLite database until
// stop is called, which returns the rows written.
func hubWriter(t *testing.T, path string) (stop func() int64) {
	t.Helper()
	dsn := (&url.URL{Scheme: "file", Path: path, RawQuery: "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, blob BLOB)"); err != nil {
		t.Fatal(err)
	}
	testutil.Must(t, os.Chown(path, 1000, 1000))
	var n atomic.Int64
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := db.Exec("INSERT INTO users(name, blob) VALUES (?, randomblob(2000))", fmt.Sprintf("user-%d", n.Load())); err != nil {
				t.Errorf("hub writer: %v", err)
				return
			}
			n.Add(1)
		}
	}()
	for n.Load() < 50 {
		// let the writer get going
	}
	return func() int64 {
		close(done)
		wg.Wait()
		db.Close()
		return n.Load()
	}
}

// TestVolumeParts snapshots a user's volume and the hub's data volume
// (whose live database a writer keeps changing) through each read path,
// removes the volumes, restores everything and compares.
func TestVolumeParts(t *testing.T) {
	t.Parallel()
	cli := dockerClient(t)
	for _, read := range []string{volume.ReadMountpoint, volume.ReadAPI} {
		t.Run(read, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			prefix, _, cfg := volumeSetup(t, "fireops-bk-", read)
			user, data := prefix+"-user-ada", prefix+"-data"
			ump := testVolume(t, cli, user)
			dmp := testVolume(t, cli, data)
			testutil.Must(t, os.MkdirAll(filepath.Join(ump, "work", "empty"), 0o755))
			testutil.Must(t, os.WriteFile(filepath.Join(ump, "work", "policy.pt"), randomData(3<<20), 0o600))
			testutil.Must(t, os.Link(filepath.Join(ump, "work", "policy.pt"), filepath.Join(ump, "policy-latest.pt")))
			testutil.Must(t, os.Symlink("work", filepath.Join(ump, "latest")))
			for _, p := range []string{ump, filepath.Join(ump, "work"), filepath.Join(ump, "work", "policy.pt")} {
				testutil.Must(t, os.Lchown(p, 1000, 100))
			}
			testutil.Must(t, os.WriteFile(filepath.Join(dmp, "jupyterhub_cookie_secret"), []byte("cookie"), 0o600))
			stop := hubWriter(t, filepath.Join(dmp, "jupyterhub.sqlite"))

			res, err := Snapshot(ctx, cfg, SnapshotOptions{})
			written := stop()
			if err != nil {
				t.Fatal(err)
			}
			ids := map[string]snapshot.Part{}
			for _, p := range res.Parts {
				ids[p.ID] = p
			}
			vd, vu, hub := ids["volume:"+data], ids["volume:"+user], ids["sqlite:hub"]
			if vd.ID == "" || vu.ID == "" || hub.ID == "" || len(res.Parts) != 3 {
				t.Fatalf("parts %v", res.Parts)
			}
			if vd.Details["read"] != read || vd.Details["left_out"] != `["jupyterhub.sqlite"]` || vd.Entries != 2 {
				t.Errorf("data volume part: %d entries, %v", vd.Entries, vd.Details)
			}
			if hub.Details["integrity_check"] != "ok" || hub.Documents == 0 || hub.Documents > written {
				t.Errorf("hub database part: %d rows (writer: %d), %v", hub.Documents, written, hub.Details)
			}

			// Disaster: both volumes gone. Restore everything.
			dropVolume(t, cli, user)
			dropVolume(t, cli, data)
			rr, err := restore.Restore(ctx, cfg, restore.Options{Snapshot: "latest"})
			if err != nil {
				t.Fatalf("restore: %v (%+v)", err, rr)
			}
			for _, p := range rr.Parts {
				if p.Status != "restored" {
					t.Errorf("%s: %s", p.Part, p.Status)
				}
			}
			dmp2 := mountpoint(t, cli, data)
			if got := sqlite3(t, filepath.Join(dmp2, "jupyterhub.sqlite"), "PRAGMA integrity_check; SELECT count(*) FROM users;"); got != fmt.Sprintf("ok\n%d", hub.Documents) {
				t.Errorf("restored hub database: %q, want ok and %d rows", got, hub.Documents)
			}
			if b, _ := os.ReadFile(filepath.Join(dmp2, "jupyterhub_cookie_secret")); string(b) != "cookie" {
				t.Error("the cookie secret was not restored")
			}
			ump2 := mountpoint(t, cli, user)
			a, _ := os.Stat(filepath.Join(ump2, "work", "policy.pt"))
			b, _ := os.Stat(filepath.Join(ump2, "policy-latest.pt"))
			if a == nil || b == nil || !os.SameFile(a, b) || a.Size() != 3<<20 {
				t.Errorf("hard link or content lost: %v %v", a, b)
			}
			if l, _ := os.Readlink(filepath.Join(ump2, "latest")); l != "work" {
				t.Errorf("symlink: %q", l)
			}
			if fi, err := os.Stat(filepath.Join(ump2, "work", "empty")); err != nil || !fi.IsDir() {
				t.Errorf("empty folder: %v", err)
			}
			if st := statOwner(t, ump2); st != "1000:100" {
				t.Errorf("volume root owner %s", st)
			}

			// One user's volume again: refused while it has content, then
			// into another volume, then over itself with --force.
			_, err = restore.Restore(ctx, cfg, restore.Options{Snapshot: "latest", Parts: []string{"volume:" + user}})
			if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "not empty") {
				t.Errorf("restore over a volume with content: %v", err)
			}
			other := prefix + "-other"
			t.Cleanup(func() { dropVolume(t, cli, other) })
			if _, err := restore.Restore(ctx, cfg, restore.Options{Snapshot: "latest", Parts: []string{"volume:" + user}, To: "volume:" + other}); err != nil {
				t.Fatal(err)
			}
			testutil.Must(t, os.WriteFile(filepath.Join(ump2, "work", "policy.pt"), []byte("damaged"), 0o600))
			_, err = restore.Restore(ctx, cfg, restore.Options{Snapshot: "latest", Parts: []string{"volume:" + user}, Force: true})
			if read == volume.ReadAPI {
				// The Engine API cannot remove files: refused before anything is read.
				if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "Engine API") {
					t.Errorf("api: forced restore over a volume with content: %v", err)
				}
			} else if err != nil {
				t.Fatal(err)
			} else if fi, _ := os.Stat(filepath.Join(ump2, "work", "policy.pt")); fi == nil || fi.Size() != 3<<20 {
				t.Errorf("forced restore did not replace the content: %v", fi)
			}
			// Into a folder.
			dir := filepath.Join(t.TempDir(), "restored")
			if _, err := restore.Restore(ctx, cfg, restore.Options{Snapshot: "latest", Parts: []string{"volume:" + user}, To: dir}); err != nil {
				t.Fatal(err)
			}
			if fi, _ := os.Stat(filepath.Join(dir, "work", "policy.pt")); fi == nil || fi.Size() != 3<<20 {
				t.Errorf("restore into a folder: %v", fi)
			}

			vr, err := Verify(ctx, cfg, VerifyOptions{Level: LevelRestoreTest})
			if err != nil || len(vr) != 1 || !vr[0].OK {
				t.Fatalf("verify restore-test: %v %+v", err, vr)
			}
			nothingLeft(t, cli, prefix)
		})
	}
}

func statOwner(t *testing.T, p string) string {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
}

func containerListAll(label string) container.ListOptions {
	return container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", label))}
}

// scratchVolumes lists the restore-test scratch volumes.
// scratchVolumes lists the scratch volumes of the restore-tests of one
// snapshot (other tests, and other packages' tests, make their own at the
// same time).
func scratchVolumes(t *testing.T, cli *client.Client, snapshotID string) []string {
	t.Helper()
	vs, err := cli.VolumeList(context.Background(), dvolume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", volume.LabelScratch+"="+snapshotID))})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, v := range vs.Volumes {
		out = append(out, v.Name)
	}
	return out
}

// TestVolumeFailures (not parallel: it changes DOCKER_HOST and counts
// scratch volumes): a volume removed between discovery and its read is
// left out with a warning while the others complete; an unreachable
// Engine fails the run with a clear error and no manifest; a failed
// restore-test removes its scratch volume.
func TestVolumeFailures(t *testing.T) {
	cli := dockerClient(t)
	ctx := context.Background()
	prefix, f, cfg := volumeSetup(t, "fireops-bkf-", volume.ReadAuto)
	cfg.Sources.SQLite = nil
	for _, u := range []string{"ada", "bob", "cy"} {
		mp := testVolume(t, cli, prefix+"-user-"+u)
		testutil.Must(t, os.WriteFile(filepath.Join(mp, "notes.txt"), []byte(u), 0o644))
	}

	t.Run("volume removed after discovery", func(t *testing.T) {
		drop := func(names []string) { dropVolume(t, cli, prefix+"-user-bob") }
		res, err := Snapshot(ctx, cfg, SnapshotOptions{afterDiscovery: drop})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Parts) != 2 || len(res.Skipped) != 1 || res.Skipped[0].ID != "volume:"+prefix+"-user-bob" {
			t.Fatalf("parts %v, skipped %+v", res.Parts, res.Skipped)
		}
		if _, err := cli.VolumeInspect(ctx, prefix+"-user-bob"); !cerrdefs.IsNotFound(err) {
			t.Errorf("the removed volume was recreated: %v", err)
		}
		nothingLeft(t, cli, prefix)
	})

	t.Run("engine unreachable", func(t *testing.T) {
		t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
		before, _ := os.ReadDir(filepath.Join(f.dir, "backups", "gpu01", "snapshots"))
		_, err := Snapshot(ctx, cfg, SnapshotOptions{})
		if err == nil || exitcode.Code(err) != exitcode.Failure || !strings.Contains(err.Error(), "cannot reach the Docker Engine") ||
			!strings.Contains(exitcode.Hint(err), "dockerd") {
			t.Fatalf("snapshot with the Engine down: code %d, %v (hint %q)", exitcode.Code(err), err, exitcode.Hint(err))
		}
		after, _ := os.ReadDir(filepath.Join(f.dir, "backups", "gpu01", "snapshots"))
		if len(after) != len(before) {
			t.Errorf("a failed run left snapshot folders: %d before, %d after", len(before), len(after))
		}
	})

	t.Run("restore-test failure removes the scratch volume", func(t *testing.T) {
		res, err := Snapshot(ctx, cfg, SnapshotOptions{})
		if err != nil {
			t.Fatal(err)
		}
		root := filepath.Join(f.dir, "backups")
		chunk := piecePath(t, root, res, "volume:"+prefix+"-user-ada", 0)
		data, err := os.ReadFile(chunk)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 0xff
		testutil.Must(t, os.WriteFile(chunk, data, 0o600))
		before := scratchVolumes(t, cli, res.ID)
		_, err = Verify(ctx, cfg, VerifyOptions{Level: LevelRestoreTest})
		if exitcode.Code(err) != exitcode.CheckFailed {
			t.Fatalf("verify of a damaged part: %v", err)
		}
		if after := scratchVolumes(t, cli, res.ID); len(after) != len(before) {
			t.Errorf("scratch volumes left behind: %v (before: %v)", after, before)
		}
		nothingLeft(t, cli, prefix)
	})
}

// TestVolumeRestoreInUse: a volume that a running container uses is
// refused without --force, naming the container.
func TestVolumeRestoreInUse(t *testing.T) {
	t.Parallel()
	cli := dockerClient(t)
	ctx := context.Background()
	prefix, _, cfg := volumeSetup(t, "fireops-bku-", volume.ReadAuto)
	cfg.Sources.SQLite = nil
	mp := testVolume(t, cli, prefix+"-user-ada")
	testutil.Must(t, os.WriteFile(filepath.Join(mp, "notes.txt"), []byte("v1"), 0o644))
	if _, err := Snapshot(ctx, cfg, SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	name := runningUser(t, cli, prefix+"-user-ada")
	_, err := restore.Restore(ctx, cfg, restore.Options{Snapshot: "latest", Force: false})
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), name) {
		t.Fatalf("restore into a volume in use: %v", err)
	}
	testutil.Must(t, os.WriteFile(filepath.Join(mp, "notes.txt"), []byte("v2"), 0o644))
	if _, err := restore.Restore(ctx, cfg, restore.Options{Snapshot: "latest", Force: true}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(mp, "notes.txt")); string(b) != "v1" {
		t.Errorf("after a forced restore: %q", b)
	}
	nothingLeft(t, cli, prefix)
}

// runningUser starts a container that uses vol and returns its name; the
// writer image is shared by the package's tests and removed by TestMain.
func runningUser(t *testing.T, cli *client.Client, vol string) string {
	t.Helper()
	_, name := volumetest.StartWriter(t, cli, vol)
	return name
}

// TestSQLiteInVolumeRestoreInUse: the hub's database lives in a volume that
// a running container (the hub) uses; in rollback-journal mode SQLite
// cannot tell the file is open, so restoring the sqlite part over it is
// refused, naming the container, also with --force, until it is stopped.
func TestSQLiteInVolumeRestoreInUse(t *testing.T) {
	t.Parallel()
	cli := dockerClient(t)
	ctx := context.Background()
	prefix, _, cfg := volumeSetup(t, "fireops-bku-", volume.ReadAuto)
	dmp := testVolume(t, cli, prefix+"-data")
	db := filepath.Join(dmp, "jupyterhub.sqlite")
	sqlite3(t, db, "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users(name) VALUES ('ada');")
	if _, err := Snapshot(ctx, cfg, SnapshotOptions{Only: []string{"sqlite"}}); err != nil {
		t.Fatal(err)
	}
	name := runningUser(t, cli, prefix+"-data")
	_, err := restore.Restore(ctx, cfg, restore.Options{Snapshot: "latest", Parts: []string{"sqlite:hub"}, Force: false})
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("restore of a database whose volume is in use: %v", err)
	}
	// --force replaces an existing database, not one the hub has open.
	_, err = restore.Restore(ctx, cfg, restore.Options{Snapshot: "latest", Parts: []string{"sqlite:hub"}, Force: true})
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("forced restore of a database whose volume is in use: %v", err)
	}
	sqlite3(t, db, "INSERT INTO users(name) VALUES ('bob');")
	timeout := 0
	if err := cli.ContainerStop(ctx, name, container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	if _, err := restore.Restore(ctx, cfg, restore.Options{Snapshot: "latest", Parts: []string{"sqlite:hub"}, Force: true}); err != nil {
		t.Fatal(err)
	}
	if got := sqlite3(t, db, "SELECT group_concat(name) FROM users;"); got != "ada" {
		t.Errorf("after a forced restore: %q", got)
	}
	nothingLeft(t, cli, prefix)
}
