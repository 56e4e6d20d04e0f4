// Package lock makes a fireops job run once at a time per host, across the
// daemon, cron, systemd timers and a person at a shell. A lock is flock(2)
// on <state_dir>/locks/<name>.lock: the kernel releases it when the holder
// exits or dies, so a lock never goes stale and nothing ever has to be
// cleaned up by hand. The holder writes its PID, start time and command
// into the file so that a second run can name it.
//
// It never removes a lock file (removing one while another process waits
// on it would let two runs hold "the" lock at once).
package lock

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/firetech/fireops/pkg/exitcode"
)

// Dir is the folder of the lock files under a state dir.
func Dir(stateDir string) string { return filepath.Join(stateDir, "locks") }

// Holder is who holds a lock, as written in the lock file.
type Holder struct {
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Command string    `json:"command,omitempty"`
}

// String says "pid 123 (fireops snapshot), started 2026-11-28T03:00:00Z".
func (h Holder) String() string {
	if h.PID == 0 {
		return "an unknown process"
	}
	s := "pid " + strconv.Itoa(h.PID)
	if h.Command != "" {
		s += " (" + h.Command + ")"
	}
	if !h.Started.IsZero() {
		s += ", started " + h.Started.UTC().Format(time.RFC3339)
	}
	return s
}

// BusyError is returned when a lock is held by another run.
type BusyError struct {
	// Name is the lock's name (the job kind).
	Name string
	// Path is the lock file.
	Path string
	// Holder is the process that holds it, as far as it can be told.
	Holder Holder
	// Waited is how long the caller waited; 0 when it did not wait
	// (Options.Wait was 0).
	Waited time.Duration
}

// Error names the lock, its holder and how long the caller waited.
func (e *BusyError) Error() string {
	msg := fmt.Sprintf("another %s run holds the lock %s: %s", e.Name, e.Path, e.Holder)
	if e.Waited > 0 {
		round := time.Second
		if e.Waited < time.Second {
			round = time.Millisecond
		}
		msg += fmt.Sprintf("; waited %s", e.Waited.Round(round))
	}
	return msg
}

// Lock is a held lock; Release gives it back.
type Lock struct {
	f      *os.File
	path   string
	key    fileKey
	holder Holder
}

// fileKey identifies a lock file (device and inode), whatever the path it
// was opened by.
type fileKey struct{ dev, ino uint64 }

// held lists the locks this process holds, shared ones included, by lock
// file: when a lock is busy because another job of the same process holds
// it (the schedule daemon runs its jobs in one process), the holder line
// in the file, written by whichever exclusive holder came last, does not
// say which job; this does.
var held struct {
	sync.Mutex
	m map[fileKey][]*Lock
}

// ownHolder returns the holder of the lock file f among this process's own
// locks: the one that took it first.
func ownHolder(f *os.File) (Holder, bool) {
	k, err := keyOf(f)
	if err != nil {
		return Holder{}, false
	}
	held.Lock()
	defer held.Unlock()
	if ls := held.m[k]; len(ls) > 0 {
		return ls[0].holder, true
	}
	return Holder{}, false
}

func keyOf(f *os.File) (fileKey, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return fileKey{}, err
	}
	return fileKey{dev: uint64(st.Dev), ino: st.Ino}, nil
}

// Path is the lock file.
func (l *Lock) Path() string { return l.path }

// Options say how to take a lock.
type Options struct {
	// Wait is how long to wait for a lock another process holds; 0 fails
	// at once.
	Wait time.Duration
	// Command describes this run in the lock file ("fireops snapshot").
	Command string
	// Shared takes a shared lock: any number of shared holders at once,
	// but none while an exclusive holder has it. Shared holders are not
	// written into the file (this process remembers its own, and names
	// them when one of its other jobs finds the lock busy).
	Shared bool
	// BusyHint replaces the hint of the lock-busy error (by default: wait
	// for the holder, or pass --lock-wait), for a lock whose holder is not
	// meant to end by itself, such as the schedule daemon's.
	BusyHint string
	// Waiting, when set, is called once when the lock is busy and Acquire
	// starts to wait for it (Wait > 0), with its holder.
	Waiting func(Holder)
}

// pollInterval bounds how often a waiting run retries; flock itself cannot
// be interrupted by a context.
const pollInterval = 200 * time.Millisecond

// Acquire takes the lock name in dir (created 0700 when missing). When
// another process holds it, Acquire retries until o.Wait has passed and
// then returns a *BusyError wrapped with the lock-busy exit code, naming
// the holder. A cancelled ctx stops the wait.
func Acquire(ctx context.Context, dir, name string, o Options) (*Lock, error) {
	p := filepath.Join(dir, name+".lock")
	f, err := openLockFile(dir, p)
	if err != nil {
		return nil, exitcode.New(exitcode.Usage, fmt.Errorf("lock %s: %w", name, err), "make state_dir writable, or point it elsewhere")
	}
	how := syscall.LOCK_EX
	if o.Shared {
		how = syscall.LOCK_SH
	}
	k, err := keyOf(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: stat %s: %w", name, p, err)
	}
	l := &Lock{f: f, path: p, key: k}
	begin := time.Now()
	for first := true; ; first = false {
		err := l.try(how, o.Command)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: flock %s: %w", name, p, err)
		}
		waited := time.Since(begin)
		if waited >= o.Wait {
			h := readHolder(f, p)
			f.Close()
			be := &BusyError{Name: name, Path: p, Holder: h}
			hint := "wait for it to finish, or pass --lock-wait 30m to wait for it"
			if o.Wait > 0 {
				be.Waited = waited
				hint = "it outlasted --lock-wait: wait for it to finish, or pass a longer --lock-wait"
			}
			if o.BusyHint != "" {
				hint = o.BusyHint
			}
			return nil, exitcode.New(exitcode.LockBusy, be, hint)
		}
		if first && o.Waiting != nil {
			o.Waiting(readHolder(f, p))
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", name, ctx.Err())
		case <-time.After(min(pollInterval, o.Wait-waited)):
		}
	}
	if !o.Shared {
		b, _ := json.Marshal(l.holder)
		// Best effort: the lock is held either way; only the message of a
		// second run would be less precise.
		if err := f.Truncate(0); err == nil {
			f.WriteAt(append(b, '\n'), 0)
		}
	}
	return l, nil
}

// try takes the lock without waiting and, once taken, records it among
// this process's locks, both under held's mutex so that a run of this
// process that finds the lock busy finds its holder too.
func (l *Lock) try(how int, command string) error {
	held.Lock()
	defer held.Unlock()
	if err := syscall.Flock(int(l.f.Fd()), how|syscall.LOCK_NB); err != nil {
		return err
	}
	l.holder = Holder{PID: os.Getpid(), Started: time.Now().UTC(), Command: command}
	if held.m == nil {
		held.m = map[fileKey][]*Lock{}
	}
	held.m[l.key] = append(held.m[l.key], l)
	return nil
}

// openLockFile creates dir (0700) when missing and opens the lock file p
// in it, creating it 0600.
func openLockFile(dir, p string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
}

// Release gives the lock back. The holder line stays in the file; the next
// holder overwrites it, and a second run trusts it only while the PID in
// it holds the lock.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	held.Lock()
	ls := slices.DeleteFunc(held.m[l.key], func(o *Lock) bool { return o == l })
	if len(ls) == 0 {
		delete(held.m, l.key)
	} else {
		held.m[l.key] = ls
	}
	err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	held.Unlock()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}

// readHolder tells who holds the lock on f. A lock held by another job of
// this process is named from this process's own record of its locks.
// Otherwise the kernel's list of holders in /proc/locks decides: the holder
// line in the file is trusted only when its PID holds the lock exclusively
// (only exclusive holders write the line, so for a shared holder it names
// an earlier run; and a new holder may not have written its line yet);
// else the first PID the kernel lists is named, with its start time and
// command line from /proc.
func readHolder(f *os.File, p string) Holder {
	var h Holder
	b := make([]byte, 4096)
	n, _ := f.ReadAt(b, 0)
	_ = json.Unmarshal([]byte(strings.TrimSpace(string(b[:n]))), &h)
	ks := kernelHolders(f)
	self := os.Getpid()
	if len(ks) == 0 {
		// Not Linux, or /proc not mounted: this process's own record, then
		// the file.
		if own, ok := ownHolder(f); ok {
			return own
		}
		return h
	}
	for _, k := range ks {
		if k.pid == self {
			if own, ok := ownHolder(f); ok {
				return own
			}
		}
	}
	for _, k := range ks {
		if k.pid == h.PID && k.exclusive && k.pid != self {
			return h
		}
	}
	k := Holder{PID: ks[0].pid}
	k.Started = processStart(k.PID)
	if c, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", k.PID)); err == nil {
		k.Command = strings.TrimSpace(strings.ReplaceAll(string(c), "\x00", " "))
	}
	return k
}

// kernelLock is one holder of a flock as /proc/locks lists it.
type kernelLock struct {
	pid       int
	exclusive bool
}

// kernelHolders returns the processes holding a flock on the file, from
// /proc/locks ("1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; READ for
// a shared lock).
func kernelHolders(f *os.File) []kernelLock {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return nil
	}
	pl, err := os.Open("/proc/locks")
	if err != nil {
		return nil
	}
	defer pl.Close()
	var out []kernelLock
	sc := bufio.NewScanner(pl)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		// A blocked waiter's line has "->" after the number.
		if len(fs) < 6 || fs[1] != "FLOCK" {
			continue
		}
		dev := strings.Split(fs[5], ":")
		if len(dev) != 3 {
			continue
		}
		ino, err := strconv.ParseUint(dev[2], 10, 64)
		if err != nil || ino != st.Ino {
			continue
		}
		if pid, err := strconv.Atoi(fs[4]); err == nil && pid > 0 {
			out = append(out, kernelLock{pid: pid, exclusive: fs[3] == "WRITE"})
		}
	}
	return out
}

// processStart reads a process's start time from /proc (Linux).
func processStart(pid int) time.Time {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return time.Time{}
	}
	// Field 22 (starttime, in clock ticks since boot) comes after the
	// command name in parentheses, which may itself contain spaces.
	s := string(st)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return time.Time{}
	}
	fs := strings.Fields(s[i+1:])
	if len(fs) < 20 {
		return time.Time{}
	}
	ticks, err := strconv.ParseUint(fs[19], 10, 64)
	if err != nil {
		return time.Time{}
	}
	boot := bootTime()
	if boot.IsZero() {
		return time.Time{}
	}
	const clkTck = 100 // USER_HZ on every Linux architecture Go supports
	return boot.Add(time.Duration(ticks) * time.Second / clkTck).UTC().Truncate(time.Second)
}

// bootTime reads btime from /proc/stat.
func bootTime() time.Time {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "btime "); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				return time.Unix(n, 0)
			}
		}
	}
	return time.Time{}
}
