package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/interrupt"
	"github.com/firetech/fireops/pkg/restore"
	"github.com/firetech/fireops/pkg/snapshot"
)

// TestInterruptedWording: a job stopped by SIGINT or SIGTERM says in one
// plain line what it left (exit 130, its own hint, the cancellation still
// in the chain); a job that was not stopped, or whose error says more
// than that it failed (a lock held, damage found), keeps its error.
func TestInterruptedWording(t *testing.T) {
	t.Parallel()
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	running := context.Background()
	cause := fmt.Errorf("snapshot 20260101T000000Z-abcdef: %w", &snapshot.PartError{ID: "files:big", Err: fmt.Errorf("files:big: read /srv/big.bin: %w", context.Canceled)})
	restored := &restore.Result{Parts: []restore.PlannedPart{{Part: "sqlite:hub", Status: restore.StatusRestored}, {Part: "files:stack", Status: restore.StatusFailed}, {Part: "volume:data", Status: restore.StatusNotAttempted}}}
	for _, tc := range []struct {
		name     string
		err      error // the job's error, through Interrupted when code is 130
		code     int
		msg      string
		hintPart string
	}{
		{"snapshot", SnapshotInterrupted(stopped, nil, cause), exitcode.Interrupted,
			"interrupted during part files:big: nothing was committed; the pieces already uploaded are kept for the next run to reuse (rotate removes those no snapshot uses after retention.incomplete_grace)",
			"run fireops snapshot again"},
		{"snapshot before any part", SnapshotInterrupted(stopped, nil, fmt.Errorf("open destination: %w", context.Canceled)), exitcode.Interrupted,
			"interrupted: nothing was committed; the pieces already uploaded are kept for the next run to reuse (rotate removes those no snapshot uses after retention.incomplete_grace)",
			"run fireops snapshot again"},
		{"snapshot signed before the stop", SnapshotInterrupted(stopped, &snapshot.Result{}, exitcode.New(exitcode.Failure, errors.New("state not saved"), "")), exitcode.Failure,
			"state not saved", ""},
		{"snapshot not stopped", SnapshotInterrupted(running, nil, cause), exitcode.Failure, cause.Error(), ""},
		{"snapshot waiting for the lock", SnapshotInterrupted(stopped, nil, exitcode.New(exitcode.LockBusy, errors.New("busy"), "wait")), exitcode.LockBusy, "busy", "wait"},
		{"restore of nothing yet", restore.Interrupted(stopped, nil, context.Canceled), exitcode.Interrupted,
			"interrupted: nothing was restored; the targets were left as they were (the live data was not replaced)", "run the same restore again"},
		{"restore half way", restore.Interrupted(stopped, restored, exitcode.New(exitcode.Failure, errors.New("2 of 3 parts NOT restored"), "fix the cause")), exitcode.Interrupted,
			"interrupted: restored sqlite:hub before the stop; files:stack, volume:data not restored (their targets were left as they were)",
			"restore the rest with --part files:stack --part volume:data"},
		{"restore found damage", restore.Interrupted(stopped, restored, exitcode.New(exitcode.CheckFailed, errors.New("damaged"), "")), exitcode.CheckFailed, "damaged", ""},
		{"verify", VerifyInterrupted(stopped, []VerifyResult{{OK: true}, {Error: "context canceled"}}, exitcode.New(exitcode.CheckFailed, errors.New("verify: 1 snapshot(s) failed: context canceled"), "could not be checked")),
			exitcode.Interrupted, "interrupted: nothing was changed; 1 snapshot check(s) passed before the stop, the others were not finished", "run fireops verify again"},
		{"verify found damage first", VerifyInterrupted(stopped, []VerifyResult{{damaged: true}, {Error: "context canceled"}}, exitcode.New(exitcode.CheckFailed, errors.New("verify: damaged"), "damaged")),
			exitcode.CheckFailed, "verify: damaged", "damaged"},
		{"rotate", RotateInterrupted(stopped, &RotateResult{Destinations: []RotateDest{{Removed: 2, IncompleteRemoved: 1}}}, context.Canceled), exitcode.Interrupted,
			"interrupted: 3 snapshot folder(s) and 0 unreferenced object(s) were removed before the stop; the next rotate does the rest (it also finishes a snapshot whose removal was cut short)",
			"run fireops rotate again"},
		{"rotate dry run", RotateInterrupted(stopped, &RotateResult{DryRun: true, Destinations: []RotateDest{{Removed: 2}}}, context.Canceled), exitcode.Interrupted,
			"interrupted: nothing was removed; the next rotate does the rest (it also finishes a snapshot whose removal was cut short)", "run fireops rotate again"},
		{"another command", fmt.Errorf("deploy: pull image x: %w", context.Canceled), exitcode.Interrupted, "interrupted: deploy: pull image x", "run the command again"},
	} {
		err := tc.err
		if exitcode.Code(err) == exitcode.Failure && tc.code == exitcode.Interrupted {
			err = interrupt.Wrap(err) // what cmd/fireops does after a signal
		}
		if got := exitcode.Code(err); got != tc.code {
			t.Errorf("%s: exit code %d, want %d (%v)", tc.name, got, tc.code, err)
		}
		if err.Error() != tc.msg {
			t.Errorf("%s:\n%s\nwant\n%s", tc.name, err, tc.msg)
		}
		if h := exitcode.Hint(err); !strings.Contains(h, tc.hintPart) || (tc.hintPart == "" && h != "") {
			t.Errorf("%s: hint %q, want %q", tc.name, h, tc.hintPart)
		}
		if tc.code == exitcode.Interrupted && !errors.Is(err, context.Canceled) && tc.name != "restore half way" && tc.name != "verify" {
			t.Errorf("%s: the cancellation is not in the chain", tc.name)
		}
	}
}

// TestPartNamedOnce: a part whose source fails is named once in the
// snapshot's error and its reason leaves out the id its source names
// itself with; a verify that passes logs no empty err attribute, one that
// fails names the part once.
func TestPartNamedOnce(t *testing.T) {
	t.Parallel()
	f, root := localFixture(t, "backups")
	ctx := context.Background()
	cfg := withBrokenSQLite(t, f, "not a database\n")
	res, err := Snapshot(ctx, &cfg, SnapshotOptions{})
	if err == nil || res == nil || len(res.FailedParts) != 1 {
		t.Fatalf("snapshot: %+v, %v", res, err)
	}
	if n := strings.Count(err.Error(), "sqlite:broken"); n != 1 {
		t.Errorf("the part is named %d times: %v", n, err)
	}
	if r := res.FailedParts[0].Reason; strings.Contains(r, "sqlite:broken") {
		t.Errorf("the reason names the part its row names: %q", r)
	}

	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if _, err := Verify(ctx, f.cfg, VerifyOptions{Level: LevelHashes, Log: log}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "msg=verified") || strings.Contains(logs.String(), "err=") {
		t.Errorf("a passing verify logs:\n%s", logs.String())
	}
	// Damage a piece of files:stack: the failing verify names the part
	// once, in its log line and its error.
	piece := piecePath(t, root, res, "files:stack", 0)
	data, err := os.ReadFile(piece)
	testutil.Must(t, err)
	data[len(data)-10] ^= 0xff
	testutil.Must(t, os.WriteFile(piece, data, 0o600))
	logs.Reset()
	_, err = Verify(ctx, f.cfg, VerifyOptions{Snapshot: res.ID, Level: LevelFull, Log: log})
	if exitcode.Code(err) != exitcode.CheckFailed || strings.Count(err.Error(), "files:stack") != 1 {
		t.Errorf("verify full of a damaged part: %v", err)
	}
	if !strings.Contains(logs.String(), "err=") {
		t.Errorf("a failing verify logs no err:\n%s", logs.String())
	}
}
