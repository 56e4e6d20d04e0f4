package main

import (
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/firetech/fireops/pkg/exitcode"
)

// setup validates the global flags and builds the logger.
func (a *app) setup(cmd *cobra.Command, _ []string) error {
	if a.quiet && a.verbose {
		return exitcode.Usagef("choose one of them", "--quiet and --verbose exclude each other")
	}
	level := slog.LevelInfo
	switch {
	case a.quiet:
		level = slog.LevelWarn
	case a.verbose:
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	switch a.logFormat {
	case "text":
		a.log = slog.New(slog.NewTextHandler(a.stderr, opts))
	case "json":
		a.log = slog.New(slog.NewJSONHandler(a.stderr, opts))
	default:
		return exitcode.Usagef("use --log-format text or --log-format json", "unknown log format %q", a.logFormat)
	}
	return nil
}
