package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/firetech/fireops/internal/humanbytes"
	"github.com/firetech/fireops/pkg/backup"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/deploy"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/users"
)

// deployOptions are the flags of `fireops deploy`.
type deployOptions struct {
	dryRun bool
	diff   bool
}

func (a *app) deployCommand() *cobra.Command {
	var opts deployOptions
	cmd := &cobra.Command{
		Use:   "deploy",
		Short: "Render the Compose stack from the config, preflight, start it and report its health",
		Long: `deploy renders the FireTech stack from the config's stack: section into
stack.dir (compose.yaml, the hub and notebook Dockerfiles, jupyterhub_config.py,
Prometheus, alert rules, Alertmanager, Loki, Alloy, Grafana with dashboards),
generates the missing secrets into stack.dir/secrets/ (0600, never replaced,
never printed), checks the host (Docker Engine, the compose plugin, free
ports, disk space in Docker's data root, the GPUs when stack.gpus is on),
builds the notebook image when its tag is missing, then runs
docker compose up -d --wait and prints each service's health.

Nothing is written or started when the preflight fails. Running it again
with the same config changes nothing. docs/deploy.md explains every file.

  --dry-run  render into a new temp dir and print what would change
  --diff     print a unified diff of stack.dir against the new render`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runDeploy(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.dryRun, "dry-run", false, "render into a temp dir and print the plan; start nothing")
	f.BoolVar(&opts.diff, "diff", false, "print what would change in stack.dir as a unified diff; start nothing")
	cmd.AddCommand(a.deployStatusCommand(), a.deployDownCommand(), a.deployPruneCommand())
	return cmd
}

func (a *app) runDeploy(ctx context.Context, opts deployOptions) error {
	if opts.dryRun && opts.diff {
		return exitcode.Usagef("use one of them", "--dry-run and --diff exclude each other")
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	if opts.dryRun || opts.diff {
		return a.deployPlan(cfg, opts)
	}
	var progress io.Writer = a.stderr
	if a.quiet || a.jsonOut {
		progress = nil
	}
	res, err := deploy.Deploy(ctx, cfg, deploy.Options{Progress: progress, Log: a.log})
	if a.jsonOut && res != nil {
		if perr := a.printJSON(res); perr != nil && err == nil {
			err = perr
		}
	} else if res != nil {
		a.printDeployResult(res)
	}
	return deployError(err)
}

// deployError maps deploy's errors to exit codes and hints.
func deployError(err error) error {
	if err == nil {
		return nil
	}
	var pe *deploy.PreflightError
	if errors.As(err, &pe) {
		return exitcode.New(exitcode.CheckFailed, err, pe.Hint)
	}
	var ee *exitcode.Error
	if errors.As(err, &ee) {
		return err
	}
	return exitcode.New(exitcode.Failure, err, "see `fireops deploy status` and `docker compose --project-directory STACK_DIR logs SERVICE`")
}

// deployPlan prints what a deploy would change (--dry-run renders into a
// temp dir too, and removes it again; --diff prints the unified diff).
func (a *app) deployPlan(cfg *config.Config, opts deployOptions) error {
	st, err := deploy.Render(cfg, deploy.RenderOptions{})
	if err != nil {
		return err
	}
	changes, err := st.Plan("")
	if err != nil {
		return err
	}
	if opts.diff {
		return deploy.WriteDiff(a.stdout, changes)
	}
	tmp, err := os.MkdirTemp("", "fireops-deploy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := st.WriteTo(tmp); err != nil {
		return err
	}
	secrets := deploy.PlanSecrets(st.Dir, st.Secrets)
	if a.jsonOut {
		return a.printJSON(map[string]any{
			"stack_dir": st.Dir, "rendered_to": tmp, "project": st.Project,
			"files": changes, "secrets": secrets, "services": st.Services, "ports": st.Ports,
			"hub_image": st.HubImage, "notebook_image": st.NotebookImage,
		})
	}
	fmt.Fprintf(a.stdout, "rendered into a temporary folder, removed again (nothing written to %s, nothing started; --diff shows the changes)\n", st.Dir)
	a.printChanges(st.Dir, changes, true)
	fmt.Fprintln(a.stdout, "secrets:")
	for _, s := range secrets {
		action := s.Action
		if action == "missing" {
			action = "would be generated"
		}
		fmt.Fprintf(a.stdout, "  %-28s %s\n", s.Name, action)
	}
	fmt.Fprintf(a.stdout, "images: hub %s, notebook %s\n", st.HubImage, st.NotebookImage)
	fmt.Fprintf(a.stdout, "services: %s\n", strings.Join(st.Services, ", "))
	return nil
}

// printChanges prints the file changes, every one with all, else only
// those that change something.
func (a *app) printChanges(dir string, changes []deploy.Change, all bool) {
	counts := map[string]int{}
	for _, c := range changes {
		counts[c.Action]++
	}
	fmt.Fprintf(a.stdout, "files in %s: %d to create, %d to update, %d to remove, %d unchanged\n",
		dir, counts["create"], counts["update"], counts["remove"], counts["unchanged"])
	for _, c := range changes {
		if all || c.Action != "unchanged" {
			fmt.Fprintf(a.stdout, "  %-9s %s\n", c.Action, c.Path)
		}
	}
}

func (a *app) printDeployResult(res *deploy.Result) {
	if res.Preflight != nil {
		fmt.Fprintln(a.stdout, "preflight:")
		for _, c := range res.Preflight.Checks {
			fmt.Fprintf(a.stdout, "  %-5s %-8s %s\n", c.Status, c.Name, c.Message)
		}
		if !res.Preflight.OK {
			return
		}
	}
	if res.Files != nil {
		a.printChanges(res.StackDir, res.Files, false)
	}
	if res.Secrets != nil {
		fmt.Fprintln(a.stdout, "secrets:")
		for _, s := range res.Secrets {
			line := fmt.Sprintf("  %-28s %s", s.Name, s.Action)
			if s.Note != "" {
				line += " (" + s.Note + ")"
			}
			fmt.Fprintln(a.stdout, line)
		}
	}
	for _, b := range res.Built {
		fmt.Fprintf(a.stdout, "built %s\n", b)
	}
	if len(res.Recreated) > 0 {
		fmt.Fprintf(a.stdout, "recreated (a secret they mount changed): %s\n", strings.Join(res.Recreated, ", "))
	}
	if res.Services != nil {
		a.printServices(res.Services)
	}
}

func (a *app) printServices(services []deploy.ServiceStatus) {
	w := newTable(a.stdout, 2, 4, 2)
	fmt.Fprintln(w, "SERVICE\tSTATE\tHEALTH\tRESTARTS\tPORTS\tCONTAINER")
	for _, s := range services {
		health := s.Health
		if health == "" {
			health = "-"
			if s.State == "running" {
				health = "(no check)"
			}
		}
		ports := strings.Join(s.Ports, ",")
		if ports == "" {
			ports = "-"
		}
		id := s.ID
		if id == "" {
			id = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", s.Service, s.State, health, s.Restarts, ports, id)
	}
	w.Flush()
}

func (a *app) deployStatusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "State, health, restarts and published ports of every service, from the Engine API",
		Long: `status asks the Docker Engine about the containers of the stack's Compose
project (stack.name): state, health, restart count and published ports. A
service without a container shows as missing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			services, ok, err := deploy.Status(cmd.Context(), cfg)
			if err != nil {
				var pe *deploy.PreflightError
				if errors.As(err, &pe) {
					return exitcode.New(exitcode.Failure, err, pe.Hint)
				}
				return err
			}
			if a.jsonOut {
				if err := a.printJSON(map[string]any{"project": cfg.Stack.Name, "healthy": ok, "services": services}); err != nil {
					return err
				}
			} else {
				a.printServices(services)
			}
			if !ok {
				var bad []string
				for _, s := range services {
					if !s.OK {
						bad = append(bad, s.Service+" "+strings.TrimSpace(s.State+" "+s.Health))
					}
				}
				return exitcode.New(exitcode.CheckFailed, fmt.Errorf("not healthy: %s", strings.Join(bad, ", ")),
					"run `fireops deploy` to (re)start the stack; `docker compose --project-directory "+cfg.Stack.Dir+" logs SERVICE` shows why a service fails")
			}
			return nil
		},
	}
}

func (a *app) deployDownCommand() *cobra.Command {
	var volumes, yes bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop and remove the stack's containers and networks (volumes only with --volumes --yes)",
		Long: `down runs docker compose down for the stack: its containers and networks
are removed; its volumes (hub database, MongoDB data, metrics, logs) stay
unless --volumes and --yes are both given. User volumes (jupyterhub-user-*)
are never removed: they do not belong to the Compose project. User servers
started by the hub are not Compose containers either; stop them from the hub
first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if volumes && !yes {
				return exitcode.Usagef("add --yes to remove the hub database, MongoDB's data, metrics and logs for good",
					"--volumes deletes the stack's data volumes")
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			var progress io.Writer = a.stderr
			if a.quiet {
				progress = nil
			}
			err = deploy.Down(cmd.Context(), cfg, deploy.DownOptions{Volumes: volumes, Progress: progress})
			if err != nil {
				var pe *deploy.PreflightError
				if errors.As(err, &pe) {
					return exitcode.New(exitcode.Failure, err, pe.Hint)
				}
				return exitcode.New(exitcode.Failure, err, "")
			}
			if !a.quiet {
				kept := "volumes kept"
				if volumes {
					kept = "volumes removed"
				}
				fmt.Fprintf(a.stdout, "stack %s is down (%s)\n", cfg.Stack.Name, kept)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&volumes, "volumes", false, "also remove the stack's volumes (needs --yes)")
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm --volumes")
	return cmd
}

// deployPruneOptions are the flags of `fireops deploy prune`.
type deployPruneOptions struct {
	dryRun      bool
	volumes     bool
	verifyLevel string
}

func (a *app) deployPruneCommand() *cobra.Command {
	var opts deployPruneOptions
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove hub and notebook image tags no container uses (and, with --volumes, deleted users' archived volumes)",
		Long: `prune removes the tags of the hub and notebook images (stack.hub.image,
stack.notebook.image) that deploy built for earlier configs, keeping the
current tag, the previous one (the newest other tag, to roll back to) and
every tag whose image a container uses, running or stopped (DockerSpawner
keeps stopped user servers). Nothing is forced.

With --volumes it also removes the volumes (jupyterhub-user-*) of users the
hub no longer knows (neither a hub user nor a sign-up), once a snapshot
holding the volume passes verify --level hashes (or --verify-level) and no
container mounts it but that user's stopped server containers, which go
first (the hub keeps them after a delete). It asks the hub (hub.api_url,
hub.token_file) and its database for the users, and the destinations for
the snapshots: the newest snapshot whose signed manifest tags the part
volume:NAME is verified, then older ones if it fails. A volume no verified snapshot holds stays, and the
listing says how to archive it.

  --dry-run  list what would go and why the rest stays; remove nothing`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runDeployPrune(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.dryRun, "dry-run", false, "list what would be removed; remove nothing")
	f.BoolVar(&opts.volumes, "volumes", false, "also remove deleted users' volumes that a verified snapshot holds")
	f.StringVar(&opts.verifyLevel, "verify-level", backup.LevelHashes, "verify level a snapshot holding a volume must pass: quick, hashes or full")
	return cmd
}

func (a *app) runDeployPrune(ctx context.Context, opts deployPruneOptions) error {
	switch opts.verifyLevel {
	case backup.LevelQuick, backup.LevelHashes, backup.LevelFull:
	default:
		return exitcode.Usagef("use quick, hashes or full", "unknown --verify-level %q", opts.verifyLevel)
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	po := deploy.PruneOptions{DryRun: opts.dryRun, Volumes: opts.volumes, Log: a.log, VolumeName: users.VolumeName}
	if opts.volumes {
		holder, err := backup.NewHolder(cfg, backup.HolderOptions{Level: opts.verifyLevel, Log: a.log})
		if err != nil {
			return err
		}
		po.Archive = holderArchive{holder}
		m, err := a.usersManager()
		if err != nil {
			return err
		}
		defer m.Close()
		po.Users = func(ctx context.Context) ([]string, error) {
			l, err := m.List(ctx, users.All)
			if err != nil {
				return nil, err
			}
			names := make([]string, 0, len(l.Users))
			for _, u := range l.Users {
				names = append(names, u.Name)
			}
			return names, nil
		}
	}
	res, err := deploy.Prune(ctx, cfg, po)
	if res != nil {
		if a.jsonOut {
			if perr := a.printJSON(res); perr != nil && err == nil {
				err = perr
			}
		} else if !a.quiet || err != nil {
			a.printPrune(res, opts.volumes)
		}
	}
	var pe *deploy.PreflightError
	if errors.As(err, &pe) {
		return exitcode.New(exitcode.Failure, err, pe.Hint)
	}
	return err
}

// holderArchive is backup's Holder as deploy's Archive.
type holderArchive struct{ h *backup.Holder }

func (h holderArchive) Find(ctx context.Context, part string) (deploy.ArchiveRef, error) {
	got, err := h.h.Find(ctx, part)
	if err != nil {
		return deploy.ArchiveRef{}, err
	}
	return deploy.ArchiveRef{Destination: got.Destination, Snapshot: got.Snapshot, Level: got.Level}, nil
}

func (a *app) printPrune(res *deploy.PruneResult, volumes bool) {
	if res.DryRun {
		fmt.Fprintln(a.stdout, "dry run: nothing removed")
	}
	if len(res.Images) == 0 {
		fmt.Fprintln(a.stdout, "images: no tag of the hub or notebook image")
	}
	w := newTable(a.stdout, 2, 4, 2)
	if len(res.Images) > 0 {
		fmt.Fprintln(w, "IMAGE\tCREATED\tSIZE\tACTION\tWHY")
	}
	for _, im := range res.Images {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", im.Ref, im.Created.UTC().Format("2006-01-02 15:04"), humanbytes.Format(im.Size), im.Action, dash(im.Reason))
	}
	w.Flush()
	if !volumes {
		return
	}
	if len(res.Volumes) == 0 {
		fmt.Fprintln(a.stdout, "volumes: no deleted user's volume")
		return
	}
	w = newTable(a.stdout, 2, 4, 2)
	fmt.Fprintln(w, "VOLUME\tACTION\tWHY")
	for _, v := range res.Volumes {
		fmt.Fprintf(w, "%s\t%s\t%s\n", v.Name, v.Action, dash(v.Reason))
	}
	w.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
