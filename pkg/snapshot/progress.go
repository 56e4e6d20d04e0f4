package snapshot

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/firetech/fireops/pkg/source"
)

// Progress collects what a run is doing while it works, for a live
// display (fireops draws it on a terminal). The run starts one Task per
// unit of work (a part read for a snapshot, a part read for a restore or
// a verify, a destination's object sweep) and counts on it with atomic
// adds, once per piece or object, never per byte; a display reads Tasks
// from another goroutine at its own pace. A nil *Progress, and the nil
// *Task it starts, count nothing.
//
// Create takes it in Options.Progress; OpenPart, RestorePart and
// SweepObjects take it from their context (WithProgress), so that a job
// passes it once.
type Progress struct {
	mu    sync.Mutex
	tasks []*Task
	// expected holds the tasks announced but not started, with their
	// expected size (0: unknown), in the order announced.
	expected []expectedTask
}

type expectedTask struct {
	name string
	size int64
}

// Unit is what a Task's Done and Total count.
type Unit int8

const (
	// Bytes of plaintext: a part's tar stream.
	Bytes Unit = iota
	// Folders of a destination's objects folder, listed by a sweep.
	Folders
)

// TaskState is where a Task stands.
type TaskState int32

const (
	// TaskRunning is a task at work.
	TaskRunning TaskState = iota
	// TaskDone is a task that ended well.
	TaskDone
	// TaskFailed is a task that ended with an error or was interrupted.
	TaskFailed
	// TaskReused is a snapshot's part whose source did not change: its
	// earlier piece list is referenced, nothing is read.
	TaskReused
)

// Task is one unit of work of a run. Its counters are safe to read at
// any time from any goroutine.
type Task struct {
	// Name is what the task works on: a part id ("files:big"), or
	// "sweep" for an object sweep.
	Name string
	// Where is the destination it reads from or sweeps, "" for a
	// snapshot's part (it goes to every destination).
	Where string
	// Unit is what Done and Total count.
	Unit Unit

	total   atomic.Int64
	done    atomic.Int64
	stored  atomic.Int64
	reused  atomic.Int64
	removed atomic.Int64
	freed   atomic.Int64
	state   atomic.Int32
	started time.Time
	ended   atomic.Int64 // UnixNano of Finish
}

// Expect announces a task that the run will start later (a snapshot's
// parts, before the first is read), with its expected size in bytes from
// an earlier run, or 0 when unknown, so that a display can show the whole
// run's total from the start.
func (p *Progress) Expect(name string, size int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expected = append(p.expected, expectedTask{name: name, size: size})
}

// Start starts a task; total is the expected count of unit (0: unknown,
// or nothing to do). It replaces the first announced task of the same
// name.
func (p *Progress) Start(name, where string, unit Unit, total int64) *Task {
	if p == nil {
		return nil
	}
	t := &Task{Name: name, Where: where, Unit: unit, started: time.Now()}
	t.total.Store(total)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.unexpect(name)
	p.tasks = append(p.tasks, t)
	return t
}

// Drop forgets an announced task that will not start (a part left out
// or failed before it was read).
func (p *Progress) Drop(name string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.unexpect(name)
}

func (p *Progress) unexpect(name string) {
	for i, e := range p.expected {
		if e.name == name {
			p.expected = append(p.expected[:i], p.expected[i+1:]...)
			return
		}
	}
}

// Tasks returns the tasks started so far, in the order they started.
func (p *Progress) Tasks() []*Task {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*Task(nil), p.tasks...)
}

// Pending returns how many announced tasks have not started yet, and the
// sum of their expected sizes (the unknown ones count 0).
func (p *Progress) Pending() (n int, size int64) {
	if p == nil {
		return 0, 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.expected {
		size += e.size
	}
	return len(p.expected), size
}

// Total returns the expected count of the task's unit; 0 means unknown
// (or nothing to do). It is an estimate for a snapshot's part (a tar
// stream's size is known once written): Done may pass it.
func (t *Task) Total() int64 { return t.total.Load() }

// SetTotal changes the expected count.
func (t *Task) SetTotal(n int64) {
	if t != nil {
		t.total.Store(n)
	}
}

// Done returns the count of the task's unit done so far.
func (t *Task) Done() int64 { return t.done.Load() }

// Add counts n more units done.
func (t *Task) Add(n int64) {
	if t != nil {
		t.done.Add(n)
	}
}

// counter is the task's Done counter for a hot loop, nil for a nil task.
func (t *Task) counter() *atomic.Int64 {
	if t == nil {
		return nil
	}
	return &t.done
}

// Stored returns the stored (compressed, encrypted) bytes of the new
// pieces a snapshot's part uploads.
func (t *Task) Stored() int64 { return t.stored.Load() }

// Reused returns the plaintext bytes of a snapshot's part whose pieces
// the destinations hold already (referenced, not uploaded).
func (t *Task) Reused() int64 { return t.reused.Load() }

// AddStored counts the stored bytes of a new piece.
func (t *Task) AddStored(n int64) {
	if t != nil {
		t.stored.Add(n)
	}
}

// AddReused counts the plaintext bytes of a piece already stored.
func (t *Task) AddReused(n int64) {
	if t != nil {
		t.reused.Add(n)
	}
}

// Removed returns the objects a sweep removed (or, in a dry run, would
// remove) and their stored bytes.
func (t *Task) Removed() (objects, bytes int64) { return t.removed.Load(), t.freed.Load() }

// AddRemoved counts one removed object of size bytes.
func (t *Task) AddRemoved(bytes int64) {
	if t != nil {
		t.removed.Add(1)
		t.freed.Add(bytes)
	}
}

// State returns where the task stands.
func (t *Task) State() TaskState { return TaskState(t.state.Load()) }

// Finish ends the task in state s (the first Finish counts).
func (t *Task) Finish(s TaskState) {
	if t != nil && t.state.CompareAndSwap(int32(TaskRunning), int32(s)) {
		t.ended.Store(time.Now().UnixNano())
	}
}

// Started returns when the task started.
func (t *Task) Started() time.Time { return t.started }

// Elapsed returns how long the task ran, until now while it runs.
func (t *Task) Elapsed(now time.Time) time.Duration {
	if e := t.ended.Load(); e != 0 {
		return time.Unix(0, e).Sub(t.started)
	}
	return now.Sub(t.started)
}

type progressKey struct{}

// WithProgress returns ctx carrying p, for the reads (OpenPart,
// RestorePart) and sweeps (SweepObjects) made with it.
func WithProgress(ctx context.Context, p *Progress) context.Context {
	if p == nil {
		return ctx
	}
	return context.WithValue(ctx, progressKey{}, p)
}

// progressFrom returns the Progress ctx carries, or nil.
func progressFrom(ctx context.Context) *Progress {
	p, _ := ctx.Value(progressKey{}).(*Progress)
	return p
}

// expectParts announces a snapshot's parts, each with the size the last
// run recorded for it on any destination (0 when none did).
func expectParts(opts Options, stores []Store, sources []source.Source) {
	if opts.Progress == nil {
		return
	}
	for _, src := range sources {
		id := source.ID(src)
		var size int64
		if opts.State != nil {
			for _, st := range stores {
				if e, ok := opts.State.Get(opts.Host, st.Name(), id); ok {
					size = max(size, e.Part.Size)
				}
			}
		}
		opts.Progress.Expect(id, size)
	}
}

// sizeTimeout bounds a source's Size (MongoDB's statistics are a round
// trip to a server that may not answer: its dump says so, not the display).
const sizeTimeout = 5 * time.Second

// partSize is the source's estimate of its tar stream's size
// (source.Sizer), 0 when it has none. Only a progress display uses it:
// without one (p nil) the source is not asked (an estimate may cost a
// walk or a database round trip); a source that cannot tell is logged at
// debug level, never failed.
func partSize(ctx context.Context, p *Progress, src source.Source, log *slog.Logger) int64 {
	sz, ok := src.(source.Sizer)
	if !ok || p == nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(ctx, sizeTimeout)
	defer cancel()
	n, err := sz.Size(ctx)
	if err != nil {
		log.Debug("part size unknown; its progress shows no total", "part", source.ID(src), "err", err)
		return 0
	}
	return n
}
