// Package monitoring holds the Prometheus alerting rules for fireops's
// backups, embedded so that the deploy step renders them into the stack's
// Prometheus configuration as they were unit-tested (promtool test rules,
// in this package's tests). It only provides the file; it never talks to
// Prometheus.
package monitoring

import (
	_ "embed"
	"slices"
	"strings"
)

// RulesFile is the file name the rules are meant to be written as, next to
// prometheus.yml (rule_files: [fireops-backups.yml]).
const RulesFile = "fireops-backups.yml"

//go:embed rules/fireops-backups.yml
var rules []byte

// Rules returns the alerting rules file for fireops backups (a copy):
// no successful full snapshot for 26 h, a verify failed, a job's last run
// failed, a job never ran, a destination missing from the last snapshot,
// a part the last snapshot could not back up, no object sweep for 3 days,
// and no restore drill for 8 days. The snapshot alerts read the full runs'
// metrics only: a `snapshot --only` run publishes its own
// (fireops_snapshot_only_*) and never ends them.
func Rules() []byte { return append([]byte(nil), rules...) }

// Alerts returns the names of the alerts in Rules, in file order, without
// repeats.
func Alerts() []string {
	var out []string
	for _, line := range strings.Split(string(rules), "\n") {
		name, ok := strings.CutPrefix(strings.TrimSpace(line), "- alert: ")
		if ok && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}
