package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestSnapshotsInterruptedExitListed: Ctrl-C while `snapshots` waits for
// a destination that does not answer exits with a code that `fireops
// snapshots --help` lists in its EXIT STATUS (an adversarial review found
// 130 missing there: every command that can fail now lists it).
func TestSnapshotsInterruptedExitListed(t *testing.T) {
	t.Parallel()
	held := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(held) })
		select {
		case <-r.Context().Done():
		case <-release:
		}
		http.Error(w, "held", http.StatusServiceUnavailable)
	}))
	t.Cleanup(func() { close(release); srv.CloseClientConnections(); srv.Close() })
	dir := t.TempDir()
	cfg := filepath.Join(dir, "fireops.yaml")
	runFireops(t, cfg, "init", "--dir", dir, "--host", "gpu01")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	y := initForFiles(t, string(raw),
		"    remote: backups\n", fmt.Sprintf("    remote: \"%s\"\n", fmt.Sprintf(":webdav,url='%s',vendor=rclone:fireops", srv.URL)),
		"# state_dir: /var/lib/fireops", "state_dir: "+filepath.Join(dir, "state"))
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := irowsInterruptWhenHeld(t, fireopsCmd(t, cfg, "snapshots"), held)

	help := runFireops(t, cfg, "snapshots", "--help")
	block := help[strings.Index(help, "\nEXIT STATUS\n"):]
	block = strings.SplitN(block[len("\nEXIT STATUS\n"):], "\n\n", 2)[0]
	var listed []int
	for _, m := range regexp.MustCompile(`(?m)^  (\d+) `).FindAllStringSubmatch(block, -1) {
		c, _ := strconv.Atoi(m[1])
		listed = append(listed, c)
	}
	for _, c := range listed {
		if c == code {
			return
		}
	}
	t.Fatalf("interrupted `fireops snapshots` exited %d; its --help EXIT STATUS lists only %v\nstdout:\n%s\nstderr:\n%s", code, listed, out, errOut)
}
