package main

import (
	"bytes"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/firetech/fireops/internal/davtest"
)

// TestLeftoverAfterKill kills -9 a snapshot while the SQLite source's
// private copy (plaintext) is being uploaded: the copy stays in state_dir,
// and the next snapshot removes it first, saying so in its log.
func TestLeftoverAfterKill(t *testing.T) {
	t.Parallel()
	dav := davtest.Start(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "fireops.yaml")
	runFireops(t, cfg, "init", "--dir", dir, "--host", "gpu01")

	// A database of 24 MiB that does not compress: more than the
	// pipeline holds while uploads wait.
	dbPath := filepath.Join(dir, "hub.sqlite")
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE blobs (b BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 384)
		INSERT INTO blobs SELECT randomblob(65536) FROM n`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	state := filepath.Join(dir, "state")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	y := initForFiles(t, string(raw),
		"  files:\n    - name: stack\n      paths: [/opt/firetech]\n      exclude: [\"*.tmp\"]\n", "  sqlite:\n    - {name: hub, path: "+dbPath+"}\n",
		"    remote: backups\n", fmt.Sprintf("    remote: \"%s\"\n", dav.Remote("fireops")),
		"# chunk_size: 32MiB", "chunk_size: 1MiB\ncompression: fastest",
		"# state_dir: /var/lib/fireops", "state_dir: "+state)
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}

	copies := func() []string {
		m, _ := filepath.Glob(filepath.Join(state, "fireops-sqlite-*", "copy.sqlite"))
		return m
	}
	dav.HoldPutsAfter(3)
	cmd := fireopsCmd(t, cfg, "snapshot", "-q")
	var killed bytes.Buffer
	cmd.Stdout, cmd.Stderr = &killed, &killed
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for (dav.Puts() < 4 || len(copies()) == 0) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if dav.Puts() < 4 || len(copies()) == 0 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the snapshot never held its upload with the copy made (puts %d, copies %v):\n%s", dav.Puts(), copies(), killed.String())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	dav.Release()
	left := copies()
	if len(left) != 1 {
		t.Fatalf("after kill -9, state_dir holds %v; want the killed run's copy", left)
	}
	fi, err := os.Stat(filepath.Dir(left[0]))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the copy's folder: %v, %v; want 0700", fi.Mode(), err)
	}

	out, err := fireopsCmd(t, cfg, "snapshot").CombinedOutput()
	if err != nil {
		t.Fatalf("snapshot after the kill: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `msg="removed what an interrupted fireops run left behind" path=`+filepath.Dir(left[0])) {
		t.Errorf("the next snapshot did not log the removal:\n%s", out)
	}
	if c := copies(); len(c) != 0 {
		t.Errorf("copies left after the next snapshot: %v", c)
	}
}
