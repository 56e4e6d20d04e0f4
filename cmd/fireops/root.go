package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/interrupt"
	"github.com/firetech/fireops/pkg/metrics"
	"github.com/firetech/fireops/pkg/redact"
	"github.com/firetech/fireops/pkg/remote"
	"github.com/firetech/fireops/pkg/schedule"
)

// app holds the global flags and the streams every command writes to.
type app struct {
	configPath string
	jsonOut    bool
	logFormat  string
	quiet      bool
	verbose    int
	lockWait   time.Duration

	// publish, when set (the schedule daemon), receives every job's
	// metrics besides the textfiles.
	publish func(metrics.JobMetrics)

	stdin          io.Reader
	stdout, stderr io.Writer
	log            *slog.Logger
	logOut         *logSink // where log writes: stderr, or above a progress display
}

// run builds the command tree, executes it and turns the result into an
// exit code, printing errors as `fireops: error: ...` and `fireops: hint: ...`.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitcode.OK
	}
	err = classify(root, args, interrupted(ctx, err))
	// A destination it may not write, or a file in the way of its path:
	// say what to fix, not that the destination may be down.
	var denied *remote.DeniedError
	var notDir *remote.NotDirError
	switch {
	case errors.As(err, &denied):
		err = exitcode.New(exitcode.Code(err), err, denied.Hint())
	case errors.As(err, &notDir):
		err = exitcode.New(exitcode.Code(err), err, notDir.Hint())
	}
	fmt.Fprintf(stderr, "fireops: error: %s\n", oneLine(err.Error()))
	if h := exitcode.Hint(err); h != "" {
		fmt.Fprintf(stderr, "fireops: hint: %s\n", redact.Line(h))
	}
	return exitcode.Code(err)
}

// interrupted gives a failure after SIGINT or SIGTERM the interrupted exit
// code and says in plain words what the job left (interrupt.Wrap),
// except for the schedule daemon's jobs that outlasted --stop-timeout:
// that is a failure of its own (exit 1).
func interrupted(ctx context.Context, err error) error {
	var st *schedule.StopTimeoutError
	if ctx.Err() != nil && exitcode.Code(err) == exitcode.Failure && !errors.As(err, &st) {
		return interrupt.Wrap(err)
	}
	return err
}

// classify marks cobra's own command-line errors as usage errors. A
// usage error where args hold a bare true or false after a boolean flag
// (`--require-container-runtime false`: cobra takes false for an
// argument) gets a hint that says to write --flag=false.
func classify(root *cobra.Command, args []string, err error) error {
	var e *exitcode.Error
	if !errors.As(err, &e) {
		msg := err.Error()
		for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "invalid argument", "flag needs an argument", "required flag"} {
			if strings.HasPrefix(msg, p) {
				err = exitcode.New(exitcode.Usage, err, "run `fireops help` or add --help to the command")
				break
			}
		}
	}
	if exitcode.Code(err) == exitcode.Usage {
		if h := boolValueHint(root, args); h != "" {
			return exitcode.New(exitcode.Usage, err, h)
		}
	}
	return err
}

// boolValueHint returns a hint when args give a boolean flag its value
// as a word of its own (`--strict false`, `-q true`), or "".
func boolValueHint(root *cobra.Command, args []string) string {
	cmd, _, err := root.Find(args)
	if err != nil || cmd == nil {
		cmd = root
	}
	for i := 1; i < len(args); i++ {
		if args[i-1] == "--" {
			break
		}
		v, prev := args[i], args[i-1]
		if v != "true" && v != "false" || !strings.HasPrefix(prev, "-") || strings.Contains(prev, "=") {
			continue
		}
		var f *pflag.Flag
		if name, ok := strings.CutPrefix(prev, "--"); ok {
			f = cmd.Flag(name)
		} else if len(prev) == 2 {
			f = cmd.Flags().ShorthandLookup(prev[1:])
			if f == nil {
				f = cmd.InheritedFlags().ShorthandLookup(prev[1:])
			}
		}
		if f != nil && f.Value.Type() == "bool" {
			return fmt.Sprintf("a boolean flag takes its value after =: write --%s=%s", f.Name, v)
		}
	}
	return ""
}

// oneLine joins a multi-line message so that every error is one line,
// turning cobra's "Did you mean this?" list into `(did you mean "x"?)`
// as fireops' own unknown-subcommand errors say it.
func oneLine(s string) string {
	return strings.Join(strings.Fields(redact.Line(suggestions(s))), " ")
}

// suggestions rewrites cobra's suggestion block ("\n\nDid you mean
// this?\n\tx\n\ty\n") at the end of an error message as
// ` (did you mean "x" or "y"?)`.
func suggestions(s string) string {
	head, list, ok := strings.Cut(s, "\n\nDid you mean this?\n")
	if !ok {
		return s
	}
	var names []string
	for _, l := range strings.Split(list, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			names = append(names, fmt.Sprintf("%q", l))
		}
	}
	if len(names) == 0 {
		return head
	}
	return fmt.Sprintf("%s (did you mean %s?)", head, strings.Join(names, " or "))
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "fireops",
		Short: "Run the FireTech GPU server: deploy, GPU checks, hub users, encrypted backups",
		Long: `fireops runs the FireTech ML platform on one GPU server: it deploys the
Docker Compose stack, checks the GPUs, administers JupyterHub users, and takes
encrypted, signed, verified backups that it can restore.

Configuration: one YAML file (--config, $FIREOPS_CONFIG, or
/etc/fireops/fireops.yaml); docs/configuration.md documents every key.
Exit codes: listed below; docs/exit-codes.md says what to do about each.
Every command's --help has examples; docs/runbook.md has the commands of
a bad day.`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		PersistentPreRunE: a.setup,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return exitcode.New(exitcode.Usage, err, "run `fireops help` or add --help to the command")
	})
	def := os.Getenv(config.EnvPath)
	if def == "" {
		def = config.DefaultPath
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.configPath, "config", def, "config file (env "+config.EnvPath+")")
	pf.BoolVar(&a.jsonOut, "json", false, "print results as JSON")
	pf.StringVar(&a.logFormat, "log-format", "text", "log format on stderr: text or json")
	pf.BoolVarP(&a.quiet, "quiet", "q", false, "log less: errors only on a terminal, warnings and errors otherwise; no progress display")
	a.addVerboseFlag(pf)
	pf.DurationVar(&a.lockWait, "lock-wait", 0, "wait this long for a running snapshot, rotate, verify or restore of the same kind (e.g. 30m), then exit 4")

	root.AddCommand(a.versionCommand(), a.initCommand(), a.configCommand(), a.usersCommand(), a.gpuCommand(), a.deployCommand(),
		a.snapshotCommand(), a.snapshotsCommand(), a.verifyCommand(), a.restoreCommand(), a.rotateCommand(), a.scheduleCommand(),
		a.genDocsCommand())
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	a.registerCompletions(root)
	setVersionFlag(root)
	a.strictGroups(root)
	strictHelp(root)
	applyHelpTexts(root)
	return root
}

// strictHelp makes `fireops help WORDS...` refuse a word that names no
// command like `fireops WORDS...` does (exit 2, the closest subcommand,
// nothing on stdout) instead of cobra's root help with exit 0.
func strictHelp(root *cobra.Command) {
	for _, h := range root.Commands() {
		if h.Name() != "help" {
			continue
		}
		h.Run = nil
		h.RunE = func(c *cobra.Command, args []string) error {
			cmd := c.Root()
			for _, w := range args {
				next := subcommand(cmd, w)
				if next == nil {
					return unknownSubcommand(cmd, w)
				}
				cmd = next
			}
			cmd.InitDefaultHelpFlag()
			cmd.InitDefaultVersionFlag()
			return cmd.Help()
		}
	}
}

// loadConfig reads the config file named by --config.
func (a *app) loadConfig() (*config.Config, error) {
	return config.Load(a.configPath)
}

// printJSON writes v as indented JSON to stdout.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// report prints a job's result, as JSON with --json or with print
// otherwise, then returns the job's own error: a job that failed part
// way still shows what it did.
func (a *app) report(v any, err error, print func() error) error {
	var perr error
	if a.jsonOut {
		perr = a.printJSON(v)
	} else {
		perr = print()
	}
	if perr != nil {
		return perr
	}
	return err
}

// table returns a writer on stdout that aligns tab-separated columns;
// Flush writes them. Every cell goes through redact.Text (see newTable).
func (a *app) table() *safeTable {
	return newTable(a.stdout, 2, 4, 2)
}

// safeTable is a tabwriter whose input goes through redact.Text first, so
// that text fireops did not write (a storage provider's manifest, a file
// name in a user's volume, a failed part's reason) can neither move the
// cursor, retitle the terminal nor reorder a row: control characters other
// than tab and newline, bidirectional overrides and bytes that are not
// UTF-8 are printed as escapes, and columns are aligned on the escaped text.
type safeTable struct {
	tw      *tabwriter.Writer
	partial []byte // the start of a rune the last Write cut
}

// newTable returns a safeTable on w with tabwriter's minwidth, tabwidth
// and padding, padded with spaces.
func newTable(w io.Writer, minwidth, tabwidth, padding int) *safeTable {
	return &safeTable{tw: tabwriter.NewWriter(w, minwidth, tabwidth, padding, ' ', 0)}
}

// Write escapes p (holding back a rune p ends in the middle of, for the
// next Write) and passes it to the tabwriter.
func (t *safeTable) Write(p []byte) (int, error) {
	b := append(t.partial, p...)
	t.partial = nil
	// Hold back up to 3 bytes that start a rune the next Write may finish.
	for k := 1; k <= 3 && k <= len(b); k++ {
		if i := len(b) - k; utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				t.partial = append([]byte(nil), b[i:]...)
				b = b[:i]
			}
			break
		}
	}
	if _, err := io.WriteString(t.tw, redact.Text(string(b))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes what a Write held back (escaped: no rune finished it) and
// the aligned table.
func (t *safeTable) Flush() error {
	if len(t.partial) > 0 {
		s := redact.Text(string(t.partial))
		t.partial = nil
		if _, err := io.WriteString(t.tw, s); err != nil {
			return err
		}
	}
	return t.tw.Flush()
}
