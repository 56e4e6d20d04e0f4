package runner

import (
	"slices"
	"time"

	"github.com/firetech/fireops/pkg/backup"
	"github.com/firetech/fireops/pkg/metrics"
	"github.com/firetech/fireops/pkg/restore"
)

// verifyMetrics returns what a verify run at one level publishes. A
// successful restore-test also sets fireops_restore_test_success_timestamp_seconds
// (the restore drill's alert reads it).
func verifyMetrics(level string, now time.Time, dur time.Duration, res []backup.VerifyResult, runErr error) metrics.JobMetrics {
	failed, checked := 0, 0
	var bytes int64
	perDest := map[string]bool{}
	var order []string
	for _, r := range res {
		// A destination that could not be opened or listed fails there,
		// but is no snapshot checked.
		if !r.Unchecked {
			checked++
			if !r.OK {
				failed++
			}
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
	m := metrics.JobMetrics{Job: "verify", RunFile: metrics.VerifyRunFile(level), SuccessFile: metrics.VerifySuccessFile(level)}
	m.Run = metrics.RunFamilies("verify", "verify", now, dur, ok, "level", level)
	var ds []metrics.Sample
	for _, d := range order {
		ds = append(ds, metrics.One(metrics.Bool(perDest[d]), "level", level, "destination", d))
	}
	m.Run = append(m.Run,
		metrics.GaugeOf("fireops_verify_last_run_snapshots", "Snapshots checked by the last verify run.", metrics.One(float64(checked), "level", level)),
		metrics.GaugeOf("fireops_verify_last_run_failed_snapshots", "Snapshots that failed the last verify run.", metrics.One(float64(failed), "level", level)),
		metrics.GaugeOf("fireops_verify_last_run_bytes", "Bytes of the snapshots checked by the last verify run.", metrics.One(float64(bytes), "level", level)),
		metrics.GaugeOf("fireops_verify_destination_success", "1 if every snapshot the last verify run checked on this destination passed and it showed no rollback, else 0.", ds...),
	)
	if !ok {
		return m
	}
	m.Success = []metrics.Family{
		metrics.GaugeOf("fireops_verify_last_success_timestamp_seconds", "Time the last successful verify ended, in seconds since the epoch.", metrics.One(float64(now.Unix()), "level", level)),
	}
	if level == backup.LevelRestoreTest && checked > 0 {
		m.Success = append(m.Success, metrics.GaugeOf("fireops_restore_test_success_timestamp_seconds",
			"Time the last successful restore drill (verify --level restore-test) ended, in seconds since the epoch.", metrics.One(float64(now.Unix()))))
	}
	return m
}

// rotateMetrics returns what a rotate run publishes (a dry run publishes
// nothing). res may be nil when the run failed early; dests are the
// configured destinations. Each destination whose sweep ran to the end
// gets its sweep file (metrics.RotateSweepFile), which the runs that skip the
// sweep leave alone.
func rotateMetrics(now time.Time, dur time.Duration, res *backup.RotateResult, runErr error, dests []string) metrics.JobMetrics {
	ok := runErr == nil && res != nil
	m := metrics.JobMetrics{Job: "rotate", RunFile: metrics.RotateRunFile, SuccessFile: metrics.RotateSuccessFile}
	m.Run = metrics.RunFamilies("rotate", "rotate", now, dur, ok)
	byName := map[string]backup.RotateDest{}
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
		succ = append(succ, metrics.One(metrics.Bool(done), "destination", n))
		if !there {
			continue
		}
		if done && d.Objects.Skipped == "" {
			m.Extra = append(m.Extra, metrics.Textfile{Name: metrics.RotateSweepFile(n), Families: []metrics.Family{
				metrics.GaugeOf("fireops_rotate_last_sweep_timestamp_seconds", "Time the last rotate run that swept this destination's unreferenced objects ended, in seconds since the epoch.", metrics.One(float64(now.Unix()), "destination", n)),
			}})
		}
		l := []string{"destination", n}
		kept = append(kept, metrics.One(float64(d.Kept), l...))
		removed = append(removed, metrics.One(float64(d.Removed), l...))
		incomplete = append(incomplete, metrics.One(float64(d.IncompleteRemoved), l...))
		objs = append(objs, metrics.One(float64(d.Objects.Removed), l...))
		freed = append(freed, metrics.One(float64(d.Objects.FreedBytes), l...))
		young = append(young, metrics.One(float64(d.Objects.Young), l...))
		skipped = append(skipped, metrics.One(metrics.Bool(d.Objects.Skipped != ""), l...))
	}
	m.Run = append(m.Run,
		metrics.GaugeOf("fireops_rotate_destination_success", "1 if the last rotate run completed on this destination, else 0.", succ...),
		metrics.GaugeOf("fireops_rotate_snapshots_kept", "Complete snapshots kept by the retention policy in the last rotate run.", kept...),
		metrics.GaugeOf("fireops_rotate_snapshots_removed", "Complete snapshots removed by the retention policy in the last rotate run.", removed...),
		metrics.GaugeOf("fireops_rotate_incomplete_removed", "Incomplete snapshots older than the grace period removed in the last rotate run.", incomplete...),
		metrics.GaugeOf("fireops_rotate_objects_removed", "Unreferenced objects swept in the last rotate run.", objs...),
		metrics.GaugeOf("fireops_rotate_freed_bytes", "Bytes of the objects swept in the last rotate run.", freed...),
		metrics.GaugeOf("fireops_rotate_objects_young", "Unreferenced objects kept by the last rotate run because they are within the grace period.", young...),
		metrics.GaugeOf("fireops_rotate_sweep_skipped", "1 if the last rotate run skipped the sweep (a snapshot was running, or a manifest could not be read).", skipped...),
	)
	if ok {
		m.Success = []metrics.Family{
			metrics.GaugeOf("fireops_rotate_last_success_timestamp_seconds", "Time the last successful rotate ended, in seconds since the epoch.", metrics.One(float64(now.Unix()))),
		}
	}
	return m
}

// restoreMetrics returns what a restore run publishes (a dry run publishes
// nothing): the result, and how many parts were restored and failed, so a
// dashboard shows the last recovery next to the last snapshot.
func restoreMetrics(now time.Time, dur time.Duration, res *restore.Result, runErr error) metrics.JobMetrics {
	ok := runErr == nil && res != nil
	m := metrics.JobMetrics{Job: "restore", RunFile: metrics.RestoreRunFile, SuccessFile: metrics.RestoreSuccessFile}
	m.Run = metrics.RunFamilies("restore", "restore", now, dur, ok)
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
		metrics.GaugeOf("fireops_restore_parts_restored", "Parts the last restore run restored.", metrics.One(float64(restored))),
		metrics.GaugeOf("fireops_restore_parts_not_restored", "Parts the last restore run did not restore (failed or not attempted).", metrics.One(float64(failed))),
	)
	if ok {
		m.Success = []metrics.Family{
			metrics.GaugeOf("fireops_restore_last_success_timestamp_seconds", "Time the last successful restore ended, in seconds since the epoch.", metrics.One(float64(now.Unix()))),
		}
	}
	return m
}
