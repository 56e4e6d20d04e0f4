package backup

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/restore"
	"github.com/firetech/fireops/pkg/source/volume"
)

// TestSQLiteRestoreRemovesVolumeItCreated: restoring the hub database into
// its volume when the volume does not exist creates it; when that restore
// fails (a damaged chunk), the volume it created is removed again, not
// left behind empty.
func TestSQLiteRestoreRemovesVolumeItCreated(t *testing.T) {
	t.Parallel()
	cli := dockerClient(t)
	ctx := context.Background()
	prefix, f, cfg := volumeSetup(t, "fireops-sqv-", volume.ReadAuto)
	vol := prefix + "-data"
	dmp := testVolume(t, cli, vol)
	sqlite3(t, filepath.Join(dmp, "jupyterhub.sqlite"), "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users(name) VALUES ('ada');")
	res, err := Snapshot(ctx, cfg, SnapshotOptions{Only: []string{"sqlite"}})
	if err != nil {
		t.Fatal(err)
	}
	exists := func() bool {
		_, err := cli.VolumeInspect(ctx, vol)
		if err != nil && !cerrdefs.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}

	// Into a missing volume: created, the database restored into it.
	dropVolume(t, cli, vol)
	if _, err := restore.Restore(ctx, cfg, restore.Options{Snapshot: "latest", Parts: []string{"sqlite:hub"}}); err != nil {
		t.Fatal(err)
	}
	if got := sqlite3(t, filepath.Join(mountpoint(t, cli, vol), "jupyterhub.sqlite"), "SELECT group_concat(name) FROM users;"); got != "ada" {
		t.Errorf("restored database: %q", got)
	}

	// A failed restore removes the volume it created.
	dropVolume(t, cli, vol)
	chunk := piecePath(t, filepath.Join(f.dir, "backups"), res, "sqlite:hub", 0)
	b, err := os.ReadFile(chunk)
	testutil.Must(t, err)
	b[len(b)/2] ^= 0xff
	testutil.Must(t, os.WriteFile(chunk, b, 0o600))
	if _, err := restore.Restore(ctx, cfg, restore.Options{Snapshot: "latest", Parts: []string{"sqlite:hub"}}); err == nil {
		t.Fatal("restore of a damaged part succeeded")
	}
	if exists() {
		t.Errorf("the failed restore left the volume %s it created", vol)
	}
	nothingLeft(t, cli, prefix)
}
