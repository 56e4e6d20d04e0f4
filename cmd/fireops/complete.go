package main

import (
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/firetech/fireops/pkg/backup"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/snapshot"
	"github.com/firetech/fireops/pkg/source/files"
	"github.com/firetech/fireops/pkg/source/mongo"
	"github.com/firetech/fireops/pkg/source/sqlite"
	"github.com/firetech/fireops/pkg/source/volume"
)

// Shell completion (`fireops completion bash|zsh|fish`) of what an admin
// types after the commands: snapshot ids (from state_dir's record of the
// snapshots this host wrote, no destination is contacted), part ids and
// destination names (from the config) and verify levels. A config that
// does not load completes nothing rather than failing.

// registerCompletions adds the completion functions to the commands of
// the tree that take snapshot ids, parts, destinations or levels.
func (a *app) registerCompletions(root *cobra.Command) {
	walk(root, func(c *cobra.Command) {
		switch c.CommandPath() {
		case "fireops restore", "fireops verify":
			c.ValidArgsFunction = a.completeSnapshotArg
		}
		flag := func(name string, f cobra.CompletionFunc) {
			if c.LocalFlags().Lookup(name) != nil {
				_ = c.RegisterFlagCompletionFunc(name, f)
			}
		}
		switch c.CommandPath() {
		case "fireops snapshot", "fireops snapshots", "fireops verify", "fireops restore", "fireops rotate":
			flag("dest", a.completeDests)
		}
		switch c.CommandPath() {
		case "fireops snapshot":
			flag("only", a.completeParts)
		case "fireops restore":
			flag("part", a.completeParts)
		case "fireops verify":
			flag("level", completeLevels)
		}
	})
}

// walk calls f on c and every command under it.
func walk(c *cobra.Command, f func(*cobra.Command)) {
	f(c)
	for _, s := range c.Commands() {
		walk(s, f)
	}
}

// completeSnapshotArg completes the one snapshot argument of restore and
// verify: latest, then the ids this host recorded writing (newest first,
// described by their local time and age), on the --dest destinations
// when given.
func (a *app) completeSnapshotArg(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	if all, _ := cmd.Flags().GetBool("all"); all && cmd.Name() == "verify" {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	out := []cobra.Completion{cobra.CompletionWithDesc("latest", "each part from the newest snapshot holding it")}
	cfg, err := a.loadConfig()
	if err != nil {
		return filterPrefix(out, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
	at := now()
	for _, id := range recentSnapshots(cfg, flagDests(cmd)) {
		desc := ""
		if t, err := snapshot.SnapshotTime(id); err == nil {
			desc = localTime(t) + ", " + ago(t, at)
		}
		out = append(out, cobra.CompletionWithDesc(id, desc))
	}
	return filterPrefix(out, toComplete), cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
}

// recentSnapshots returns the snapshot ids state_dir records for the
// destinations (all configured when none is named), newest first.
func recentSnapshots(cfg *config.Config, dests []string) []string {
	var ids []string
	for _, d := range cfg.Destinations {
		if len(dests) == 0 || slices.Contains(dests, d.Name) {
			ids = append(ids, snapshot.RecentSnapshots(cfg.StateDir, cfg.Host, d.Name)...)
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	slices.Reverse(ids)
	return ids
}

// flagDests returns the --dest values given so far (restore's is one
// name, the others' a list).
func flagDests(cmd *cobra.Command) []string {
	if l, err := cmd.Flags().GetStringSlice("dest"); err == nil {
		return l
	}
	if s, err := cmd.Flags().GetString("dest"); err == nil && s != "" {
		return []string{s}
	}
	return nil
}

// completeDests completes a destination name from the config.
func (a *app) completeDests(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for _, d := range cfg.Destinations {
		out = append(out, d.Name) // not the remote: an inline one may hold a password
	}
	return filterPrefix(out, toComplete), cobra.ShellCompDirectiveNoFileComp
}

// completeParts completes a part id: the config's files, sqlite and mongo
// parts, the parts (volumes included, which the config names by pattern
// only) that state_dir records as written, and the kinds.
func (a *app) completeParts(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return filterPrefix(partIDs(cfg), toComplete), cobra.ShellCompDirectiveNoFileComp
}

// partIDs are the part ids and kinds completion offers, sorted.
func partIDs(cfg *config.Config) []string {
	ids := []string{files.Kind, sqlite.Kind, volume.Kind, mongo.Kind}
	for _, f := range cfg.Sources.Files {
		ids = append(ids, files.Kind+":"+f.Name)
	}
	for _, q := range cfg.Sources.SQLite {
		ids = append(ids, sqlite.Kind+":"+q.Name)
	}
	if cfg.Sources.Mongo != nil {
		ids = append(ids, mongo.Kind+":"+mongo.Name)
	}
	for _, d := range cfg.Destinations {
		for _, p := range snapshot.PartsWritten(cfg.StateDir, cfg.Host, d.Name) {
			ids = append(ids, p.Part)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// completeLevels completes verify's --level.
func completeLevels(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	out := []cobra.Completion{
		cobra.CompletionWithDesc(backup.LevelQuick, "signature, every object present with its size"),
		cobra.CompletionWithDesc(backup.LevelHashes, "also every object's SHA-256"),
		cobra.CompletionWithDesc(backup.LevelFull, "also decrypt and parse every part (needs the identity)"),
		cobra.CompletionWithDesc(backup.LevelRestoreTest, "also restore every part into a scratch target"),
	}
	return filterPrefix(out, toComplete), cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
}

// filterPrefix keeps the completions (value, or value TAB description)
// whose value starts with prefix.
func filterPrefix(cs []cobra.Completion, prefix string) []cobra.Completion {
	out := make([]cobra.Completion, 0, len(cs))
	for _, c := range cs {
		v, _, _ := strings.Cut(c, "\t")
		if strings.HasPrefix(v, prefix) {
			out = append(out, c)
		}
	}
	return out
}
