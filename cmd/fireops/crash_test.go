package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/davtest"
)

// fireopsCmd returns the real fireops main (the test binary, through the
// "fireops" command testscript puts on PATH) with a config.
func fireopsCmd(t *testing.T, cfg string, args ...string) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("fireops")
	if err != nil {
		t.Fatalf("the fireops command of testscript.Main is not on PATH: %v", err)
	}
	return exec.Command(bin, append([]string{"--config", cfg}, args...)...)
}

func runFireops(t *testing.T, cfg string, args ...string) string {
	t.Helper()
	out, err := fireopsCmd(t, cfg, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("fireops %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// initHost runs `fireops init` for host gpu01 in a fresh folder and
// returns the folder, the path of the config init wrote there, and the
// config.
func initHost(t *testing.T) (dir, cfg, raw string) {
	t.Helper()
	dir = t.TempDir()
	cfg = filepath.Join(dir, "fireops.yaml")
	runFireops(t, cfg, "init", "--dir", dir, "--host", "gpu01")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return dir, cfg, string(b)
}

// TestKillDuringUpload kills -9 a snapshot in the middle of an upload:
// no manifest, the snapshot lists as incomplete, the earlier snapshot
// still verifies, and a new snapshot succeeds.
func TestKillDuringUpload(t *testing.T) {
	t.Parallel()
	dav := davtest.Start(t)
	dir := t.TempDir()
	runFireops(t, filepath.Join(dir, "fireops.yaml"), "init", "--dir", dir, "--host", "gpu01")
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, seed byte) {
		b := make([]byte, 6<<20)
		for i := range b {
			b[i] = byte(i*7) ^ seed ^ byte(i>>11)
		}
		if err := os.WriteFile(filepath.Join(data, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("checkpoint.bin", 1)
	cfg := filepath.Join(dir, "fireops.yaml")
	y := davFilesYAML(t, cfg, dir, data, dav.Remote("fireops"))
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	runFireops(t, cfg, "snapshot", "-q")

	// Change the data so the part must be uploaded, hold uploads after a
	// few chunks, and kill the process while it waits.
	write("checkpoint.bin", 2)
	base := dav.Puts()
	dav.HoldPutsAfter(3)
	cmd := fireopsCmd(t, cfg, "snapshot", "-q")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for dav.Puts() < base+4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if dav.Puts() < base+4 {
		cmd.Process.Kill()
		t.Fatal("the snapshot never reached the held upload")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	dav.Release()

	var ls []struct {
		Destination string
		Snapshots   []struct {
			ID       string
			Complete bool
		}
	}
	if err := json.Unmarshal([]byte(runFireops(t, cfg, "snapshots", "--json")), &ls); err != nil {
		t.Fatal(err)
	}
	snaps := ls[0].Snapshots
	if len(snaps) != 2 || !snaps[0].Complete || snaps[1].Complete {
		t.Fatalf("after kill -9: %+v; want the first complete and the killed one incomplete", snaps)
	}
	if _, err := os.Stat(filepath.Join(dav.Dir, "fireops", "gpu01", "snapshots", snaps[1].ID, "manifest.json")); !os.IsNotExist(err) {
		t.Fatalf("the killed snapshot has a manifest: %v", err)
	}
	runFireops(t, cfg, "verify", snaps[0].ID, "--level", "full", "-q")
	out := runFireops(t, cfg, "snapshot", "-q")
	if !strings.Contains(out, "ok") {
		t.Fatalf("new snapshot after the kill:\n%s", out)
	}
	runFireops(t, cfg, "verify", "latest", "--level", "full", "-q")
}
