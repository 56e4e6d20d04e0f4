package main

// Ctrl-C in the middle of a verify or a restore: the result rows say the
// work was stopped, not that a snapshot is damaged, and show none of Go's
// cancellation texts.

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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/webdav"
)

// irowsDAV is a WebDAV server that, once hold() was called, holds every
// GET of a piece (under /objects/) until the request is cancelled, and
// says so on the channel hold returns: the reader is then in the middle
// of a part.
type irowsDAV struct {
	remote  string
	holding atomic.Bool
	once    sync.Once
	held    chan struct{}
}

func newIrowsDAV(t *testing.T) *irowsDAV {
	t.Helper()
	d := &irowsDAV{held: make(chan struct{})}
	h := &webdav.Handler{FileSystem: webdav.Dir(t.TempDir()), LockSystem: webdav.NewMemLS()}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.holding.Load() && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/objects/") {
			d.once.Do(func() { close(d.held) })
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
	d.remote = fmt.Sprintf(":webdav,url='%s',vendor=rclone:fireops", srv.URL)
	return d
}

func (d *irowsDAV) hold() <-chan struct{} { d.holding.Store(true); return d.held }

// irowsConfig: a files part of 2 MiB to a WebDAV destination, snapshotted once.
func irowsConfig(t *testing.T, remote string) (cfg, dir string) {
	t.Helper()
	dir = t.TempDir()
	cfg = filepath.Join(dir, "fireops.yaml")
	runFireops(t, cfg, "init", "--dir", dir, "--host", "gpu01")
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2<<20)
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
	runFireops(t, cfg, "snapshot", "-q")
	return cfg, dir
}

// irowsInterruptWhenHeld starts cmd, sends SIGINT once held fires, and returns
// the exit code and what it wrote.
func irowsInterruptWhenHeld(t *testing.T, cmd *exec.Cmd, held <-chan struct{}) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-held:
	case err := <-exited:
		t.Fatalf("ended before the held request: %v\n%s\n%s", err, out.String(), errb.String())
	case <-time.After(2 * time.Minute): // a hang, not a synchronisation
		cmd.Process.Kill()
		t.Fatal("never reached the held request")
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := <-exited
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	if ee != nil {
		code = ee.ExitCode()
	}
	return code, out.String(), errb.String()
}

// TestVerifyInterruptedRow: Ctrl-C during `verify --level full`. The
// snapshot was not checked to its end: its row says so ("not finished:
// interrupted"), not "FAILED: part files:stack: ... interrupt signal
// received", which an admin reads as a damaged snapshot.
func TestVerifyInterruptedRow(t *testing.T) {
	t.Parallel()
	dav := newIrowsDAV(t)
	cfg, _ := irowsConfig(t, dav.remote)
	code, out, errOut := irowsInterruptWhenHeld(t, fireopsCmd(t, cfg, "verify", "--level", "full"), dav.hold())
	if code != 130 {
		t.Fatalf("exit %d, want 130\n%s\n%s", code, out, errOut)
	}
	for _, bad := range append([]string{"FAILED"}, irowsGoCancel...) {
		if strings.Contains(out, bad) {
			t.Errorf("interrupted verify's table says %q (the snapshot was not found damaged, the check was stopped):\n%s", bad, out)
		}
		if strings.Contains(errOut, bad) {
			t.Errorf("interrupted verify's stderr says %q:\n%s", bad, errOut)
		}
	}
	if !strings.Contains(out, "not finished: interrupted") {
		t.Errorf("interrupted verify's row does not say it was not finished:\n%s", out)
	}
}

// TestRestoreInterruptedRow: Ctrl-C during `restore latest --to DIR`.
// The part's row says "not restored: interrupted" and its log line is a
// warning in the same words, not "failed: piece list ... Get
// \"http://...\": interrupt signal received" at level ERROR.
func TestRestoreInterruptedRow(t *testing.T) {
	t.Parallel()
	dav := newIrowsDAV(t)
	cfg, dir := irowsConfig(t, dav.remote)
	code, out, errOut := irowsInterruptWhenHeld(t, fireopsCmd(t, cfg, "restore", "latest", "--to", filepath.Join(dir, "restored")), dav.hold())
	if code != 130 {
		t.Fatalf("exit %d, want 130\n%s\n%s", code, out, errOut)
	}
	for _, bad := range irowsGoCancel {
		if strings.Contains(out, bad) {
			t.Errorf("interrupted restore's table says Go's %q:\n%s", bad, out)
		}
		if strings.Contains(errOut, bad) {
			t.Errorf("interrupted restore's stderr says Go's %q:\n%s", bad, errOut)
		}
	}
	if !strings.Contains(out, "not restored: interrupted") {
		t.Errorf("interrupted restore's row does not say the part was not restored:\n%s", out)
	}
	if strings.Contains(out, "failed") {
		t.Errorf("interrupted restore's row says failed:\n%s", out)
	}
	if !strings.Contains(errOut, "part not restored: interrupted") {
		t.Errorf("interrupted restore's log does not say the part was not restored:\n%s", errOut)
	}
	for _, l := range strings.Split(errOut, "\n") {
		if strings.Contains(l, "ERROR") && strings.Contains(l, "part") {
			t.Errorf("interrupted restore logs an ERROR for its part: %q", l)
		}
	}
}

// irowsGoCancel are Go's texts of a cancelled context (context.Canceled and
// signal.NotifyContext's cause), which the issue says an admin should not
// read after Ctrl-C.
var irowsGoCancel = []string{"context canceled", "interrupt signal received"}
