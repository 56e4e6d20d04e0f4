package snapshot

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firetech/fireops/pkg/source"
)

// sizedSource is a memSource that tells its size (source.Sizer).
type sizedSource struct {
	*memSource
	size int64
}

func (s *sizedSource) Size(context.Context) (int64, error) { return s.size, nil }

// tasksByName returns p's tasks by name (the last of a name wins).
func tasksByName(p *Progress) map[string]*Task {
	out := map[string]*Task{}
	for _, t := range p.Tasks() {
		out[t.Name] = t
	}
	return out
}

// TestProgressCounts: a snapshot's parts are announced with the size the
// last run recorded, started with the source's estimate, and count every
// plaintext byte, the new pieces' stored bytes and the reused pieces';
// an unchanged part is a reused task; a restore's and a verify's reads
// (through the context) count to the part's size, a sweep its folders
// and removed objects.
func TestProgressCounts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.withState(t)
	ctx := context.Background()
	srcs := testSources()
	srcs[0] = &sizedSource{memSource: srcs[0].(*memSource), size: 123}

	p := &Progress{}
	e.opts.Progress = p
	res, err := Create(ctx, e.opts, e.storeList(), srcs)
	if err != nil {
		t.Fatal(err)
	}
	if n, size := p.Pending(); n != 0 || size != 0 {
		t.Fatalf("after the run, %d tasks (%d bytes) still announced", n, size)
	}
	sizes := map[string]int64{}
	for _, part := range res.Parts {
		sizes[part.ID] = part.Size
	}
	tasks := tasksByName(p)
	for _, tc := range []struct {
		id    string
		total int64
	}{{"files:stack", 123}, {"sqlite:hub", 0}} {
		tk := tasks[tc.id]
		if tk == nil {
			t.Fatalf("no task for %s: %v", tc.id, p.Tasks())
		}
		if tk.State() != TaskDone || tk.Total() != tc.total || tk.Done() != sizes[tc.id] {
			t.Errorf("%s: state %v, total %d, done %d; want done, %d, %d", tc.id, tk.State(), tk.Total(), tk.Done(), tc.total, sizes[tc.id])
		}
		if tk.Stored() == 0 || tk.Reused() != 0 {
			t.Errorf("%s: stored %d, reused %d on a first run; want some stored, none reused", tc.id, tk.Stored(), tk.Reused())
		}
		if tk.Elapsed(time.Now().Add(time.Hour)) >= time.Hour {
			t.Errorf("%s: an ended task's elapsed time still grows", tc.id)
		}
	}

	// A second run: the part with a fingerprint is reused, the other is
	// read again, every piece of it already stored.
	p = &Progress{}
	e.opts.Progress = p
	var announced []int64
	for _, src := range srcs {
		if st, ok := e.opts.State.Get("gpu01", "d0", source.ID(src)); ok {
			announced = append(announced, st.Part.Size)
		}
	}
	if _, err := Create(ctx, e.opts, e.storeList(), srcs); err != nil {
		t.Fatal(err)
	}
	tasks = tasksByName(p)
	if tk := tasks["files:stack"]; tk == nil || tk.State() != TaskReused || tk.Total() != sizes["files:stack"] || tk.Done() != 0 {
		t.Fatalf("unchanged part: %+v", tk)
	}
	if tk := tasks["sqlite:hub"]; tk == nil || tk.State() != TaskDone || tk.Stored() != 0 || tk.Reused() != sizes["sqlite:hub"] {
		t.Fatalf("part read again: stored %d, reused %d; want 0, %d", tk.Stored(), tk.Reused(), sizes["sqlite:hub"])
	}
	if len(announced) != 2 {
		t.Fatalf("the state holds %d parts, want 2", len(announced))
	}

	// Announced sizes: the expected total before any part starts.
	p = &Progress{}
	e.opts.Progress = p
	expectParts(e.opts, e.storeList(), srcs)
	if n, size := p.Pending(); n != 2 || size != sizes["files:stack"]+sizes["sqlite:hub"] {
		t.Fatalf("announced %d parts of %d bytes, want 2 of %d", n, size, sizes["files:stack"]+sizes["sqlite:hub"])
	}
	p.Drop("sqlite:hub")
	p.Start("files:stack", "", Bytes, 1)
	if n, _ := p.Pending(); n != 0 {
		t.Fatalf("%d tasks announced after one started and one dropped", n)
	}

	// Reads: restore counts to the part's size and ends done; a read
	// closed half way ends failed.
	m, err := Open(ctx, e.stores[0], "gpu01", res.ID, e.pub)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := ReadIndex(ctx, e.stores[0], m, e.ids)
	if err != nil {
		t.Fatal(err)
	}
	p = &Progress{}
	rctx := WithProgress(ctx, p)
	for _, part := range idx.Parts {
		if _, err := RestorePart(rctx, e.stores[0], m, part, e.ids, &memRestorer{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, part := range idx.Parts {
		tk := tasksByName(p)[part.ID]
		if tk == nil || tk.State() != TaskDone || tk.Done() != part.Size || tk.Total() != part.Size || tk.Where != "d0" {
			t.Fatalf("restore of %s: %+v", part.ID, tk)
		}
	}
	p = &Progress{}
	pr, err := OpenPart(WithProgress(ctx, p), e.stores[0], m, idx.Parts[0], e.ids)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, pr, 1000); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	if tk := p.Tasks()[0]; tk.State() != TaskFailed || tk.Done() < 1000 || tk.Done() >= idx.Parts[0].Size {
		t.Fatalf("a read closed half way: state %v, done %d of %d", tk.State(), tk.Done(), idx.Parts[0].Size)
	}

	// A sweep after every snapshot is gone removes every object.
	ls, err := List(ctx, e.stores[0], "gpu01", e.pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ls {
		if err := RemoveSnapshot(ctx, e.stores[0], "gpu01", s.ID); err != nil {
			t.Fatal(err)
		}
	}
	p = &Progress{}
	sw, err := SweepObjects(WithProgress(ctx, p), e.stores[0], "gpu01", time.Now().Add(time.Hour), time.Minute, nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	tk := p.Tasks()[0]
	objects, bytes := tk.Removed()
	if tk.Name != "sweep" || tk.Where != "d0" || tk.Unit != Folders || tk.State() != TaskDone || tk.Done() != tk.Total() || tk.Total() == 0 ||
		objects != int64(sw.Removed) || bytes != sw.FreedBytes || sw.Removed == 0 {
		t.Fatalf("sweep task %+v (removed %d objects, %d bytes); sweep %+v", tk, objects, bytes, sw)
	}
}

// TestNilProgress: a run without a Progress counts nothing and fails
// nothing (every method is safe on nil).
func TestNilProgress(t *testing.T) {
	t.Parallel()
	var p *Progress
	p.Expect("a", 1)
	p.Drop("a")
	tk := p.Start("a", "", Bytes, 1)
	tk.Add(1)
	tk.AddStored(1)
	tk.AddReused(1)
	tk.AddRemoved(1)
	tk.SetTotal(2)
	tk.Finish(TaskDone)
	if tk != nil || p.Tasks() != nil || tk.counter() != nil {
		t.Fatal("a nil Progress started a task")
	}
	if n, size := p.Pending(); n != 0 || size != 0 {
		t.Fatal("a nil Progress has announced tasks")
	}
	if progressFrom(WithProgress(context.Background(), nil)) != nil {
		t.Fatal("a context without a Progress gave one")
	}
}

// countingSizer is a memSource whose Size counts its calls.
type countingSizer struct {
	*memSource
	calls atomic.Int32
}

func (s *countingSizer) Size(context.Context) (int64, error) {
	s.calls.Add(1)
	return 1, nil
}

// TestNoProgressAsksNoSize: a run without a Progress (cron, systemd, a
// pipe) does not ask a source for its size estimate, which only a display
// uses and which may cost a walk or a database round trip.
func TestNoProgressAsksNoSize(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	srcs := testSources()
	cs := &countingSizer{memSource: srcs[0].(*memSource)}
	srcs[0] = cs
	if _, err := Create(context.Background(), e.opts, e.storeList(), srcs); err != nil {
		t.Fatal(err)
	}
	if n := cs.calls.Load(); n != 0 {
		t.Fatalf("Size asked %d times without a Progress; want none", n)
	}
}

// TestProgressFailedParts: a part that breaks off mid-stream ends its task
// failed, with the bytes it read; a part whose Fingerprint fails is
// dropped from the announced ones without a task: after the run nothing
// is left announced, so a display's total does not wait for it.
func TestProgressFailedParts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	srcs := append(testSources(),
		&brokenSource{kind: "volume", name: "broken", data: randomBytes(1<<20, 7), err: errors.New("read error")},
		&brokenSource{kind: "volume", name: "nofp", data: randomBytes(1<<10, 8), fpErr: errors.New("stat error")})
	p := &Progress{}
	e.opts.Progress = p
	if _, err := Create(context.Background(), e.opts, e.storeList(), srcs); err == nil {
		t.Fatal("a run with failed parts returned no error")
	}
	if n, _ := p.Pending(); n != 0 {
		t.Fatalf("%d tasks still announced after the run", n)
	}
	tasks := tasksByName(p)
	if tk := tasks["volume:broken"]; tk == nil || tk.State() != TaskFailed || tk.Done() == 0 {
		t.Fatalf("part broken off mid-stream: %+v", tk)
	}
	if tk := tasks["volume:nofp"]; tk != nil {
		t.Fatalf("part whose Fingerprint failed has a task: %+v", tk)
	}
	for _, id := range []string{"files:stack", "sqlite:hub"} {
		if tk := tasks[id]; tk == nil || tk.State() != TaskDone {
			t.Fatalf("good part %s: %+v", id, tk)
		}
	}
}
