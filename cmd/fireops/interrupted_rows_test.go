package main

// Ctrl-C in the middle of a verify or a restore: the result rows say the
// work was stopped, not that a snapshot is damaged, and show none of Go's
// cancellation texts.

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifyInterruptedRow: Ctrl-C during `verify --level full`. The
// snapshot was not checked to its end: its row says so ("not finished:
// interrupted"), not "FAILED: part files:stack: ... interrupt signal
// received", which an admin reads as a damaged snapshot.
func TestVerifyInterruptedRow(t *testing.T) {
	t.Parallel()
	dav := newHoldingDAV(t, http.MethodGet, false)
	cfg, _ := davFilesConfig(t, dav.remote, 2<<20)
	runFireops(t, cfg, "snapshot", "-q")
	code, out, errOut := interruptWhenHeld(t, fireopsCmd(t, cfg, "verify", "--level", "full"), dav.hold())
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
	dav := newHoldingDAV(t, http.MethodGet, false)
	cfg, dir := davFilesConfig(t, dav.remote, 2<<20)
	runFireops(t, cfg, "snapshot", "-q")
	code, out, errOut := interruptWhenHeld(t, fireopsCmd(t, cfg, "restore", "latest", "--to", filepath.Join(dir, "restored")), dav.hold())
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
