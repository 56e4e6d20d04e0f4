package lock

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firetech/fireops/pkg/exitcode"
)

// TestMain lets the test binary act as a lock holder in another process:
// FIREOPS_LOCK_HOLD=dir:name takes the lock, prints "held", and sleeps
// until killed.
func TestMain(m *testing.M) {
	if v := os.Getenv("FIREOPS_LOCK_HOLD"); v != "" {
		dir, name, _ := strings.Cut(v, ":")
		shared := os.Getenv("FIREOPS_LOCK_SHARED") != ""
		l, err := Acquire(context.Background(), dir, name, Options{Command: "holder", Shared: shared})
		if err != nil {
			os.Stdout.WriteString("error " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("held\n")
		time.Sleep(time.Hour)
		l.Release()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// holder starts another process that holds the lock and waits until it
// says so.
func holder(t *testing.T, dir, name string, shared bool) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FIREOPS_LOCK_HOLD="+dir+":"+name)
	if shared {
		cmd.Env = append(cmd.Env, "FIREOPS_LOCK_SHARED=1")
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "held" {
		t.Fatalf("holder: %q", line)
	}
	return cmd
}

func TestBusyNamesHolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h := holder(t, dir, "snapshot", false)
	_, err := Acquire(context.Background(), dir, "snapshot", Options{})
	if exitcode.Code(err) != exitcode.LockBusy {
		t.Fatalf("second run: %v (code %d), want lock busy", err, exitcode.Code(err))
	}
	var be *BusyError
	if !errors.As(err, &be) {
		t.Fatalf("not a BusyError: %v", err)
	}
	if be.Holder.PID != h.Process.Pid || be.Holder.Command != "holder" || be.Holder.Started.IsZero() {
		t.Fatalf("holder %+v, want pid %d", be.Holder, h.Process.Pid)
	}
	if !strings.Contains(err.Error(), "pid "+strconv.Itoa(h.Process.Pid)) || !strings.Contains(err.Error(), "started ") {
		t.Fatalf("message does not name the holder: %v", err)
	}
	if exitcode.Hint(err) == "" {
		t.Fatal("no hint")
	}
}

// TestKilledHolder: a holder killed with SIGKILL never blocks the next run.
func TestKilledHolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h := holder(t, dir, "rotate", false)
	if err := h.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.Wait()
	l, err := Acquire(context.Background(), dir, "rotate", Options{Command: "next"})
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}
	defer l.Release()
	b, _ := os.ReadFile(l.Path())
	if !strings.Contains(string(b), `"pid":`+strconv.Itoa(os.Getpid())) {
		t.Fatalf("lock file: %s", b)
	}
}

// TestWaitThenAcquire: a run that waits gets the lock once the holder
// exits; one whose wait ends first is busy.
func TestWaitThenAcquire(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h := holder(t, dir, "verify", false)
	_, err := Acquire(context.Background(), dir, "verify", Options{Wait: 300 * time.Millisecond})
	var be *BusyError
	if !errors.As(err, &be) || be.Waited < 300*time.Millisecond {
		t.Fatalf("short wait: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		l, err := Acquire(context.Background(), dir, "verify", Options{Wait: time.Hour})
		if err == nil {
			l.Release()
		}
		done <- err
	}()
	h.Process.Kill()
	h.Wait()
	if err := <-done; err != nil {
		t.Fatalf("waiting run: %v", err)
	}
}

// TestContextStopsWait: cancelling the context ends a long wait.
func TestContextStopsWait(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	holder(t, dir, "restore", false)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Acquire(ctx, dir, "restore", Options{Wait: time.Hour})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
}

// TestShared: shared holders coexist; an exclusive lock waits for all of
// them, and a shared one for an exclusive holder.
func TestShared(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h := holder(t, dir, "objects", true)
	s, err := Acquire(context.Background(), dir, "objects", Options{Shared: true})
	if err != nil {
		t.Fatalf("second shared holder: %v", err)
	}
	_, err = Acquire(context.Background(), dir, "objects", Options{})
	var be *BusyError
	if !errors.As(err, &be) || be.Holder.PID == 0 {
		t.Fatalf("exclusive while shared held: %v", err)
	}
	s.Release()
	h.Process.Kill()
	h.Wait()
	x, err := Acquire(context.Background(), dir, "objects", Options{})
	if err != nil {
		t.Fatalf("exclusive after the shared holders left: %v", err)
	}
	if _, err := Acquire(context.Background(), dir, "objects", Options{Shared: true}); exitcode.Code(err) != exitcode.LockBusy {
		t.Fatalf("shared while exclusive held: %v", err)
	}
	x.Release()
}

func TestHolderString(t *testing.T) {
	t.Parallel()
	h := Holder{PID: 42, Command: "fireops snapshot", Started: time.Date(2026, 11, 28, 3, 0, 0, 0, time.UTC)}
	if got, want := h.String(), "pid 42 (fireops snapshot), started 2026-11-28T03:00:00Z"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	if got := (Holder{}).String(); got != "an unknown process" {
		t.Fatal(got)
	}
}

// TestUnusableStateDir: a state dir that cannot hold the locks folder is a
// usage error naming the lock, with a hint (a file in the way fails even
// for root).
func TestUnusableStateDir(t *testing.T) {
	t.Parallel()
	file := t.TempDir() + "/state"
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Acquire(context.Background(), Dir(file), "snapshot", Options{})
	if err == nil {
		l.Release()
		t.Fatal("Acquire under a file succeeded")
	}
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "lock snapshot") || !strings.Contains(exitcode.Hint(err), "state_dir") {
		t.Errorf("got %v (code %d, hint %q)", err, exitcode.Code(err), exitcode.Hint(err))
	}
}

// TestBusyMessage: the message mentions a wait only when the caller
// waited, the hint fits the wait, and BusyHint replaces it; Waiting is
// called once a wait begins.
func TestBusyMessage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	holder(t, dir, "schedule", false)
	for _, tc := range []struct {
		name       string
		o          Options
		waited     bool
		hint       string
		waitingCBs int
	}{
		{name: "no wait", o: Options{}, hint: "pass --lock-wait 30m"},
		{name: "waited", o: Options{Wait: 300 * time.Millisecond}, waited: true, hint: "a longer --lock-wait", waitingCBs: 1},
		{name: "own hint", o: Options{BusyHint: "stop the other daemon"}, hint: "stop the other daemon"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			calls := 0
			tc.o.Waiting = func(h Holder) {
				calls++
				if h.Command != "holder" {
					t.Errorf("Waiting got holder %+v", h)
				}
			}
			_, err := Acquire(context.Background(), dir, "schedule", tc.o)
			if exitcode.Code(err) != exitcode.LockBusy {
				t.Fatalf("got %v", err)
			}
			if got := strings.Contains(err.Error(), "waited"); got != tc.waited {
				t.Errorf("message %q: mentions a wait %v, want %v", err, got, tc.waited)
			}
			if !strings.Contains(exitcode.Hint(err), tc.hint) {
				t.Errorf("hint %q lacks %q", exitcode.Hint(err), tc.hint)
			}
			if calls != tc.waitingCBs {
				t.Errorf("Waiting called %d times, want %d", calls, tc.waitingCBs)
			}
		})
	}
}

// TestBusyNamesOwnJob: in one process (the schedule daemon runs every job
// in its own), a lock held by another job is named by that job, not by the
// holder line an earlier job of the same process left in the file: here a
// rotate wrote it and released, then a snapshot holds the lock shared.
func TestBusyNamesOwnJob(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	r, err := Acquire(ctx, dir, "objects", Options{Command: "fireops rotate"})
	if err != nil {
		t.Fatal(err)
	}
	must(t, r.Release())
	for _, tc := range []struct {
		name   string
		holder Options
		want   Options
	}{
		{"shared holder, exclusive wanted", Options{Command: "fireops snapshot", Shared: true}, Options{Command: "fireops rotate"}},
		{"exclusive holder, shared wanted", Options{Command: "fireops verify"}, Options{Command: "fireops snapshot", Shared: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now()
			h, err := Acquire(ctx, dir, "objects", tc.holder)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Release()
			_, err = Acquire(ctx, dir, "objects", tc.want)
			var be *BusyError
			if !errors.As(err, &be) {
				t.Fatalf("got %v, want a BusyError", err)
			}
			if be.Holder.PID != os.Getpid() || be.Holder.Command != tc.holder.Command || be.Holder.Started.Before(before) {
				t.Fatalf("holder %+v, want pid %d (%s) started after %s", be.Holder, os.Getpid(), tc.holder.Command, before)
			}
		})
	}
}

// TestSharedHolderOtherProcess: a shared holder in another process is
// named by its PID, not by the line an earlier exclusive holder of this
// process left in the file.
func TestSharedHolderOtherProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r, err := Acquire(context.Background(), dir, "objects", Options{Command: "fireops rotate"})
	if err != nil {
		t.Fatal(err)
	}
	must(t, r.Release())
	h := holder(t, dir, "objects", true)
	_, err = Acquire(context.Background(), dir, "objects", Options{})
	var be *BusyError
	if !errors.As(err, &be) || be.Holder.PID != h.Process.Pid {
		t.Fatalf("got %v, want the shared holder pid %d named", err, h.Process.Pid)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
