package backup

import (
	"os/exec"
	"testing"

	"github.com/firetech/fireops/pkg/leftover"
)

// killedTag returns the run tag of a process that was killed with
// SIGKILL: what a killed fireops run's staging names carry.
func killedTag(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tag, err := leftover.TagOf(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	return tag
}
