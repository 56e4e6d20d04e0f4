package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
)

// TestAnswered: an error the Engine answered with counts as answered; a
// connection failure, an error wrapping ErrUnreachable, a timeout or a
// broken connection (net.Error), a context's end and nil do not. Not
// parallel: it sets DOCKER_HOST.
func TestAnswered(t *testing.T) {
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
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"the Engine's own error", errors.New("Error response from daemon: client version 9.99 is too new"), true},
		{"connection failure", fmt.Errorf("info: %w", connErr), false},
		{"wraps ErrUnreachable", fmt.Errorf("volume: %w", ErrUnreachable), false},
		{"broken connection", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}, false},
		{"deadline", fmt.Errorf("info: %w", context.DeadlineExceeded), false},
		{"cancelled", fmt.Errorf("info: %w", context.Canceled), false},
		{"nil", nil, false},
	} {
		if got := Answered(tc.err); got != tc.want {
			t.Errorf("%s: Answered(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
