package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/firetech/fireops/pkg/buildinfo"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
)

// genDocsCommand is `fireops gen-docs --man DIR`: the man pages of every
// command, written from the command tree itself so that they never
// disagree with --help. `make install` runs it; it is hidden from help
// and completion.
func (a *app) genDocsCommand() *cobra.Command {
	var manDir string
	cmd := &cobra.Command{
		Use:    "gen-docs --man DIR",
		Short:  "Write a man page for every command into DIR (make install runs it)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if manDir == "" {
				return exitcode.Usagef("give the folder with --man DIR", "gen-docs: nothing to write")
			}
			return writeManPages(manDir)
		},
	}
	cmd.Flags().StringVar(&manDir, "man", "", "write the man pages (section 1) into this folder, creating it")
	return cmd
}

// writeManPages writes fireops.1, fireops-snapshot.1, ... into dir, from a
// tree of their own: the EXIT STATUS block becomes a man section, and the
// defaults do not depend on this shell's environment.
func writeManPages(dir string) error {
	root := (&app{}).rootCommand()
	if f := root.PersistentFlags().Lookup("config"); f != nil {
		f.DefValue = config.DefaultPath // not $FIREOPS_CONFIG of the shell that ran make
	}
	manSections(root)
	root.DisableAutoGenTag = true
	info := buildinfo.Get()
	header := &doc.GenManHeader{Title: "FIREOPS", Section: "1", Source: "fireops " + info.Version, Manual: "fireops manual"}
	if t, err := time.Parse(time.RFC3339, info.Date); err == nil {
		header.Date = &t // the build's date: the same binary writes the same pages
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("gen-docs: %w", err)
	}
	if err := doc.GenManTree(root, header, dir); err != nil {
		return fmt.Errorf("gen-docs: write man pages into %s: %w", dir, err)
	}
	return nil
}

// manSections turns every command's EXIT STATUS block into a man page
// section of its own.
func manSections(root *cobra.Command) { walk(root, manSection) }

// manSection is manSections for one command.
func manSection(c *cobra.Command) {
	if h, ok := helpTexts[c.CommandPath()]; ok {
		c.Long = description(c) + "\n\n" + manExitStatus(h.exits)
		c.Example = strings.Join(h.examples, "\n") // .EX indents them
	}
}
