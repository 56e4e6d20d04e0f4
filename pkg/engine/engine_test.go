package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firetech/fireops/pkg/exitcode"
)

// TestError: a client's connection failure and an error wrapping
// ErrUnreachable get exit code 1 and Hint (with the caller's way out);
// any other error, and nil, come back unchanged. Not parallel: it sets
// DOCKER_HOST.
func TestError(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "no-docker.sock"))
	cli, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	_, connErr := cli.Ping(context.Background())
	if connErr == nil {
		t.Fatal("ping of a missing socket succeeded")
	}
	other := errors.New("no such volume")
	for _, tc := range []struct {
		name     string
		err      error
		alt      string
		wantHint string // "" when err must come back unchanged
	}{
		{name: "connection failure", err: fmt.Errorf("list volumes: %w", connErr), wantHint: Hint},
		{name: "wraps ErrUnreachable", err: fmt.Errorf("volume: list: %w at unix:///x", ErrUnreachable), alt: "; or set hub.db_path", wantHint: Hint + "; or set hub.db_path"},
		{name: "other error", err: other},
		{name: "nil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Error(tc.err, tc.alt)
			if tc.wantHint == "" {
				if got != tc.err {
					t.Fatalf("Error(%v) = %v, want it unchanged", tc.err, got)
				}
				return
			}
			if !errors.Is(got, tc.err) || exitcode.Code(got) != exitcode.Failure || exitcode.Hint(got) != tc.wantHint {
				t.Fatalf("Error(%v) = %v (exit %d, hint %q), want it wrapped, exit 1, hint %q", tc.err, got, exitcode.Code(got), exitcode.Hint(got), tc.wantHint)
			}
		})
	}
	if Unreachable(other) || Unreachable(nil) || !Unreachable(connErr) {
		t.Errorf("Unreachable: other %v, nil %v, connection failure %v", Unreachable(other), Unreachable(nil), Unreachable(connErr))
	}
}

// TestOpenBadHost: a DOCKER_HOST the client cannot parse fails at Open,
// naming DOCKER_HOST in the hint. Not parallel: it sets DOCKER_HOST.
func TestOpenBadHost(t *testing.T) {
	t.Setenv("DOCKER_HOST", "not a host")
	cli, err := Open()
	if err == nil {
		cli.Close()
		t.Fatal("Open with DOCKER_HOST=\"not a host\" succeeded")
	}
	if !strings.HasPrefix(err.Error(), "docker client: ") || !strings.Contains(exitcode.Hint(err), "DOCKER_HOST") {
		t.Fatalf("Open: %v (hint %q)", err, exitcode.Hint(err))
	}
}

// TestHint: the one hint holds the words every command's tests and
// documentation rely on (snapshot and restore: "is dockerd running";
// gpu check: how to start it and DOCKER_HOST).
func TestHint(t *testing.T) {
	for _, w := range []string{"is dockerd running", "systemctl start docker", "docker group", "DOCKER_HOST"} {
		if !strings.Contains(Hint, w) {
			t.Errorf("Hint %q lacks %q", Hint, w)
		}
	}
}
