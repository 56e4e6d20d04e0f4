package backup

import (
	"time"

	"github.com/firetech/fireops/pkg/metrics"
	"github.com/firetech/fireops/pkg/snapshot"
)

// The textfiles the backup jobs write into metrics.textfile_dir. The run
// file is replaced by every run; the success file only by a successful
// one, so the last success survives failures (the "no good snapshot in
// 26 h" alert reads it).
const (
	SnapshotRunFile     = "fireops_snapshot.prom"
	SnapshotSuccessFile = "fireops_snapshot_success.prom"
	VerifyRunFile       = "fireops_verify.prom"
	VerifySuccessFile   = "fireops_verify_success.prom"
)

func gauge(name, help string, samples ...metrics.Sample) metrics.Family {
	return metrics.Family{Name: name, Help: help, Type: metrics.Gauge, Samples: samples}
}

func one(v float64, labels ...string) metrics.Sample {
	return metrics.Sample{Labels: metrics.L(labels...), Value: v}
}

// WriteSnapshotMetrics records a snapshot run's result in dir (nothing
// when dir is empty). res may be nil when the run failed early.
func WriteSnapshotMetrics(dir string, now time.Time, dur time.Duration, res *snapshot.Result, runErr error) error {
	if dir == "" {
		return nil
	}
	ok := runErr == nil && res != nil
	run := []metrics.Family{
		gauge("fireops_snapshot_last_run_timestamp_seconds", "Time the last snapshot run ended.", one(float64(now.Unix()))),
		gauge("fireops_snapshot_last_run_success", "1 if the last snapshot run succeeded on every destination.", one(metrics.Bool(ok))),
		gauge("fireops_snapshot_last_run_duration_seconds", "Duration of the last snapshot run.", one(dur.Seconds())),
	}
	if res != nil {
		var ds []metrics.Sample
		for _, d := range res.Destinations {
			ds = append(ds, one(metrics.Bool(d.Err == nil), "destination", d.Name))
		}
		run = append(run, gauge("fireops_snapshot_destination_success", "1 if the last snapshot run completed on this destination.", ds...))
	}
	if err := metrics.WriteTextfile(dir, SnapshotRunFile, run); err != nil {
		return err
	}
	if !ok {
		return nil
	}
	var in, out, reused []metrics.Sample
	for _, p := range res.Parts {
		in = append(in, one(float64(p.Size), "part", p.ID))
		out = append(out, one(float64(p.Stored), "part", p.ID))
		reused = append(reused, one(metrics.Bool(p.Reused), "part", p.ID))
	}
	succ := []metrics.Family{
		gauge("fireops_snapshot_last_success_timestamp_seconds", "Time the last fully successful snapshot ended.", one(float64(now.Unix()))),
		gauge("fireops_snapshot_last_success_duration_seconds", "Duration of the last successful snapshot.", one(dur.Seconds())),
		gauge("fireops_snapshot_last_success_parts", "Parts in the last successful snapshot.", one(float64(len(res.Parts)))),
		gauge("fireops_snapshot_part_bytes_in", "Plaintext payload bytes of each part in the last successful snapshot.", in...),
		gauge("fireops_snapshot_part_bytes_out", "Encrypted stored bytes of each part in the last successful snapshot.", out...),
		gauge("fireops_snapshot_part_reused", "1 if the part was referenced from an earlier upload.", reused...),
	}
	return metrics.WriteTextfile(dir, SnapshotSuccessFile, succ)
}

// WriteVerifyMetrics records a verify run's result in dir (nothing when
// dir is empty).
func WriteVerifyMetrics(dir, level string, now time.Time, dur time.Duration, res []VerifyResult, runErr error) error {
	if dir == "" {
		return nil
	}
	failed := 0
	var bytes int64
	for _, r := range res {
		if !r.OK {
			failed++
		}
		bytes += r.Bytes
	}
	ok := runErr == nil
	run := []metrics.Family{
		gauge("fireops_verify_last_run_timestamp_seconds", "Time the last verify run ended.", one(float64(now.Unix()), "level", level)),
		gauge("fireops_verify_last_run_success", "1 if every snapshot checked by the last verify run passed.", one(metrics.Bool(ok), "level", level)),
		gauge("fireops_verify_last_run_duration_seconds", "Duration of the last verify run.", one(dur.Seconds(), "level", level)),
		gauge("fireops_verify_last_run_failed_snapshots", "Snapshots that failed the last verify run.", one(float64(failed), "level", level)),
		gauge("fireops_verify_last_run_bytes", "Bytes of the snapshots checked by the last verify run.", one(float64(bytes), "level", level)),
	}
	if err := metrics.WriteTextfile(dir, VerifyRunFile, run); err != nil {
		return err
	}
	if !ok {
		return nil
	}
	return metrics.WriteTextfile(dir, VerifySuccessFile, []metrics.Family{
		gauge("fireops_verify_last_success_timestamp_seconds", "Time the last successful verify ended.", one(float64(now.Unix()), "level", level)),
	})
}
