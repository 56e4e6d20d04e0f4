package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sample is one measured run of one tool.
type sample struct {
	wall   time.Duration
	cpu    time.Duration // user + sys of the process and its waited children
	maxRSS int64         // bytes; for a pipeline, its largest process
	out    int64         // bytes written (output size), -1 when not measured
	note   string
	// other is the CPU time that other processes used during the run: a
	// busy machine makes the timings unreliable.
	other time.Duration
	// reuse is what a fireops second snapshot reported.
	reuse *reuseRun
}

// busyCPU returns the CPU time all CPUs spent busy since boot (/proc/stat).
func busyCPU() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, false
	}
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait, guest (already in user)
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, false
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / 100, true // USER_HZ
}

// waitQuiet waits, up to max, for a second in which other processes use
// less than a quarter of one CPU. It returns how busy the last second was.
func waitQuiet(ctx context.Context, max time.Duration) (time.Duration, bool) {
	deadline := time.Now().Add(max)
	for {
		b0, ok := busyCPU()
		if !ok {
			return 0, true
		}
		select {
		case <-ctx.Done():
			return 0, false
		case <-time.After(time.Second):
		}
		b1, _ := busyCPU()
		if b1-b0 < 250*time.Millisecond {
			return b1 - b0, true
		}
		if time.Now().After(deadline) {
			return b1 - b0, false
		}
	}
}

// command is one process to measure.
type command struct {
	argv   []string
	env    []string // added to the environment
	stdout io.Writer
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

// measure runs c to completion and returns its wall time and resource use.
// The page cache's dirty data of earlier runs is flushed first (not timed),
// so that one tool's write-back is not charged to the next.
func measure(ctx context.Context, c command) (sample, error) {
	syscall.Sync()
	cmd := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
	cmd.Env = append(os.Environ(), c.env...)
	stderr := &tailBuffer{max: 4096}
	cmd.Stderr = stderr
	cmd.Stdout = c.stdout
	if cmd.Stdout == nil {
		cmd.Stdout = stderr
	}
	cmd.WaitDelay = 5 * time.Second
	busy0, okBusy := busyCPU()
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	busy1, _ := busyCPU()
	var s sample
	s.wall, s.out = wall, -1
	if ps := cmd.ProcessState; ps != nil {
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			s.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			s.maxRSS = ru.Maxrss * 1024 // KiB on Linux
		}
	}
	if okBusy {
		s.other = max(0, busy1-busy0-s.cpu)
	}
	if err != nil {
		msg := strings.TrimSpace(string(stderr.b))
		if msg != "" {
			msg = "\n    " + strings.ReplaceAll(msg, "\n", "\n    ")
		}
		return s, fmt.Errorf("%s: %w%s", strings.Join(c.argv, " "), err, msg)
	}
	return s, nil
}

// output runs a short command and returns its stdout (setup steps, versions).
func output(ctx context.Context, env []string, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// treeSize returns the apparent size and number of regular files under path
// (or of the file itself).
func treeSize(path string) (bytes int64, files int, err error) {
	err = filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			bytes += fi.Size()
			files++
		}
		return nil
	})
	return bytes, files, err
}

// emptyDir removes everything inside dir and leaves dir itself (0700).
func emptyDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.MkdirAll(dir, 0o700)
}

const tmpfsMagic = 0x01021994

// restoreTarget picks where restores go: tmpfs (/dev/shm) when it has room
// for need bytes, else a folder under work on disk. It returns the folder
// and a description for the report.
func restoreTarget(work string, need int64) (dir, desc string, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &st); err == nil {
		free := int64(st.Bavail) * st.Bsize
		if st.Type == tmpfsMagic && free >= need {
			d, err := os.MkdirTemp("/dev/shm", "fireops-bench-")
			if err == nil {
				return d, fmt.Sprintf("tmpfs (%s, %s free)", d, fmtBytes(free)), nil
			}
		}
		desc = fmt.Sprintf("disk: /dev/shm has %s free, %s needed", fmtBytes(free), fmtBytes(need))
	} else {
		desc = "disk: no /dev/shm"
	}
	d := filepath.Join(work, "restore")
	if err := os.Mkdir(d, 0o700); err != nil {
		return "", "", err
	}
	return d, desc + fmt.Sprintf(" (%s); restores to disk include kernel write-back", d), nil
}

func fmtBytes(n int64) string {
	switch {
	case n < 0:
		return "-"
	case n >= gib:
		return fmt.Sprintf("%.2f GiB", float64(n)/gib)
	case n >= mib:
		return fmt.Sprintf("%.1f MiB", float64(n)/mib)
	case n >= kib:
		return fmt.Sprintf("%.1f KiB", float64(n)/kib)
	}
	return fmt.Sprintf("%d B", n)
}

func fmtDur(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}
