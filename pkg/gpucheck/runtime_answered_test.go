package gpucheck

import (
	"fmt"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
)

// TestRuntimeCheckEngineAnswered: an Engine that answered its info with
// an error (here a refused API version) runs: the check says it answered
// and does not send the admin to start dockerd. (Before, any error read
// "engine unreachable" with "is dockerd running (systemctl start
// docker)".)
func TestRuntimeCheckEngineAnswered(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("Error response from daemon: client version 9.99 is too new. Maximum supported API version is 1.41: %w", cerrdefs.ErrInvalidArgument)
	c := runtimeCheck(RuntimeInfo{}, err, true)
	if c.Status != Fail || c.Value == "engine unreachable" || !strings.Contains(c.Message, "9.99 is too new") {
		t.Errorf("check = %+v, want a failure that does not call the Engine unreachable", c)
	}
	if strings.Contains(c.Hint, "systemctl start docker") || !strings.Contains(c.Hint, "DOCKER_API_VERSION") {
		t.Errorf("hint = %q, want what to fix on a running Engine", c.Hint)
	}
}
