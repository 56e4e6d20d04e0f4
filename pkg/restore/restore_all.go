package restore

// Whole-server restore: `fireops restore ID|latest --all` (issue 10).
//
// # Order and independence
//
// Parts are restored in the order of the kinds list (files, volume,
// sqlite, mongo): the config files first, then the Docker volumes, then
// the hub's SQLite database (which may live in a volume restored just
// before), then MongoDB. Every part is restored on its own through its
// kind's staging (design.md §7): a part that fails leaves its target as
// it was, is reported with its error, and the remaining parts are still
// restored. The result names every part with its status; the error, when
// any part failed, names the parts that were not restored.
//
// # Files parts in place
//
// A files part is put back over the paths its config source names (the
// config this host has now: put the config back first). Each must be a
// path the snapshot archived (the files source records them in the part's
// details, files.DetailRoots) or lie inside one: a folder above an
// archived path is in the archive too, but only with the folders down to
// that path, and putting it back would take everything else in it away.
// A part that records no paths (an older fireops wrote it) is refused:
// restore it with --to DIR. In one pass over
// the part's stream the whole archive is extracted into a private staging
// folder (mode 0700, ".fireops-staging-<run tag>-*"; the staging and undo
// folders a killed restore left next to the paths are removed first, see
// pkg/leftover) created in the parent folder of the part's first path, so
// that it is on the same filesystem as the targets in the usual layout
// and a move is a rename. Only when the whole
// stream has been read, its hash checked and its entry count matched
// (snapshot.RestorePart) does Commit move each configured path into
// place: an existing file or folder is first renamed to PATH.fireops-old
// (PATH.fireops-old-<UTC time> when that name is taken), then the staged
// copy is renamed to PATH. With force the old copy is removed instead of
// kept. Folders above a path that are missing are created and, at the
// end, given the owner, mode and modification time the archive has for
// them. A target on another filesystem than the staging folder is copied
// next to the target first (through a second staging folder there) and
// then renamed, so no target is ever half written. When moving one path
// fails, the paths already moved are put back as they were. Abort, and
// Commit when it is done, remove the staging folder; Abort also the
// folders it created above the paths.
//
// # The stack
//
// With StopStack the running containers of the Compose project (label
// com.docker.compose.project = stack.name; a stack deployed by `fireops
// deploy` carries the same label) are stopped through the Engine API after
// the plan is confirmed and before the first part, and started again when
// the restore ends, also when parts failed. Volumes used only by those
// containers are therefore not refused as "in use" by the plan. When a
// mongo part is restored, the containers of the Compose service MongoDB
// runs as (label com.docker.compose.service = "mongodb", the service of
// deploy's compose.yaml) are left running: the mongo part is restored
// through that server. The result names both lists.

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"filippo.io/age"
	"github.com/docker/docker/client"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/engine"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/partkind"
	"github.com/firetech/fireops/pkg/snapshot"
	"github.com/firetech/fireops/pkg/stack"
)

// Statuses of a part in a restore result.
const (
	StatusPlanned      = "planned"
	StatusRestored     = "restored"
	StatusFailed       = "failed"
	StatusRefused      = "refused"
	StatusNotAttempted = "not attempted"
	// StatusNotRestored: SIGINT or SIGTERM stopped the part's restore
	// (Error says "interrupted"); its target was left as it was.
	StatusNotRestored = "not restored"
)

// StackAction says what restore --all --stop-stack did to the stack.
type StackAction struct {
	// Project is the Compose project (stack.name).
	Project string `json:"project"`
	// Containers are the running containers of the project, stopped
	// before the restore.
	Containers []string `json:"containers"`
	// Running are the running containers of the project left running,
	// and RunningWhy says why (the MongoDB the mongo part is restored
	// through).
	Running    []string `json:"running,omitempty"`
	RunningWhy string   `json:"running_why,omitempty"`
	// Started are the containers started again after the restore.
	Started []string `json:"started,omitempty"`
	// Error says what failed while stopping or starting them.
	Error string `json:"error,omitempty"`
}

// restoreAll restores parts in place, every one on its own (see the top
// of this file), each from its own snapshot (restore_latest.go: with
// latest, the newest holding it). The manifests and indexes were checked
// by Restore; each part's objects are checked when it is restored
// (partSource).
func restoreAll(ctx context.Context, cfg *config.Config, o Options, sel []PartFrom, ids []age.Identity, note string) (*Result, error) {
	if o.To != "" {
		return nil, exitcode.Usagef("leave out --to: --all puts every part back where it was; restore single parts elsewhere with --part and --to",
			"--all and --to exclude each other")
	}
	if o.Force {
		o.Mongo.Drop = true // --all --force replaces everything
	}
	sel = slices.Clone(sel)
	sort.SliceStable(sel, func(i, j int) bool { return partkind.Rank(sel[i].part) < partkind.Rank(sel[j].part) })
	parts := make([]snapshot.Part, len(sel))
	for i, pf := range sel {
		parts[i] = pf.part
	}

	res := newRestoreResult(sel, note)
	var eng *client.Client
	var stopping []string
	if o.StopStack {
		var err error
		eng, err = engine.Open()
		if err != nil {
			return nil, err
		}
		defer eng.Close()
		keep := stack.KeepRunning(parts)
		names, _, running, err := stack.Containers(ctx, eng, cfg.Stack.Name, keep)
		if err != nil {
			return nil, exitcode.New(exitcode.Failure, err, engine.Hint+"; without a stack to stop, leave out --stop-stack")
		}
		res.Stack = &StackAction{Project: cfg.Stack.Name, Containers: names, Running: running}
		if len(running) > 0 {
			res.Stack.RunningWhy = "the mongo part is restored through MongoDB (compose service " + keep + ")"
		}
		stopping = names
	}

	planned := make([]plannedPart, len(sel))
	var refused []string
	for i, pf := range sel {
		r := o.request(pf.part, len(sel))
		r.InPlace, r.Stopping = true, stopping
		pp := PlannedPart{Part: r.Part.ID, Snapshot: pf.SnapshotID(), Size: r.Part.Size, Status: StatusPlanned}
		t, err := partkind.Plan(ctx, cfg, r)
		if err != nil {
			pp.Status, pp.Error = StatusRefused, partReason(r.Part.ID, err)
			refused = append(refused, r.Part.ID)
		}
		planned[i], pp.Target = plannedPart{from: pf, req: r, target: t}, t.String()
		res.Parts = append(res.Parts, pp)
	}
	if len(refused) > 0 {
		return res, exitcode.Usagef("fix what the plan names (--force replaces existing targets), or leave those parts out with --part",
			"%s --all: nothing was written: %d part(s) cannot be restored as planned: %s", restoreWhat(res), len(refused), strings.Join(refused, ", "))
	}
	if o.DryRun {
		return res, nil
	}
	if o.Confirm != nil {
		if err := o.Confirm(res); err != nil {
			return res, err
		}
	}

	if res.Stack != nil && len(res.Stack.Containers) > 0 {
		_, ids, _, err := stack.Containers(ctx, eng, cfg.Stack.Name, stack.KeepRunning(parts))
		if err == nil {
			err = stack.Stop(ctx, eng, ids, o.Log)
		}
		// Start again whatever was stopped, also when a part (or the stop
		// itself) failed.
		defer func() {
			started, serr := stack.Start(context.WithoutCancel(ctx), eng, res.Stack.Containers, o.Log)
			res.Stack.Started = started
			if serr != nil {
				res.Stack.Error = serr.Error()
			}
		}()
		if err != nil {
			res.Stack.Error = err.Error()
			for i := range res.Parts {
				res.Parts[i].Status = StatusNotAttempted
			}
			return res, exitcode.New(exitcode.Failure, fmt.Errorf("%s --all: stopping the stack %s: %w; nothing was restored", restoreWhat(res), cfg.Stack.Name, err),
				"stop the containers by hand (docker stop), then run the restore again")
		}
	}

	return res, restoreParts(ctx, cfg, res, planned, ids, o.Log, " --all", false)
}
