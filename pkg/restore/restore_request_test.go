package restore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/partkind"
	"github.com/firetech/fireops/pkg/snapshot"
	"github.com/firetech/fireops/pkg/source/mongo"
)

// TestStopsRestore: which part errors end a restore of several parts is
// decided by the errors' kinds (sentinels), not by their exit codes, and
// marking an error refused keeps its message, exit code and hint.
func TestStopsRestore(t *testing.T) {
	usage := exitcode.Usagef("fix it", "bad option")
	for _, c := range []struct {
		name string
		err  error
		stop bool
		code int
	}{
		{"wrong identity", fmt.Errorf("part x: %w", snapshot.ErrWrongIdentity), true, exitcode.Failure},
		{"refused", partkind.Refused(usage), true, exitcode.Usage},
		{"refused, wrapped", fmt.Errorf("part x: %w", partkind.Refused(usage)), true, exitcode.Usage},
		{"mongo collection not empty", exitcode.New(exitcode.Usage, fmt.Errorf("mongo: %w: db.c", mongo.ErrNotEmpty), ""), true, exitcode.Usage},
		{"mongo documents differ", exitcode.New(exitcode.CheckFailed, fmt.Errorf("%w: db.c", mongo.ErrIntegrity), ""), true, exitcode.CheckFailed},
		{"damaged piece", fmt.Errorf("part x: %w: sha256 differs", snapshot.ErrIntegrity), false, exitcode.Failure},
		{"engine down", exitcode.New(exitcode.Failure, errors.New("cannot reach the Docker Engine"), "start dockerd"), false, exitcode.Failure},
		{"a usage code alone", usage, false, exitcode.Usage},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := stopsRestore(c.err); got != c.stop {
				t.Errorf("stopsRestore(%v) = %v, want %v", c.err, got, c.stop)
			}
			if got := exitcode.Code(c.err); got != c.code {
				t.Errorf("exit code %d, want %d", got, c.code)
			}
		})
	}
	if r := partkind.Refused(usage); r.Error() != usage.Error() || exitcode.Hint(r) != "fix it" {
		t.Errorf("restoreRefused changed the error: %q (hint %q)", r, exitcode.Hint(r))
	}
	if partkind.Refused(nil) != nil {
		t.Error("restoreRefused(nil) is not nil")
	}
}

// TestRestorePartsCancelled: restore and restore --all share one loop;
// when the run is cancelled before a part, restore stops with the
// cancellation, restore --all names every part not restored.
func TestRestorePartsCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, stop := range []bool{true, false} {
		res := &Result{Destination: "local", Snapshot: "20240102T030405Z-ab12"}
		var parts []plannedPart
		for _, id := range []string{"files:stack", "sqlite:hub"} {
			kind, name, _ := strings.Cut(id, ":")
			p := snapshot.Part{ID: id, Kind: kind, Name: name}
			parts = append(parts, plannedPart{req: partkind.Request{Part: p}})
			res.Parts = append(res.Parts, PlannedPart{Part: id, Snapshot: res.Snapshot, Status: StatusPlanned})
		}
		err := restoreParts(ctx, nil, res, parts, nil, nil, " --all", stop)
		for _, p := range res.Parts {
			if p.Status != StatusNotAttempted {
				t.Errorf("stop %v: %s is %s, want %s", stop, p.Part, p.Status, StatusNotAttempted)
			}
		}
		switch {
		case stop && !errors.Is(err, context.Canceled):
			t.Errorf("stop: err %v, want the cancellation", err)
		case !stop && (exitcode.Code(err) != exitcode.Failure || !strings.Contains(err.Error(), "restore 20240102T030405Z-ab12 --all: 2 of 2 parts NOT restored: files:stack, sqlite:hub")):
			t.Errorf("go on: err %v (code %d)", err, exitcode.Code(err))
		}
	}
}
