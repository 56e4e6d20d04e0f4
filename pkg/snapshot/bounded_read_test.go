package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
)

// Bounded reads of objects and state_dir files whose size is known to be
// small (`fireops snapshots` reads every complete snapshot's index
// through ReadIndex; shell completion reads state_dir on every TAB).

// readCountingStore is a dirStore whose GetBytes reads like a remote
// does (at most max+1 bytes of the object) and counts what it read of
// index files.
type readCountingStore struct {
	*dirStore
	indexBytes atomic.Int64
}

func (s *readCountingStore) GetBytes(_ context.Context, p string, max int64) ([]byte, error) {
	f, err := os.Open(filepath.Join(s.root, p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if path.Base(p) == IndexFile {
		s.indexBytes.Add(int64(len(data)))
	}
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, errors.New("too large")
	}
	return data, nil
}

// The signed manifest gives the index's size before it is downloaded:
// a provider that swaps each snapshot's index.age for a big file must not
// make every `fireops snapshots` download (and hold) up to 64 MiB per
// complete snapshot. ReadIndex reads at most the signed size (plus one
// byte to see that the object is longer).
func TestReadIndexReadsNoMoreThanTheSignedSize(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	res, err := Create(ctx, e.opts, e.storeList(), testSources())
	if err != nil {
		t.Fatal(err)
	}
	st := &readCountingStore{dirStore: e.stores[0]}
	m, err := Open(ctx, st, "gpu01", res.ID, e.pub)
	if err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(st.root, SnapshotPath("gpu01", res.ID), IndexFile)
	if err := os.Truncate(big, 16<<20); err != nil { // sparse, 16 MiB
		t.Fatal(err)
	}
	if _, err := ReadIndex(ctx, st, m, e.ids); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("ReadIndex of a swapped index: %v, want an integrity error", err)
	}
	if got, limit := st.indexBytes.Load(), m.Index.Size+1; got > limit {
		t.Errorf("ReadIndex read %d bytes of an index whose signed size is %d; want at most %d", got, m.Index.Size, limit)
	}
}

// RecentSnapshots, which shell completion calls on every TAB, must not
// read a huge *.log.last (a corrupted file; only root can write
// state_dir) into memory: the id is the first word of a one-line file,
// and a few hundred bytes of it are enough.
func TestRecentSnapshotsReadsBoundedRecord(t *testing.T) {
	stateDir := t.TempDir()
	sum := sha256.Sum256([]byte("gpu01" + "\x00" + "local"))
	dir := filepath.Join(stateDir, KnownDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, hex.EncodeToString(sum[:8])+"-abc.log.last")
	id := "20240101T000000Z-abcdef"
	if err := os.WriteFile(f, []byte(id+" "+strings.Repeat("x", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(f, 64<<20); err != nil { // garbage after it, sparse
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ids := RecentSnapshots(stateDir, "gpu01", "local")
	runtime.ReadMemStats(&after)
	if len(ids) != 1 || ids[0] != id {
		t.Logf("ids: %q", ids)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 8<<20 {
		t.Errorf("RecentSnapshots allocated %d MiB for one state_dir record; want it bounded (a few KiB)", got>>20)
	}
}
