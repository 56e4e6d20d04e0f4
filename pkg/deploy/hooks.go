package deploy

import (
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/monitoring"
)

// RuleFile is one Prometheus rule file that another package contributes to
// the stack: it is rendered as prometheus/rules/<Name>.
type RuleFile struct {
	// Name is the file name, ending in .yml (not stack.yml or gpu.yml).
	Name string
	// Data is the rule file (a Prometheus rule groups document).
	Data []byte
}

// ExtraRuleFiles returns the alert rule files the stack's Prometheus loads
// besides deploy's own (host, containers, MongoDB, hub, GPUs): the backup
// alerts of pkg/monitoring (no good snapshot in 26 h, a verify or job
// failed, ...), unit-tested there with promtool and rendered as they are.
// pkg/deploy's tests check them with `promtool check rules` together with
// the others.
func ExtraRuleFiles(cfg *config.Config) []RuleFile {
	_ = cfg // the backup rules take no setting from the config yet
	return []RuleFile{{Name: monitoring.RulesFile, Data: monitoring.Rules()}}
}
