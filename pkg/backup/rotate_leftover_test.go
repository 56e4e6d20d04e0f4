package backup

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/leftover"
	svolume "github.com/firetech/fireops/pkg/source/volume"
)

// rotateConfig is the fixture's config with a policy rotate accepts.
func rotateConfig(t *testing.T) *config.Config {
	t.Helper()
	f := newFixture(t, "{name: local, remote: "+filepath.Join(t.TempDir(), "backups")+"}")
	cfg := *f.cfg
	cfg.Retention = config.Retention{KeepLast: 1, IncompleteGrace: config.Duration(time.Hour)}
	return &cfg
}

// TestRotateRemovesSpoolLeftovers: a MongoDB spool file that a killed
// snapshot left in state_dir is removed by rotate, with a log line; a
// live run's is kept.
func TestRotateRemovesSpoolLeftovers(t *testing.T) {
	t.Parallel()
	cfg := rotateConfig(t)
	testutil.Must(t, os.MkdirAll(cfg.StateDir, 0o700))
	dead := filepath.Join(cfg.StateDir, ".fireops-mongo-spool-"+killedTag(t)+"-1")
	live := filepath.Join(cfg.StateDir, ".fireops-mongo-spool-"+leftover.Tag()+"-2")
	for _, p := range []string{dead, live} {
		testutil.Must(t, os.WriteFile(p, []byte("ciphertext"), 0o600))
	}
	var logs bytes.Buffer
	if _, err := Rotate(context.Background(), cfg, RotateOptions{Log: slog.New(slog.NewTextHandler(&logs, nil))}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dead); err == nil {
		t.Errorf("the killed run's spool file is still there")
	}
	if _, err := os.Lstat(live); err != nil {
		t.Errorf("a live run's spool file: %v", err)
	}
	if !strings.Contains(logs.String(), `msg="removed what an interrupted fireops run left behind" path=`+dead) {
		t.Errorf("no log line:\n%s", logs.String())
	}
}

// TestRotateRemovesStagingVolumes: a staging volume that a killed restore
// of this host left is removed by rotate when the config has volume
// sources. (pkg/source/volume tests which volumes are kept and the log
// line; another process's rotate may remove the volume first, which this
// test cannot tell from its own.)
func TestRotateRemovesStagingVolumes(t *testing.T) {
	t.Parallel()
	testenv.RequireDocker(t)
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	name := "fireops-staging-" + killedTag(t) + "-rotate"
	if _, err := cli.VolumeCreate(ctx, volume.CreateOptions{Name: name, Driver: "local", Labels: map[string]string{
		svolume.LabelStaging: "fireops-test-rotate-" + filepath.Base(t.TempDir()), svolume.LabelHost: leftover.Host(),
		"org.firetech.fireops.swap": "no"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.VolumeRemove(context.Background(), name, true) })
	cfg := rotateConfig(t)
	cfg.Sources.Volumes = &config.VolumeSource{}
	if _, err := Rotate(ctx, cfg, RotateOptions{DryRun: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.VolumeInspect(ctx, name); err != nil {
		t.Fatalf("rotate --dry-run removed a staging volume: %v", err)
	}
	if _, err := Rotate(ctx, cfg, RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.VolumeInspect(ctx, name); !cerrdefs.IsNotFound(err) {
		t.Errorf("the killed restore's staging volume %s is still there: %v", name, err)
	}
}
