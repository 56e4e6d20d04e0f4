package runner

import (
	"context"
	"errors"
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/gpucheck"
	"github.com/firetech/fireops/pkg/gpuusage"
)

// GPUCheckOptions are the settings of one gpu check besides the config:
// overrides of its gpu: thresholds (nil: the config's) and, for tests,
// the NVML library, Docker Engine and process owners to use (nil: the
// real ones).
type GPUCheckOptions struct {
	ExpectCount     *int
	MinDriver       *string
	MaxTemperatureC *int
	RequireRuntime  *bool

	// Strict fails on warnings too.
	Strict bool
	// SmokeImage, when set, also runs nvidia-smi -L in a container of it.
	SmokeImage string
	// NoMetrics writes no textfile (Publish still gets the metrics).
	NoMetrics bool

	NVML   nvml.Interface
	Engine gpucheck.Engine
	// Owners places the GPU processes; nil: /proc and the Docker Engine.
	Owners gpucheck.OwnerResolver
}

// GPUCheck runs the GPU checks with the thresholds of cfg's gpu: section
// (and o's overrides), hands the metrics to Publish and writes them to
// metrics.textfile_dir. It takes no lock. It returns the report (nil when
// the checks could not run) and an error with the check-failed exit code
// when a check failed, or exit code 1 when a passing check's textfile
// could not be written.
func (r *Runner) GPUCheck(ctx context.Context, cfg *config.Config, o GPUCheckOptions) (*gpucheck.Report, error) {
	th := gpucheck.ThresholdsFromConfig(cfg.GPU)
	if o.ExpectCount != nil {
		th.ExpectCount = *o.ExpectCount
	}
	if o.MinDriver != nil {
		th.MinDriver = *o.MinDriver
	}
	if o.MaxTemperatureC != nil {
		th.MaxTemperatureC = *o.MaxTemperatureC
	}
	if o.RequireRuntime != nil {
		th.RequireContainerRuntime = *o.RequireRuntime
	}
	if err := th.Validate(); err != nil {
		return nil, exitcode.Usagef("fix the flag or the gpu: section of the config (docs/gpu.md)", "gpu check: %w", err)
	}

	log := r.log()
	owners := o.Owners
	if owners == nil {
		res := &gpuusage.Resolver{OnError: func(op string, err error) {
			log.Debug("cannot place a GPU process in its container", "op", op, "err", err)
		}}
		if dc, err := gpuusage.NewDockerContainers(); err != nil {
			log.Debug("no Docker client: GPU processes stay without container names", "err", err)
		} else {
			defer dc.Close()
			res.Containers = dc
		}
		owners = res
	}
	rep, err := gpucheck.Run(ctx, gpucheck.Options{
		Thresholds: th,
		Strict:     o.Strict,
		NVML:       o.NVML,
		Engine:     o.Engine,
		Owners:     owners,
		SmokeImage: o.SmokeImage,
		Log:        log,
	})
	if err != nil {
		return nil, fmt.Errorf("gpu check: %w", err)
	}

	m := rep.JobMetrics()
	if r.Publish != nil {
		// The daemon serves them on /metrics too.
		r.Publish(m)
	}
	var metricsErr error
	if dir := cfg.Metrics.TextfileDir; dir != "" && !o.NoMetrics {
		metricsErr = m.Write(dir)
		if metricsErr != nil {
			log.Error("cannot write the metrics textfile", "dir", dir, "err", metricsErr)
		} else {
			log.Debug("metrics written", "file", dir+"/"+gpucheck.TextfileName)
		}
	}

	if !rep.OK {
		hint := ""
		if bad := rep.Failed(o.Strict); len(bad) > 0 {
			hint = bad[0].Hint
			if len(bad) > 1 {
				hint += fmt.Sprintf(" (first of %d problems; the report lists them all)", len(bad))
			}
		}
		return rep, exitcode.New(exitcode.CheckFailed, errors.New("gpu check: "+rep.Summary()), hint)
	}
	if metricsErr != nil {
		return rep, exitcode.New(exitcode.Failure, fmt.Errorf("gpu check passed, but %w", metricsErr),
			"check that metrics.textfile_dir exists and that this user may write to it")
	}
	return rep, nil
}
