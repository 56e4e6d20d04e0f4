package backup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/restore"
	"github.com/firetech/fireops/pkg/snapshot"
	"github.com/firetech/fireops/pkg/source/volume"
)

// TestSetupFailedParts (not parallel: it changes DOCKER_HOST): a source
// that cannot be set up fails its part only (design.md §5).
//
//   - An sqlite source in a volume that does not exist: the files part and
//     the user's volume are in a signed snapshot, sqlite:hub is named as
//     failed with the cause, exit 1 with the hint to check the volume.
//   - The Docker Engine down: the volumes cannot be listed, so one failed
//     pseudo-part volume:* stands for them (and sqlite:hub fails too); the
//     files part is in the snapshot.
//   - restore latest then takes the files from the newest run and the
//     user's volume from the run before, the newest full run holding
//     volumes; the plan names sqlite:hub as in no snapshot.
func TestSetupFailedParts(t *testing.T) {
	cli := dockerClient(t)
	ctx := context.Background()
	prefix := "fireops-bks-" + randomSuffix()
	f := newFixture(t, "{name: local, remote: "+filepath.Join(t.TempDir(), "unused")+"}")
	cfg := loadTestConfig(t, f.dir, "setup", f.init, fmt.Sprintf(`compression: fastest
sources:
  files: [{name: stack, paths: [%s]}]
  sqlite: [{name: hub, volume: %s-data, file: jupyterhub.sqlite}]
  volumes: {include: ["%s-user-*"]}
`, f.data, prefix, prefix))
	mp := testVolume(t, cli, prefix+"-user-ada")
	testutil.Must(t, os.WriteFile(filepath.Join(mp, "notes.txt"), []byte("ada's notes\n"), 0o644))
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	at := func(m int) func() time.Time {
		return func() time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	}
	parts := func(res *snapshot.Result) (held, failed []string) {
		for _, p := range res.Parts {
			held = append(held, p.ID)
		}
		for _, p := range res.FailedParts {
			failed = append(failed, p.ID+": "+p.Reason)
		}
		return held, failed
	}

	// The hub database's volume does not exist.
	s1, err := Snapshot(ctx, cfg, SnapshotOptions{Now: at(0)})
	if exitcode.Code(err) != exitcode.Failure || !strings.Contains(err.Error(), "part sqlite:hub: ") ||
		!strings.Contains(exitcode.Hint(err), "docker volume ls") {
		t.Fatalf("snapshot with the database's volume missing: code %d, %v (hint %q)", exitcode.Code(err), err, exitcode.Hint(err))
	}
	held, failed := parts(s1)
	if strings.Join(held, " ") != "files:stack volume:"+prefix+"-user-ada" || len(failed) != 1 ||
		!strings.HasPrefix(failed[0], "sqlite:hub: ") || !strings.Contains(failed[0], "volume "+prefix+"-data does not exist") {
		t.Fatalf("parts %v, failed %v", held, failed)
	}

	// The Engine down: the volumes' parts are unknown.
	host := os.Getenv("DOCKER_HOST")
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "no-docker.sock"))
	s2, err := Snapshot(ctx, cfg, SnapshotOptions{Now: at(1)})
	if exitcode.Code(err) != exitcode.Failure || !strings.Contains(err.Error(), "part volume:*: ") ||
		!strings.Contains(exitcode.Hint(err), "dockerd") {
		t.Fatalf("snapshot with the Engine down: code %d, %v (hint %q)", exitcode.Code(err), err, exitcode.Hint(err))
	}
	held, failed = parts(s2)
	if strings.Join(held, " ") != "files:stack" || len(failed) != 2 ||
		!strings.HasPrefix(failed[0], "volume:*: ") || !strings.Contains(failed[0], "cannot reach the Docker Engine") ||
		!strings.HasPrefix(failed[1], "sqlite:hub: ") || !strings.Contains(failed[1], "cannot reach the Docker Engine") {
		t.Fatalf("parts %v, failed %v", held, failed)
	}
	if ls, err := List(ctx, cfg, nil); err != nil || len(ls) != 1 || len(ls[0].Snapshots) != 2 || !ls[0].Snapshots[1].Complete ||
		ls[0].Snapshots[1].ID != s2.ID || ls[0].Snapshots[1].FailedParts != 2 {
		t.Fatalf("listing: %v %+v", err, ls)
	}
	t.Setenv("DOCKER_HOST", host)

	// restore latest: the user's volume from the run that listed it.
	out := t.TempDir()
	res, err := restore.Restore(ctx, cfg, restore.Options{Snapshot: "latest", To: out, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range res.Parts {
		got[p.Part] = p.Snapshot
	}
	want := map[string]string{"files:stack": s2.ID, volume.Kind + ":" + prefix + "-user-ada": s1.ID}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("restore latest planned %v, want %v", got, want)
	}
	if !strings.Contains(res.Note, "2 snapshots read") || !strings.Contains(res.Note, "sqlite:hub failed in "+s2.ID+" and no older snapshot holds it") ||
		strings.Contains(res.Note, "volume:*") {
		t.Errorf("note %q", res.Note)
	}
	nothingLeft(t, cli, prefix)
}
