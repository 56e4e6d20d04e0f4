package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/firetech/fireops/internal/testenv"
)

// validatorConfigs are rendered and checked with the real tools.
var validatorConfigs = []string{"gpu", "cpu", "nvidia-smi"}

// renderToDir renders a test config into its stack dir with secrets.
func renderToDir(t *testing.T, name string) *Stack {
	t.Helper()
	st := render(t, name, RenderOptions{})
	if _, err := st.Write(); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureSecrets(st.Dir, st.Secrets); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestRenderValidates runs the real validators on every render:
// docker compose config, promtool check config/rules, amtool check-config
// (Debian's) and tools/amcheck (the stack's Alertmanager release),
// Python's compile() on jupyterhub_config.py, and every dashboard as JSON
// with its PromQL parsed by Prometheus' own parser.
func TestRenderValidates(t *testing.T) {
	t.Parallel()
	for _, name := range validatorConfigs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := renderToDir(t, name)
			t.Run("compose", func(t *testing.T) {
				c, err := FindCompose(context.Background(), nil)
				if err != nil {
					testenv.Unavailable(t, "Docker Compose plugin", err)
				}
				if err := c.Config(context.Background(), st.Dir); err != nil {
					t.Fatal(err)
				}
			})
			t.Run("promtool", func(t *testing.T) {
				promtool := testenv.RequireTool(t, "promtool")
				// --syntax-only: the hub token file exists only in the
				// container; the rules are checked next.
				run(t, st.Dir, promtool, "check", "config", "--syntax-only", "prometheus/prometheus.yml")
				rules, _ := filepath.Glob(filepath.Join(st.Dir, "prometheus", "rules", "*.yml"))
				if len(rules) == 0 {
					t.Fatal("no rule files rendered")
				}
				// Lint errors (two rules with the same name and labels) fail.
				run(t, st.Dir, promtool, append([]string{"check", "rules", "--lint=all", "--lint-fatal"}, rules...)...)
			})
			t.Run("amtool", func(t *testing.T) {
				amtool := testenv.RequireTool(t, "amtool")
				run(t, st.Dir, amtool, "check-config", debianAlertmanagerConfig(t, st))
			})
			t.Run("amcheck", func(t *testing.T) {
				run(t, st.Dir, amcheck(t), "alertmanager/alertmanager.yml")
			})
			t.Run("python", func(t *testing.T) {
				py := debianPython(t)
				run(t, st.Dir, py, "-c", `import sys; src = open(sys.argv[1]).read(); compile(src, sys.argv[1], "exec")`, "hub/jupyterhub_config.py")
			})
			t.Run("dashboards", func(t *testing.T) {
				exprs := dashboardExprs(t, st)
				checkPromQL(t, exprs)
			})
		})
	}
}

// dashboardExprs parses every dashboard as JSON and returns the PromQL of
// its Prometheus targets, Grafana's $__ variables replaced.
func dashboardExprs(t *testing.T, st *Stack) []string {
	t.Helper()
	var exprs []string
	n := 0
	for _, f := range st.Files {
		if !strings.HasPrefix(f.Path, "grafana/dashboards/") {
			continue
		}
		n++
		var db struct {
			UID    string `json:"uid"`
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Datasource struct {
						Type string `json:"type"`
					} `json:"datasource"`
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(f.Data, &db); err != nil {
			t.Fatalf("%s: not JSON: %v", f.Path, err)
		}
		if db.UID == "" || len(db.Panels) == 0 {
			t.Errorf("%s: no uid or no panels", f.Path)
		}
		for _, p := range db.Panels {
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", f.Path, p.Title)
			}
			for _, tg := range p.Targets {
				if tg.Datasource.Type == "prometheus" {
					r := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")
					exprs = append(exprs, r.Replace(tg.Expr))
				}
			}
		}
	}
	want := 5
	if st.cfg.Stack.GPUs {
		want = 6
	}
	if n != want {
		t.Errorf("%d dashboards, want %d (system, users, user resources, MongoDB, backups, GPUs with stack.gpus)", n, want)
	}
	return exprs
}

var (
	promqlOnce sync.Once
	promqlBin  string
	promqlErr  error
)

// checkPromQL parses the expressions with tools/promqlcheck (Prometheus'
// promql/parser, in its own module), built once per test run.
func checkPromQL(t *testing.T, exprs []string) {
	t.Helper()
	promqlOnce.Do(func() {
		root, err := testenv.RepoRoot()
		if err != nil {
			promqlErr = err
			return
		}
		goBin, err := exec.LookPath("go")
		if err != nil {
			promqlErr = err
			return
		}
		dir, err := os.MkdirTemp("", "promqlcheck-")
		if err != nil {
			promqlErr = err
			return
		}
		promqlBin = filepath.Join(dir, "promqlcheck")
		cmd := exec.Command(goBin, "build", "-o", promqlBin, ".")
		cmd.Dir = filepath.Join(root, "tools", "promqlcheck")
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			promqlErr = &buildError{err: err, out: string(out)}
		}
	})
	if promqlErr != nil {
		testenv.Unavailable(t, "tools/promqlcheck (Prometheus' PromQL parser)", promqlErr)
	}
	if len(exprs) == 0 {
		t.Fatal("no PromQL to check")
	}
	in, _ := json.Marshal(exprs)
	cmd := exec.Command(promqlBin)
	cmd.Stdin = bytes.NewReader(in)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("PromQL that Prometheus' parser refuses:\n%s", out)
	}
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// ruleTests maps the rendered rule files to their promtool unit tests.
var ruleTests = map[string]map[string]string{
	"gpu":        {"stack.yml": "stack.test.yml", "gpu.yml": "gpu-dcgm.test.yml"},
	"cpu":        {"stack.yml": "stack.test.yml"},
	"nvidia-smi": {"stack.yml": "stack.test.yml", "gpu.yml": "gpu-nvidia-smi.test.yml"},
}

// TestRulesUnit runs `promtool test rules` on the rendered rules with the
// tests in testdata/rules, and checks that every alert has a test in which
// it fires.
func TestRulesUnit(t *testing.T) {
	t.Parallel()
	for name, tests := range ruleTests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			promtool := testenv.RequireTool(t, "promtool")
			cfg := loadConfig(t, name)
			if name == "cpu" {
				// The unit tests assume the default thresholds.
				cfg.Stack.Alerts.DiskFreePercent = 10
			}
			cfg.Stack.Dir = t.TempDir()
			st, err := Render(cfg, RenderOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.WriteTo(st.Dir); err != nil {
				t.Fatal(err)
			}
			pdir := filepath.Join(st.Dir, "prometheus")
			var testFiles []string
			fired := map[string]bool{}
			for _, tf := range tests {
				data, err := os.ReadFile(filepath.Join("testdata", "rules", tf))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(pdir, tf), data, 0o644); err != nil {
					t.Fatal(err)
				}
				testFiles = append(testFiles, tf)
				for _, a := range firingInTests(t, data) {
					fired[a] = true
				}
			}
			run(t, pdir, promtool, append([]string{"test", "rules"}, testFiles...)...)

			var alerts []string
			for rf := range tests {
				alerts = append(alerts, alertNames(t, st.File("prometheus/rules/"+rf))...)
			}
			// ExtraRuleFiles (pkg/monitoring's backup rules) have their
			// promtool unit tests in their own package.
			sort.Strings(alerts)
			for _, a := range alerts {
				if !fired[a] {
					t.Errorf("alert %s has no unit test in which it fires", a)
				}
			}
			files, _ := filepath.Glob(filepath.Join(pdir, "rules", "*.yml"))
			if len(files) != len(tests)+len(ExtraRuleFiles(cfg)) {
				t.Errorf("rule files %v, unit tests for %v", files, tests)
			}
		})
	}
}

// alertNames returns the alert names of a Prometheus rule file.
func alertNames(t *testing.T, data []byte) []string {
	t.Helper()
	var rf struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &rf); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r.Alert)
			}
		}
	}
	return out
}

// firingInTests returns the alerts a promtool test file expects to fire.
func firingInTests(t *testing.T, data []byte) []string {
	t.Helper()
	var tf struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(data, &tf); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tc := range tf.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 && !slices.Contains(out, a.Alertname) {
				out = append(out, a.Alertname)
			}
		}
	}
	return out
}

// TestAlertRoutes checks Alertmanager's routing with amtool: every alert
// goes to the configured receiver, or to ui-only when none is configured.
func TestAlertRoutes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ config, receiver string }{{"cpu", "operators"}, {"gpu", "ui-only"}} {
		t.Run(c.config, func(t *testing.T) {
			t.Parallel()
			amtool := testenv.RequireTool(t, "amtool")
			st := renderToDir(t, c.config)
			// Debian's amtool (0.25) predates bot_token_file: its copy
			// of the config has the Telegram token inline.
			cfg := "--config.file=" + debianAlertmanagerConfig(t, st)
			for _, labels := range [][]string{
				{"alertname=HostDown", "severity=critical", "instance=gpu01"},
				{"alertname=DiskSpaceLow", "severity=warning", "mountpoint=/"},
				{"alertname=FireopsNoRecentSnapshot", "severity=critical"},
			} {
				args := append([]string{"config", "routes", "test", cfg, "--verify.receivers=" + c.receiver}, labels...)
				// The last line is the receiver; amtool warns before it.
				out := lastLine(run(t, st.Dir, amtool, args...))
				if out != c.receiver {
					t.Errorf("%v routed to %q, want %s", labels, out, c.receiver)
				}
			}
			// A receiver that does not exist must fail the check: the
			// test above is not vacuous.
			cmd := exec.Command(amtool, "config", "routes", "test", cfg, "--verify.receivers=nobody", "alertname=HostDown")
			cmd.Dir = st.Dir
			if err := cmd.Run(); err == nil {
				t.Error("amtool accepted a receiver that does not exist")
			}
		})
	}
}
