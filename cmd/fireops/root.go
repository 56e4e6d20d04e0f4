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

	"github.com/spf13/cobra"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
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
	err = classify(interrupted(ctx, err))
	// A destination it may not write: say what to fix, not that the
	// destination may be down.
	var denied *remote.DeniedError
	if errors.As(err, &denied) {
		err = exitcode.New(exitcode.Code(err), err, denied.Hint())
	}
	fmt.Fprintf(stderr, "fireops: error: %s\n", oneLine(err.Error()))
	if h := exitcode.Hint(err); h != "" {
		fmt.Fprintf(stderr, "fireops: hint: %s\n", h)
	}
	return exitcode.Code(err)
}

// interrupted gives a failure after SIGINT or SIGTERM the interrupted exit
// code, except for the schedule daemon's jobs that outlasted
// --stop-timeout: that is a failure of its own (exit 1).
func interrupted(ctx context.Context, err error) error {
	var st *schedule.StopTimeoutError
	if ctx.Err() != nil && exitcode.Code(err) == exitcode.Failure && !errors.As(err, &st) {
		return exitcode.New(exitcode.Interrupted, err, "")
	}
	return err
}

// classify marks cobra's own command-line errors as usage errors.
func classify(err error) error {
	var e *exitcode.Error
	if errors.As(err, &e) {
		return err
	}
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "invalid argument", "flag needs an argument", "required flag"} {
		if strings.HasPrefix(msg, p) {
			return exitcode.New(exitcode.Usage, err, "run `fireops help` or add --help to the command")
		}
	}
	return err
}

// oneLine joins a multi-line message so that every error is one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(redact.Line(s)), " ")
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
Exit codes: 0 ok, 1 failure, 2 usage or config error, 3 a check found a
problem, 4 another run holds the lock, 130 interrupted (docs/exit-codes.md).`,
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
	pf.CountVarP(&a.verbose, "verbose", "v", "log more: INFO on a terminal (DEBUG with -vv), DEBUG otherwise")
	pf.DurationVar(&a.lockWait, "lock-wait", 0, "wait this long for a running snapshot, rotate, verify or restore of the same kind (e.g. 30m), then exit 4")

	root.AddCommand(a.versionCommand(), a.initCommand(), a.configCommand(), a.usersCommand(), a.gpuCommand(), a.deployCommand(),
		a.snapshotCommand(), a.snapshotsCommand(), a.verifyCommand(), a.restoreCommand(), a.rotateCommand(), a.scheduleCommand())
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	a.registerCompletions(root)
	a.strictGroups(root)
	strictHelp(root)
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
// Flush writes them.
func (a *app) table() *tabwriter.Writer {
	return tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
}
