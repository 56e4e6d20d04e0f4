package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/webdav"
)

// holdingDAV is a WebDAV server that holds the first upload of a piece
// (a PUT under objects/) until the request is cancelled, and says on held
// when it does: the snapshot is then in the middle of a part's stream.
func holdingDAV(t *testing.T) (remote, dir string, held <-chan struct{}) {
	t.Helper()
	dir = t.TempDir()
	h := &webdav.Handler{FileSystem: webdav.Dir(dir), LockSystem: webdav.NewMemLS()}
	ch, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/objects/") {
			once.Do(func() { close(ch) })
			// The body is not read, so a client that went away does not
			// cancel r's context: the test's end releases it.
			select {
			case <-r.Context().Done():
			case <-release:
			}
			http.Error(w, "held", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		close(release)
		srv.CloseClientConnections()
		srv.Close()
	})
	return fmt.Sprintf(":webdav,url='%s',vendor=rclone:fireops", srv.URL), dir, ch
}

// TestInterruptedSnapshotWording: a snapshot stopped by SIGINT in the
// middle of a part exits 130 with one plain line saying that nothing was
// committed and what happens to the pieces already uploaded, naming the
// part once and no Go error text; no manifest is left.
func TestInterruptedSnapshotWording(t *testing.T) {
	t.Parallel()
	remote, davDir, held := holdingDAV(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "fireops.yaml")
	runFireops(t, cfg, "init", "--dir", dir, "--host", "gpu01")
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 8<<20)
	for i := range b {
		b[i] = byte(i*7) ^ byte(i>>11) ^ byte(i>>19)
	}
	if err := os.WriteFile(filepath.Join(data, "big.bin"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	y := initForFiles(t, string(raw),
		"paths: [/opt/firetech]", "paths: ["+data+"]",
		"    remote: backups\n", fmt.Sprintf("    remote: \"%s\"\n", remote),
		"# chunk_size: 32MiB", "chunk_size: 1MiB\ncompression: fastest",
		"# state_dir: /var/lib/fireops", "state_dir: "+filepath.Join(dir, "state"))
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := fireopsCmd(t, cfg, "snapshot", "-q")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-held:
	case err := <-exited:
		t.Fatalf("the snapshot ended before its first piece upload: %v\n%s", err, stderr.String())
	case <-time.After(2 * time.Minute): // a hang, not a synchronisation
		cmd.Process.Kill()
		t.Fatal("the snapshot never uploaded a piece")
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = <-exited
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("exit: %v, want exit code 130\n%s", err, stderr.String())
	}
	var line string
	for l := range strings.SplitSeq(stderr.String(), "\n") {
		if strings.HasPrefix(l, "fireops: error: ") {
			if line != "" {
				t.Fatalf("more than one error line:\n%s", stderr.String())
			}
			line = l
		}
	}
	const want = "fireops: error: interrupted during part files:stack: nothing was committed; the pieces already uploaded are kept for the next run to reuse (rotate removes those no snapshot uses after retention.incomplete_grace)"
	if line != want {
		t.Errorf("error line:\n%s\nwant:\n%s\nstderr:\n%s", line, want, stderr.String())
	}
	if n := strings.Count(line, "files:stack"); n != 1 {
		t.Errorf("the part id appears %d times in %q, want once", n, line)
	}
	snaps, _ := filepath.Glob(filepath.Join(davDir, "gpu01", "snapshots", "*", "manifest.json"))
	if len(snaps) != 0 {
		t.Errorf("the interrupted snapshot left a manifest: %v", snaps)
	}
}
