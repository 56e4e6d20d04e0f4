package monitoring

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/testenv"
)

// TestRulesWithPromtool checks the embedded rules with `promtool check
// rules`, lint errors (two rules with the same name and labels) fatal, and
// runs the unit tests in testdata/ with `promtool test rules`.
func TestRulesWithPromtool(t *testing.T) {
	t.Parallel()
	promtool := testenv.RequireTool(t, "promtool")
	if promtool == "" {
		return
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, RulesFile), Rules(), 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join("testdata", "fireops-backups_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fireops-backups_test.yml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"check", "rules", "--lint=all", "--lint-fatal", RulesFile}, {"test", "rules", "fireops-backups_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestAlertsAreTested: every alert of the rules file has a unit test.
func TestAlertsAreTested(t *testing.T) {
	t.Parallel()
	want := []string{"FireopsNoRecentSnapshot", "FireopsJobFailed", "FireopsVerifyFailed", "FireopsJobNeverRan",
		"FireopsDestinationMissing", "FireopsSnapshotPartFailed", "FireopsObjectSweepOverdue", "FireopsRestoreDrillOverdue"}
	if got := Alerts(); !slices.Equal(got, want) {
		t.Fatalf("alerts %v, want %v", got, want)
	}
	tests, err := os.ReadFile(filepath.Join("testdata", "fireops-backups_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range want {
		if !strings.Contains(string(tests), "alertname: "+a+"\n") {
			t.Errorf("alert %s has no promtool test", a)
		}
	}
	r := Rules()
	r[0] = 'X'
	if Rules()[0] == 'X' {
		t.Fatal("Rules returns the embedded slice itself")
	}
}
