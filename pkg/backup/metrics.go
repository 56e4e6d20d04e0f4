package backup

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/firetech/fireops/pkg/metrics"
	"github.com/firetech/fireops/pkg/snapshot"
)

// The textfiles the backup jobs write into metrics.textfile_dir. The run
// file is replaced by every run; the success file only by a successful
// one, so the last success survives failures (the "no good snapshot in
// 26 h" alert reads it). Verify writes one pair per level
// (VerifyRunFile(level)), so that a quick verify never hides the result of
// a full one; a snapshot --only run writes its own pair, so that it never
// hides the result of the last full snapshot; rotate writes a sweep file
// per destination (RotateSweepFile) when it swept there.
// docs/metrics.md lists every metric.
const (
	SnapshotRunFile         = "fireops_snapshot.prom"
	SnapshotSuccessFile     = "fireops_snapshot_success.prom"
	SnapshotOnlyRunFile     = "fireops_snapshot_only.prom"
	SnapshotOnlySuccessFile = "fireops_snapshot_only_success.prom"
	RotateRunFile           = "fireops_rotate.prom"
	RotateSuccessFile       = "fireops_rotate_success.prom"
	RestoreRunFile          = "fireops_restore.prom"
	RestoreSuccessFile      = "fireops_restore_success.prom"
)

// VerifyRunFile is the run textfile of verify at one level.
func VerifyRunFile(level string) string {
	return "fireops_verify_" + strings.ReplaceAll(level, "-", "_") + ".prom"
}

// VerifySuccessFile is the success textfile of verify at one level.
func VerifySuccessFile(level string) string {
	return "fireops_verify_" + strings.ReplaceAll(level, "-", "_") + "_success.prom"
}

// RotateSweepFile is the textfile rotate writes for one destination when
// it swept its objects: the last sweep's time survives the rotate runs
// that skip the sweep. Destination names are plain (config: letters,
// digits, '.', '_' and '-').
func RotateSweepFile(destination string) string {
	return "fireops_rotate_sweep_" + destination + ".prom"
}

func gauge(name, help string, samples ...metrics.Sample) metrics.Family {
	return metrics.Family{Name: name, Help: help, Type: metrics.Gauge, Samples: samples}
}

func one(v float64, labels ...string) metrics.Sample {
	return metrics.Sample{Labels: metrics.L(labels...), Value: v}
}

// runFamilies are the three families every job's run file starts with.
func runFamilies(job, what string, now time.Time, dur time.Duration, ok bool, labels ...string) []metrics.Family {
	return []metrics.Family{
		gauge("fireops_"+job+"_last_run_timestamp_seconds", "Time the last "+what+" run ended, in seconds since the epoch.", one(float64(now.Unix()), labels...)),
		gauge("fireops_"+job+"_last_run_success", "1 if the last "+what+" run succeeded (on every destination), else 0.", one(metrics.Bool(ok), labels...)),
		gauge("fireops_"+job+"_last_run_duration_seconds", "Duration of the last "+what+" run.", one(dur.Seconds(), labels...)),
	}
}

// SnapshotMetrics returns what a snapshot run publishes. res may be nil
// when the run failed early; dests are the configured destinations, each
// of which gets a destination_success sample (0 when this run did not
// complete a snapshot there, also when it was left out with --dest). Each
// part the run stored, and each one that failed (runErr wraps a
// *snapshot.PartsError, also when every part failed and res is nil), gets
// a part_last_run_success sample.
func SnapshotMetrics(now time.Time, dur time.Duration, res *snapshot.Result, runErr error, dests []string) metrics.JobMetrics {
	ok := runErr == nil && res != nil
	m := metrics.JobMetrics{Job: "snapshot", RunFile: SnapshotRunFile, SuccessFile: SnapshotSuccessFile}
	m.Run = runFamilies("snapshot", "snapshot", now, dur, ok)
	done := map[string]snapshot.DestResult{}
	if res != nil {
		for _, d := range res.Destinations {
			done[d.Name] = d
		}
	}
	var succ, up, reused, retries []metrics.Sample
	names := append([]string(nil), dests...)
	for n := range done {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		d, there := done[n]
		succ = append(succ, one(metrics.Bool(there && d.Err == nil), "destination", n))
		if there {
			up = append(up, one(float64(d.Uploaded), "destination", n))
			reused = append(reused, one(float64(d.Reused), "destination", n))
			retries = append(retries, one(float64(d.Retries), "destination", n))
		}
	}
	m.Run = append(m.Run,
		gauge("fireops_snapshot_destination_success", "1 if the last snapshot run completed a snapshot on this destination, else 0.", succ...),
		gauge("fireops_snapshot_destination_uploaded_bytes", "Bytes the last snapshot run uploaded to this destination.", up...),
		gauge("fireops_snapshot_destination_reused_parts", "Parts the last snapshot run referenced from earlier uploads on this destination.", reused...),
		gauge("fireops_snapshot_destination_retries", "Requests to this destination the last snapshot run had to try again.", retries...),
		gauge("fireops_snapshot_part_last_run_success", "1 if the last snapshot run stored this part, 0 if the part failed (its source could not be read whole).", partResults(res, runErr)...),
	)
	if !ok {
		return m
	}
	var in, out, reusedPart []metrics.Sample
	var size, stored int64
	for _, p := range res.Parts {
		in = append(in, one(float64(p.Size), "part", p.ID))
		out = append(out, one(float64(p.Stored), "part", p.ID))
		reusedPart = append(reusedPart, one(metrics.Bool(p.Reused), "part", p.ID))
		size += p.Size
		stored += p.Stored
	}
	m.Success = []metrics.Family{
		gauge("fireops_snapshot_last_success_timestamp_seconds", "Time the last fully successful snapshot ended, in seconds since the epoch.", one(float64(now.Unix()))),
		gauge("fireops_snapshot_last_success_duration_seconds", "Duration of the last successful snapshot.", one(dur.Seconds())),
		gauge("fireops_snapshot_last_success_parts", "Parts in the last successful snapshot.", one(float64(len(res.Parts)))),
		gauge("fireops_snapshot_last_success_size_bytes", "Plaintext payload bytes of the last successful snapshot.", one(float64(size))),
		gauge("fireops_snapshot_last_success_stored_bytes", "Encrypted bytes the last successful snapshot references on each destination.", one(float64(stored))),
		gauge("fireops_snapshot_part_size_bytes", "Plaintext payload bytes of each part in the last successful snapshot.", in...),
		gauge("fireops_snapshot_part_stored_bytes", "Encrypted stored bytes of each part in the last successful snapshot.", out...),
		gauge("fireops_snapshot_part_reused", "1 if the part was referenced from an earlier upload, else 0.", reusedPart...),
	}
	return m
}

// SnapshotOnlyMetrics returns what a snapshot --only run publishes: the
// families of SnapshotMetrics named fireops_snapshot_only_* instead of
// fireops_snapshot_*, in their own textfiles. The full runs' metrics, which
// the alerts read, stay as the last full run left them: an --only run that
// succeeds after a failed full one does not end its alerts.
func SnapshotOnlyMetrics(now time.Time, dur time.Duration, res *snapshot.Result, runErr error, dests []string) metrics.JobMetrics {
	m := SnapshotMetrics(now, dur, res, runErr, dests)
	m.RunFile, m.SuccessFile = SnapshotOnlyRunFile, SnapshotOnlySuccessFile
	only := func(fams []metrics.Family) []metrics.Family {
		if fams == nil {
			return nil
		}
		out := make([]metrics.Family, len(fams))
		for i, f := range fams {
			f.Name = "fireops_snapshot_only_" + strings.TrimPrefix(f.Name, "fireops_snapshot_")
			f.Help = "snapshot --only runs: " + f.Help
			out[i] = f
		}
		return out
	}
	m.Run, m.Success = only(m.Run), only(m.Success)
	return m
}

// partResults are the part_last_run_success samples of a snapshot run, by
// part id.
func partResults(res *snapshot.Result, runErr error) []metrics.Sample {
	var out []metrics.Sample
	if res != nil {
		for _, p := range res.Parts {
			out = append(out, one(1, "part", p.ID))
		}
	}
	var pe *snapshot.PartsError
	if errors.As(runErr, &pe) {
		for _, f := range pe.Failed {
			out = append(out, one(0, "part", f.ID))
		}
	}
	slices.SortFunc(out, func(a, b metrics.Sample) int { return strings.Compare(a.Labels[0].Value, b.Labels[0].Value) })
	return out
}

// VerifyMetrics returns what a verify run at one level publishes. A
// successful restore-test also sets fireops_restore_test_success_timestamp_seconds
// (the restore drill's alert reads it).
func VerifyMetrics(level string, now time.Time, dur time.Duration, res []VerifyResult, runErr error) metrics.JobMetrics {
	failed, checked := 0, 0
	var bytes int64
	perDest := map[string]bool{}
	var order []string
	for _, r := range res {
		checked++
		if !r.OK {
			failed++
		}
		bytes += r.Bytes
		if _, seen := perDest[r.Destination]; !seen {
			order = append(order, r.Destination)
			perDest[r.Destination] = true
		}
		// A rollback is a finding of the destination: it fails there.
		perDest[r.Destination] = perDest[r.Destination] && r.OK && r.Rollback == ""
	}
	ok := runErr == nil
	m := metrics.JobMetrics{Job: "verify", RunFile: VerifyRunFile(level), SuccessFile: VerifySuccessFile(level)}
	m.Run = runFamilies("verify", "verify", now, dur, ok, "level", level)
	var ds []metrics.Sample
	for _, d := range order {
		ds = append(ds, one(metrics.Bool(perDest[d]), "level", level, "destination", d))
	}
	m.Run = append(m.Run,
		gauge("fireops_verify_last_run_snapshots", "Snapshots checked by the last verify run.", one(float64(checked), "level", level)),
		gauge("fireops_verify_last_run_failed_snapshots", "Snapshots that failed the last verify run.", one(float64(failed), "level", level)),
		gauge("fireops_verify_last_run_bytes", "Bytes of the snapshots checked by the last verify run.", one(float64(bytes), "level", level)),
		gauge("fireops_verify_destination_success", "1 if every snapshot the last verify run checked on this destination passed and it showed no rollback, else 0.", ds...),
	)
	if !ok {
		return m
	}
	m.Success = []metrics.Family{
		gauge("fireops_verify_last_success_timestamp_seconds", "Time the last successful verify ended, in seconds since the epoch.", one(float64(now.Unix()), "level", level)),
	}
	if level == LevelRestoreTest && checked > 0 {
		m.Success = append(m.Success, gauge("fireops_restore_test_success_timestamp_seconds",
			"Time the last successful restore drill (verify --level restore-test) ended, in seconds since the epoch.", one(float64(now.Unix()))))
	}
	return m
}

// RotateMetrics returns what a rotate run publishes (a dry run publishes
// nothing). res may be nil when the run failed early; dests are the
// configured destinations. Each destination whose sweep ran to the end
// gets its sweep file (RotateSweepFile), which the runs that skip the
// sweep leave alone.
func RotateMetrics(now time.Time, dur time.Duration, res *RotateResult, runErr error, dests []string) metrics.JobMetrics {
	ok := runErr == nil && res != nil
	m := metrics.JobMetrics{Job: "rotate", RunFile: RotateRunFile, SuccessFile: RotateSuccessFile}
	m.Run = runFamilies("rotate", "rotate", now, dur, ok)
	byName := map[string]RotateDest{}
	if res != nil {
		for _, d := range res.Destinations {
			byName[d.Destination] = d
		}
	}
	names := append([]string(nil), dests...)
	for n := range byName {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var succ, kept, removed, incomplete, objs, freed, young, skipped []metrics.Sample
	for _, n := range names {
		d, there := byName[n]
		done := there && d.Err == nil && d.Error == ""
		succ = append(succ, one(metrics.Bool(done), "destination", n))
		if !there {
			continue
		}
		if done && d.Objects.Skipped == "" {
			m.Extra = append(m.Extra, metrics.Textfile{Name: RotateSweepFile(n), Families: []metrics.Family{
				gauge("fireops_rotate_last_sweep_timestamp_seconds", "Time the last rotate run that swept this destination's unreferenced objects ended, in seconds since the epoch.", one(float64(now.Unix()), "destination", n)),
			}})
		}
		l := []string{"destination", n}
		kept = append(kept, one(float64(d.Kept), l...))
		removed = append(removed, one(float64(d.Removed), l...))
		incomplete = append(incomplete, one(float64(d.IncompleteRemoved), l...))
		objs = append(objs, one(float64(d.Objects.Removed), l...))
		freed = append(freed, one(float64(d.Objects.FreedBytes), l...))
		young = append(young, one(float64(d.Objects.Young), l...))
		skipped = append(skipped, one(metrics.Bool(d.Objects.Skipped != ""), l...))
	}
	m.Run = append(m.Run,
		gauge("fireops_rotate_destination_success", "1 if the last rotate run completed on this destination, else 0.", succ...),
		gauge("fireops_rotate_snapshots_kept", "Complete snapshots kept by the retention policy in the last rotate run.", kept...),
		gauge("fireops_rotate_snapshots_removed", "Complete snapshots removed by the retention policy in the last rotate run.", removed...),
		gauge("fireops_rotate_incomplete_removed", "Incomplete snapshots older than the grace period removed in the last rotate run.", incomplete...),
		gauge("fireops_rotate_objects_removed", "Unreferenced objects swept in the last rotate run.", objs...),
		gauge("fireops_rotate_freed_bytes", "Bytes of the objects swept in the last rotate run.", freed...),
		gauge("fireops_rotate_objects_young", "Unreferenced objects kept by the last rotate run because they are within the grace period.", young...),
		gauge("fireops_rotate_sweep_skipped", "1 if the last rotate run skipped the sweep (a snapshot was running, or a manifest could not be read).", skipped...),
	)
	if ok {
		m.Success = []metrics.Family{
			gauge("fireops_rotate_last_success_timestamp_seconds", "Time the last successful rotate ended, in seconds since the epoch.", one(float64(now.Unix()))),
		}
	}
	return m
}

// RestoreMetrics returns what a restore run publishes (a dry run publishes
// nothing): the result, and how many parts were restored and failed, so a
// dashboard shows the last recovery next to the last snapshot.
func RestoreMetrics(now time.Time, dur time.Duration, res *RestoreResult, runErr error) metrics.JobMetrics {
	ok := runErr == nil && res != nil
	m := metrics.JobMetrics{Job: "restore", RunFile: RestoreRunFile, SuccessFile: RestoreSuccessFile}
	m.Run = runFamilies("restore", "restore", now, dur, ok)
	restored, failed := 0, 0
	if res != nil {
		for _, p := range res.Parts {
			switch p.Status {
			case "restored":
				restored++
			case "planned":
			default:
				failed++
			}
		}
	}
	m.Run = append(m.Run,
		gauge("fireops_restore_parts_restored", "Parts the last restore run restored.", one(float64(restored))),
		gauge("fireops_restore_parts_not_restored", "Parts the last restore run did not restore (failed or not attempted).", one(float64(failed))),
	)
	if ok {
		m.Success = []metrics.Family{
			gauge("fireops_restore_last_success_timestamp_seconds", "Time the last successful restore ended, in seconds since the epoch.", one(float64(now.Unix()))),
		}
	}
	return m
}
