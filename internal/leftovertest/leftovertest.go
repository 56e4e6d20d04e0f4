// Package leftovertest gives tests the run tag of a fireops run that was
// killed, to name what such a run leaves behind (a staging folder, a
// private copy) that the next run must remove.
//
// It is for tests only: nothing outside _test.go files imports it.
package leftovertest

import (
	"os/exec"
	"testing"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/leftover"
)

// KilledTag returns the run tag of a process that was killed with
// SIGKILL: what a killed fireops run's staging and temp names carry.
func KilledTag(t testing.TB) string {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	testutil.Must(t, cmd.Start())
	tag, err := leftover.TagOf(cmd.Process.Pid)
	testutil.Must(t, err)
	testutil.Must(t, cmd.Process.Kill())
	cmd.Wait()
	return tag
}
