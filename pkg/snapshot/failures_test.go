package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/firetech/fireops/pkg/source"
)

// TestReuseNeedsSameRecipients: after keys.recipients changes, an
// unchanged part is uploaded again (encrypted to the new recipients), not
// referenced: the new identity must be able to restore every part of the
// new snapshot.
func TestReuseNeedsSameRecipients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	ctx := context.Background()
	e.withState(t)
	srcs := testSources()
	if _, err := Create(ctx, e.opts, e.storeList(), srcs); err != nil {
		t.Fatal(err)
	}
	// Same recipients: reused (the check below is not vacuous).
	same, err := Create(ctx, e.opts, e.storeList(), srcs)
	if err != nil || same.Destinations[0].Reused == 0 {
		t.Fatalf("unchanged recipients: %v, %+v", err, same)
	}
	newID, _ := age.GenerateX25519Identity()
	e.opts.Recipients = []*age.X25519Recipient{newID.Recipient()}
	res, err := Create(ctx, e.opts, e.storeList(), srcs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Destinations[0].Reused != 0 {
		t.Errorf("%d parts reused after the recipients changed", res.Destinations[0].Reused)
	}
	m, err := Open(ctx, e.stores[0], "gpu01", res.ID, e.pub)
	if err != nil {
		t.Fatal(err)
	}
	ids := []age.Identity{newID}
	idx, err := ReadIndex(ctx, e.stores[0], m, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range idx.Parts {
		if _, err := RestorePart(ctx, e.stores[0], m, p, ids, &memRestorer{}); err != nil {
			t.Errorf("part %s (reused %v) does not restore with the new identity: %v", p.ID, p.Reused, err)
		}
	}
}

// TestEveryDestinationFailsNamesCauses: when no destination can be written
// at all, the error names each one and its cause (not only "every
// destination has failed"), and no source is read.
func TestEveryDestinationFailsNamesCauses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	stores := []Store{
		&gatedStore{dirStore: e.stores[0], before: func(string) error { return errors.New("disk full") }},
		&gatedStore{dirStore: e.stores[1], before: func(string) error { return errors.New("401 unauthorized") }},
	}
	src := &memSource{kind: "files", name: "x", files: map[string][]byte{"f": []byte("x")}}
	_, err := Create(context.Background(), e.opts, stores, []source.Source{src})
	if !errors.Is(err, ErrEveryDestinationFailed) {
		t.Errorf("err = %v; want ErrEveryDestinationFailed", err)
	}
	for _, want := range []string{"destination d0", "disk full", "destination d1", "401 unauthorized"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v; want it to name %q", err, want)
		}
	}
	// The same when the only destination fails during the upload.
	midway := &gatedStore{dirStore: e.stores[0], before: func(p string) error {
		if strings.Contains(p, "/objects/") {
			return errors.New("quota exceeded")
		}
		return nil
	}}
	_, err = Create(context.Background(), e.opts, []Store{midway}, []source.Source{src})
	if !errors.Is(err, ErrEveryDestinationFailed) || !strings.Contains(err.Error(), "quota exceeded") {
		t.Errorf("every destination failing during the upload: %v", err)
	}
}

// slowCleanupStore uploads nothing (every object Put fails) and its
// cleanup (Rmdir) blocks until release is closed or its context ends: an
// unreachable server.
type slowCleanupStore struct {
	*dirStore
	release chan struct{}
}

func (d *slowCleanupStore) Put(ctx context.Context, p string, data []byte) error {
	if strings.Contains(p, "/objects/") {
		return errors.New("connection refused")
	}
	return d.dirStore.Put(ctx, p, data)
}

func (d *slowCleanupStore) Rmdir(ctx context.Context, dir string) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-d.release:
		return d.dirStore.Rmdir(ctx, dir)
	}
}

// TestDeadDestinationDoesNotHoldUpOthers: the healthy destination gets its
// manifest before the failed one's cleanup, however long that takes.
func TestDeadDestinationDoesNotHoldUpOthers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	dead := &slowCleanupStore{dirStore: e.stores[0], release: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(dead.release) }) }
	defer release()
	// Release the dead destination's cleanup once the healthy one has its
	// manifest (or give up after a while: the test then fails below).
	seen := make(chan bool, 1)
	go func() {
		defer release()
		for range 1000 {
			if ms, _ := filepath.Glob(filepath.Join(e.stores[1].root, "gpu01/snapshots/*/manifest.json")); len(ms) > 0 {
				seen <- true
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		seen <- false
	}()
	res, err := Create(context.Background(), e.opts, []Store{dead, e.stores[1]}, testSources())
	if res == nil || res.Destinations[0].Err == nil || res.Destinations[1].Err != nil {
		t.Fatalf("result %+v, err %v", res, err)
	}
	if !<-seen {
		t.Fatal("the healthy destination got its manifest only after the dead one's cleanup")
	}
}

// limitedStore is a dirStore with its own upload limit that records how
// many object Puts ran at once. With meet > 1, a Put waits (up to a few
// seconds) until that many run at once, so that allowed concurrency shows
// however slowly the chunks are produced.
type limitedStore struct {
	*dirStore
	limit, meet    int32
	inFlight, peak atomic.Int32
}

func (s *limitedStore) notePeak() {
	for n := s.inFlight.Load(); ; {
		old := s.peak.Load()
		if n <= old || s.peak.CompareAndSwap(old, n) {
			return
		}
	}
}

func (s *limitedStore) Uploads() int { return int(s.limit) }

func (s *limitedStore) Put(ctx context.Context, p string, data []byte) error {
	if strings.Contains(p, "/objects/") {
		s.inFlight.Add(1)
		defer s.inFlight.Add(-1)
		s.notePeak()
		for deadline := time.Now().Add(time.Second); s.meet > 1 && s.inFlight.Load() < s.meet && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		s.notePeak()
		time.Sleep(time.Millisecond) // let uploads overlap
		s.notePeak()
	}
	return s.dirStore.Put(ctx, p, data)
}

// TestPerDestinationUploadLimit: a destination with uploads: 1 gets one
// chunk at a time while another takes Options.Uploads at once.
func TestPerDestinationUploadLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	e.opts.Uploads = 4
	one := &limitedStore{dirStore: e.stores[0], limit: 1}
	four := &limitedStore{dirStore: e.stores[1], meet: 2}
	src := &memSource{kind: "files", name: "x", files: map[string][]byte{"f": randomBytes(2<<20, 3)}}
	if _, err := Create(context.Background(), e.opts, []Store{one, four}, []source.Source{src}); err != nil {
		t.Fatal(err)
	}
	if p := one.peak.Load(); p != 1 {
		t.Errorf("destination with uploads 1: %d uploads at once", p)
	}
	if p := four.peak.Load(); p < 2 {
		t.Errorf("destination without a limit: at most %d upload at once (want up to 4): the test shows nothing", p)
	}
}

// breakingStore serves chunks whose downloads break off after half their
// bytes, `breaks` times per chunk, as a connection reset would.
type breakingStore struct {
	*dirStore
	breaks int
	mu     sync.Mutex
	opened map[string]int
}

func (s *breakingStore) Get(ctx context.Context, p string) (io.ReadCloser, error) {
	rc, err := s.dirStore.Get(ctx, p)
	if err != nil || !strings.Contains(p, "/objects/") {
		return rc, err
	}
	s.mu.Lock()
	s.opened[p]++
	n := s.opened[p]
	s.mu.Unlock()
	if n > s.breaks {
		return rc, nil
	}
	fi, err := rc.(*os.File).Stat()
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(rc, fi.Size()/2), errReader{syscall.ECONNRESET}), rc}, nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestChunkDownloadResumes: a chunk download that breaks off half way is
// started again and the restore completes with the right bytes; a chunk
// that keeps breaking fails the restore with the read error.
func TestChunkDownloadResumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	srcs := testSources()
	res, err := Create(context.Background(), e.opts, e.storeList(), srcs)
	if err != nil {
		t.Fatal(err)
	}
	want := e.restoreAll(t, e.stores[0], res.ID)
	flaky := &breakingStore{dirStore: e.stores[0], breaks: chunkResumes, opened: map[string]int{}}
	got := e.restoreAll(t, flaky, res.ID)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatal("a restore through broken-off downloads differs from the plain one")
	}
	if len(flaky.opened) == 0 {
		t.Fatal("no chunk was downloaded through the breaking store")
	}

	broken := &breakingStore{dirStore: e.stores[0], breaks: chunkResumes + 1, opened: map[string]int{}}
	ctx := context.Background()
	m, err := Open(ctx, broken, "gpu01", res.ID, e.pub)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := ReadIndex(ctx, broken, m, e.ids)
	if err != nil {
		t.Fatal(err)
	}
	rs := &memRestorer{}
	_, err = RestorePart(ctx, broken, m, idx.Parts[0], e.ids, rs)
	if err == nil || !strings.Contains(err.Error(), "connection reset") || rs.committed != nil {
		t.Fatalf("a chunk that keeps breaking off: %v (committed %v)", err, rs.committed != nil)
	}
}
