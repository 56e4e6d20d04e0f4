package main

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestInterruptedSnapshotWording: a snapshot stopped by SIGINT in the
// middle of a part exits 130 with one plain line saying that nothing was
// committed and what happens to the pieces already uploaded, naming the
// part once and no Go error text; no manifest is left.
func TestInterruptedSnapshotWording(t *testing.T) {
	t.Parallel()
	dav := newHoldingDAV(t, http.MethodPut, true)
	cfg, _ := davFilesConfig(t, dav.remote, 8<<20)
	code, _, stderr := interruptWhenHeld(t, fireopsCmd(t, cfg, "snapshot", "-q"), dav.held)
	if code != 130 {
		t.Fatalf("exit %d, want exit code 130\n%s", code, stderr)
	}
	var line string
	for l := range strings.SplitSeq(stderr, "\n") {
		if strings.HasPrefix(l, "fireops: error: ") {
			if line != "" {
				t.Fatalf("more than one error line:\n%s", stderr)
			}
			line = l
		}
	}
	const want = "fireops: error: interrupted during part files:stack: nothing was committed; the pieces already uploaded are kept for the next run to reuse (rotate removes those no snapshot uses after retention.incomplete_grace)"
	if line != want {
		t.Errorf("error line:\n%s\nwant:\n%s\nstderr:\n%s", line, want, stderr)
	}
	if n := strings.Count(line, "files:stack"); n != 1 {
		t.Errorf("the part id appears %d times in %q, want once", n, line)
	}
	snaps, _ := filepath.Glob(filepath.Join(dav.dir, "gpu01", "snapshots", "*", "manifest.json"))
	if len(snaps) != 0 {
		t.Errorf("the interrupted snapshot left a manifest: %v", snaps)
	}
}
