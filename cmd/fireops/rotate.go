package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/firetech/fireops/internal/humanbytes"
	"github.com/firetech/fireops/pkg/backup"
	"github.com/firetech/fireops/pkg/retention"
)

func (a *app) rotateCommand() *cobra.Command {
	o := backup.RotateOptions{}
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Apply the retention policy: remove old snapshots, then sweep unreferenced objects",
		Long: `rotate applies the retention policy (retention:, or a destination's own
retention:) on every destination, like restic's forget + prune:
keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly
and keep_within, with time buckets in UTC (docs/retention.md).

A snapshot is removed whole, its manifest first; one an interrupted rotate
left half removed is finished at once. Incomplete snapshots older than
incomplete_grace are removed too. Then the objects that no remaining
manifest references and that are older than incomplete_grace are swept,
and the bytes freed reported. While a snapshot, verify or restore runs on
this host, rotate waits --lock-wait for it, then removes and sweeps
nothing (the next rotate does): a running snapshot may reference objects
that no manifest names yet, and a verify or restore must not lose the
snapshot it reads.

The rules are counted per part: a snapshot --only run never stands in for
the parts it does not hold (the PARTS column; docs/retention.md).

Safety nets: an empty policy is refused, the newest complete snapshot and
the newest holding each part are never removed, a snapshot whose manifest
does not verify is never removed. rotate needs no private key.

--dry-run prints every snapshot with keep or remove and the rules that
decided it, and what the sweep would free; it changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			o.Log = a.log
			res, err := a.rotateJob(cmd.Context(), cfg, o)
			if res == nil {
				return err
			}
			return a.report(res, err, func() error { return a.printRotate(res) })
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.Dests, "dest", nil, "only this destination (repeatable)")
	f.BoolVar(&o.DryRun, "dry-run", false, "print the plan and remove nothing")
	return cmd
}

// printRotate prints each destination's decisions and sweep.
func (a *app) printRotate(res *backup.RotateResult) error {
	w := a.table()
	for i, d := range res.Destinations {
		if i > 0 {
			fmt.Fprintln(w)
		}
		head := "rotate"
		if res.DryRun {
			head = "rotate plan (dry run, nothing removed)"
		}
		fmt.Fprintf(w, "%s of %s: %s; incomplete_grace %s\n", head, d.Destination, d.Policy, d.Grace)
		if d.Parts > 0 {
			fmt.Fprintf(w, "  counted per part: %d part(s), %d retired (no longer in a newer full snapshot)\n", d.Parts, d.RetiredParts)
		}
		if len(d.Snapshots) > 0 {
			fmt.Fprintln(w, "  ACTION\tSNAPSHOT\tTIME (UTC)\tPARTS\tSTATE\tREASON")
		}
		for _, s := range d.Snapshots {
			fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\t%s\n", s.Action(), s.ID, s.Time.Format("2006-01-02 15:04:05"), rotateParts(s.Snapshot), s.State, strings.Join(s.Reasons, ", "))
		}
		verb := "removed"
		if res.DryRun {
			verb = "to remove"
		}
		fmt.Fprintf(w, "  %d kept, %d %s, %d incomplete %s\n", d.Kept, d.Removed, verb, d.IncompleteRemoved, verb)
		ob := d.Objects
		switch {
		case ob.Skipped != "" && d.Error != "":
			// An earlier step failed: no count would be the destination's.
			fmt.Fprintf(w, "  objects: sweep not run: %s\n", ob.Skipped)
		case ob.Skipped != "":
			fmt.Fprintf(w, "  objects: sweep skipped: %s\n", ob.Skipped)
		default:
			freed := "freed"
			if res.DryRun {
				freed = "would be freed"
			}
			fmt.Fprintf(w, "  objects: %d, %d referenced, %d %s (%s %s), %d unreferenced within the grace period kept\n",
				ob.Total, ob.Referenced, ob.Removed, verb, humanbytes.Format(ob.FreedBytes), freed, ob.Young)
		}
		if d.Error != "" {
			fmt.Fprintf(w, "  FAILED: %s\n", d.Error)
		}
	}
	return w.Flush()
}

// rotateParts describes the parts of a snapshot in rotate's plan: "5",
// "1 --only", "4 +1 failed", or "5 unrecorded" for a snapshot written
// before fireops recorded its parts (it counts as holding every part).
func rotateParts(s retention.Snapshot) string {
	if s.State != retention.Complete {
		return "-"
	}
	out := fmt.Sprint(s.PartCount)
	switch {
	case s.Parts == nil:
		out += " unrecorded"
	case s.Only:
		out += " --only"
	}
	if s.FailedParts > 0 {
		out += fmt.Sprintf(" +%d failed", s.FailedParts)
	}
	return out
}
