package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/deploy"
)

func (a *app) configCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Inspect the configuration",
	}
	var all bool
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate the config and print the effective config, secrets redacted",
		Long: `check loads the config file strictly (an unknown key is an error naming its
line), fills every default, validates every value and the key files it names
(secret files must not be readable by group or others, must be owned by
root or the running user and readable by it), checks what the jobs will
need on this host (source paths exist and are readable, an SQLite path is
an SQLite database, the identity parses and matches a recipient; a source
under stack.dir that deploy has not created yet is only a note), and prints the
effective config with credentials redacted: the sections in use (hub:, gpu:
and stack: only when the file sets them; a stack: section uses all three)
without the keys left unset; --all prints every key with its default
(--json always does). On a stack host (a config
with a stack: section) it warns, in WARNING lines (exit 0), about the
stack's data no source backs up: the hub database, MongoDB, the users'
volumes, the stack folder; and notes which sources deploy has not created
yet. Exit code 2 when it is invalid, also when only the retention policy
is (rotate would refuse it; the other jobs still run with such a config).`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			if err := cfg.RetentionProblems(); err != nil {
				return err
			}
			notes, err := cfg.HostProblems()
			if err != nil {
				return err
			}
			cov, err := deploy.CheckCoverage(cfg)
			if err != nil {
				return err
			}
			rep := cfg.Check()
			rep.Notes = append(rep.Notes, notes...)
			rep.Notes = append(rep.Notes, cov.NotDeployed...)
			if a.jsonOut {
				return a.printJSON(struct {
					*config.Report
					// Warnings: the stack's data no source backs up.
					Warnings []string `json:"warnings"`
				}{rep, cov.Uncovered})
			}
			out, err := rep.YAMLInUse()
			if all {
				out, err = rep.YAML()
			}
			if err != nil {
				return fmt.Errorf("print config: %w", err)
			}
			w := a.stdout
			fmt.Fprintf(w, "# %s: valid\n", rep.File)
			for _, u := range cov.Uncovered {
				fmt.Fprintf(w, "# WARNING: %s\n", u)
			}
			for _, f := range rep.Files {
				fmt.Fprintf(w, "# %s: %s: %s\n", f.Key, f.Path, f.Status)
			}
			for _, n := range rep.Notes {
				fmt.Fprintf(w, "# note: %s\n", n)
			}
			if h := rep.Hidden(); !all && len(h) > 0 {
				fmt.Fprintf(w, "# not shown: %s (not in use); unset keys left out; --all prints everything\n", strings.Join(h, ", "))
			} else if !all {
				fmt.Fprintf(w, "# unset keys left out; --all prints everything\n")
			}
			_, err = w.Write(out)
			return err
		},
	}
	check.Flags().BoolVar(&all, "all", false, "print every section and key, defaults and unset ones included (--json always does)")
	cmd.AddCommand(check)
	return cmd
}
