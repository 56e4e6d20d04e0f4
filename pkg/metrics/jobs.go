package metrics

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/firetech/fireops/pkg/snapshot"
)

// The textfiles the backup jobs write into textfile_dir. The run
// file is replaced by every run; the success file only by a successful
// one, so the last success survives failures (the "no good snapshot in
// 26 h" alert reads it). Verify writes one pair per level
// (VerifyRunFile(level)), so that a quick verify never hides the result of
// a full one; a snapshot --only run writes its own pair, so that it never
// hides the result of the last full snapshot; rotate writes a sweep file
// per destination (RotateSweepFile) when it swept there.
// docs/md lists every metric.
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

// GaugeOf is a gauge family with its samples.
func GaugeOf(name, help string, samples ...Sample) Family {
	return Family{Name: name, Help: help, Type: Gauge, Samples: samples}
}

// One is one sample of value v with the label pairs given (name, value,
// ...).
func One(v float64, labels ...string) Sample {
	return Sample{Labels: L(labels...), Value: v}
}

// RunFamilies are the three families every job's run file starts with:
// when its last run ended, whether it succeeded and how long it took.
func RunFamilies(job, what string, now time.Time, dur time.Duration, ok bool, labels ...string) []Family {
	return []Family{
		GaugeOf("fireops_"+job+"_last_run_timestamp_seconds", "Time the last "+what+" run ended, in seconds since the epoch.", One(float64(now.Unix()), labels...)),
		GaugeOf("fireops_"+job+"_last_run_success", "1 if the last "+what+" run succeeded (on every destination), else 0.", One(Bool(ok), labels...)),
		GaugeOf("fireops_"+job+"_last_run_duration_seconds", "Duration of the last "+what+" run.", One(dur.Seconds(), labels...)),
	}
}

// SnapshotMetrics returns what a snapshot run publishes. res may be nil
// when the run failed early; dests are the configured destinations, each
// of which gets a destination_success sample (0 when this run did not
// complete a snapshot there, also when it was left out with --dest). Each
// part the run stored, and each one that failed (runErr wraps a
// *snapshot.PartsError, also when every part failed and res is nil), gets
// a part_last_run_success sample.
func SnapshotMetrics(now time.Time, dur time.Duration, res *snapshot.Result, runErr error, dests []string) JobMetrics {
	ok := runErr == nil && res != nil
	m := JobMetrics{Job: "snapshot", RunFile: SnapshotRunFile, SuccessFile: SnapshotSuccessFile}
	m.Run = RunFamilies("snapshot", "snapshot", now, dur, ok)
	done := map[string]snapshot.DestResult{}
	if res != nil {
		for _, d := range res.Destinations {
			done[d.Name] = d
		}
	}
	var succ, up, reused, retries []Sample
	names := append([]string(nil), dests...)
	for n := range done {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		d, there := done[n]
		succ = append(succ, One(Bool(there && d.Err == nil), "destination", n))
		if there {
			up = append(up, One(float64(d.Uploaded), "destination", n))
			reused = append(reused, One(float64(d.Reused), "destination", n))
			retries = append(retries, One(float64(d.Retries), "destination", n))
		}
	}
	m.Run = append(m.Run,
		GaugeOf("fireops_snapshot_destination_success", "1 if the last snapshot run completed a snapshot on this destination, else 0.", succ...),
		GaugeOf("fireops_snapshot_destination_uploaded_bytes", "Bytes the last snapshot run uploaded to this destination.", up...),
		GaugeOf("fireops_snapshot_destination_reused_parts", "Parts the last snapshot run referenced from earlier uploads on this destination.", reused...),
		GaugeOf("fireops_snapshot_destination_retries", "Requests to this destination the last snapshot run had to try again.", retries...),
		GaugeOf("fireops_snapshot_part_last_run_success", "1 if the last snapshot run stored this part, 0 if the part failed (its source could not be read whole).", partResults(res, runErr)...),
	)
	if !ok {
		return m
	}
	var in, out, reusedPart []Sample
	var size, stored int64
	for _, p := range res.Parts {
		in = append(in, One(float64(p.Size), "part", p.ID))
		out = append(out, One(float64(p.Stored), "part", p.ID))
		reusedPart = append(reusedPart, One(Bool(p.Reused), "part", p.ID))
		size += p.Size
		stored += p.Stored
	}
	m.Success = []Family{
		GaugeOf("fireops_snapshot_last_success_timestamp_seconds", "Time the last fully successful snapshot ended, in seconds since the epoch.", One(float64(now.Unix()))),
		GaugeOf("fireops_snapshot_last_success_duration_seconds", "Duration of the last successful snapshot.", One(dur.Seconds())),
		GaugeOf("fireops_snapshot_last_success_parts", "Parts in the last successful snapshot.", One(float64(len(res.Parts)))),
		GaugeOf("fireops_snapshot_last_success_size_bytes", "Plaintext payload bytes of the last successful snapshot.", One(float64(size))),
		GaugeOf("fireops_snapshot_last_success_stored_bytes", "Encrypted bytes the last successful snapshot references on each destination.", One(float64(stored))),
		GaugeOf("fireops_snapshot_part_size_bytes", "Plaintext payload bytes of each part in the last successful snapshot.", in...),
		GaugeOf("fireops_snapshot_part_stored_bytes", "Encrypted stored bytes of each part in the last successful snapshot.", out...),
		GaugeOf("fireops_snapshot_part_reused", "1 if the part was referenced from an earlier upload, else 0.", reusedPart...),
	}
	return m
}

// SnapshotOnlyMetrics returns what a snapshot --only run publishes: the
// families of SnapshotMetrics named fireops_snapshot_only_* instead of
// fireops_snapshot_*, in their own textfiles. The full runs' metrics, which
// the alerts read, stay as the last full run left them: an --only run that
// succeeds after a failed full one does not end its alerts.
func SnapshotOnlyMetrics(now time.Time, dur time.Duration, res *snapshot.Result, runErr error, dests []string) JobMetrics {
	m := SnapshotMetrics(now, dur, res, runErr, dests)
	m.RunFile, m.SuccessFile = SnapshotOnlyRunFile, SnapshotOnlySuccessFile
	only := func(fams []Family) []Family {
		if fams == nil {
			return nil
		}
		out := make([]Family, len(fams))
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
func partResults(res *snapshot.Result, runErr error) []Sample {
	var out []Sample
	if res != nil {
		for _, p := range res.Parts {
			out = append(out, One(1, "part", p.ID))
		}
	}
	var pe *snapshot.PartsError
	if errors.As(runErr, &pe) {
		for _, f := range pe.Failed {
			out = append(out, One(0, "part", f.ID))
		}
	}
	slices.SortFunc(out, func(a, b Sample) int { return strings.Compare(a.Labels[0].Value, b.Labels[0].Value) })
	return out
}
