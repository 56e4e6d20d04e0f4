package main

// Helpers of the tests that interrupt fireops (SIGINT) in the middle of
// its work: a WebDAV destination that holds requests, a config backing up
// a files part to it, the start-wait-signal of the command, and the
// pseudo-terminal of the tests of the progress display.

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

	"github.com/creack/pty"
	"golang.org/x/net/webdav"
)

// holdingDAV is a WebDAV server on loopback that, while holding, holds
// every request of its method for a piece (a path under /objects/) until
// the request is cancelled or the test ends, and says so on held: the
// command is then in the middle of a part. With method "" it holds every
// request, whatever its method and path: a destination that never answers.
type holdingDAV struct {
	remote  string // the inline rclone connection string
	dir     string // the folder the server serves
	method  string
	holding atomic.Bool
	once    sync.Once
	held    chan struct{}
}

// newHoldingDAV starts a holdingDAV for the test's lifetime; it holds at
// once when atOnce, otherwise from its first hold call.
func newHoldingDAV(t *testing.T, method string, atOnce bool) *holdingDAV {
	t.Helper()
	d := &holdingDAV{dir: t.TempDir(), method: method, held: make(chan struct{})}
	d.holding.Store(atOnce)
	h := &webdav.Handler{FileSystem: webdav.Dir(d.dir), LockSystem: webdav.NewMemLS()}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.holds(r) {
			d.once.Do(func() { close(d.held) })
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
	d.remote = fmt.Sprintf(":webdav,url='%s',vendor=rclone:fireops", srv.URL)
	return d
}

// holds reports whether r is to be held.
func (d *holdingDAV) holds(r *http.Request) bool {
	if !d.holding.Load() {
		return false
	}
	return d.method == "" || r.Method == d.method && strings.Contains(r.URL.Path, "/objects/")
}

// hold starts holding and returns the channel closed at the first held
// request.
func (d *holdingDAV) hold() <-chan struct{} { d.holding.Store(true); return d.held }

// davFilesConfig writes a config that `fireops init` made local, whose
// files part "stack" holds one file of size bytes (several pieces of the
// chunk_size 1MiB) and goes to remote, with its state_dir in the test's
// folder dir; it returns the config's path and dir.
func davFilesConfig(t *testing.T, remote string, size int) (cfg, dir string) {
	t.Helper()
	dir = t.TempDir()
	cfg = filepath.Join(dir, "fireops.yaml")
	runFireops(t, cfg, "init", "--dir", dir, "--host", "gpu01")
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7) ^ byte(i>>11) ^ byte(i>>19)
	}
	if err := os.WriteFile(filepath.Join(data, "big.bin"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	y := davFilesYAML(t, cfg, dir, data, remote)
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, dir
}

// davFilesYAML returns the config `fireops init` wrote at cfg in dir,
// made local and edited: its files part "stack" backs up data, its
// destination is remote (a WebDAV folder), in 1 MiB chunks with the
// fastest compression, and its state_dir is dir/state.
func davFilesYAML(t *testing.T, cfg, dir, data, remote string) string {
	t.Helper()
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return initForFiles(t, string(raw),
		"paths: [/opt/firetech]", "paths: ["+data+"]",
		"    remote: backups\n", fmt.Sprintf("    remote: \"%s\"\n", remote),
		"# chunk_size: 32MiB", "chunk_size: 1MiB\ncompression: fastest",
		"# state_dir: /var/lib/fireops", "state_dir: "+filepath.Join(dir, "state"))
}

// interruptWhenHeld starts cmd, sends SIGINT once held fires, and returns
// the exit code and what it wrote.
func interruptWhenHeld(t *testing.T, cmd *exec.Cmd, held <-chan struct{}) (code int, stdout, stderr string) {
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

// openTerminal opens a pseudo-terminal of rows and cols; the caller
// closes ptmx.
func openTerminal(t *testing.T, rows, cols uint16) (ptmx, tty *os.File) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: rows, Cols: cols}); err != nil {
		ptmx.Close()
		t.Fatal(err)
	}
	return ptmx, tty
}
