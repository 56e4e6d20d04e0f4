package deploy

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/firetech/fireops/pkg/engine/enginetest"
)

// TestStatusEngineAnswersWithError: an Engine that answers, but with an
// error (here the API version it refuses, as with a DOCKER_API_VERSION
// newer than it), is not called down: the error says it answered and
// what it said, and the hint does not send the admin to start dockerd.
// (Before, every error of the Engine's info read "does not answer" with
// "start the Docker Engine: is dockerd running".) An Engine that cannot
// be reached keeps engine.Hint.
func TestStatusEngineAnswersWithError(t *testing.T) {
	cfg := loadConfig(t, "cpu")
	cfg.Stack.Dir = t.TempDir()
	srv := enginetest.Refusing(t, "9.99")
	_, _, err := Status(context.Background(), cfg)
	var pe *PreflightError
	if !errors.As(err, &pe) {
		t.Fatalf("Status: %v, want a preflight error", err)
	}
	if strings.Contains(pe.Msg, "does not answer") || !strings.Contains(pe.Msg, "answered") || !strings.Contains(pe.Msg, "9.99 is too new") {
		t.Errorf("error %q: want that the Engine answered, with its message", pe.Msg)
	}
	if strings.Contains(pe.Hint, "systemctl start docker") || strings.Contains(pe.Hint, "start the Docker Engine") || !strings.Contains(pe.Hint, "DOCKER_API_VERSION") {
		t.Errorf("hint %q: the Engine runs; want what to fix, not to start it", pe.Hint)
	}

	srv.Close()
	_, _, err = Status(context.Background(), cfg)
	if !errors.As(err, &pe) || !strings.Contains(pe.Msg, "does not answer") || pe.Hint != hintEngine {
		t.Errorf("Engine gone: %v (hint %q), want does not answer and %q", err, pe.Hint, hintEngine)
	}
}
