package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/remote"
)

// setup validates the global flags and builds the logger.
//
// The level depends on who reads stderr. A person at a terminal gets the
// results (stdout) and only warnings and errors by default; cron, systemd
// and pipes get the structured INFO lines they always had (alerting and
// the journal read them). --verbose (-v) raises the level one step from
// that default (-v -v, or -vv, two), --quiet (-q) lowers it one:
//
//	                 -q     default  -v     -vv
//	terminal         ERROR  WARN     INFO   DEBUG
//	no terminal      WARN   INFO     DEBUG  DEBUG
func (a *app) setup(cmd *cobra.Command, _ []string) error {
	if a.quiet && a.verbose > 0 {
		return exitcode.Usagef("choose one of them", "--quiet and --verbose exclude each other")
	}
	a.logOut = &logSink{w: a.stderr}
	opts := &slog.HandlerOptions{Level: logLevel(a.stderrTerminal(), a.quiet, a.verbose)}
	switch a.logFormat {
	case "text":
		a.log = slog.New(slog.NewTextHandler(a.logOut, opts))
	case "json":
		a.log = slog.New(slog.NewJSONHandler(a.logOut, opts))
	default:
		return exitcode.Usagef("use --log-format text or --log-format json", "unknown log format %q", a.logFormat)
	}
	// rclone's own lines (a name it could not store, a retried request)
	// take the same format and level and go above the progress display.
	remote.SetLogHandler(a.log.Handler())
	return nil
}

// logLevel is the level of the log lines on stderr (see setup).
func logLevel(terminal, quiet bool, verbose int) slog.Level {
	level := slog.LevelInfo
	if terminal {
		level = slog.LevelWarn
	}
	switch {
	case quiet:
		return level + 4 // one step: INFO to WARN, WARN to ERROR
	case verbose > 0:
		return max(level-slog.Level(4*verbose), slog.LevelDebug)
	}
	return level
}

// stderrTerminal reports whether stderr is a terminal a person reads: a
// terminal device, and not one that declares itself unable to move the
// cursor (TERM=dumb, as in Emacs' shell).
func (a *app) stderrTerminal() bool {
	f, ok := a.stderr.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb"
}

// logSink is where the log handler writes: stderr, or, while a progress
// display is drawn, the display, which prints each line above its bars
// (a line written straight to the terminal would land inside them).
type logSink struct {
	mu sync.Mutex
	w  io.Writer
}

// Write writes one log record (slog's handlers write each in one call).
func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// redirect makes the sink write to w; it waits for a write in progress.
func (s *logSink) redirect(w io.Writer) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}

// verbosity is --verbose: a count (-v, -vv, --verbose --verbose) that
// also takes the boolean values a cron line or unit written for the
// earlier boolean flag may carry (--verbose=true is one step,
// --verbose=false none).
type verbosity int

// Set adds one step for a bare -v (pflag passes NoOptDefVal, "+1"), and
// takes a boolean or a number after "=".
func (v *verbosity) Set(s string) error {
	if s == "+1" {
		*v++
		return nil
	}
	if b, err := strconv.ParseBool(s); err == nil {
		*v = 0
		if b {
			*v = 1
		}
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return fmt.Errorf("want -v, -vv, --verbose=true|false or a count, not %q", s)
	}
	*v = verbosity(n)
	return nil
}

// String returns the count.
func (v *verbosity) String() string { return strconv.Itoa(int(*v)) }

// Type names the flag's value in help.
func (v *verbosity) Type() string { return "count" }

// addVerboseFlag registers --verbose (-v) on fs, counting into a.verbose.
func (a *app) addVerboseFlag(fs *pflag.FlagSet) {
	f := fs.VarPF((*verbosity)(&a.verbose), "verbose", "v", "log more: INFO on a terminal (DEBUG with -vv), DEBUG otherwise")
	f.NoOptDefVal = "+1"
}
