// Package gpucheck is the GPU and container-runtime preflight behind
// `fireops gpu check`, also called by `deploy` when GPUs are requested.
//
// It asks NVML (through go-nvml's nvml.Interface, so tests pass go-nvml's
// own mock) about the driver and every GPU, asks the Docker Engine whether
// containers can reach the GPUs, and returns a Report: one Check per fact,
// each with a status (pass, warn, fail), the measured value and the
// threshold it was held against.
//
// It must never make an NVML call after Init failed: go-nvml loads
// libnvidia-ml with dlopen at Init, and any further call into a library
// that did not load kills the process with a symbol lookup error. Calls to
// entry points that newer drivers may drop (deprecated ones) are gated on
// the symbol being present for the same reason. The package never imports
// cobra and never prints: callers render the Report.
package gpucheck

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/firetech/fireops/pkg/config"
)

// Status is the outcome of one check.
type Status string

// The check outcomes, from best to worst.
const (
	// Pass means the value is within its threshold.
	Pass Status = "pass"
	// Warn means something deserves attention but does not fail the check
	// (unless the caller asks for strict mode).
	Warn Status = "warn"
	// Fail means the host is not fit to run GPU workloads.
	Fail Status = "fail"
)

// rank orders statuses so that the worst one can be found.
func (s Status) rank() int {
	switch s {
	case Fail:
		return 2
	case Warn:
		return 1
	}
	return 0
}

// The names of the checks. They are stable: they appear in JSON output and
// in the check label of the fireops_gpu_check_ok metric.
const (
	CheckNVML             = "nvml"
	CheckDriver           = "driver"
	CheckGPUCount         = "gpu_count"
	CheckDevice           = "device"
	CheckTemperature      = "temperature"
	CheckThrottle         = "throttle"
	CheckECCUncorrected   = "ecc_uncorrected"
	CheckECCCorrected     = "ecc_corrected"
	CheckRetiredPages     = "retired_pages"
	CheckRemappedRows     = "remapped_rows"
	CheckPersistence      = "persistence_mode"
	CheckMIG              = "mig_mode"
	CheckContainerRuntime = "container_runtime"
	CheckSmoke            = "smoke"
)

// Check is the result of one check, for the host or for one GPU.
type Check struct {
	// Name is one of the Check... constants.
	Name string `json:"name"`
	// GPU is the GPU's NVML index, or nil for a host-wide check.
	GPU *int `json:"gpu,omitempty"`
	// UUID is the GPU's UUID when known.
	UUID string `json:"uuid,omitempty"`
	// Status is pass, warn or fail.
	Status Status `json:"status"`
	// Value is what was measured, human-readable ("62°C", "550.54.15").
	Value string `json:"value"`
	// Threshold is what Value was held against ("<= 85°C"), or "".
	Threshold string `json:"threshold,omitempty"`
	// Message explains a warning or a failure.
	Message string `json:"message,omitempty"`
	// Hint tells the admin what to do about a warning or a failure.
	Hint string `json:"hint,omitempty"`
}

// Subject names what the check is about: "host" or "gpu N".
func (c Check) Subject() string {
	if c.GPU == nil {
		return "host"
	}
	return fmt.Sprintf("gpu %d", *c.GPU)
}

// Thresholds are the limits the checks hold values against; they come
// from the config's gpu: section, overridden by flags.
type Thresholds struct {
	// ExpectCount is the number of GPUs required; 0 means at least one.
	ExpectCount int `json:"expect_count"`
	// MinDriver is the lowest acceptable driver version; "" accepts any.
	MinDriver string `json:"min_driver"`
	// MaxTemperatureC fails a GPU hotter than this.
	MaxTemperatureC int `json:"max_temperature_c"`
	// RequireContainerRuntime fails the check when containers cannot reach
	// the GPUs (no nvidia runtime and no CDI spec); otherwise that is a
	// warning.
	RequireContainerRuntime bool `json:"require_container_runtime"`
}

// ThresholdsFromConfig returns the thresholds of the config's gpu: section.
func ThresholdsFromConfig(g config.GPU) Thresholds {
	return Thresholds{
		ExpectCount:             g.ExpectCount,
		MinDriver:               g.MinDriver,
		MaxTemperatureC:         g.MaxTemperatureC,
		RequireContainerRuntime: g.RequireContainerRuntime,
	}
}

// Validate reports a threshold that makes no sense.
func (t Thresholds) Validate() error {
	if t.ExpectCount < 0 {
		return fmt.Errorf("expected GPU count %d is negative", t.ExpectCount)
	}
	if t.MaxTemperatureC <= 0 || t.MaxTemperatureC > 150 {
		return fmt.Errorf("maximum temperature %d°C is out of range (1..150)", t.MaxTemperatureC)
	}
	if t.MinDriver != "" {
		if _, err := parseVersion(t.MinDriver); err != nil {
			return fmt.Errorf("minimum driver: %w", err)
		}
	}
	return nil
}

// GPU is what NVML said about one GPU. Pointer fields are nil when the GPU
// does not support the query or the query failed (the checks say which).
type GPU struct {
	// Index is NVML's index of the GPU (the order nvidia-smi lists).
	Index int `json:"index"`
	// Name is the product name ("NVIDIA A100-SXM4-40GB").
	Name string `json:"name"`
	// UUID is the GPU's UUID ("GPU-5fd5...").
	UUID string `json:"uuid"`
	// BusID is the PCI bus id ("00000000:07:00.0").
	BusID string `json:"bus_id"`
	// MemoryTotalBytes is the GPU memory in total.
	MemoryTotalBytes uint64 `json:"memory_total_bytes"`
	// MemoryUsedBytes is the GPU memory in use.
	MemoryUsedBytes uint64 `json:"memory_used_bytes"`
	// TemperatureC is the GPU core temperature.
	TemperatureC *int `json:"temperature_c"`
	// ThrottleReasons lists the active clock event reasons that slow the
	// GPU down for its own protection (thermal, power brake, hardware).
	ThrottleReasons []string `json:"throttle_reasons"`
	// ECC holds the ECC error counters; nil when ECC is off or unsupported.
	ECC *ECCCounts `json:"ecc"`
	// RetiredPagesPending is true when retired pages wait for a reset
	// (before Ampere); nil when unsupported.
	RetiredPagesPending *bool `json:"retired_pages_pending"`
	// RemappedRows holds row remapping state (Ampere and newer); nil when
	// unsupported.
	RemappedRows *RemappedRows `json:"remapped_rows"`
	// PersistenceMode is true when the driver stays loaded without clients.
	PersistenceMode *bool `json:"persistence_mode"`
	// MIGMode is "enabled", "disabled" or "" when MIG is unsupported.
	MIGMode string `json:"mig_mode,omitempty"`
	// ProcessesError is the NVML error of the process or utilisation
	// query; "" when both answered (or the GPU has no process).
	ProcessesError string `json:"processes_error,omitempty"`
}

// ECCCounts are the memory error counters of one GPU.
// Volatile counts start at the last driver load, aggregate ones cover the
// GPU's lifetime.
type ECCCounts struct {
	// VolatileCorrected counts corrected errors since the driver loaded.
	VolatileCorrected uint64 `json:"volatile_corrected"`
	// VolatileUncorrected counts uncorrected errors since the driver loaded.
	VolatileUncorrected uint64 `json:"volatile_uncorrected"`
	// AggregateCorrected counts corrected errors over the GPU's life.
	AggregateCorrected uint64 `json:"aggregate_corrected"`
	// AggregateUncorrected counts uncorrected errors over the GPU's life.
	AggregateUncorrected uint64 `json:"aggregate_uncorrected"`
}

// RemappedRows is the row remapping state of one GPU.
type RemappedRows struct {
	// Corrected is the number of rows remapped after correctable errors.
	Corrected int `json:"corrected"`
	// Uncorrected is the number of rows remapped after uncorrectable errors.
	Uncorrected int `json:"uncorrected"`
	// Pending is true when a remapping waits for a GPU reset.
	Pending bool `json:"pending"`
	// Failure is true when a remapping failed (no spare rows left).
	Failure bool `json:"failure"`
}

// Report is the outcome of a run: the facts and every check.
type Report struct {
	// Time is when the run started.
	Time time.Time `json:"time"`
	// Status is the worst status of all checks.
	Status Status `json:"status"`
	// OK is true when the run passes: no failure, and no warning in
	// strict mode. The exit code follows it.
	OK bool `json:"ok"`
	// Strict is true when warnings fail the run.
	Strict bool `json:"strict"`
	// Thresholds are the limits the run used.
	Thresholds Thresholds `json:"thresholds"`
	// NVMLVersion is NVML's own version; empty when NVML did not
	// initialise, like the two versions below.
	NVMLVersion string `json:"nvml_version,omitempty"`
	// DriverVersion is the NVIDIA driver's version ("550.54.15").
	DriverVersion string `json:"driver_version,omitempty"`
	// CUDADriverVersion is the CUDA version the driver supports ("12.4").
	CUDADriverVersion string `json:"cuda_driver_version,omitempty"`
	// GPUs lists the GPUs NVML found, by index.
	GPUs []GPU `json:"gpus"`
	// ContainerRuntime is what the Docker Engine reported; nil when it
	// could not be asked.
	ContainerRuntime *RuntimeInfo `json:"container_runtime,omitempty"`
	// Checks lists every check in a stable order: host checks, then each
	// GPU's, then the container runtime and the smoke test.
	Checks []Check `json:"checks"`
	// Users lists the compute processes on the GPUs per hub user
	// (GroupByUser): [] when none runs or NVML did not initialise.
	Users []UserProcesses `json:"users"`
}

// Failed returns the checks that did not pass: failures, and warnings too
// when strict is true.
func (r *Report) Failed(strict bool) []Check {
	var out []Check
	for _, c := range r.Checks {
		if c.Status == Fail || (strict && c.Status == Warn) {
			out = append(out, c)
		}
	}
	return out
}

// Count returns how many checks have status s.
func (r *Report) Count(s Status) int {
	n := 0
	for _, c := range r.Checks {
		if c.Status == s {
			n++
		}
	}
	return n
}

// Summary is one line naming the checks that did not pass, for an error
// message: "2 of 80 checks failed: temperature (gpu 3), container_runtime (host)".
func (r *Report) Summary() string {
	bad := r.Failed(r.Strict)
	if len(bad) == 0 {
		return fmt.Sprintf("all %d checks passed (%d warnings)", len(r.Checks), r.Count(Warn))
	}
	names := make([]string, len(bad))
	for i, c := range bad {
		names[i] = fmt.Sprintf("%s (%s)", c.Name, c.Subject())
	}
	verb := "failed"
	if r.Strict {
		verb = "failed or warned (strict)"
	}
	return fmt.Sprintf("%d of %d checks %s: %s", len(bad), len(r.Checks), verb, strings.Join(names, ", "))
}

// add appends a check and updates the overall status.
func (r *Report) add(c Check) {
	r.Checks = append(r.Checks, c)
	if c.Status.rank() > r.Status.rank() {
		r.Status = c.Status
	}
}

// Options configure a Run.
type Options struct {
	// Thresholds are the limits to check against.
	Thresholds Thresholds
	// Strict makes warnings fail the run.
	Strict bool
	// NVML is the NVML library; nil means the real one (Library()).
	NVML nvml.Interface
	// Owners places the GPU processes in containers and user servers;
	// nil lists them without owners.
	Owners OwnerResolver
	// Engine is the Docker Engine; nil means a client built from the
	// environment (DOCKER_HOST and friends, like the docker CLI).
	Engine Engine
	// SmokeImage, when set, runs nvidia-smi -L in a throwaway container of
	// this image with all GPUs and compares its list with NVML's.
	SmokeImage string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives debug details; nil discards them.
	Log *slog.Logger
}

// Run runs every check and returns the report. It returns an error only
// for bad options; everything the checks find, including an NVML library
// that does not load or an unreachable Docker Engine, is in the report.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.Thresholds.Validate(); err != nil {
		return nil, err
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lib := opts.NVML
	if lib == nil {
		lib = Library()
	}
	r := &Report{Time: now().UTC(), Status: Pass, Strict: opts.Strict, Thresholds: opts.Thresholds, GPUs: []GPU{}}

	procs := probeNVML(ctx, lib, opts.Thresholds, r, log)
	resolveOwners(ctx, opts.Owners, procs)
	r.Users = GroupByUser(procs)

	engine := opts.Engine
	if engine == nil {
		de, err := NewDockerEngine()
		if err != nil {
			engine = brokenEngine{err: err}
		} else {
			defer de.Close()
			de.Log = log
			engine = de
		}
	}
	checkEngine(ctx, engine, opts, r, log)

	r.OK = len(r.Failed(opts.Strict)) == 0
	return r, nil
}
