package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/firetech/fireops/pkg/exitcode"
)

// exitStatus is one line of a command's EXIT STATUS block: a code of
// docs/exit-codes.md and what it means for that command.
type exitStatus struct {
	code    int
	meaning string
}

// commandHelp is what every command's help shows besides its own text:
// the commands an admin types most (docs/runbook.md) and the exit codes
// the command can return.
type commandHelp struct {
	// examples are lines of full command lines, each starting with
	// "fireops ", or comments starting with "# " that say what the next
	// line does. A command line may end in a shell redirection (> FILE,
	// < FILE). help_test.go parses every one against the command tree.
	examples []string
	exits    []exitStatus
}

// Exit lines many commands share.
var (
	exitUsage       = exitStatus{exitcode.Usage, "bad flags, arguments or config"}
	exitInterrupted = exitStatus{exitcode.Interrupted, "interrupted by SIGINT or SIGTERM; what it had started was cleaned up"}
	exitGroup       = exitStatus{exitcode.Usage, "no subcommand, or a word that names none (the closest one is named)"}
	exitHubUsers    = exitStatus{exitcode.Failure, "the hub's API or its database could not be used (hub down, database locked)"}
	exitHelpPrinted = exitStatus{exitcode.OK, "help was printed (--help)"}
)

// helpTexts holds the EXAMPLES and EXIT STATUS of every command, keyed by
// its command path. applyHelpTexts puts them into the tree; help_test.go
// fails when a command has none.
var helpTexts = map[string]commandHelp{
	"fireops": {
		examples: []string{
			"fireops config check",
			"fireops snapshot",
			"fireops snapshots",
			"fireops verify latest --level full",
			"fireops restore latest --all --dry-run",
			"fireops users list --pending",
			"fireops gpu check",
			"fireops deploy status",
			"fireops --version",
		},
		exits: []exitStatus{
			{exitcode.OK, "the command did what it was asked (warnings may have been printed)"},
			{exitcode.Failure, "it failed for a reason outside your input: a destination is down, a dump broke off, a disk is full"},
			{exitcode.Usage, "bad flags, arguments or config; a snapshot id that matches no snapshot or several; no subcommand, or a word that names none"},
			{exitcode.CheckFailed, "a check found a problem: verify, restore, gpu check, deploy's preflight"},
			{exitcode.LockBusy, "another run of the same job holds its lock (--lock-wait waits for it)"},
			exitInterrupted,
		},
	},

	// Backups.
	"fireops snapshot": {
		examples: []string{
			"# every source to every destination",
			"fireops snapshot",
			"# one user's volume, to one destination",
			"fireops snapshot --only volume:jupyterhub-user-ada --dest local",
			"# from cron: wait for a running snapshot, log as JSON",
			"fireops snapshot --lock-wait 30m --log-format json",
		},
		exits: []exitStatus{
			{exitcode.OK, "every part was stored on every destination"},
			{exitcode.Failure, "a part or a destination failed (the snapshot holds the others), or every part failed and no manifest was written"},
			exitUsage,
			{exitcode.LockBusy, "another snapshot runs on this host (--lock-wait waits for it)"},
			{exitcode.Interrupted, "interrupted by SIGINT or SIGTERM: no manifest was written; the pieces uploaded stay for the next snapshot"},
		},
	},
	"fireops snapshots": {
		examples: []string{
			"fireops snapshots",
			"fireops snapshots --dest local",
			"# with each snapshot's signer",
			"fireops snapshots --json",
		},
		exits: []exitStatus{
			{exitcode.OK, "every destination was listed"},
			{exitcode.Failure, "a destination could not be opened or listed (the others were listed)"},
			exitUsage,
		},
	},
	"fireops verify": {
		examples: []string{
			"# the latest snapshot: signature, objects present (no private key needed)",
			"fireops verify",
			"# decrypt and parse every part, without writing anything",
			"fireops verify latest --level full",
			"# the restore drill: restore every part into scratch targets",
			"fireops verify latest --level restore-test",
			"fireops verify --all --level hashes",
			"fireops verify 20261127T030000Z-a1b2c3 --dest local --level full",
		},
		exits: []exitStatus{
			{exitcode.OK, "every snapshot checked is intact"},
			{exitcode.Failure, "a destination could not be checked at all, or holds no snapshot of this host"},
			{exitcode.Usage, "bad flags or config; a snapshot id that matches no snapshot or several, or an empty one; an identity (--identity, keys.identity_file) that is missing or matches none of a snapshot's recipients (levels full and restore-test: not damage, nothing recorded)"},
			{exitcode.CheckFailed, "a snapshot failed its check (a tampered or missing object), or a newer snapshot this host wrote is gone or refused (a rollback)"},
			{exitcode.LockBusy, "another verify runs on this host (--lock-wait waits for it)"},
			exitInterrupted,
		},
	},
	"fireops restore": {
		examples: []string{
			"# the whole server: the plan first, then the restore",
			"fireops restore latest --all --dry-run",
			"fireops restore latest --all --stop-stack --yes",
			"# one user's volume, next to the live one",
			"fireops restore latest --part volume:jupyterhub-user-ada --to volume:jupyterhub-user-ada-restored",
			"# one MongoDB collection, into the database restored_metrics",
			"fireops restore latest --part mongo --ns metrics.runs --to-db restored_",
			"# the hub database into a file, to look at it",
			"fireops restore latest --part sqlite:jupyterhub --to /srv/restore/jupyterhub.sqlite",
			"# MongoDB from an older snapshot (any unique prefix of its id)",
			"fireops restore 20261127T030000Z-a1b2c3 --all --part mongo --force --yes",
		},
		exits: []exitStatus{
			{exitcode.OK, "every part was restored (or, with --dry-run, the plan was printed)"},
			{exitcode.Failure, "a part could not be restored (the others were), the destination failed, or it holds no snapshot of this host"},
			{exitcode.Usage, "bad flags or config; a snapshot id that matches no snapshot or several; a target that is not empty without --force (--drop for MongoDB); an identity (--identity, keys.identity_file) that is missing or matches none of the snapshot's recipients"},
			{exitcode.CheckFailed, "a part's data is damaged or missing: it was not restored, the other parts were; or (latest) no usable snapshot is left where this host wrote one (a rollback: nothing restored, check who changed the destination)"},
			{exitcode.LockBusy, "another restore runs on this host (--lock-wait waits for it)"},
			exitInterrupted,
		},
	},
	"fireops rotate": {
		examples: []string{
			"# what would be removed, and why",
			"fireops rotate --dry-run",
			"fireops rotate",
			"fireops rotate --dest local",
		},
		exits: []exitStatus{
			{exitcode.OK, "done (or planned, with --dry-run)"},
			{exitcode.Failure, "a destination failed; the others were rotated"},
			{exitcode.Usage, "bad flags or config (an empty policy)"},
			{exitcode.LockBusy, "another rotate runs"},
			{exitcode.Interrupted, "interrupted by SIGINT or SIGTERM; the next rotate finishes a snapshot left half removed"},
		},
	},

	// Setup and configuration.
	"fireops init": {
		examples: []string{
			"fireops init --dir /etc/fireops",
			"# a new signing key (docs/runbook.md, section 7)",
			"fireops init --dir /etc/fireops/newkey",
			"fireops init --dir /srv/fireops-test --host gpu01",
		},
		exits: []exitStatus{
			{exitcode.OK, "the three files were written"},
			{exitcode.Failure, "a file could not be written"},
			{exitcode.Usage, "bad flags, or a file is there already (nothing is overwritten)"},
		},
	},
	"fireops config": {
		examples: []string{
			"fireops config check",
		},
		exits: []exitStatus{
			{exitcode.OK, "the config is valid (fireops config check)"},
			{exitcode.Usage, "the config is invalid; no subcommand, or a word that names none"},
		},
	},
	"fireops config check": {
		examples: []string{
			"fireops config check",
			"fireops config check --config /etc/fireops/fireops.yaml",
			"fireops config check --json",
		},
		exits: []exitStatus{
			{exitcode.OK, "the config is valid (WARNING lines may have been printed)"},
			{exitcode.Usage, "bad flags, or the config is invalid (also when only its retention policy is)"},
		},
	},

	// Hub users.
	"fireops users": {
		examples: []string{
			"fireops users list --pending",
			"fireops users approve ada",
			"fireops users delete ada",
		},
		exits: []exitStatus{
			{exitcode.OK, "done"},
			exitHubUsers,
			{exitcode.Usage, "bad flags or config (an unknown user, a bad token, a missing database); no subcommand, or a word that names none"},
		},
	},
	"fireops users list": {
		examples: []string{
			"fireops users list",
			"fireops users list --pending",
			"fireops users list --admins --json",
		},
		exits: []exitStatus{
			{exitcode.OK, "the users were listed"},
			exitHubUsers,
			{exitcode.Usage, "bad flags or config (a bad token, a missing database)"},
		},
	},
	"fireops users approve": {
		examples: []string{
			"fireops users approve ada",
			"fireops users approve ada grace",
			"# the database a user of that name left behind is theirs",
			"fireops users approve ada --reuse-database",
		},
		exits: []exitStatus{
			{exitcode.OK, "every user named is approved"},
			{exitcode.Failure, "the hub, its database or MongoDB could not be used"},
			{exitcode.Usage, "bad flags or config; an unknown user (nothing changed); a database a deleted user left (see --reuse-database)"},
		},
	},
	"fireops users reject": {
		examples: []string{
			"fireops users reject ada",
		},
		exits: []exitStatus{
			{exitcode.OK, "no user named is approved any more"},
			exitHubUsers,
			{exitcode.Usage, "bad flags or config; an unknown user (nothing changed)"},
		},
	},
	"fireops users admin": {
		examples: []string{
			"fireops users admin ada",
			"fireops users admin ada --revoke",
		},
		exits: []exitStatus{
			{exitcode.OK, "done"},
			exitHubUsers,
			{exitcode.Usage, "bad flags or config; an unknown user, or one not approved yet"},
		},
	},
	"fireops users reset-password": {
		examples: []string{
			"# asks twice on a terminal (empty: a generated one)",
			"fireops users reset-password ada",
			"fireops users reset-password ada --password-stdin < /root/ada-password.txt",
		},
		exits: []exitStatus{
			{exitcode.OK, "the password was set"},
			exitHubUsers,
			{exitcode.Usage, "bad flags or config; an unknown user; a password refused (empty, over 72 bytes, the two differ)"},
		},
	},
	"fireops users delete": {
		examples: []string{
			"fireops users delete ada",
			"fireops users delete ada --yes",
		},
		exits: []exitStatus{
			{exitcode.OK, "the user was deleted (their volume and MongoDB database are kept)"},
			{exitcode.Failure, "the hub, its database, Docker or MongoDB could not be used (the error says what was deleted)"},
			{exitcode.Usage, "bad flags or config; an unknown user; not confirmed (--yes); a server of the user still runs"},
		},
	},

	// GPUs.
	"fireops gpu": {
		examples: []string{
			"fireops gpu check",
			"fireops gpu check --strict",
		},
		exits: []exitStatus{
			{exitcode.OK, "every check passed (fireops gpu check)"},
			{exitcode.Failure, "the metrics textfile could not be written"},
			{exitcode.Usage, "bad flags or config; no subcommand, or a word that names none"},
			{exitcode.CheckFailed, "a check failed"},
		},
	},
	"fireops gpu check": {
		examples: []string{
			"fireops gpu check",
			"fireops gpu check --expect-count 8 --min-driver 550.54 --strict",
			"# a host whose containers need no GPU",
			"fireops gpu check --require-container-runtime=false",
			"fireops gpu check --smoke-image nvidia/cuda:12.4.1-base-ubuntu22.04",
			"# a systemd unit's preflight (ExecStartPre=)",
			"fireops gpu check -q",
		},
		exits: []exitStatus{
			{exitcode.OK, "every check passed (warnings allowed unless --strict)"},
			{exitcode.Failure, "the metrics textfile could not be written"},
			exitUsage,
			{exitcode.CheckFailed, "a check failed (or warned, with --strict)"},
		},
	},

	// The stack.
	"fireops deploy": {
		examples: []string{
			"# what would change, without starting anything",
			"fireops deploy --dry-run",
			"fireops deploy --diff",
			"fireops deploy",
			"fireops deploy status",
		},
		exits: []exitStatus{
			{exitcode.OK, "the stack runs and every service is healthy (or the plan was printed)"},
			{exitcode.Failure, "compose failed or a service is not healthy"},
			{exitcode.Usage, "bad flags or config; a word that names no subcommand"},
			{exitcode.CheckFailed, "the preflight failed: nothing was started"},
			exitInterrupted,
		},
	},
	"fireops deploy status": {
		examples: []string{
			"fireops deploy status",
			"fireops deploy status --json",
		},
		exits: []exitStatus{
			{exitcode.OK, "every service runs and is healthy"},
			{exitcode.Failure, "the Engine could not be asked"},
			exitUsage,
			{exitcode.CheckFailed, "a service is missing, stopped, restarting or unhealthy"},
		},
	},
	"fireops deploy down": {
		examples: []string{
			"fireops deploy down",
			"# also the data: the hub database, MongoDB, metrics and logs",
			"fireops deploy down --volumes --yes",
		},
		exits: []exitStatus{
			{exitcode.OK, "done"},
			{exitcode.Failure, "compose failed"},
			{exitcode.Usage, "bad flags or config (--volumes without --yes)"},
		},
	},
	"fireops deploy prune": {
		examples: []string{
			"fireops deploy prune --dry-run",
			"fireops deploy prune",
			"fireops deploy prune --volumes --verify-level full",
		},
		exits: []exitStatus{
			{exitcode.OK, "done (or the plan was printed); what stays is listed with its reason"},
			{exitcode.Failure, "the Engine, the hub or the destinations could not be asked, or a removal failed (the rest was removed)"},
			exitUsage,
			{exitcode.CheckFailed, "a snapshot holding a deleted user's volume failed its verify: the volume stays"},
			exitInterrupted,
		},
	},

	// The daemon.
	"fireops schedule": {
		examples: []string{
			"# under systemd (journald)",
			"fireops schedule --log-format json",
			"fireops schedule --config /etc/fireops/fireops.yaml --stop-timeout 5m",
		},
		exits: []exitStatus{
			{exitcode.OK, "stopped by SIGTERM or SIGINT, every job ended in time"},
			{exitcode.Failure, "metrics.listen could not be opened, or a job did not stop within --stop-timeout after SIGTERM"},
			exitUsage,
			{exitcode.LockBusy, "another fireops schedule runs"},
		},
	},

	// The program itself.
	"fireops version": {
		examples: []string{
			"fireops version",
			"fireops version --json",
			"fireops --version",
		},
		exits: []exitStatus{
			{exitcode.OK, "the version was printed"},
			{exitcode.Usage, "bad flags or an extra argument"},
		},
	},
	"fireops help": {
		examples: []string{
			"fireops help",
			"fireops help restore",
			"fireops help users approve",
			"fireops restore --help",
		},
		exits: []exitStatus{
			{exitcode.OK, "the help was printed"},
			{exitcode.Usage, "a word that names no command (the closest one is named)"},
		},
	},
	"fireops completion": {
		examples: []string{
			"fireops completion bash > /usr/share/bash-completion/completions/fireops",
			"fireops completion zsh > /usr/local/share/zsh/site-functions/_fireops",
			"fireops completion fish > /usr/share/fish/vendor_completions.d/fireops.fish",
		},
		exits: []exitStatus{
			exitHelpPrinted,
			exitGroup,
		},
	},
	"fireops completion bash": {
		examples: []string{
			"fireops completion bash > /usr/share/bash-completion/completions/fireops",
		},
		exits: completionExits,
	},
	"fireops completion zsh": {
		examples: []string{
			"fireops completion zsh > /usr/local/share/zsh/site-functions/_fireops",
		},
		exits: completionExits,
	},
	"fireops completion fish": {
		examples: []string{
			"fireops completion fish > /usr/share/fish/vendor_completions.d/fireops.fish",
		},
		exits: completionExits,
	},
	"fireops completion powershell": {
		examples: []string{
			"fireops completion powershell > fireops.ps1",
		},
		exits: completionExits,
	},
	"fireops gen-docs": {
		examples: []string{
			"fireops gen-docs --man /usr/local/share/man/man1",
		},
		exits: []exitStatus{
			{exitcode.OK, "the man pages were written"},
			{exitcode.Failure, "a page could not be written"},
			{exitcode.Usage, "bad flags (--man is needed)"},
		},
	},
}

// completionExits is the EXIT STATUS of `fireops completion SHELL`.
var completionExits = []exitStatus{
	{exitcode.OK, "the script was printed"},
	{exitcode.Usage, "bad flags or an extra argument"},
}

// exitStatusBlock matches an EXIT STATUS section at the end of a
// command's Long text (the one applyHelpTexts appends): helpTexts is the
// only source of these blocks, so one a command's own text carried would
// be replaced, never printed twice.
var exitStatusBlock = regexp.MustCompile(`(?s)\n\s*EXIT STATUS\n.*$`)

// description returns c's own text (Long, else Short) without an EXIT
// STATUS section.
func description(c *cobra.Command) string {
	s := c.Long
	if s == "" {
		s = c.Short
	}
	return strings.TrimRight(exitStatusBlock.ReplaceAllString(s, ""), " \n")
}

// applyHelpTexts walks the tree under root and gives every command its
// examples (cobra's Example) and an EXIT STATUS section at the end of its
// Long text, from helpTexts. It also says on every boolean flag that
// defaults to true how to turn it off.
func applyHelpTexts(root *cobra.Command) { walk(root, applyHelpText) }

// applyHelpText is applyHelpTexts for one command.
func applyHelpText(c *cobra.Command) {
	documentBoolDefaults(c.Flags())
	documentBoolDefaults(c.PersistentFlags())
	h, ok := helpTexts[c.CommandPath()]
	if !ok {
		return // help_test.go fails on it
	}
	var ex []string
	for _, l := range h.examples {
		ex = append(ex, "  "+l)
	}
	c.Example = strings.Join(ex, "\n")
	c.Long = description(c) + "\n\nEXIT STATUS\n" + exitLines(withInterrupted(h.exits))
}

// withInterrupted adds exit code 130 to a command's exits when it can fail
// (exit 1) and does not list 130 itself: SIGINT or SIGTERM turns any
// failure into 130 (run's interrupted), also for commands whose own work
// knows nothing of signals (listing snapshots, asking the hub).
func withInterrupted(exits []exitStatus) []exitStatus {
	canFail := false
	for _, e := range exits {
		if e.code == exitcode.Interrupted {
			return exits
		}
		canFail = canFail || e.code == exitcode.Failure
	}
	if !canFail {
		return exits
	}
	return append(slices.Clone(exits), exitStatus{exitcode.Interrupted, "interrupted by SIGINT or SIGTERM"})
}

// exitLines formats an EXIT STATUS block: one code a line, its meaning
// wrapped below 80 columns and aligned.
func exitLines(exits []exitStatus) string {
	w := 1
	for _, e := range exits {
		w = max(w, len(fmt.Sprint(e.code)))
	}
	var b strings.Builder
	indent := strings.Repeat(" ", 2+w+2)
	for _, e := range exits {
		b.WriteString(fmt.Sprintf("  %-*d  ", w, e.code))
		col := len(indent)
		for i, word := range strings.Fields(e.meaning) {
			if i > 0 && col+1+len(word) > 78 {
				b.WriteString("\n" + indent)
				col = len(indent)
			} else if i > 0 {
				b.WriteString(" ")
				col++
			}
			b.WriteString(word)
			col += len(word)
		}
		b.WriteString("\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

// manExitStatus formats exits as a markdown section for cobra/doc's man
// pages (a definition list: go-md2man renders it as .TP paragraphs).
func manExitStatus(exits []exitStatus) string {
	var b strings.Builder
	b.WriteString("# EXIT STATUS\n")
	for _, e := range exits {
		fmt.Fprintf(&b, "**%d**\n: %s\n\n", e.code, e.meaning)
	}
	return b.String()
}

// documentBoolDefaults appends "turn off with --NAME=false" to the help
// of every boolean flag that defaults to true: `--NAME false` would be
// taken as an argument.
func documentBoolDefaults(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Value.Type() == "bool" && f.DefValue == "true" && !strings.Contains(f.Usage, "--"+f.Name+"=false") {
			f.Usage += " (turn off with --" + f.Name + "=false)"
		}
	})
}
