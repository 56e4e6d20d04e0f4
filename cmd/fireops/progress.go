package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/firetech/fireops/internal/humanbytes"
	"github.com/firetech/fireops/pkg/snapshot"
)

// The progress display: on a terminal only (never under cron, systemd or
// a pipe), for the jobs that read or sweep for a while (snapshot,
// restore, verify full and restore-test, rotate's sweep). The job counts
// on a snapshot.Progress with atomic adds; a goroutine here samples the
// counters every progressTick and hands mpb the lines to draw. Log lines
// go through mpb while it draws, so that they are printed above the bars.

const (
	// progressTick is how often the counters are sampled and the bars
	// redrawn.
	progressTick = 200 * time.Millisecond
	// rateWindow is the span a rate is averaged over; rateMinSpan the
	// least span of samples a rate is shown for (a first sample, a few
	// milliseconds after the start, would say gigabytes a second).
	rateWindow  = 5 * time.Second
	rateMinSpan = time.Second
)

// startProgress returns the Progress a job counts on and the function
// that ends the display, which the caller must call once the job
// returned and before it prints anything. Without a terminal on stderr,
// with --quiet or --json, the Progress is nil and nothing is drawn. The
// display starts when the job starts its first task, so a job that asks
// first (restore --all) asks on a clean terminal.
func (a *app) startProgress(ctx context.Context) (*snapshot.Progress, func()) {
	f, ok := a.stderr.(*os.File)
	if !ok || a.quiet || a.jsonOut || a.logOut == nil || !a.stderrTerminal() {
		return nil, func() {}
	}
	d := &display{prog: &snapshot.Progress{}, out: f, sink: a.logOut, bars: map[*snapshot.Task]*taskBar{},
		stopc: make(chan struct{}), done: make(chan struct{})}
	go d.run(ctx)
	var once sync.Once
	return d.prog, func() { once.Do(func() { close(d.stopc); <-d.done }) }
}

// display draws one job's Progress.
type display struct {
	prog  *snapshot.Progress
	out   *os.File
	sink  *logSink
	stopc chan struct{}
	done  chan struct{}

	// The rest belongs to run's goroutine.
	mp      *mpb.Progress
	redraw  chan any // mpb draws a frame on each send
	bars    map[*snapshot.Task]*taskBar
	order   []*taskBar
	overall *taskBar
}

func (d *display) run(ctx context.Context) {
	defer close(d.done)
	t := time.NewTicker(progressTick)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			d.update(now, false)
			if d.mp != nil {
				d.redraw <- now
			}
		case <-d.stopc:
			d.update(time.Now(), true)
			d.finish()
			return
		}
	}
}

// update samples every task and sets its bar; final ends the bars of
// the tasks still running (an interrupted or failed job), and the
// total's.
func (d *display) update(now time.Time, final bool) {
	tasks := d.prog.Tasks()
	pending, pendingSize := d.prog.Pending()
	if d.mp == nil {
		if len(tasks) == 0 && pending == 0 {
			return
		}
		d.redraw = make(chan any)
		d.mp = mpb.New(mpb.WithOutput(d.out), mpb.WithManualRefresh(d.redraw), mpb.PopCompletedMode())
		d.sink.redirect(d.mp) // log lines above the bars from now on
	}
	for _, t := range tasks {
		if d.bars[t] == nil {
			tb := newTaskBar(d.mp, t, 0)
			d.bars[t] = tb
			d.order = append(d.order, tb)
		}
	}
	var ov view
	ov.name, ov.unit, ov.state = "total", snapshot.Bytes, snapshot.TaskRunning
	parts, finished := pending, 0
	allOK := pending == 0
	var first time.Time
	var rows []row // the lines to set this frame
	for _, tb := range d.order {
		if s := tb.task.Started(); first.IsZero() || s.Before(first) {
			first = s
		}
		v := tb.sample(now)
		if final && v.state == snapshot.TaskRunning {
			v.state = snapshot.TaskFailed
		}
		if r, ok := tb.row(v); ok {
			rows = append(rows, r)
		}
		if v.unit != snapshot.Bytes {
			continue
		}
		parts++
		switch v.state {
		case snapshot.TaskRunning:
			ov.done += v.done
			ov.total += max(v.total, v.done)
			ov.estimate = true
		case snapshot.TaskDone:
			ov.done += v.done
			ov.total += v.done
			finished++
		case snapshot.TaskReused:
			finished++
		case snapshot.TaskFailed:
			ov.done += v.done
			ov.total += max(v.total, v.done)
			allOK = false
		}
		ov.stored += v.stored
		ov.reused += v.reused
	}
	ov.total += pendingSize
	ov.estimate = ov.estimate || pending > 0
	ov.parts = fmt.Sprintf("%d/%d parts", finished, parts)
	if d.overall == nil && parts >= 2 {
		d.overall = newTaskBar(d.mp, nil, math.MaxInt32) // at the bottom
	}
	if d.overall != nil {
		if final {
			ov.state = snapshot.TaskDone
			if !allOK || finished < parts {
				ov.state = snapshot.TaskFailed
			}
		}
		d.overall.meter.add(now, ov.done)
		ov.rate, ov.rateOK = d.overall.meter.rate()
		if !first.IsZero() {
			ov.elapsed = now.Sub(first)
		}
		if r, ok := d.overall.row(ov); ok {
			rows = append(rows, r)
		}
	}
	// The name column mpb lines up: at most the widest name of every bar
	// (those that ended too, set in this goroutine).
	nameWidth := 0
	for _, tb := range d.order {
		nameWidth = max(nameWidth, utf8.RuneCountInString(tb.cols.name))
	}
	for _, r := range rows {
		nameWidth = max(nameWidth, utf8.RuneCountInString(r.c.name))
	}
	fitColumns(rows, d.termWidth(), nameWidth)
	// Every line's texts first: a bar that completes may have mpb draw a
	// frame at once, which must not show the others' texts of before.
	for _, r := range rows {
		r.tb.setColumns(r.c)
	}
	for _, r := range rows {
		r.tb.show(r.v)
	}
}

// termWidth is the width of the terminal the bars are drawn on; 80, as
// mpb assumes, when it cannot be read.
func (d *display) termWidth() int {
	if w, _, err := term.GetSize(int(d.out.Fd())); err == nil && w > 0 {
		return w
	}
	return 80
}

// row is one bar's line of a frame: the bar, its view and its texts.
type row struct {
	tb *taskBar
	v  view
	c  columns
}

// minBarWidth is the least a line leaves the bar: mpb draws a bar in the
// width its decorators leave, and none at all (a line cut with "…")
// when they take the whole terminal. Two spaces, the brackets, and 8
// cells of fill.
const minBarWidth = 2 + 2 + 8

// fitColumns shortens the texts of rows, a frame's lines, until each
// line fits width columns with a bar of at least minBarWidth (an 80
// column terminal; the texts of a snapshot's part take ~75 columns).
// mpb lines the columns up across the lines (but for the last, extra),
// so each takes its widest text in every line; nameWidth is the widest
// name. It drops, while a line is too wide: the stored/reused bytes of
// running lines (the total keeps its "2/5 parts"), the rates, the
// percentages (the bar shows them), the stored/reused bytes of the lines
// still too wide, the ETAs and times, then the amounts; then it puts back
// the percentages and the rates if they fit now. The names are kept (mpb
// cuts what then still does not fit).
func fitColumns(rows []row, width, nameWidth int) {
	wide := func(r row) bool {
		n := nameWidth + 1 + minBarWidth + 1 + utf8.RuneCountInString(r.c.extra)
		for _, get := range []func(c *columns) string{
			func(c *columns) string { return c.pct },
			func(c *columns) string { return c.amount },
			func(c *columns) string { return c.rate },
			func(c *columns) string { return c.eta },
		} {
			w := 0
			for i := range rows {
				w = max(w, utf8.RuneCountInString(get(&rows[i].c)))
			}
			n += 1 + w
		}
		return n > width
	}
	anyWide := func() bool {
		for _, r := range rows {
			if wide(r) {
				return true
			}
		}
		return false
	}
	// shorten puts the parts count in place of a (running, with running)
	// row's wide extra; empty empties a column.
	shorten := func(running bool) func() {
		return func() {
			for i := range rows {
				if (!running || rows[i].v.state == snapshot.TaskRunning) && wide(rows[i]) {
					rows[i].c.extra = rows[i].v.parts
				}
			}
		}
	}
	empty := func(col func(c *columns) *string) func() {
		return func() {
			for i := range rows {
				*col(&rows[i].c) = ""
			}
		}
	}
	steps := []func(){
		shorten(true),
		empty(func(c *columns) *string { return &c.rate }),
		empty(func(c *columns) *string { return &c.pct }),
		shorten(false),
		empty(func(c *columns) *string { return &c.eta }),
		empty(func(c *columns) *string { return &c.amount }),
	}
	orig := make([]columns, len(rows))
	for i := range rows {
		orig[i] = rows[i].c
	}
	for _, step := range steps {
		if !anyWide() {
			break
		}
		step()
	}
	// A line whose bytes went last may leave the others room.
	for _, col := range []func(c *columns) *string{
		func(c *columns) *string { return &c.pct },
		func(c *columns) *string { return &c.rate },
	} {
		kept := make([]string, len(rows))
		for i := range rows {
			kept[i] = *col(&rows[i].c)
			*col(&rows[i].c) = *col(&orig[i])
		}
		if anyWide() {
			for i := range rows {
				*col(&rows[i].c) = kept[i]
			}
		}
	}
}

// finish draws the last frame, then sends log lines to stderr again;
// log lines written meanwhile wait for it. mpb holds the lines written to
// it until it draws the next frame, and draws none once it is shut down:
// the frame drawn here, after the last line reached it, prints them.
func (d *display) finish() {
	if d.mp == nil {
		return
	}
	d.sink.mu.Lock()
	defer d.sink.mu.Unlock()
	d.redraw <- time.Now()
	d.mp.Wait()
	d.sink.w = d.out
}

// taskBar is one bar: a task's, or the total's (task nil).
type taskBar struct {
	bar   *mpb.Bar
	task  *snapshot.Task
	meter meter
	ended bool
	// final is the view the bar ended with, endedFor the updates since.
	final    view
	endedFor int

	mu   sync.Mutex
	cols columns // what the decorators print
}

func newTaskBar(mp *mpb.Progress, t *snapshot.Task, priority int) *taskBar {
	tb := &taskBar{task: t}
	// Columns line up across the bars: texts to the left, numbers to
	// the right.
	col := func(wc decor.WC, get func(c *columns) string) decor.Decorator {
		return decor.Any(func(decor.Statistics) string {
			tb.mu.Lock()
			defer tb.mu.Unlock()
			return " " + get(&tb.cols)
		}, wc)
	}
	left, right := decor.WCSyncWidthR, decor.WCSyncWidth
	opts := []mpb.BarOption{
		mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
			tb.mu.Lock()
			defer tb.mu.Unlock()
			return tb.cols.name + " "
		}, decor.WCSyncWidthR)),
		mpb.AppendDecorators(
			col(right, func(c *columns) string { return c.pct }),
			col(right, func(c *columns) string { return c.amount }),
			col(right, func(c *columns) string { return c.rate }),
			col(left, func(c *columns) string { return c.eta }),
			// The last column is not lined up: its width is each line's
			// own (fitColumns counts on it).
			col(decor.WC{}, func(c *columns) string { return c.extra })),
		mpb.BarWidth(24),
	}
	if t == nil {
		// The total stays the last line, also once it ended.
		opts = append(opts, mpb.BarPriority(priority), mpb.BarNoPop())
	}
	tb.bar = mp.New(0, mpb.BarStyle(), opts...)
	return tb
}

// sample reads the task's counters at now.
func (tb *taskBar) sample(now time.Time) view {
	t := tb.task
	v := view{name: t.Name, where: t.Where, unit: t.Unit, done: t.Done(), total: t.Total(), state: t.State(),
		stored: t.Stored(), reused: t.Reused(), estimate: true}
	v.removed, v.freed = t.Removed()
	if !tb.ended {
		tb.meter.add(now, v.done)
	}
	v.rate, v.rateOK = tb.meter.rate()
	v.elapsed = t.Elapsed(now)
	return v
}

// drawnEnded is how many updates a bar is counted as drawn after it
// ended: mpb draws an ended bar in two more frames (the second puts it
// above the others for good), and draws frames of its own as well.
const drawnEnded = 3

// row returns the bar's line of this frame, with v, or with the view it
// ended with while mpb still draws it; false once it is drawn no more.
func (tb *taskBar) row(v view) (row, bool) {
	if tb.ended {
		tb.endedFor++
		if tb.endedFor > drawnEnded {
			return row{}, false
		}
		v = tb.final
	}
	return row{tb, v, v.columns()}, true
}

// setColumns sets the texts the bar's decorators print, while mpb draws
// it.
func (tb *taskBar) setColumns(c columns) {
	if tb.ended && tb.endedFor > drawnEnded {
		return
	}
	tb.mu.Lock()
	tb.cols = c
	tb.mu.Unlock()
}

// show sets the bar's fill to v, and its end once the task ended.
func (tb *taskBar) show(v view) {
	if tb.ended {
		return
	}
	switch v.state {
	case snapshot.TaskRunning:
		total := max(v.total, 1)
		tb.bar.SetTotal(total, false)
		// The fill stops short of full until the task is done: a total
		// may be an estimate that the task passes.
		tb.bar.SetCurrent(min(v.done, total-total/100))
	case snapshot.TaskDone, snapshot.TaskReused:
		tb.ended, tb.final = true, v
		tb.bar.SetTotal(max(v.total, v.done), true)
	default:
		tb.ended, tb.final = true, v
		tb.bar.Abort(false)
	}
}

// view is what one line shows, read from a task (or summed, for the
// total).
type view struct {
	name, where    string
	unit           snapshot.Unit
	state          snapshot.TaskState
	done, total    int64
	estimate       bool // total may be passed; 99% at most until done
	rate           float64
	rateOK         bool
	elapsed        time.Duration
	stored, reused int64
	removed, freed int64
	parts          string // the total's "2/5 parts"
}

// columns are the texts of one line, besides the bar itself.
type columns struct{ name, pct, amount, rate, eta, extra string }

// columns formats v. Running: percentage (at most 99 while the total
// is an estimate), done of total, the rate over the last rateWindow and
// the ETA once a rate is known. Ended: 100%, the size, the average rate
// and the time it took; or what stopped it.
func (v view) columns() columns {
	var c columns
	c.name = v.name
	switch {
	case v.name == "sweep":
		c.name = "sweep " + v.where
	case v.where != "":
		c.name = v.name + " from " + v.where
	}
	switch v.unit {
	case snapshot.Folders:
		c.amount = fmt.Sprintf("%d/%d folders", v.done, v.total)
	default:
		c.amount = humanbytes.Format(v.done)
		if v.total > 0 && v.state == snapshot.TaskRunning {
			c.amount += " / " + humanbytes.Format(max(v.total, v.done))
		}
	}
	switch v.state {
	case snapshot.TaskRunning:
		c.pct = "  ?%"
		if v.total > 0 {
			pct := v.done * 100 / v.total
			if v.estimate {
				pct = min(pct, 99)
			}
			c.pct = fmt.Sprintf("%3d%%", pct)
		}
		c.rate, c.eta = "--/s", "ETA --"
		if v.rateOK {
			c.rate = rateString(v.unit, v.rate)
			if v.total > v.done && v.rate > 0 {
				c.eta = "ETA " + shortDuration(time.Duration(float64(v.total-v.done)/v.rate*float64(time.Second)))
			}
		}
	case snapshot.TaskDone:
		c.pct = "100%"
		if s := v.elapsed.Seconds(); s > 0 {
			c.rate = rateString(v.unit, float64(v.done)/s)
		}
		c.eta = "in " + shortDuration(v.elapsed)
	case snapshot.TaskReused:
		c.pct, c.amount = "  --", humanbytes.Format(v.total)
		c.eta = "unchanged: reused, not read"
	default:
		c.pct = "  --"
		c.eta = "stopped after " + shortDuration(v.elapsed)
	}
	switch {
	case v.unit == snapshot.Folders:
		c.extra = fmt.Sprintf("%d objects removed, %s", v.removed, humanbytes.Format(v.freed))
	case v.where == "" && v.state != snapshot.TaskReused && (v.stored > 0 || v.reused > 0):
		c.extra = "new " + humanbytes.Format(v.stored) + " stored, " + humanbytes.Format(v.reused) + " reused"
	}
	if v.parts != "" {
		c.extra = strings.TrimSuffix(v.parts+"  "+c.extra, "  ")
	}
	return c
}

// rateString formats a rate of unit a second.
func rateString(u snapshot.Unit, perSec float64) string {
	if u == snapshot.Folders {
		return fmt.Sprintf("%.1f/s", perSec)
	}
	return humanbytes.Format(int64(perSec)) + "/s"
}

// shortDuration formats d as 45s, 3m07s or 2h05m.
func shortDuration(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	}
	return fmt.Sprintf("%dh%02dm", s/3600, s/60%60)
}

// meter turns samples of a growing count into a rate averaged over the
// last rateWindow. It holds at most one sample per progressTick of the
// window.
type meter struct {
	samples []sample
}

type sample struct {
	t time.Time
	n int64
}

// add records the count n at t.
func (m *meter) add(t time.Time, n int64) {
	m.samples = append(m.samples, sample{t, n})
	// Keep the newest sample at least rateWindow old, and drop the ones
	// before it.
	drop := 0
	for drop+1 < len(m.samples) && t.Sub(m.samples[drop+1].t) >= rateWindow {
		drop++
	}
	m.samples = append(m.samples[:0], m.samples[drop:]...)
}

// rate returns the count a second over the samples of the window, and
// false while they span less than rateMinSpan.
func (m *meter) rate() (float64, bool) {
	if len(m.samples) < 2 {
		return 0, false
	}
	first, last := m.samples[0], m.samples[len(m.samples)-1]
	span := last.t.Sub(first.t)
	if span < rateMinSpan {
		return 0, false
	}
	return float64(last.n-first.n) / span.Seconds(), true
}
