package restore

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/snapshot"
)

// TestPartRollbackWithoutPartRecord: a host whose state_dir has no
// per-part record for a destination (written before the record existed)
// but names its newest snapshot there (snapshot.LastWritten) finds a
// rollback of every part when that snapshot is gone, incomplete or refused
// and no usable snapshot of its second or later stands in for it; none
// when one does, or when the host has no record at all.
func TestPartRollbackWithoutPartRecord(t *testing.T) {
	t.Parallel()
	const (
		host, dest = "gpu01", "nas"
		older      = "20300101T000000Z-aaaaaa"
		last       = "20300102T000000Z-bbbbbb"
		later      = "20300103T000000Z-cccccc"
	)
	cfg := &config.Config{StateDir: t.TempDir(), Host: host}
	ok := snapshot.Listing{ID: older, Complete: true}
	if id, finding := PartRollback(cfg, dest, []snapshot.Listing{ok}, "files:stack"); id != "" || finding != "" {
		t.Fatalf("no record: %q, %q; want none", id, finding)
	}
	sum := sha256.Sum256([]byte(host + "\x00" + dest))
	known := filepath.Join(cfg.StateDir, snapshot.KnownDir)
	testutil.Must(t, os.MkdirAll(known, 0o700))
	testutil.Must(t, os.WriteFile(filepath.Join(known, hex.EncodeToString(sum[:8])+"-space.log.last"), []byte(last+" "+strings.Repeat("0", 64)), 0o600))
	for _, tc := range []struct {
		name string
		ls   []snapshot.Listing
		want string // "" : no rollback
	}{
		{"gone", []snapshot.Listing{ok}, "is gone there"},
		{"incomplete", []snapshot.Listing{ok, {ID: last}}, "is incomplete (no manifest) there"},
		{"refused", []snapshot.Listing{ok, {ID: last, Complete: true, Problem: "bad signature"}}, "is refused"},
		{"still there", []snapshot.Listing{ok, {ID: last, Complete: true}}, ""},
		{"a later one stands in", []snapshot.Listing{ok, {ID: later, Complete: true}}, ""},
	} {
		id, finding := PartRollback(cfg, dest, tc.ls, "files:stack")
		switch {
		case tc.want == "" && (id != "" || finding != ""):
			t.Errorf("%s: %q, %q; want none", tc.name, id, finding)
		case tc.want != "" && (id != last || !strings.Contains(finding, tc.want) || !strings.Contains(finding, "files:stack")):
			t.Errorf("%s: %q, %q; want %s and a finding saying %q", tc.name, id, finding, last, tc.want)
		}
	}
}
