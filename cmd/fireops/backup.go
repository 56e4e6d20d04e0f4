package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/firetech/fireops/internal/humanbytes"
	"github.com/firetech/fireops/pkg/backup"
	"github.com/firetech/fireops/pkg/buildinfo"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/restore"
	"github.com/firetech/fireops/pkg/snapshot"
)

// setSnapshotMemoryLimit sets a soft memory limit for a snapshot run,
// unless GOMEMLIMIT says otherwise: the engine's live memory is its piece
// buffers (snapshot.MemoryBudget) plus about 60 MiB (compressor, sources,
// destinations, known-object caches), and without a limit the garbage
// collector lets the heap grow to twice that before it collects. The
// limit keeps the peak near the live size.
func setSnapshotMemoryLimit(chunkSize int64, uploads int) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(snapshot.MemoryBudget(chunkSize, uploads) + 104<<20)
}

// plural formats a count with its noun: "1 part", "2 parts".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func (a *app) snapshotCommand() *cobra.Command {
	var dests, only []string
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Take an encrypted, signed snapshot of every source to every destination",
		Long: `snapshot streams every configured source (files, sqlite, ...) as a tar
payload, cut into content-defined pieces (256 KiB on average); each piece a
destination does not hold yet is compressed, encrypted and uploaded, the
others are referenced. Then it writes each part's piece list, the encrypted
index and the signed manifest last. A part whose source did not change is
not even read.

In the table, RAW is a part's plaintext size, STORED the stored size of its
pieces (most of them shared with earlier snapshots), UPLOADED what this run
sent for it, REUSED whether it was referenced without being read.

A part whose source fails (an unreadable file, a database that does not
open, a dump that breaks off) fails that part only: the snapshot is signed
with the other parts, the table shows the failed part with its error, and
the exit code is 1. Its pieces already uploaded stay for the next snapshot
to reference (rotate sweeps them if none does). When every part fails, or
the run is interrupted, no manifest is written: nothing is left that looks
complete. A destination that fails on its own is named; the others still
complete (exit code 1). One snapshot runs at a
time per host: a second one exits 4 naming the running one's PID, or waits
with --lock-wait.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			uploads := 1
			for _, d := range cfg.Destinations {
				uploads = max(uploads, d.Uploads)
			}
			setSnapshotMemoryLimit(int64(cfg.ChunkSize), uploads)
			res, err := a.snapshotJob(cmd.Context(), cfg, backup.SnapshotOptions{
				Dests: dests, Only: only, Version: buildinfo.Get().Version, Log: a.log})
			if res == nil {
				return err
			}
			return a.report(snapshotView(res), err, func() error { return a.printSnapshot(res) })
		},
	}
	cmd.Flags().StringSliceVar(&dests, "dest", nil, "only this destination (repeatable)")
	cmd.Flags().StringSliceVar(&only, "only", nil, "only this part: files:NAME, sqlite:NAME, volume:NAME, mongo:mongodb, or a kind (repeatable)")
	return cmd
}

// printSnapshot prints a snapshot's parts and destinations.
func (a *app) printSnapshot(res *snapshot.Result) error {
	w := a.table()
	fmt.Fprintf(w, "snapshot %s of %s: %s in %s", res.ID, res.Host, plural(len(res.Parts), "part"), res.Finished.Sub(res.Started).Round(time.Millisecond))
	if n := len(res.FailedParts); n > 0 {
		fmt.Fprintf(w, "; %s FAILED, not in the snapshot", plural(n, "part"))
	}
	fmt.Fprint(w, "\n\n")
	fmt.Fprintln(w, "PART\tRAW\tSTORED\tUPLOADED\tENTRIES\tREUSED")
	for _, p := range res.Parts {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%v\n", p.ID, humanbytes.Format(p.Size), humanbytes.Format(p.Stored), humanbytes.Format(p.Uploaded), p.Entries, p.Reused)
	}
	for _, f := range res.FailedParts {
		fmt.Fprintf(w, "%s\tFAILED: %s\n", f.ID, f.Reason)
	}
	for _, sk := range res.Skipped {
		fmt.Fprintf(w, "%s\tleft out: %s\n", sk.ID, sk.Reason)
	}
	fmt.Fprintln(w, "\nDESTINATION\tRESULT\tUPLOADED\tREUSED PARTS\tRETRIES")
	for _, d := range res.Destinations {
		status := "ok"
		if d.Err != nil {
			status = "FAILED: " + d.Error
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\n", d.Name, status, humanbytes.Format(d.Uploaded), d.Reused, d.Retries)
	}
	return w.Flush()
}

func (a *app) snapshotsCommand() *cobra.Command {
	var dests []string
	cmd := &cobra.Command{
		Use:   "snapshots",
		Short: "List the snapshots on every destination, complete or incomplete",
		Long: `snapshots lists, per destination, every snapshot of this host: id, start
time (local) and age, parts, RAW (the parts' size) and STORED (their pieces'
stored size), REUSED (the share of stored bytes the destination already
held), and its state: complete, partial (complete, but parts failed in that
run: it holds the others), incomplete (no manifest: interrupted or still
being written; its pieces use space until rotate sweeps them) or BAD (a
manifest that does not verify: the reason is shown).

Part names, RAW, REUSED and the failed parts' errors come from the encrypted
index: without keys.identity_file the parts are counted and those columns
show "-". --json gives times in UTC (docs/json.md).

A destination that cannot be opened or listed is shown with its error and
the others are listed anyway; the exit code is then 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			ls, err := backup.ListWith(cmd.Context(), cfg, backup.ListOptions{Dests: dests, Contents: true})
			if err != nil {
				return err
			}
			return a.report(listingView(ls), backup.ListError(ls), func() error { return a.printListing(ls) })
		},
	}
	cmd.Flags().StringSliceVar(&dests, "dest", nil, "only this destination (repeatable)")
	return cmd
}

// printListing prints the snapshots of every destination: when (local
// time and age), which parts, RAW (plaintext) and STORED sizes, the share
// of the stored bytes found on the destination already, and the state.
// What the encrypted index holds (part names, RAW, REUSED) shows only
// when keys.identity_file decrypts it ("-" otherwise).
func (a *app) printListing(ls []backup.DestListing) error {
	w := a.table()
	at := now()
	for _, d := range ls {
		fmt.Fprintf(w, "%s:\n", d.Destination)
		if d.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", d.Error)
			continue
		}
		if len(d.Snapshots) == 0 {
			fmt.Fprintln(w, "  no snapshots")
			continue
		}
		fmt.Fprintln(w, "  ID\tTIME\tAGE\tPARTS\tRAW\tSTORED\tREUSED\tSTATE")
		for _, s := range d.Snapshots {
			state := "complete"
			if s.FailedParts > 0 {
				state = "partial: " + failedParts(s)
			}
			switch {
			case !s.Complete && s.Problem != "":
				state = "BAD: " + s.Problem
			case !s.Complete:
				// Its pieces are in the shared objects folder, not in
				// its own: they use space until rotate sweeps them (or
				// a later snapshot references them).
				state = "incomplete: pieces it uploaded use space until rotate sweeps them"
			case s.Problem != "":
				state += " (" + s.Problem + ")"
			}
			parts, raw, reused := "-", "-", "-"
			if s.Complete {
				parts = strconv.Itoa(s.Parts)
			}
			if c := d.Contents[s.ID]; c != nil {
				parts, raw, reused = shortParts(c.Parts), humanbytes.Format(c.Raw), percent(c.ReusedShare())
			}
			fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, localTime(s.Time), ago(s.Time, at), parts, raw,
				bytesOr(s.Size, s.Complete), reused, state)
		}
	}
	return w.Flush()
}

// failedParts says which parts of a partial snapshot failed, or how many
// when its index could not be read.
func failedParts(s snapshot.Listing) string {
	if len(s.Failed) == 0 {
		return plural(s.FailedParts, "part") + " failed (named in the encrypted index: set keys.identity_file)"
	}
	var out []string
	for _, f := range s.Failed {
		out = append(out, f.ID+" failed: "+f.Reason)
	}
	return strings.Join(out, "; ")
}

func (a *app) verifyCommand() *cobra.Command {
	o := backup.VerifyOptions{}
	cmd := &cobra.Command{
		Use:   "verify [flags] [ID|latest]",
		Short: "Check that snapshots are intact and restorable",
		Long: `verify checks snapshots on every destination (default: the latest):

  quick         the manifest's signature, every object (piece, piece list,
                v1 chunk) present with its size (no private key needed)
  hashes        also download every object and check its SHA-256 against
                the signed manifest: finds bit rot and tampering without a
                private key, so the backup host can run it (the scheduled
                default); objects shared by several snapshots are read once
  full          also decrypt, decompress and parse every part; counts must
                match the index (needs the identity)
  restore-test  also restore every part into a scratch folder, then drop it
                (the mongo part: into a scratch database fireops-verify-ID
                on the configured server or --scratch-uri-file, comparing
                each collection's count and document digest)

Each destination is checked on its own; one that cannot be opened or
listed is reported and the others are still checked. latest is, on each
destination, what restore latest takes: each part in the newest snapshot
holding it (after a snapshot --only run, the other parts in the full run
before it; one row per snapshot checked).

Exit code 3 when a snapshot fails its check (the hint says whether the
data is damaged or the check could not run to its end), or when a newer
snapshot this host wrote is gone or refused (a rollback); 1 when a
destination could not be checked at all; 4 when another verify runs
(--lock-wait waits for it).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if o.All {
					return exitcode.Usagef("give a snapshot or --all", "--all and a snapshot id exclude each other")
				}
				if args[0] == "" {
					return restore.EmptyIDError() // not latest: Verify takes "" for it
				}
				o.Snapshot = args[0]
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			o.Log = a.log
			res, err := a.verifyJob(cmd.Context(), cfg, o)
			if res == nil {
				return err
			}
			return a.report(res, err, func() error { return a.printVerify(res) })
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.All, "all", false, "verify every snapshot")
	f.StringVar(&o.Level, "level", "quick", "quick, hashes, full or restore-test")
	f.StringSliceVar(&o.Dests, "dest", nil, "only this destination (repeatable)")
	f.StringVar(&o.Identity, "identity", "", "age identity file (default: keys.identity_file)")
	f.StringVar(&o.Mongo.ScratchURIFile, "scratch-uri-file", "", "mongo: file (0600) with the URI of the server restore-test uses (default: the configured one)")
	return cmd
}

// printVerify prints verify's verdicts, and the parts that levels full
// and restore-test read.
func (a *app) printVerify(res []backup.VerifyResult) error {
	w := a.table()
	if len(res) > 0 {
		fmt.Fprintln(w, "DESTINATION\tSNAPSHOT\tLEVEL\tPARTS\tSTORED\tRESULT")
	}
	for _, r := range res {
		verdict := "ok"
		switch {
		case r.Interrupted && r.FailedParts == nil:
			// Stopped by SIGINT or SIGTERM: not checked to its end, not
			// found damaged.
			verdict = "not finished: " + r.Error
		case !r.OK:
			verdict = "FAILED: " + r.Error
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", r.Destination, r.Snapshot, r.Level, r.Parts, humanbytes.Format(r.Bytes), verdict)
	}
	// The part names are in the encrypted index: levels full and
	// restore-test read it, quick does not.
	for i, r := range res {
		if i == 0 && len(r.PartIDs) > 0 {
			fmt.Fprintln(w)
		}
		if len(r.PartIDs) > 0 {
			fmt.Fprintf(w, "%s on %s: %s\n", r.Snapshot, r.Destination, strings.Join(r.PartIDs, ", "))
		}
	}
	return w.Flush()
}

func (a *app) restoreCommand() *cobra.Command {
	o := restore.Options{}
	var yes bool
	cmd := &cobra.Command{
		Use:   "restore [flags] ID|latest",
		Short: "Restore parts of a snapshot, checked and staged before anything is replaced",
		Long: `restore checks the manifest's signature and every piece (each one against
the signed manifest before it is decrypted), decrypts each part into a
staging copy next to its target, checks it (entry count, SQLite
integrity_check), and only then replaces the target. A failed restore
leaves the target as it was.

latest is, for each part, the newest complete snapshot holding it on any
destination: a snapshot --only run does not hide the other parts of the
full run before it. The snapshots are read newest first back to the newest
full run; a part only older snapshots hold is left out (that run no longer
held it), and the plan names each part's snapshot. An id restores that
snapshot's parts only. A snapshot is read from the first destination (in
the config's order) with an intact copy of it, never from an older
snapshot in its stead (--dest picks one).

Targets: a files part needs --to DIR (its paths are recreated under DIR); a
sqlite part goes to its configured path, or --to FILE. With several parts,
--to is a folder: files parts go to DIR/files-NAME, sqlite parts to
DIR/NAME.sqlite. A non-empty folder or an existing database is replaced
only with --force. One restore runs at a time (exit code 4 otherwise).

A volume part goes back into its volume, --to volume:OTHER, or --to DIR
(DIR/volume-NAME with several parts), through a staging volume; a volume
with content, or one that running containers use (they are named), is
replaced only with --force (docs/volumes.md).

The mongo part goes back into the configured server (or --to-uri-file):
every collection, or those of --ns, into the recorded databases, or into
PREFIX+DB with --to-db. Each collection is loaded into a staging
collection, indexed and counted; only when every one checked out are they
renamed over their targets. A collection that has documents is replaced
only with --drop (docs/mongo.md).

--all is the whole-server restore (docs/runbook.md): every part back where it
was, in the order config files, Docker volumes (missing ones are created),
the hub's SQLite database, MongoDB. A files part goes back over the paths its
source in this host's config names, each of which must be a path the
snapshot archived (or inside one); what is there is kept as PATH.fireops-old
(with --force it is replaced). Other existing targets are refused without
--force, which also replaces MongoDB collections (as --drop). The plan is
printed first; without a terminal --yes is needed. Every part is restored on
its own: one that fails is left as it was, the others are still restored,
the output says which parts were restored and which were not, and the exit
code is non-zero (3 when a part is damaged). --stop-stack stops the running
containers of the Compose project stack.name first (MongoDB's is left
running when the mongo part is restored: it is restored through it) and
starts them again at the end, also when parts failed.`,
		Args: restoreArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Snapshot = args[0]
			if !o.All && (o.StopStack || yes) {
				return exitcode.Usagef("add --all", "--stop-stack and --yes go with --all")
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			o.Log = a.log
			planShown := false
			if o.All {
				o.Confirm = func(res *restore.Result) error {
					planShown = !a.jsonOut
					return a.confirmRestore(res, yes)
				}
			}
			res, err := a.restoreJob(cmd.Context(), cfg, o)
			if res == nil {
				return err
			}
			return a.report(res, err, func() error {
				if planShown && !slices.ContainsFunc(res.Parts, func(p restore.PlannedPart) bool { return p.Status != restore.StatusPlanned }) {
					return nil // not confirmed: the plan is on the screen already
				}
				verb := "restore"
				if o.DryRun {
					verb = "restore plan (dry run, nothing written)"
				}
				return a.printRestore(res, verb, o.All)
			})
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.Parts, "part", nil, "only this part (files:NAME, sqlite:NAME, volume:NAME, mongo:mongodb, or a kind; repeatable)")
	f.StringVar(&o.To, "to", "", "target folder, file for one sqlite part, or volume:NAME for one volume part")
	f.BoolVar(&o.DryRun, "dry-run", false, "print the plan, write nothing")
	f.BoolVar(&o.Force, "force", false, "replace a non-empty target: folder, database or volume (with --all also MongoDB collections, as --drop)")
	f.StringVar(&o.Dest, "dest", "", "read from this destination (default: the first that has the snapshot)")
	f.StringVar(&o.Identity, "identity", "", "age identity file (default: keys.identity_file)")
	f.StringSliceVar(&o.Mongo.NS, "ns", nil, "mongo: only this namespace, DB.COLLECTION or DB.* (repeatable)")
	f.StringVar(&o.Mongo.ToDB, "to-db", "", "mongo: restore DB into PREFIX+DB instead of DB")
	f.StringVar(&o.Mongo.ToURIFile, "to-uri-file", "", "mongo: file (0600) with the URI of the server to restore into (default: the configured one)")
	f.BoolVar(&o.Mongo.Drop, "drop", false, "mongo: replace collections that have documents")
	f.BoolVar(&o.All, "all", false, "whole-server restore: every part back where it was, in a safe order, each on its own")
	f.BoolVar(&o.StopStack, "stop-stack", false, "with --all: stop the stack's containers first, start them again after")
	f.BoolVar(&yes, "yes", false, "with --all: restore without asking (needed when stdin is not a terminal)")
	return cmd
}

// restoreArgs wants the one snapshot restore reads: an id, a unique
// prefix of one, or latest.
func restoreArgs(_ *cobra.Command, args []string) error {
	switch len(args) {
	case 1:
		return nil
	case 0:
		return exitcode.Usagef("give an id as listed by `fireops snapshots`, or latest: fireops restore latest --to DIR",
			"restore needs a snapshot id (or latest)")
	}
	return exitcode.Usagef("give one snapshot id, or latest; name parts with --part",
		"restore takes one snapshot id (or latest), not %d: %s", len(args), strings.Join(args, " "))
}

// restoreOf names what a restore reads in its header: the snapshot, or
// "latest (N snapshots)" when its parts come from several (restore
// latest: each part's is in the SNAPSHOT column).
func restoreOf(res *restore.Result) string {
	var ids []string
	for _, p := range res.Parts {
		if p.Snapshot != "" && !slices.Contains(ids, p.Snapshot) {
			ids = append(ids, p.Snapshot)
		}
	}
	if len(ids) > 1 {
		return fmt.Sprintf("latest (%d snapshots)", len(ids))
	}
	return res.Snapshot
}

// printRestore prints a restore's parts with their status; with all, the
// stack and a summary of what was and was not restored.
func (a *app) printRestore(res *restore.Result, verb string, all bool) error {
	w := a.table()
	fmt.Fprintf(w, "%s of %s from %s:\n", verb, restoreOf(res), res.Destination)
	if res.Note != "" {
		fmt.Fprintf(w, "(%s)\n", res.Note)
	}
	fmt.Fprintln(w, "PART\tSNAPSHOT\tRAW\tTARGET\tSTATUS")
	var done, notDone []string
	acted := false
	for _, p := range res.Parts {
		acted = acted || p.Status != restore.StatusPlanned
		status := p.Status
		if p.Error != "" {
			status += ": " + p.Error
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", p.Part, p.Snapshot, humanbytes.Format(p.Size), p.Target, status)
		if p.Status == restore.StatusRestored {
			done = append(done, p.Part)
		} else {
			notDone = append(notDone, p.Part)
		}
	}
	if st := res.Stack; st != nil {
		if len(st.Containers) == 0 {
			fmt.Fprintf(w, "\nstack %s: no running containers to stop\n", st.Project)
		} else {
			fmt.Fprintf(w, "\nstack %s: %d running container(s) stopped during the restore: %s\n", st.Project, len(st.Containers), strings.Join(st.Containers, ", "))
		}
		if len(st.Running) > 0 {
			fmt.Fprintf(w, "stack %s: left running: %s (%s)\n", st.Project, strings.Join(st.Running, ", "), st.RunningWhy)
		}
		if len(st.Started) > 0 {
			fmt.Fprintf(w, "stack %s: started again: %s\n", st.Project, strings.Join(st.Started, ", "))
		}
		if st.Error != "" {
			fmt.Fprintf(w, "stack %s: ERROR: %s\n", st.Project, st.Error)
		}
	}
	if all && verb == "restore" && acted {
		fmt.Fprintf(w, "\nrestored: %s\n", orNone(done))
		fmt.Fprintf(w, "NOT restored: %s\n", orNone(notDone))
	}
	return w.Flush()
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// confirmRestore prints the plan of restore --all and asks on a terminal;
// without one it needs --yes.
func (a *app) confirmRestore(res *restore.Result, yes bool) error {
	if !a.jsonOut {
		if err := a.printRestore(res, "restore plan", true); err != nil {
			return err
		}
	}
	if yes {
		return nil
	}
	if _, ok := a.terminal(); !ok {
		return exitcode.Usagef("read the plan above, then run the same command with --yes", "restore --all: not confirmed (stdin is not a terminal); nothing was written")
	}
	fmt.Fprint(a.stderr, "Restore these parts over what is on this server now? Type yes to go on: ")
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return fmt.Errorf("read confirmation: %w", err)
	}
	if strings.TrimSpace(line) != "yes" {
		return exitcode.Usagef("type yes to restore, or use --yes", "not confirmed; nothing was written")
	}
	return nil
}
