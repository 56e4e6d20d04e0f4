package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/firetech/fireops/pkg/exitcode"
)

// strictGroups makes every command that has subcommands (fireops itself,
// config, users, gpu, deploy, ...) refuse a word that is none of them:
// exit 2 naming the word, the closest subcommand and the valid ones,
// never help with exit 0. A group that does nothing on its own prints
// its usage on stderr and exits 2 too: a script that forgot the
// subcommand did not succeed (docs/exit-codes.md).
func (a *app) strictGroups(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		a.strictGroups(c)
	}
	if !cmd.HasSubCommands() {
		return
	}
	runs := cmd.Runnable()
	own := cmd.Args
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return unknownSubcommand(c, args[0])
		}
		if own != nil {
			return own(c, args)
		}
		return nil
	}
	if !runs {
		cmd.RunE = func(c *cobra.Command, _ []string) error {
			fmt.Fprint(a.stderr, c.UsageString())
			return exitcode.Usagef(fmt.Sprintf("run `%s SUBCOMMAND`, or `%s --help`", c.CommandPath(), c.CommandPath()),
				"%s needs a subcommand: %s", c.CommandPath(), strings.Join(subcommandNames(c), ", "))
		}
	}
}

// unknownSubcommand is the usage error for a word that names no
// subcommand of c.
func unknownSubcommand(c *cobra.Command, word string) error {
	msg := fmt.Sprintf("unknown command %q for %q", word, c.CommandPath())
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2
	}
	if s := c.SuggestionsFor(word); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %q?)", s[0])
	}
	if names := subcommandNames(c); len(names) > 0 {
		msg += "; valid subcommands: " + strings.Join(names, ", ")
	} else {
		msg += fmt.Sprintf("; %s has no subcommands", c.CommandPath())
	}
	return exitcode.Usagef(fmt.Sprintf("run `%s --help`", c.CommandPath()), "%s", msg)
}

// subcommand returns c's subcommand named (or aliased) word, help
// included, or nil.
func subcommand(c *cobra.Command, word string) *cobra.Command {
	for _, s := range c.Commands() {
		if s.Name() == word || s.HasAlias(word) {
			return s
		}
	}
	return nil
}

// subcommandNames lists c's subcommands a user may run (help included
// only for fireops itself, where cobra adds it).
func subcommandNames(c *cobra.Command) []string {
	var names []string
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() || s.Name() == "help" {
			names = append(names, s.Name())
		}
	}
	return names
}
