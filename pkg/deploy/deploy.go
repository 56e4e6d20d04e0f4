// Package deploy renders the FireTech Compose stack (design.md §1, §9)
// from the config's stack: section, checks the host, brings the stack up
// with the Docker Compose CLI plugin and reports its health from the
// Engine API (`fireops deploy`, docs/deploy.md).
//
// Every file of the stack comes from templates embedded in the binary; the
// same config always renders the same bytes, so a second deploy changes
// nothing. Secrets are generated once into stack.dir/secrets/ (0600) and
// never replaced; deploy never prints or logs their contents. Nothing is
// written or started before the preflight has passed, and deploy never
// removes a volume unless asked to (Down with volumes).
package deploy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/firetech/fireops/pkg/config"
)

// Options configure Deploy.
type Options struct {
	// Render changes the render (tests).
	Render RenderOptions
	// Preflight configures the checks.
	Preflight PreflightOptions
	// Progress receives Compose's progress output; nil discards it.
	Progress io.Writer
	// Log receives what deploy does; nil discards it.
	Log *slog.Logger
}

// Result is what a deploy did.
type Result struct {
	StackDir  string         `json:"stack_dir"`
	Project   string         `json:"project"`
	Preflight *Preflight     `json:"preflight"`
	Files     []Change       `json:"files,omitempty"`
	Secrets   []SecretResult `json:"secrets,omitempty"`
	Built     []string       `json:"built,omitempty"`
	// Recreated are the services whose containers were replaced because
	// a secret they mount changed (Compose does not notice: the files are
	// bind-mounted, and the compose file stays the same).
	Recreated []string        `json:"recreated,omitempty"`
	Services  []ServiceStatus `json:"services,omitempty"`
	// Healthy is true when every service runs and is healthy.
	Healthy bool `json:"healthy"`
}

// Deploy renders the stack, runs the preflight and, when it passes, writes
// the files and the missing secrets into stack.dir, builds the notebook
// image when its tag is missing, runs `docker compose up -d --wait` and
// reports every service's health. The result is filled as far as deploy
// got, also when it returns an error.
func Deploy(ctx context.Context, cfg *config.Config, opts Options) (*Result, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	st, err := Render(cfg, opts.Render)
	if err != nil {
		return nil, err
	}
	res := &Result{StackDir: st.Dir, Project: st.Project}

	eng, engErr := NewEngine()
	if engErr == nil {
		defer eng.Close()
	}
	pre := RunPreflight(ctx, st, eng, engErr, opts.Preflight)
	res.Preflight = pre
	if err := pre.Err(); err != nil {
		return res, err
	}
	log.Debug("preflight passed", "engine", pre.Engine.Version, "compose", pre.Compose.Version)

	if res.Files, err = st.Write(); err != nil {
		return res, fmt.Errorf("write stack: %w", err)
	}
	if res.Secrets, err = EnsureSecrets(st.Dir, st.Secrets); err != nil {
		return res, err
	}
	for _, s := range res.Secrets {
		if s.Note != "" {
			log.Warn("secret", "name", s.Name, "problem", s.Note)
		}
	}

	ok, err := eng.ImageExists(ctx, st.NotebookImage)
	if err != nil {
		return res, err
	}
	if !ok {
		log.Info("building the notebook image", "image", st.NotebookImage)
		if err := pre.Compose.Build(ctx, st.Dir, "notebook-image", progress); err != nil {
			return res, err
		}
		res.Built = append(res.Built, st.NotebookImage)
	}

	var changed []string
	for _, s := range res.Secrets {
		if s.Action == "updated" || s.Action == "generated" {
			changed = append(changed, s.Name)
		}
	}
	if len(changed) > 0 {
		svcs, err := servicesMounting(st.File("compose.yaml"), changed)
		if err != nil {
			return res, err
		}
		// A container that exists holds the old secret: remove it so that
		// up creates it again (on a first deploy there is none).
		if len(svcs) > 0 {
			removed, err := pre.Compose.RemoveServices(ctx, st.Dir, svcs, progress)
			if err != nil {
				return res, err
			}
			res.Recreated = removed
			if len(removed) > 0 {
				log.Info("recreating services whose secrets changed", "services", removed)
			}
		}
	}

	log.Info("starting the stack", "dir", st.Dir, "project", st.Project)
	upErr := pre.Compose.Up(ctx, st.Dir, time.Duration(cfg.Stack.WaitTimeout), progress)
	res.Services, err = eng.Status(ctx, st.Project, st.Services)
	if err != nil && upErr == nil {
		upErr = err
	}
	res.Healthy = allOK(res.Services)
	if upErr != nil {
		return res, upErr
	}
	if !res.Healthy {
		return res, fmt.Errorf("the stack is up but not every service is healthy")
	}
	return res, nil
}

// allOK reports whether every service runs and is healthy.
func allOK(services []ServiceStatus) bool {
	if len(services) == 0 {
		return false
	}
	for _, s := range services {
		if !s.OK {
			return false
		}
	}
	return true
}

// Status reports the stack's services from the Engine API.
func Status(ctx context.Context, cfg *config.Config) ([]ServiceStatus, bool, error) {
	st, err := Render(cfg, RenderOptions{})
	if err != nil {
		return nil, false, err
	}
	eng, err := NewEngine()
	if err != nil {
		return nil, false, err
	}
	defer eng.Close()
	if _, err := eng.Info(ctx); err != nil {
		msg, hint := engineInfoFailed(eng.Host(), err)
		return nil, false, &PreflightError{Msg: msg, Hint: hint}
	}
	s, err := eng.Status(ctx, st.Project, st.Services)
	if err != nil {
		return nil, false, err
	}
	return s, allOK(s), nil
}

// DownOptions configure Down.
type DownOptions struct {
	// Volumes also removes the stack's volumes: the hub database, MongoDB's
	// data, the metrics and logs. User volumes (jupyterhub-user-*) are not
	// the stack's and stay.
	Volumes bool
	// PluginDirs overrides where the compose plugin is looked for.
	PluginDirs []string
	// Progress receives Compose's output.
	Progress io.Writer
}

// Down stops and removes the stack's containers and networks (and its
// volumes with Volumes).
func Down(ctx context.Context, cfg *config.Config, opts DownOptions) error {
	c, err := FindCompose(ctx, opts.PluginDirs)
	if err != nil {
		return &PreflightError{Msg: oneLine(err), Hint: hintCompose}
	}
	out := opts.Progress
	if out == nil {
		out = io.Discard
	}
	return c.Down(ctx, cfg.Stack.Dir, cfg.Stack.Name, opts.Volumes, out)
}
