package schedule

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/firetech/fireops/internal/testutil"
)

// freeAddr returns a loopback address no one listens on (one the kernel
// just handed out and that was closed again).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// serves reports whether /metrics answers on addr.
func serves(addr string) bool {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// TestReloadBadSpecKeepsListen: a SIGHUP with a config that moves
// metrics.listen and has an invalid cron spec is refused as a whole, as
// its log line says ("the previous one stays"): /metrics stays where it
// was. Once the spec is fixed, the next SIGHUP moves /metrics. (Before,
// the refused reload had already moved /metrics to the new address, and
// every later reload to that address failed on "address already in use"
// against the daemon's own listener until the daemon was restarted.)
func TestReloadBadSpecKeepsListen(t *testing.T) {
	t.Parallel()
	oldAddr, newAddr := freeAddr(t), freeAddr(t)
	var gen atomic.Int32
	load := func() (*Config, error) {
		job := Job{Name: "snapshot", Spec: "@daily", Run: func(context.Context) error { return nil }}
		switch gen.Add(1) {
		case 1:
			return &Config{Listen: oldAddr, Jobs: []Job{job}}, nil
		case 2:
			job.Spec = "61 * * * *"
			return &Config{Listen: newAddr, Jobs: []Job{job}}, nil
		}
		return &Config{Listen: newAddr, Jobs: []Job{job}}, nil
	}
	logs := &testutil.SyncBuffer{}
	hup := make(chan os.Signal, 1)
	addr, stop := startDaemon(t, Options{Load: load, Log: slog.New(slog.NewTextHandler(logs, nil)), Hangup: hup})
	defer stop()
	if addr != oldAddr {
		t.Fatalf("serves on %s, want %s", addr, oldAddr)
	}

	hup <- os.Interrupt
	waitFor(t, "the refused reload", func() bool { return strings.Count(logs.String(), "configuration not reloaded") == 1 })
	if !strings.Contains(logs.String(), "invalid cron spec") {
		t.Fatalf("the refusal does not name the spec:\n%s", logs.String())
	}
	if !serves(oldAddr) {
		t.Errorf("after a refused reload /metrics no longer answers on %s, the address of the config that stays", oldAddr)
	}

	hup <- os.Interrupt
	waitFor(t, "the second reload", func() bool {
		s := logs.String()
		return strings.Contains(s, "configuration reloaded") || strings.Count(s, "configuration not reloaded") == 2
	})
	if strings.Count(logs.String(), "configuration not reloaded") != 1 {
		t.Fatalf("the fixed config was refused too:\n%s", logs.String())
	}
	if !serves(newAddr) {
		t.Errorf("after the fixed reload /metrics does not answer on %s", newAddr)
	}
	if serves(oldAddr) {
		t.Errorf("after the fixed reload /metrics still answers on %s", oldAddr)
	}
}

// TestReloadListenInUseKeepsAddr: a SIGHUP whose metrics.listen is taken
// is refused and /metrics stays where it was; the next reload, back on
// the old address, logs that address. (Before, the refused move blanked
// the address the daemon reports: the next reload logged metrics="".)
func TestReloadListenInUseKeepsAddr(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	oldAddr := freeAddr(t)
	var gen atomic.Int32
	load := func() (*Config, error) {
		if gen.Add(1) == 2 {
			return &Config{Listen: taken.Addr().String()}, nil
		}
		return &Config{Listen: oldAddr}, nil
	}
	logs := &testutil.SyncBuffer{}
	hup := make(chan os.Signal, 1)
	_, stop := startDaemon(t, Options{Load: load, Log: slog.New(slog.NewTextHandler(logs, nil)), Hangup: hup})
	defer stop()
	hup <- os.Interrupt
	waitFor(t, "the refused reload", func() bool { return strings.Contains(logs.String(), "configuration not reloaded") })
	if !serves(oldAddr) {
		t.Errorf("after a refused reload /metrics no longer answers on %s", oldAddr)
	}
	hup <- os.Interrupt
	waitFor(t, "the second reload", func() bool { return strings.Contains(logs.String(), "configuration reloaded") })
	if want := "metrics=" + oldAddr; !strings.Contains(logs.String(), `configuration reloaded" jobs=[] `+want) {
		t.Errorf("the reload does not log %s:\n%s", want, logs.String())
	}
}
