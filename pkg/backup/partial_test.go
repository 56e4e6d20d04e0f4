package backup

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/metrics"
	"github.com/firetech/fireops/pkg/restore"
	"github.com/firetech/fireops/pkg/snapshot"
)

// TestPartialSnapshot: a SQLite source whose file is not a database fails
// its part only. The run exits 1 naming the part with a hint, its result
// holds the good parts and names the failed one, the metrics say which
// part failed, `snapshots` lists the snapshot as complete with the failed
// part (named with the identity, counted without), and the good parts
// verify and restore.
func TestPartialSnapshot(t *testing.T) {
	t.Parallel()
	f, _ := localFixture(t, "backups")
	ctx := context.Background()
	cfg := withBrokenSQLite(t, f, "this is not a database, it is a shopping list\n")

	res, err := Snapshot(ctx, &cfg, SnapshotOptions{})
	if exitcode.Code(err) != exitcode.Failure || !strings.Contains(err.Error(), "part sqlite:broken: ") ||
		!strings.Contains(exitcode.Hint(err), "the snapshot holds the other parts") {
		t.Fatalf("snapshot: code %d, err %v, hint %q", exitcode.Code(err), err, exitcode.Hint(err))
	}
	if res == nil || len(res.Parts) != 2 || len(res.FailedParts) != 1 || res.FailedParts[0].ID != "sqlite:broken" ||
		!strings.Contains(res.FailedParts[0].Reason, "not a database") || len(res.Failed()) != 0 {
		t.Fatalf("result %+v", res)
	}

	var buf strings.Builder
	mx := metrics.SnapshotMetrics(time.Now(), time.Second, res, err, []string{"local"})
	testutil.Must(t, metrics.Write(&buf, mx.Run))
	for _, want := range []string{
		`fireops_snapshot_part_last_run_success{part="sqlite:broken"} 0`,
		`fireops_snapshot_part_last_run_success{part="sqlite:hub"} 1`,
		`fireops_snapshot_part_last_run_success{part="files:stack"} 1`,
		`fireops_snapshot_last_run_success 0`,
		`fireops_snapshot_destination_success{destination="local"} 1`,
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, buf.String())
		}
	}

	listed := func(c *config.Config) snapshot.Listing {
		t.Helper()
		ls, err := List(ctx, c, nil)
		if err != nil || len(ls) != 1 || len(ls[0].Snapshots) != 1 {
			t.Fatalf("list: %v %+v", err, ls)
		}
		return ls[0].Snapshots[0]
	}
	l := listed(&cfg)
	if !l.Complete || l.Parts != 2 || l.FailedParts != 1 || len(l.Failed) != 1 || l.Failed[0] != res.FailedParts[0] {
		t.Errorf("listing with the identity: %+v", l)
	}
	noID := cfg
	noID.Keys.IdentityFile = ""
	if l := listed(&noID); !l.Complete || l.FailedParts != 1 || l.Failed != nil {
		t.Errorf("listing without the identity: %+v", l)
	}

	if _, err := Verify(ctx, &cfg, VerifyOptions{Level: LevelFull}); err != nil {
		t.Errorf("verify full of the partial snapshot: %v", err)
	}
	to := filepath.Join(t.TempDir(), "restored")
	if _, err := restore.Restore(ctx, &cfg, restore.Options{Snapshot: "latest", Parts: []string{"files:stack"}, To: to}); err != nil {
		t.Fatalf("restore of the good part: %v", err)
	}
	sameTree(t, f.data, filepath.Join(to, f.data))
	if _, err := restore.Restore(ctx, &cfg, restore.Options{Snapshot: "latest", Parts: []string{"sqlite:broken"}, To: filepath.Join(t.TempDir(), "x")}); err == nil {
		t.Error("the failed part restored from a snapshot that does not hold it")
	}
}

// TestPartialSnapshotMongoCut: the MongoDB server goes away in the middle
// of the dump while a files part is in the same run: the mongo part fails
// with the cause, the files part is in a signed snapshot and restores.
func TestPartialSnapshotMongoCut(t *testing.T) {
	t.Parallel()
	p, cfg, dir := mongoBehindProxy(t)
	data := filepath.Join(dir, "data")
	testutil.Must(t, os.MkdirAll(data, 0o700))
	testutil.Must(t, os.WriteFile(filepath.Join(data, "notes.txt"), []byte("drones fight fires\n"), 0o600))
	cfg.Sources.Files = []config.FileSource{{Name: "stack", Paths: []string{data}}}
	p.CutAfter(150_000, true)
	ctx := context.Background()
	res, err := Snapshot(ctx, cfg, SnapshotOptions{})
	if !p.Cut() || exitcode.Code(err) != exitcode.Failure || !strings.Contains(err.Error(), "part mongo:mongodb: ") ||
		!strings.Contains(err.Error(), "lost the connection to the server") {
		t.Fatalf("snapshot through a cut connection: %v (code %d, cut %v)", err, exitcode.Code(err), p.Cut())
	}
	if res == nil || len(res.Parts) != 1 || res.Parts[0].ID != "files:stack" || len(res.FailedParts) != 1 || res.FailedParts[0].ID != "mongo:mongodb" {
		t.Fatalf("result %+v", res)
	}
	to := filepath.Join(t.TempDir(), "restored")
	if _, err := restore.Restore(ctx, cfg, restore.Options{Snapshot: res.ID, Parts: []string{"files:stack"}, To: to}); err != nil {
		t.Fatalf("restore of the files part: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(to, data, "notes.txt")); string(got) != "drones fight fires\n" {
		t.Errorf("restored %q", got)
	}
}
