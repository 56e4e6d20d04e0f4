// Package engine opens the Docker Engine API client that every fireops
// package uses, configured like the docker CLI, and names the one error
// and the one hint for an Engine that cannot be reached.
package engine

import (
	"errors"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"github.com/firetech/fireops/pkg/exitcode"
)

// Hint is what to do when the Docker Engine cannot be reached: the hint of
// every error that wraps ErrUnreachable.
const Hint = "is dockerd running (`systemctl start docker`), and may this user use it (root or the docker group)? DOCKER_HOST names another Engine"

// ErrUnreachable is wrapped by errors that mean the Docker Engine could
// not be reached at all.
var ErrUnreachable = errors.New("cannot reach the Docker Engine")

// Open returns a client for the Engine the environment names (DOCKER_HOST,
// DOCKER_API_VERSION, DOCKER_CERT_PATH, DOCKER_TLS_VERIFY; by default the
// local socket), negotiating the API version on first use. Nothing is sent
// before the first call. Close it when done.
func Open() (*client.Client, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, exitcode.New(exitcode.Failure, fmt.Errorf("docker client: %w", err), "check DOCKER_HOST")
	}
	return cli, nil
}

// Unreachable reports whether err is the client's failure to connect to
// the Engine at all, as opposed to an Engine that answered with an error.
func Unreachable(err error) bool {
	return client.IsErrConnectionFailed(err)
}

// AnsweredHint is what to do when the Engine answered a request with an
// error (Answered): it runs, so starting it is not the fix.
const AnsweredHint = "the Docker Engine runs but refused the request: fix what its error names (`docker info` shows the same; DOCKER_API_VERSION, when set, must be a version the Engine supports)"

// answeredKinds are the kinds the client gives an error the Engine
// answered with (its HTTP status, as containerd's errdefs).
var answeredKinds = []error{
	cerrdefs.ErrUnknown, cerrdefs.ErrInvalidArgument, cerrdefs.ErrNotFound, cerrdefs.ErrAlreadyExists,
	cerrdefs.ErrPermissionDenied, cerrdefs.ErrResourceExhausted, cerrdefs.ErrFailedPrecondition,
	cerrdefs.ErrConflict, cerrdefs.ErrNotModified, cerrdefs.ErrAborted, cerrdefs.ErrOutOfRange,
	cerrdefs.ErrNotImplemented, cerrdefs.ErrInternal, cerrdefs.ErrUnavailable, cerrdefs.ErrDataLoss,
	cerrdefs.ErrUnauthenticated,
}

// Answered reports whether err is an error the Engine answered with (a
// refused API version, a failure it reports: an HTTP error status), as
// opposed to one that could not be reached (Unreachable), did not answer
// in time or broke the connection off.
func Answered(err error) bool {
	if err == nil || Unreachable(err) || errors.Is(err, ErrUnreachable) {
		return false
	}
	for _, k := range answeredKinds {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

// Error returns err with exit code 1 and Hint when it is a connection
// failure (Unreachable) or wraps ErrUnreachable, and err unchanged
// otherwise. alt, when not "", is a caller's other way out appended to
// the hint ("; or set hub.db_path").
func Error(err error, alt string) error {
	if !Unreachable(err) && !errors.Is(err, ErrUnreachable) {
		return err
	}
	return exitcode.New(exitcode.Failure, err, Hint+alt)
}
