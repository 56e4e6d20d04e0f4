package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"

	"github.com/firetech/fireops/pkg/engine/enginetest"
)

// TestAnswered: an error the Engine answered with (an HTTP error status)
// counts as answered; a connection failure, an error wrapping
// ErrUnreachable, a broken connection, a context's end, a plain error and
// nil do not. Not parallel: it sets DOCKER_HOST.
func TestAnswered(t *testing.T) {
	enginetest.Refusing(t, "")
	cli, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	_, answerErr := cli.Info(context.Background())
	if answerErr == nil {
		t.Fatal("info from the refusing Engine succeeded")
	}

	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "no-docker.sock"))
	gone, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Close()
	_, connErr := gone.Ping(context.Background())
	if connErr == nil {
		t.Fatal("ping of a missing socket succeeded")
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"the Engine's own error", fmt.Errorf("info: %w", answerErr), true},
		{"connection failure", fmt.Errorf("info: %w", connErr), false},
		{"wraps ErrUnreachable", fmt.Errorf("volume: %w", ErrUnreachable), false},
		{"broken connection", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}, false},
		{"deadline", fmt.Errorf("info: %w", context.DeadlineExceeded), false},
		{"cancelled", fmt.Errorf("info: %w", context.Canceled), false},
		{"plain error", errors.New("connection refused"), false},
		{"nil", nil, false},
	} {
		if got := Answered(tc.err); got != tc.want {
			t.Errorf("%s: Answered(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
