package testenv

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"
)

// CheckMetrics runs `promtool check metrics` on the textfile at path and
// returns what promtool wrote. promtool is the tool's path, as
// RequireTool(t, "promtool") returns it. The error is promtool's (the
// file breaks the exposition format or its conventions) or says why the
// file could not be read.
func CheckMetrics(promtool, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("promtool input: %w", err)
	}
	defer f.Close()
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = f
	return cmd.CombinedOutput()
}

// NodeExporterTextfiles starts prometheus-node-exporter with only its
// textfile collector, reading the textfiles in dir, on a free loopback
// port, and returns the page it serves at /metrics once it answers. The
// exporter is stopped when the test ends. Without the tool the test is
// Unavailable (skipped, or failed under CI) and the page is "".
func NodeExporterTextfiles(t testing.TB, dir string) string {
	t.Helper()
	ne := RequireTool(t, "prometheus-node-exporter")
	if ne == "" {
		return ""
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(ne, "--collector.disable-defaults", "--collector.textfile", "--collector.textfile.directory="+dir, "--web.listen-address="+addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(time.Minute) // a safety net
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("reading node-exporter's /metrics: %v", err)
			}
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("node-exporter did not answer: %v", err)
			return ""
		}
		time.Sleep(50 * time.Millisecond)
	}
}
