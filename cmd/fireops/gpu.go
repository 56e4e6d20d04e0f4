package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/spf13/cobra"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/gpucheck"
	"github.com/firetech/fireops/pkg/runner"
)

// gpuCheckOptions are the flags of `fireops gpu check` and, for tests, the
// NVML library and Docker Engine to use (nil: the real ones).
type gpuCheckOptions struct {
	// Threshold overrides; nil when the flag was not given.
	expectCount    *int
	minDriver      *string
	maxTemperature *int
	requireRuntime *bool

	strict         bool
	smokeImage     string
	noMetrics      bool
	configExplicit bool

	nvml   nvml.Interface
	engine gpucheck.Engine
	// owners places the GPU processes; nil: /proc and the Docker Engine.
	owners gpucheck.OwnerResolver
}

func (a *app) gpuCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gpu",
		Short: "Check the GPUs and the container runtime",
	}
	cmd.AddCommand(a.gpuCheckCommand())
	return cmd
}

func (a *app) gpuCheckCommand() *cobra.Command {
	var (
		opts           gpuCheckOptions
		expectCount    int
		minDriver      string
		maxTemperature int
		requireRuntime bool
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "NVML and container-runtime preflight; the exit code says pass or fail",
		Long: `check asks NVML about the driver and every GPU (count, temperature, clock
throttling, ECC errors, retired pages, row remapping, persistence and MIG
mode) and asks the Docker Engine whether containers can reach the GPUs (an
nvidia runtime or a CDI spec for nvidia.com/gpu). It also lists the compute
processes on the GPUs per hub user: each process's container comes from its
cgroup, the user from the name DockerSpawner gave the container (--json:
"users"). Thresholds come from the
config's gpu: section; the flags below override them. Without a config file
(and without --config) the documented defaults apply.

With --smoke-image it also runs nvidia-smi -L in a throwaway container of
that image with all GPUs and compares the list with NVML's.

When metrics.textfile_dir is set, the result is written there as
fireops_gpu_check.prom for node-exporter's textfile collector.

Use it as a preflight: ExecStartPre=/usr/local/bin/fireops gpu check -q
(docs/gpu.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			if f.Changed("expect-count") {
				opts.expectCount = &expectCount
			}
			if f.Changed("min-driver") {
				opts.minDriver = &minDriver
			}
			if f.Changed("max-temperature") {
				opts.maxTemperature = &maxTemperature
			}
			if f.Changed("require-container-runtime") {
				opts.requireRuntime = &requireRuntime
			}
			opts.configExplicit = f.Changed("config")
			return a.runGPUCheck(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.IntVar(&expectCount, "expect-count", 0, "number of GPUs the host must have; 0: at least one (default: gpu.expect_count)")
	f.StringVar(&minDriver, "min-driver", "", "lowest acceptable driver version, e.g. 550.54 (default: gpu.min_driver)")
	f.IntVar(&maxTemperature, "max-temperature", 0, "fail a GPU hotter than this many °C (default: gpu.max_temperature_c)")
	f.BoolVar(&requireRuntime, "require-container-runtime", false, "fail when containers cannot reach the GPUs (default: gpu.require_container_runtime, true when unset; turn off with --require-container-runtime=false)")
	f.BoolVar(&opts.strict, "strict", false, "fail on warnings too")
	f.StringVar(&opts.smokeImage, "smoke-image", "", "also run nvidia-smi -L in a container of this image with all GPUs")
	f.BoolVar(&opts.noMetrics, "no-metrics", false, "do not write the metrics textfile")
	return cmd
}

// gpuConfig loads the config; a missing file that was not named with
// --config means the defaults, so the check runs on a fresh host.
func (a *app) gpuConfig(explicit bool) (*config.Config, error) {
	cfg, err := a.loadConfig()
	if err != nil && !explicit && errors.Is(err, fs.ErrNotExist) {
		a.log.Debug("no config file, using the defaults", "path", a.configPath)
		return config.Default(), nil
	}
	return cfg, err
}

// runGPUCheck runs the checks (pkg/runner), prints the report and
// returns an error with the check-failed exit code when a check failed.
func (a *app) runGPUCheck(ctx context.Context, opts gpuCheckOptions) error {
	cfg, err := a.gpuConfig(opts.configExplicit)
	if err != nil {
		return err
	}
	rep, err := a.runner().GPUCheck(ctx, cfg, opts.runner())
	if rep == nil {
		return err
	}
	if a.jsonOut {
		if err := a.printJSON(rep); err != nil {
			return fmt.Errorf("print report: %w", err)
		}
	} else if err := printGPUReport(a.stdout, rep); err != nil {
		return fmt.Errorf("print report: %w", err)
	}
	return err
}

// runner returns the options of pkg/runner's gpu check.
func (o gpuCheckOptions) runner() runner.GPUCheckOptions {
	return runner.GPUCheckOptions{
		ExpectCount: o.expectCount, MinDriver: o.minDriver, MaxTemperatureC: o.maxTemperature, RequireRuntime: o.requireRuntime,
		Strict: o.strict, SmokeImage: o.smokeImage, NoMetrics: o.noMetrics,
		NVML: o.nvml, Engine: o.engine, Owners: o.owners,
	}
}

// printGPUReport writes the report as tables: a summary line, the GPUs,
// every check, then the message and hint of each check that did not pass.
func printGPUReport(w io.Writer, r *gpucheck.Report) error {
	fmt.Fprintf(w, "GPU check: %s (%d pass, %d warn, %d fail)\n",
		r.Status, r.Count(gpucheck.Pass), r.Count(gpucheck.Warn), r.Count(gpucheck.Fail))
	var facts []string
	if r.DriverVersion != "" {
		facts = append(facts, "driver "+r.DriverVersion)
	}
	if r.CUDADriverVersion != "" {
		facts = append(facts, "CUDA "+r.CUDADriverVersion)
	}
	if r.NVMLVersion != "" {
		facts = append(facts, "NVML "+r.NVMLVersion)
	}
	if rt := r.ContainerRuntime; rt != nil {
		facts = append(facts, "Docker "+rt.ServerVersion)
	}
	if len(facts) > 0 {
		fmt.Fprintln(w, strings.Join(facts, ", "))
	}

	tw := newTable(w, 0, 0, 2)
	if len(r.GPUs) > 0 {
		fmt.Fprintln(tw, "\nGPU\tNAME\tUUID\tBUS ID\tMEMORY USED/TOTAL\tTEMP\tMIG")
		for _, g := range r.GPUs {
			temp := "-"
			if g.TemperatureC != nil {
				temp = fmt.Sprintf("%d°C", *g.TemperatureC)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s / %s\t%s\t%s\n", g.Index, orDash(g.Name), orDash(g.UUID), orDash(g.BusID),
				gpuGiB(g.MemoryUsedBytes), gpuGiB(g.MemoryTotalBytes), temp, orDash(g.MIGMode))
		}
	}
	if len(r.Users) > 0 {
		fmt.Fprintln(tw, "\nUSER\tGPU\tPID\tMEMORY\tSM\tCONTAINER")
		for _, u := range r.Users {
			for _, p := range u.Processes {
				mem, sm := "-", "-"
				if p.MemoryUsedBytes != nil {
					mem = gpuGiB(*p.MemoryUsedBytes)
				}
				if p.SMUtilizationPercent != nil {
					sm = fmt.Sprintf("%.0f%%", *p.SMUtilizationPercent)
				}
				ctr := p.Container
				if ctr == "" && p.ContainerID != "" {
					ctr = p.ContainerID[:min(12, len(p.ContainerID))]
				}
				user := orDash(p.User)
				if p.Server != "" {
					user += "/" + p.Server
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", user, p.GPU, p.PID, mem, sm, orDash(ctr))
			}
		}
	}
	fmt.Fprintln(tw, "\nCHECK\tON\tSTATUS\tVALUE\tTHRESHOLD")
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, c.Subject(), c.Status, c.Value, orDash(c.Threshold))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	first := true
	for _, c := range r.Checks {
		if c.Status == gpucheck.Pass {
			continue
		}
		if first {
			fmt.Fprintln(w)
			first = false
		}
		fmt.Fprintf(w, "%s: %s (%s): %s\n", c.Status, c.Name, c.Subject(), c.Message)
		if c.Hint != "" {
			fmt.Fprintf(w, "  hint: %s\n", c.Hint)
		}
	}
	_, err := fmt.Fprintln(w)
	return err
}

// orDash returns s, or "-" for an empty s, for table cells.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// gpuGiB formats bytes as GiB with one decimal.
func gpuGiB(b uint64) string {
	return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
}
