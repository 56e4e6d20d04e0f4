package backup

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/exitcode"
)

// TestHolder: a Holder finds the newest snapshot whose manifest tags a
// part and that passes verify --level hashes; a part no snapshot holds,
// and a part whose snapshots are damaged, are NotHeldErrors (the damaged
// one a failed check).
func TestHolder(t *testing.T) {
	t.Parallel()
	f, root, first := localSnapshot(t)
	ctx := context.Background()
	// A later --only run holds the database only.
	second, err := Snapshot(ctx, f.cfg, SnapshotOptions{Only: []string{"sqlite:hub"}, Now: func() time.Time { return time.Now().Add(time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}

	h, err := NewHolder(f.cfg, HolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.Find(ctx, "files:stack")
	if err != nil || got.Snapshot != first.ID || got.Destination != "local" || got.Level != LevelHashes {
		t.Fatalf("files:stack: %+v, %v; want %s on local at level hashes", got, err, first.ID)
	}
	if got, err := h.Find(ctx, "sqlite:hub"); err != nil || got.Snapshot != second.ID {
		t.Fatalf("sqlite:hub: %+v, %v; want the newest snapshot %s", got, err, second.ID)
	}
	_, err = h.Find(ctx, "volume:jupyterhub-user-ada")
	var nh *NotHeldError
	if !errors.As(err, &nh) || nh.CheckFailed || !strings.Contains(err.Error(), "fireops snapshot --only volume:jupyterhub-user-ada") {
		t.Fatalf("a part no snapshot holds: %v", err)
	}

	// A damaged piece of files:stack: only the first snapshot holds the
	// part, it fails its verify, the part is not held and the check failed.
	piece := piecePath(t, root, first, "files:stack", 0)
	data, _ := os.ReadFile(piece)
	data[len(data)-10] ^= 0xff
	testutil.Must(t, os.WriteFile(piece, data, 0o600))
	h, err = NewHolder(f.cfg, HolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Find(ctx, "files:stack")
	if !errors.As(err, &nh) || !nh.CheckFailed || !nh.IsCheckFailed() || exitcode.Code(err) != exitcode.CheckFailed || !strings.Contains(err.Error(), first.ID) {
		t.Fatalf("damaged: %v (code %d), want a failed check naming %s", err, exitcode.Code(err), first.ID)
	}
	// Level quick only checks sizes: it passes.
	h, err = NewHolder(f.cfg, HolderOptions{Level: LevelQuick})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := h.Find(ctx, "files:stack"); err != nil || got.Snapshot != first.ID {
		t.Fatalf("quick: %+v, %v", got, err)
	}
}

func TestHolderNeedsSigningKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "{name: local, remote: "+t.TempDir()+"}")
	cfg := *f.cfg
	cfg.Keys.SigningKeyFile = ""
	if _, err := NewHolder(&cfg, HolderOptions{}); exitcode.Code(err) != exitcode.Usage || !strings.Contains(exitcode.Hint(err), "keys.signing_key_file") {
		t.Fatalf("no signing key: %v", err)
	}
	if _, err := NewHolder(f.cfg, HolderOptions{Level: "restore-test"}); exitcode.Code(err) != exitcode.Usage {
		t.Fatalf("level restore-test: %v", err)
	}
}
