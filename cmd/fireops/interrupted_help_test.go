package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestSnapshotsInterruptedExitListed: Ctrl-C while `snapshots` waits for
// a destination that does not answer exits with a code that `fireops
// snapshots --help` lists in its EXIT STATUS (an adversarial review found
// 130 missing there: every command that can fail now lists it).
func TestSnapshotsInterruptedExitListed(t *testing.T) {
	t.Parallel()
	dav := newHoldingDAV(t, "", true)
	cfg, _ := davFilesConfig(t, dav.remote, 0)
	code, out, errOut := interruptWhenHeld(t, fireopsCmd(t, cfg, "snapshots"), dav.held)

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
