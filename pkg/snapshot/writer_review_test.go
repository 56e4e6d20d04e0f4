package snapshot

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firetech/fireops/pkg/source"
)

// writeThenFailStore stores every object it is given, then reports the
// upload as failed: a connection cut after the provider kept the bytes,
// or a kill -9 between an upload and its known-log record.
type writeThenFailStore struct {
	*dirStore
	on atomic.Bool
}

func (s *writeThenFailStore) Put(ctx context.Context, p string, data []byte) error {
	err := s.dirStore.Put(ctx, p, data)
	if err == nil && s.on.Load() && strings.Contains(p, "/"+ObjectsDir+"/") {
		return errors.New("injected: connection reset after the upload was stored")
	}
	return err
}

// reviewCheckHashes opens a snapshot and checks every stored hash, as
// verify --level hashes and every restore do.
func reviewCheckHashes(t *testing.T, e *env, st Store, id string) error {
	t.Helper()
	ctx := context.Background()
	m, err := Open(ctx, st, e.opts.Host, id, e.pub)
	if err != nil {
		t.Fatal(err)
	}
	return CheckHashes(ctx, st, m, nil)
}

// TestReviewReuploadNotLoggedLeavesStaleHash: a piece the known log names
// is swept by rotate (its snapshot was removed); a later run uploads it
// again (a fresh age encryption: same size, other bytes) and dies before
// recording it (kill -9, or the upload "failed" after the provider kept
// it). The next run sees the object present with the logged size and
// references it with the OLD stored SHA-256: its snapshot fails verify
// --level hashes and cannot be restored. Expected: a snapshot never
// references an object by a hash the stored bytes do not have (e.g. an
// object present but rewritten since it was logged is uploaded again).
func TestReviewReuploadNotLoggedLeavesStaleHash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, 1)
	st := &writeThenFailStore{dirStore: e.stores[0]}
	srcs := []source.Source{&memSource{kind: "files", name: "data", files: map[string][]byte{"f": randomBytes(400<<10, 7)}}}
	first, err := Create(ctx, e.opts, []Store{st}, srcs)
	if err != nil {
		t.Fatal(err)
	}
	// rotate: the snapshot goes, then its objects (older than the grace).
	if err := RemoveSnapshot(ctx, st, e.opts.Host, first.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := SweepObjects(ctx, st, e.opts.Host, time.Now().Add(time.Hour), time.Minute, nil, false, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(objectFiles(t, e.stores[0])); n != 0 {
		t.Fatalf("sweep left %d objects", n)
	}
	// The next run uploads the pieces again and dies before logging them.
	st.on.Store(true)
	if _, err := Create(ctx, e.opts, []Store{st}, srcs); err == nil {
		t.Fatal("the run with failing uploads succeeded")
	}
	st.on.Store(false)
	third, err := Create(ctx, e.opts, []Store{st}, srcs)
	if err != nil {
		t.Fatal(err)
	}
	if err := reviewCheckHashes(t, e, st, third.ID); err != nil {
		t.Fatalf("a snapshot written after an unlogged re-upload references stored hashes its objects do not have (unrestorable): %v", err)
	}
	e.restoreAll(t, st, third.ID)
}

// emptySource writes a 0-byte payload.
type emptySource struct{ fp string }

func (emptySource) Kind() string                                  { return "files" }
func (emptySource) Name() string                                  { return "empty" }
func (s emptySource) Fingerprint(context.Context) (string, error) { return s.fp, nil }
func (emptySource) WriteTar(context.Context, io.Writer) (source.Stats, error) {
	return source.Stats{}, nil
}

// TestReviewZeroBytePart: a part of 0 bytes is stored, reused, verified
// and restored like any other.
func TestReviewZeroBytePart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, 1)
	e.withState(t)
	srcs := []source.Source{emptySource{fp: "x"}, testSources()[1]}
	for range 2 {
		res, err := Create(ctx, e.opts, e.storeList(), srcs)
		if err != nil {
			t.Fatal(err)
		}
		if err := reviewCheckHashes(t, e, e.stores[0], res.ID); err != nil {
			t.Fatal(err)
		}
		e.restoreAll(t, e.stores[0], res.ID)
	}
}

// raceFailStore holds the first piece-list upload for a while and then
// fails it, so that the destination fails (the upload worker's last
// access to destRun.err) while the next part is being prepared.
type raceFailStore struct {
	*dirStore
	n atomic.Int32
}

func (s *raceFailStore) Put(ctx context.Context, p string, data []byte) error {
	if strings.Contains(p, "/"+ObjectsDir+"/") && strings.HasPrefix(string(data), `{"format":"`+PieceListFormat) && s.n.Add(1) == 1 {
		time.Sleep(50 * time.Millisecond)
		return errors.New("injected failure")
	}
	return s.dirStore.Put(ctx, p, data)
}

// sleepySource sleeps in Fingerprint (the time a Docker volume or SQLite
// copy takes to prepare), without synchronising with anything.
type sleepySource struct{ *memSource }

func (s sleepySource) Fingerprint(ctx context.Context) (string, error) {
	time.Sleep(200 * time.Millisecond)
	return s.memSource.Fingerprint(ctx)
}

// TestReviewDestinationErrorRace: a destination's upload workers live
// for the whole run and set destRun.err under destRun.mu when an upload
// fails, while snapshotPart reads r.err without the lock for the next
// part. Run with -race: expected no data race.
func TestReviewDestinationErrorRace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	stores := []Store{e.stores[0], &raceFailStore{dirStore: e.stores[1]}}
	srcs := []source.Source{
		&memSource{kind: "files", name: "a", files: map[string][]byte{"f": []byte("small")}},
		sleepySource{&memSource{kind: "files", name: "b", files: map[string][]byte{"g": []byte("small too")}}},
	}
	res, err := Create(context.Background(), e.opts, stores, srcs)
	if err == nil || res == nil || res.Destinations[1].Err == nil {
		t.Fatalf("err = %v", err)
	}
}

// TestReviewSmallUploadsRepeatedPiecesTwoDests: uploads 1, chunk_size
// 1 MiB, two destinations of which one fails mid-part, a part made of one
// piece repeated many times (same id claimed and awaited concurrently by
// every worker): the run must end (no deadlock), the healthy destination
// restorable, and no goroutine may outlive Create.
func TestReviewSmallUploadsRepeatedPiecesTwoDests(t *testing.T) {
	e := newEnv(t, 2)
	e.opts.Uploads = 1
	e.opts.ChunkSize = 1 << 20
	block := randomBytes(300<<10, 9)
	var data []byte
	for range 40 {
		data = append(data, block...)
	}
	var n atomic.Int32
	failing := &gatedStore{dirStore: e.stores[1], before: func(p string) error {
		if strings.Contains(p, "/"+ObjectsDir+"/") && n.Add(1) == 3 {
			return errors.New("injected failure")
		}
		return nil
	}}
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srcs := []source.Source{
		&memSource{kind: "files", name: "rep", files: map[string][]byte{"a": data, "b": data}},
		&memSource{kind: "files", name: "rnd", files: map[string][]byte{"c": randomBytes(5<<20, 10)}},
	}
	res, err := Create(ctx, e.opts, []Store{e.stores[0], failing}, srcs)
	if ctx.Err() != nil {
		t.Fatal("the run deadlocked")
	}
	if res == nil || res.Destinations[0].Err != nil {
		t.Fatalf("err = %v", err)
	}
	e.restoreAll(t, e.stores[0], res.ID)
	time.Sleep(100 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before+2 {
		t.Errorf("%d goroutines before Create, %d after", before, after)
	}
}

// TestReviewCancelDuringUploadLeaksNothing: cancelling while an upload
// hangs (a stalled provider) must return promptly and leave no goroutine
// of the run behind.
func TestReviewCancelDuringUploadLeaksNothing(t *testing.T) {
	e := newEnv(t, 1)
	e.opts.Uploads = 1
	ctx, cancel := context.WithCancel(context.Background())
	var once atomic.Bool
	st := &gatedStore{dirStore: e.stores[0], before: func(p string) error {
		if strings.Contains(p, "/"+ObjectsDir+"/") {
			if once.CompareAndSwap(false, true) {
				cancel()
			}
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}}
	before := runtime.NumGoroutine()
	done := make(chan error, 1)
	go func() {
		_, err := Create(ctx, e.opts, []Store{st}, []source.Source{&memSource{kind: "files", name: "big", files: map[string][]byte{"f": randomBytes(8<<20, 11)}}})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Create did not return after cancellation")
	}
	time.Sleep(200 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before+1 {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines before, %d after cancel:\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}
