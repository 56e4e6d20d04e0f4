package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"syscall"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/firetech/fireops/internal/humanbytes"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/engine"
	"github.com/firetech/fireops/pkg/gpucheck"
)

// MinEngineVersion is the oldest Docker Engine the stack runs on
// (host-gateway, device requests, API 1.41).
const MinEngineVersion = "20.10.0"

// Check is one preflight check.
type Check struct {
	Name string `json:"name"`
	// Status is ok, fail, warn or skip.
	Status  string `json:"status"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

// Preflight is the outcome of the checks run before anything is started.
type Preflight struct {
	Checks []Check `json:"checks"`
	OK     bool    `json:"ok"`
	// Engine and Compose are set when they were found.
	Engine  *EngineInfo `json:"engine,omitempty"`
	Compose *Compose    `json:"-"`
}

// Failed returns the checks that failed.
func (p *Preflight) Failed() []Check {
	var out []Check
	for _, c := range p.Checks {
		if c.Status == "fail" {
			out = append(out, c)
		}
	}
	return out
}

// Err returns nil when every check passed, else one error naming every
// failed check; Hint gives the first one's fix.
func (p *Preflight) Err() error {
	failed := p.Failed()
	if len(failed) == 0 {
		return nil
	}
	msgs := make([]string, len(failed))
	for i, c := range failed {
		msgs[i] = c.Name + ": " + c.Message
	}
	return &PreflightError{Msg: "preflight failed, nothing was started: " + strings.Join(msgs, "; "), Hint: failed[0].Hint}
}

// PreflightError is a failed preflight.
type PreflightError struct {
	Msg, Hint string
}

func (e *PreflightError) Error() string { return e.Msg }

// PreflightOptions configure the checks.
type PreflightOptions struct {
	// PluginDirs overrides where the compose plugin is looked for (nil:
	// the docker CLI's folders).
	PluginDirs []string
	// NVML is the NVML library for the GPU check; nil: the real one.
	NVML nvml.Interface
	// Log receives debug details; nil discards them.
	Log *slog.Logger
}

// hintEngine is the hint of an Engine that does not answer: engine.Hint,
// after the preflight's own "start the Docker Engine".
const hintEngine = "start the Docker Engine: " + engine.Hint

// engineInfoFailed words the failure of the Engine's info at host: one
// that answered with an error says so (engine.AnsweredHint), any other
// "does not answer" (hintEngine).
func engineInfoFailed(host string, err error) (msg, hint string) {
	if engine.Answered(err) {
		return fmt.Sprintf("Docker Engine at %s answered with an error: %s", host, oneLine(err)), engine.AnsweredHint
	}
	return fmt.Sprintf("Docker Engine at %s does not answer: %s", host, oneLine(err)), hintEngine
}

// RunPreflight checks, without changing anything: the Engine answers and
// is recent enough; the compose plugin is there and recent enough; the
// ports the stack publishes are free (or already the stack's); Docker's
// data root has stack.min_free_disk free; with stack.gpus, the GPU checks
// of `fireops gpu check` pass (NVML and the container runtime). eng is nil
// when NewEngine failed with engErr.
func RunPreflight(ctx context.Context, st *Stack, eng *Engine, engErr error, opts PreflightOptions) *Preflight {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := st.cfg
	p := &Preflight{}
	add := func(c Check) { p.Checks = append(p.Checks, c) }

	var info *EngineInfo
	if eng == nil {
		add(Check{Name: "engine", Status: "fail", Message: "no Docker client: " + oneLine(engErr), Hint: hintEngine})
	} else if i, err := eng.Info(ctx); err != nil {
		msg, hint := engineInfoFailed(eng.Host(), err)
		add(Check{Name: "engine", Status: "fail", Message: msg, Hint: hint})
	} else {
		info = &i
		p.Engine = info
		c := Check{Name: "engine", Status: "ok", Message: fmt.Sprintf("Docker Engine %s (API %s)", i.Version, i.APIVersion)}
		if versionLess(i.Version, MinEngineVersion) {
			c.Status, c.Message = "fail", fmt.Sprintf("Docker Engine %s is older than %s", i.Version, MinEngineVersion)
			c.Hint = "upgrade Docker Engine to " + MinEngineVersion + " or newer"
		}
		add(c)
	}

	if c, err := FindCompose(ctx, opts.PluginDirs); err != nil {
		add(Check{Name: "compose", Status: "fail", Message: oneLine(err), Hint: hintCompose})
	} else {
		p.Compose = c
		add(Check{Name: "compose", Status: "ok", Message: fmt.Sprintf("Docker Compose %s (%s)", c.Version, c.Path)})
	}

	add(checkPorts(ctx, st, eng, info != nil))
	add(checkDisk(cfg, info))
	add(checkGPU(ctx, cfg, opts, log))

	p.OK = len(p.Failed()) == 0
	return p
}

// checkPorts tries to listen on every port the stack publishes; a port
// the stack's own containers publish counts as free.
func checkPorts(ctx context.Context, st *Stack, eng *Engine, engineUp bool) Check {
	own := map[int]bool{}
	if engineUp {
		if m, err := eng.publishedPorts(ctx, st.Project); err == nil {
			own = m
		}
	}
	var free, taken []string
	hint := ""
	for _, pt := range st.Ports {
		if own[pt.Port] {
			free = append(free, pt.String()+" (the stack's)")
			continue
		}
		l, err := net.Listen("tcp", pt.String())
		if err != nil {
			taken = append(taken, fmt.Sprintf("%s (%s) is in use", pt.String(), pt.Key))
			if hint == "" {
				hint = fmt.Sprintf("stop what listens on port %d (`ss -ltnp 'sport = :%d'`) or set %s to a free port", pt.Port, pt.Port, pt.Key)
			}
			continue
		}
		l.Close()
		free = append(free, pt.String())
	}
	if len(taken) > 0 {
		return Check{Name: "ports", Status: "fail", Message: strings.Join(taken, ", "), Hint: hint}
	}
	return Check{Name: "ports", Status: "ok", Message: "free: " + strings.Join(free, ", ")}
}

// checkDisk checks the free space in Docker's data root.
func checkDisk(cfg *config.Config, info *EngineInfo) Check {
	c := Check{Name: "disk"}
	minFree := cfg.Stack.MinFreeDisk
	switch {
	case minFree == 0:
		c.Status, c.Message = "skip", "stack.min_free_disk is 0"
		return c
	case info == nil || info.RootDir == "":
		c.Status, c.Message = "skip", "Docker's data root is unknown (the Engine did not answer)"
		return c
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(info.RootDir, &fs); err != nil {
		c.Status = "warn"
		c.Message = fmt.Sprintf("cannot read the free space of Docker's data root %s here (a remote Engine?): %v", info.RootDir, err)
		return c
	}
	free := config.ByteSize(fs.Bavail) * config.ByteSize(fs.Bsize)
	c.Message = fmt.Sprintf("%s free in %s (stack.min_free_disk %s)", humanbytes.Format(int64(free)), info.RootDir, minFree)
	if free < minFree {
		c.Status = "fail"
		c.Hint = fmt.Sprintf("free space in %s (`docker system prune`, old images) or lower stack.min_free_disk", info.RootDir)
		return c
	}
	c.Status = "ok"
	return c
}

// checkGPU runs `fireops gpu check`'s checks when the stack uses GPUs;
// the container runtime is always required then.
func checkGPU(ctx context.Context, cfg *config.Config, opts PreflightOptions, log *slog.Logger) Check {
	c := Check{Name: "gpu"}
	if !cfg.Stack.GPUs {
		c.Status, c.Message = "skip", "stack.gpus is off"
		return c
	}
	th := gpucheck.ThresholdsFromConfig(cfg.GPU)
	th.RequireContainerRuntime = true
	rep, err := gpucheck.Run(ctx, gpucheck.Options{Thresholds: th, NVML: opts.NVML, Log: log})
	if err != nil {
		c.Status, c.Message = "fail", err.Error()
		c.Hint = "fix the gpu: section of the config"
		return c
	}
	if failed := rep.Failed(false); len(failed) > 0 {
		c.Status, c.Message = "fail", rep.Summary()
		c.Hint = failed[0].Hint
		if c.Hint == "" {
			c.Hint = "run `fireops gpu check` for details"
		}
		c.Hint += "; or set stack.gpus: false to deploy without GPUs"
		return c
	}
	c.Status = "ok"
	c.Message = fmt.Sprintf("%d GPU(s), container runtime ok", len(rep.GPUs))
	return c
}

func oneLine(err error) string {
	if err == nil {
		return ""
	}
	var pe *PreflightError
	if errors.As(err, &pe) {
		return pe.Msg
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}
