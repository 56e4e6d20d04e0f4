package snapshot

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/firetech/fireops/pkg/keys"
)

// v1Dir holds a snapshot written by the first release, with its keys.
var v1Dir = filepath.Join("..", "..", "testdata", "v1snapshot")

// v1Fixture returns a copy of the v1 snapshot's destination
// (testdata/v1snapshot; tests must not touch testdata) as a store, with
// the identities and the signing key it was written with.
func v1Fixture(t *testing.T) (*dirStore, []age.Identity, ed25519.PrivateKey) {
	t.Helper()
	st := &dirStore{name: "local", root: t.TempDir()}
	if err := os.CopyFS(st.root, os.DirFS(filepath.Join(v1Dir, "repo"))); err != nil {
		t.Fatal(err)
	}
	ids, err := keys.LoadIdentities(filepath.Join(v1Dir, "identity.txt"))
	if err != nil {
		t.Fatal(err)
	}
	sk, err := keys.LoadSigningKey(filepath.Join(v1Dir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	return st, ids, sk
}

// TestV1SnapshotStillReads: a snapshot written by the first release
// (testdata/v1snapshot, format v1) lists, verifies at every level and
// restores with today's code, byte for byte, and a v2 snapshot written
// beside it on the same destination does not disturb it; the sweep keeps
// both.
func TestV1SnapshotStillReads(t *testing.T) {
	t.Parallel()
	st, ids, sk := v1Fixture(t)
	trusted := sk.Public().(ed25519.PublicKey)
	ctx := context.Background()
	ls, err := List(ctx, st, "fixture", trusted)
	if err != nil || len(ls) != 1 || !ls[0].Complete || ls[0].Parts != 2 {
		t.Fatalf("List = %+v, %v", ls, err)
	}
	id := ls[0].ID
	m, err := Open(ctx, st, "fixture", id, trusted)
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != FormatV1 {
		t.Fatalf("fixture has version %d", m.Version)
	}
	if err := CheckPresent(ctx, st, m, nil); err != nil {
		t.Fatal(err)
	}
	if err := CheckHashes(ctx, st, m, nil); err != nil {
		t.Fatal(err)
	}
	idx, err := ReadIndex(ctx, st, m, ids)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	for _, p := range idx.Parts {
		rs := &memRestorer{}
		if _, err := RestorePart(ctx, st, m, p, ids, rs); err != nil {
			t.Fatalf("restore %s: %v", p.ID, err)
		}
		for name, data := range rs.committed {
			got[strings.TrimPrefix(name, "./")] = data
		}
	}
	f, err := os.Open(filepath.Join(v1Dir, "expected.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 || len(fields[0]) != 64 {
			continue // the symlink line
		}
		name := strings.TrimPrefix(fields[1], "./")
		var data []byte
		for k, v := range got {
			if strings.HasSuffix("/"+k, "/"+name) {
				data = v
			}
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != fields[0] {
			t.Errorf("%s: restored content differs (restored names: %v)", name, keysOf(got))
		}
		n++
	}
	if n != 3 {
		t.Fatalf("checked %d files, want 3", n)
	}

	// A v2 snapshot beside it: both list, verify, and survive a sweep.
	e := newEnv(t, 0)
	e.opts.Host, e.opts.Signer = "fixture", sk
	e.opts.Recipients = nil
	rcp, err := keys.ParseRecipients(strings.NewReader(m.Recipients[0]))
	if err != nil {
		t.Fatal(err)
	}
	e.opts.Recipients, e.ids, e.pub, e.sk = rcp, ids, trusted, sk
	res, err := Create(ctx, e.opts, []Store{st}, testSources())
	if err != nil {
		t.Fatal(err)
	}
	sw, err := SweepObjects(ctx, st, "fixture", time.Now().Add(365*24*time.Hour), time.Hour, nil, false, nil)
	if err != nil || sw.Removed != 0 {
		t.Fatalf("sweep removed %d objects (%v): every object is referenced", sw.Removed, err)
	}
	e.restoreAll(t, st, res.ID)
	if err := CheckHashes(ctx, st, m, nil); err != nil {
		t.Fatalf("the v1 snapshot after a v2 one and a sweep: %v", err)
	}
	ls, _ = List(ctx, st, "fixture", trusted)
	if len(ls) != 2 || !ls[0].Complete || !ls[1].Complete {
		t.Fatalf("List = %+v", ls)
	}
}

func keysOf(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestV1LargeChunksAreSpooled: a v1 chunk larger than chunkSpoolLimit
// (chunk_size goes up to 1 GiB) is checked in a private unlinked temp
// file, not in memory, and restores the same. Not parallel: it lowers the
// limit before the parallel tests run.
func TestV1LargeChunksAreSpooled(t *testing.T) {
	old := chunkSpoolLimit
	chunkSpoolLimit = 4 << 10 // the fixture's chunks are 1 MiB and 246 KiB
	defer func() { chunkSpoolLimit = old }()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	st, ids, sk := v1Fixture(t)
	ctx := context.Background()
	trusted := sk.Public().(ed25519.PublicKey)
	ls, err := List(ctx, st, "fixture", trusted)
	if err != nil || len(ls) != 1 {
		t.Fatalf("List = %+v, %v", ls, err)
	}
	m, err := Open(ctx, st, "fixture", ls[0].ID, trusted)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := ReadIndex(ctx, st, m, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range idx.Parts {
		if _, err := RestorePart(ctx, st, m, p, ids, &memRestorer{}); err != nil {
			t.Fatalf("restore %s through spooled chunks: %v", p.ID, err)
		}
	}
	// A damaged spooled chunk is refused like one held in memory.
	obj := m.Objects[0]
	for _, o := range m.Objects {
		if len(o.Chunks) > len(obj.Chunks) {
			obj = o
		}
	}
	chunk := filepath.Join(st.root, ChunkPath("fixture", obj.ID, 0))
	flipMiddleByte(t, chunk, 1)
	var failed error
	for _, p := range idx.Parts {
		if p.Object == obj.ID {
			_, failed = RestorePart(ctx, st, m, p, ids, &memRestorer{})
		}
	}
	if !errors.Is(failed, ErrIntegrity) {
		t.Fatalf("a damaged spooled chunk: %v", failed)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("spool files left in the temp dir: %d", len(left))
	}
}
