// Package leftover names the temporary and staging paths fireops creates
// so that a later run finds those a killed run left behind (SIGKILL, a
// power loss: no deferred cleanup ran) and removes them, and never
// removes one that a live run still uses.
//
// A name is the caller's prefix, then the run's tag and a random part:
// PREFIX<boot>-<pid>-<start>-<random>. boot identifies the kernel boot
// (/proc/sys/kernel/random/boot_id), pid the process and start its start
// time in clock ticks since boot (/proc/<pid>/stat), so that a reused pid
// is not taken for the run that made the path. A run is alive when it is
// this boot's and a process with that pid and start time exists. Only
// paths of runs that are not alive are removed; a name under the prefix
// without a tag (written by an older fireops) is reported, never removed:
// nothing tells whether a run still uses it.
//
// The package never follows a symbolic link: a leftover that is a link is
// removed as a link.
package leftover

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// procRoot is where the proc filesystem is (tests do not change it; a
// host without one falls back to signal 0).
const procRoot = "/proc"

var (
	selfOnce sync.Once
	selfTag  string
	bootOnce sync.Once
	bootID   string
)

// boot returns this boot's id: the first 12 hex digits of the kernel's
// boot_id, or "0" when it cannot be read.
func boot() string {
	bootOnce.Do(func() {
		bootID = "0"
		b, err := os.ReadFile(filepath.Join(procRoot, "sys", "kernel", "random", "boot_id"))
		if err != nil {
			return
		}
		id := strings.ReplaceAll(strings.TrimSpace(string(b)), "-", "")
		if len(id) >= 12 && isHex(id[:12]) {
			bootID = id[:12]
		}
	})
	return bootID
}

// startTime returns the start time of process pid in clock ticks since
// boot (field 22 of /proc/<pid>/stat), or an error wrapping fs.ErrNotExist
// when there is no such process.
func startTime(pid int) (string, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", err
	}
	// The command name (field 2) is in parentheses and may hold spaces
	// and parentheses: the fields after it follow the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", fmt.Errorf("%s/%d/stat: no command field", procRoot, pid)
	}
	f := strings.Fields(string(b[i+1:]))
	const startField = 22 - 3 // fields after the command start at field 3
	if len(f) <= startField {
		return "", fmt.Errorf("%s/%d/stat: %d fields", procRoot, pid, len(f)+2)
	}
	return f[startField], nil
}

// TagOf returns the run tag of process pid: "<boot>-<pid>-<start>".
func TagOf(pid int) (string, error) {
	st, err := startTime(pid)
	if err != nil {
		return "", fmt.Errorf("tag of process %d: %w", pid, err)
	}
	return boot() + "-" + strconv.Itoa(pid) + "-" + st, nil
}

// Tag returns this process's run tag. Without /proc it is "<boot>-<pid>-0".
func Tag() string {
	selfOnce.Do(func() {
		t, err := TagOf(os.Getpid())
		if err != nil {
			t = boot() + "-" + strconv.Itoa(os.Getpid()) + "-0"
		}
		selfTag = t
	})
	return selfTag
}

// Pattern returns the pattern for os.MkdirTemp or os.CreateTemp of a path
// named prefix (this run's tag, then a random part).
func Pattern(prefix string) string { return prefix + Tag() + "-*" }

// run is the tag parsed from a name.
type run struct {
	boot  string
	pid   int
	start string
}

// parse reads the tag at the start of rest (a name without its prefix).
func parse(rest string) (run, bool) {
	f := strings.SplitN(rest, "-", 4)
	if len(f) < 4 || f[0] == "" || !isHex(f[0]) || !isDigits(f[1]) || !isDigits(f[2]) {
		return run{}, false
	}
	pid, err := strconv.Atoi(f[1])
	if err != nil || pid <= 0 {
		return run{}, false
	}
	return run{boot: f[0], pid: pid, start: f[2]}, true
}

// alive reports whether the run may still be running.
func (r run) alive() bool {
	if r.boot != boot() {
		return false // made before the last boot
	}
	st, err := startTime(r.pid)
	switch {
	case err == nil:
		return st == r.start || r.start == "0"
	case errors.Is(err, fs.ErrNotExist):
		if _, perr := os.Stat(procRoot + "/self/stat"); perr != nil {
			// No proc filesystem: ask the kernel about the pid alone.
			return syscall.Kill(r.pid, 0) != syscall.ESRCH
		}
		return false
	default:
		return true // cannot tell: keep it
	}
}

// Clean removes the entries of dir whose names start with prefix and
// carry the tag of a run that is not alive, logging each removal (a
// warning: what a killed run left may hold plaintext). Entries under the
// prefix without a tag are logged and kept. A dir that does not exist has
// nothing to clean. It returns the paths it removed; the error joins
// those it could not list or remove.
func Clean(dir, prefix string, log *slog.Logger) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look for leftovers in %s: %w", dir, err)
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		p := filepath.Join(dir, e.Name())
		r, ok := parse(rest)
		if !ok {
			if log != nil {
				log.Warn("left by an older fireops or another program: remove it by hand when no fireops run is active (it may hold plaintext)", "path", p)
			}
			continue
		}
		if r.alive() {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("remove leftover %s: %w", p, err))
			continue
		}
		removed = append(removed, p)
		if log != nil {
			log.Warn("removed what an interrupted fireops run left behind", "path", p, "pid", r.pid)
		}
	}
	return removed, errors.Join(errs...)
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return s != ""
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}
