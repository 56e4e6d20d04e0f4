package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/deploy"
	"github.com/firetech/fireops/pkg/lock"
)

// TestLiveMonitoring runs the monitoring `fireops deploy` renders with
// the real Debian prometheus, prometheus-alertmanager and
// prometheus-node-exporter on loopback, fed by real `fireops` runs with
// the metrics settings `fireops init` writes (issue 15):
//
//   - good: after a successful snapshot no backup alert is pending or
//     firing, and none after rotate and verify either;
//   - destination gone: a failed snapshot's alerts reach the webhook;
//   - only after failed: a failed full snapshot followed by a good
//     `snapshot --only` one: the failure's alerts still reach the webhook
//     (and Telegram), and are never resolved;
//   - stale: no snapshot for longer than the (test) threshold alerts.
//
// The rendered files are used as they are but for what a test on loopback
// needs: the containers' addresses point at the test's processes, the
// host's textfile folder at a temp folder, scrape and evaluation every
// second, the scrape jobs of services that do not run here left out,
// Alertmanager's grouping waits shortened, the Telegram receiver pointed at
// the test's server with the token inline (Debian's Alertmanager 0.25
// predates bot_token_file), and, where a case says so, the rules' "for"
// and staleness thresholds shortened. The waits poll with generous
// deadlines; nothing asserts on speed.
func TestLiveMonitoring(t *testing.T) {
	t.Parallel()
	bins := liveBins{
		prometheus:   testenv.RequireTool(t, "prometheus"),
		alertmanager: testenv.RequireTool(t, "prometheus-alertmanager"),
		nodeExporter: testenv.RequireTool(t, "prometheus-node-exporter"),
	}
	if bins.prometheus == "" || bins.alertmanager == "" || bins.nodeExporter == "" {
		return
	}

	t.Run("good", func(t *testing.T) {
		t.Parallel()
		m := startLive(t, bins, liveRules{})
		before := time.Now()
		runFireops(t, m.cfg, "snapshot", "-q")
		m.waitMetric(t, `fireops_snapshot_last_run_success`, "1")
		m.waitEvaluated(t, time.Now())
		// No snapshot alert at all, pending or firing.
		if a := m.alerts(t, func(a liveAlert) bool {
			return strings.HasPrefix(a.Labels["alertname"], "Fireops") && !slices.Contains([]string{"rotate", "verify"}, a.Labels["task"]) &&
				!slices.Contains([]string{"FireopsRestoreDrillOverdue", "FireopsObjectSweepOverdue"}, a.Labels["alertname"])
		}); len(a) != 0 {
			t.Fatalf("after a good snapshot, backup alerts: %v", a)
		}
		// The timers' other jobs: rotate, the weekly verify, the drill.
		runFireops(t, m.cfg, "rotate")
		runFireops(t, m.cfg, "verify", "latest", "--level", "hashes")
		runFireops(t, m.cfg, "verify", "latest", "--level", "restore-test")
		m.waitMetric(t, `fireops_restore_test_success_timestamp_seconds > 0`, "")
		m.waitMetric(t, `fireops_rotate_last_sweep_timestamp_seconds{destination="local"} > 0`, "")
		m.waitEvaluated(t, time.Now())
		if a := m.alerts(t, func(a liveAlert) bool { return strings.HasPrefix(a.Labels["alertname"], "Fireops") }); len(a) != 0 {
			t.Fatalf("after snapshot, rotate and verify, backup alerts: %v", a)
		}
		// node-exporter is scraped, and the daemon's default loopback
		// address got no scrape job (it would be down for ever).
		m.waitMetric(t, `up{job="node"}`, "1")
		if n := m.notifications(before, "Fireops"); len(n) != 0 {
			t.Fatalf("backup notifications after good runs: %v", n)
		}
	})

	t.Run("destination gone", func(t *testing.T) {
		t.Parallel()
		m := startLive(t, bins, liveRules{shortFor: true})
		// The destination's folder is gone, a file in its place: nothing
		// can be written there.
		if err := os.Remove(m.dest); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(m.dest, []byte("not a folder\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := fireopsCmd(t, m.cfg, "snapshot", "-q").CombinedOutput()
		if exitCode(err) != 1 {
			t.Fatalf("snapshot to a destination that is gone: %v\n%s", err, out)
		}
		m.waitNotified(t, time.Time{}, "firing", map[string]string{"alertname": "FireopsJobFailed", "task": "snapshot"})
		m.waitNotified(t, time.Time{}, "firing", map[string]string{"alertname": "FireopsDestinationMissing", "destination": "local"})
	})

	t.Run("only after failed", func(t *testing.T) {
		t.Parallel()
		m := startLive(t, bins, liveRules{shortFor: true, brokenPart: true})
		out, err := fireopsCmd(t, m.cfg, "snapshot", "-q").CombinedOutput()
		if exitCode(err) != 1 {
			t.Fatalf("full snapshot with a broken part: %v\n%s", err, out)
		}
		runFireops(t, m.cfg, "snapshot", "-q", "--only", "files:stack")
		// Prometheus has the --only run's result, and evaluated the rules
		// with it: the full run's failure still fires and is notified.
		m.waitMetric(t, `fireops_snapshot_only_last_run_success`, "1")
		m.waitEvaluated(t, time.Now())
		after := time.Now()
		failed := map[string]string{"alertname": "FireopsJobFailed", "task": "snapshot"}
		part := map[string]string{"alertname": "FireopsSnapshotPartFailed", "part": "sqlite:broken"}
		m.waitNotified(t, after, "firing", failed)
		m.waitNotified(t, after, "firing", part)
		for _, labels := range []map[string]string{failed, part} {
			if n := m.matching("resolved", labels); len(n) != 0 {
				t.Errorf("%v resolved by an --only run: %v", labels, n)
			}
		}
		// The same alerts in Telegram, in Russian.
		var text string
		waitFor(t, "the Telegram message", func() bool {
			i := slices.IndexFunc(m.telegramTexts(), func(s string) bool {
				return strings.Contains(s, "🔥 <b>Тревога: 1</b> — сервер <code>live01</code>") && strings.Contains(s, "<b>FireopsJobFailed</b>")
			})
			if i >= 0 {
				text = m.telegramTexts()[i]
			}
			return i >= 0
		})
		t.Logf("Telegram message:\n%s", text)
	})

	t.Run("stale", func(t *testing.T) {
		t.Parallel()
		m := startLive(t, bins, liveRules{shortFor: true, staleSeconds: 20})
		runFireops(t, m.cfg, "snapshot", "-q")
		m.waitMetric(t, `fireops_snapshot_last_run_success`, "1")
		m.waitNotified(t, time.Time{}, "firing", map[string]string{"alertname": "FireopsNoRecentSnapshot"})
		m.waitNotified(t, time.Time{}, "firing", map[string]string{"alertname": "FireopsJobNeverRan", "task": "snapshot"})
	})
}

type liveBins struct{ prometheus, alertmanager, nodeExporter string }

// liveRules says how the test changes the rendered backup rules.
type liveRules struct {
	// shortFor: every "for: 5m" becomes "for: 1s", so that a firing
	// condition notifies in seconds.
	shortFor bool
	// staleSeconds, when set, replaces the 26 h of "no snapshot for 26 h"
	// (snapshot and rotate).
	staleSeconds int
	// brokenPart adds a source whose part fails (a SQLite file that is
	// not a database).
	brokenPart bool
}

// liveMonitoring is one running monitoring stack and the fireops config
// that feeds it.
type liveMonitoring struct {
	cfg   string // the fireops config
	dest  string // the local destination's folder
	prom  string // Prometheus' base URL
	token string // the Telegram bot token

	mu       sync.Mutex
	notes    []liveNote
	telegram []string
}

// liveNote is one webhook notification (one alert of it) and when it came.
type liveNote struct {
	at     time.Time
	status string
	labels map[string]string
}

func (n liveNote) String() string {
	return fmt.Sprintf("%s %v at %s", n.status, n.labels, n.at.Format(time.TimeOnly))
}

type liveAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

// startLive writes a fireops config from `fireops init`'s (the stack's
// own sources left out, the folders in a temp dir, the metrics settings as
// init writes them but for the folder), renders the stack from it and
// starts node-exporter, Alertmanager and Prometheus on loopback.
func startLive(t *testing.T, bins liveBins, rules liveRules) *liveMonitoring {
	t.Helper()
	dir := t.TempDir()
	m := &liveMonitoring{cfg: filepath.Join(dir, "etc", "fireops.yaml"), dest: filepath.Join(dir, "backups"), token: "123456789:AAF-live-test-token"}

	hook := httptest.NewServer(http.HandlerFunc(m.serveHook))
	t.Cleanup(hook.Close)

	runFireops(t, m.cfg, "init", "--dir", filepath.Join(dir, "etc"), "--host", "live01")
	raw, err := os.ReadFile(m.cfg)
	if err != nil {
		t.Fatal(err)
	}
	textfiles := filepath.Join(dir, "textfile")
	stack := filepath.Join(dir, "stack")
	tokenFile := filepath.Join(dir, "etc", "telegram-token")
	mustWriteFile(t, tokenFile, m.token+"\n", 0o600)
	mustWriteFile(t, filepath.Join(stack, "compose.yaml"), "name: firetech\n", 0o644)
	mustWriteFile(t, filepath.Join(dir, "broken.sqlite"), "this is not a database\n", 0o644)
	for _, d := range []string{textfiles, m.dest} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sources := "sources:\n"
	if rules.brokenPart {
		sources += fmt.Sprintf("  sqlite: [{name: broken, path: %s}]\n", filepath.Join(dir, "broken.sqlite"))
	}
	y := initStackSources.ReplaceAllString(string(raw), "")
	for _, r := range [][2]string{
		{"metrics:\n  textfile_dir: /var/lib/prometheus/node-exporter\n", "metrics:\n  textfile_dir: " + textfiles + "\n"},
		{"    remote: /var/backups/fireops\n", "    remote: " + m.dest + "\n"},
		{"# state_dir: /var/lib/fireops", "state_dir: " + filepath.Join(dir, "state")},
		{"\nsources:\n", "\n" + sources},
		{"\nstack:\n  dir: /opt/firetech\n", fmt.Sprintf("\nstack:\n  dir: /opt/firetech\n  alerts:\n    webhook_url: %q\n    telegram: {bot_token_file: %s, chat_id: -100123}\n", hook.URL+"/hook", tokenFile)},
	} {
		y = testutil.Replace(t, y, r[0], r[1])
	}
	y = strings.ReplaceAll(y, "/opt/firetech", stack)
	if strings.Contains(y, "\nmetrics:\n  listen") {
		t.Fatal("init's config sets metrics.listen: the default is what this test is about")
	}
	mustWriteFile(t, m.cfg, y, 0o600)

	cfg, err := config.Load(m.cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := deploy.Render(cfg, deploy.RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkTextfileMount(t, st, textfiles)
	// node-exporter's basic auth: its web config and the password of
	// Prometheus' node job, as deploy generates them.
	var neSecrets []deploy.SecretSpec
	for _, s := range st.Secrets {
		if strings.HasPrefix(s.Name, "node-exporter-") {
			neSecrets = append(neSecrets, s)
		}
	}
	if _, err := deploy.EnsureSecrets(stack, neSecrets); err != nil || len(neSecrets) != 2 {
		t.Fatalf("node-exporter's secrets %v: %v", neSecrets, err)
	}
	secrets := filepath.Join(stack, deploy.SecretsDir)
	nePassword, err := os.ReadFile(filepath.Join(secrets, "node-exporter-password"))
	if err != nil {
		t.Fatal(err)
	}

	nePort, amPort, promPort := freePort(t), freePort(t), freePort(t)
	// node-exporter, as the stack runs it, on the textfile folder, with
	// its web config.
	startProcess(t, dir, "node-exporter", bins.nodeExporter, "--web.listen-address=127.0.0.1:"+nePort,
		"--web.config.file="+filepath.Join(secrets, "node-exporter-web.yml"),
		"--collector.disable-defaults", "--collector.textfile", "--collector.textfile.directory="+textfiles)

	amDir := filepath.Join(dir, "alertmanager")
	mustWriteFile(t, filepath.Join(amDir, "notifications.tmpl"), string(st.File(deploy.NotificationTemplates)), 0o644)
	mustWriteFile(t, filepath.Join(amDir, "alertmanager.yml"), string(liveAlertmanager(t, st, m.token, hook.URL+"/telegram")), 0o600)
	startProcess(t, dir, "alertmanager", bins.alertmanager, "--config.file="+filepath.Join(amDir, "alertmanager.yml"),
		"--storage.path="+filepath.Join(amDir, "data"), "--web.listen-address=127.0.0.1:"+amPort, "--cluster.listen-address=")

	promDir := filepath.Join(dir, "prometheus")
	for _, f := range st.Files {
		if name, ok := strings.CutPrefix(f.Path, "prometheus/rules/"); ok {
			mustWriteFile(t, filepath.Join(promDir, "rules", name), string(liveRulesFile(t, name, f.Data, rules)), 0o644)
		}
	}
	mustWriteFile(t, filepath.Join(promDir, "prometheus.yml"), string(livePrometheus(t, st, "127.0.0.1:"+nePort, "127.0.0.1:"+amPort, filepath.Join(secrets, "node-exporter-password"))), 0o644)
	startProcess(t, dir, "prometheus", bins.prometheus, "--config.file="+filepath.Join(promDir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(promDir, "data"), "--web.listen-address=127.0.0.1:"+promPort)
	m.prom = "http://127.0.0.1:" + promPort

	neURL := (&url.URL{Scheme: "http", User: url.UserPassword(deploy.NodeExporterUser, strings.TrimSpace(string(nePassword))), Host: "127.0.0.1:" + nePort, Path: "/metrics"}).String()
	for _, u := range []string{neURL, "http://127.0.0.1:" + amPort + "/-/ready", m.prom + "/-/ready"} {
		waitFor(t, u, func() bool {
			resp, err := http.Get(u)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}
	return m
}

// checkTextfileMount: the rendered node-exporter reads the folder the
// config's jobs write their textfiles into.
func checkTextfileMount(t *testing.T, st *deploy.Stack, textfiles string) {
	t.Helper()
	var compose struct {
		Services map[string]struct {
			Command []string `yaml:"command"`
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(st.File("compose.yaml"), &compose); err != nil {
		t.Fatal(err)
	}
	ne := compose.Services["node-exporter"]
	if !slices.Contains(ne.Volumes, textfiles+":/textfile:ro") || !slices.Contains(ne.Command, "--collector.textfile.directory=/textfile") {
		t.Fatalf("node-exporter does not read %s: volumes %v, command %v", textfiles, ne.Volumes, ne.Command)
	}
}

// livePrometheus is the rendered prometheus.yml on loopback: the node job
// (node-exporter, in the host's network) at the test's node-exporter with
// its password file at nodePassword, Alertmanager at the test's, every
// second; the other services' jobs left out, since they do not run here.
// The daemon's job must not be there at all: metrics.listen is init's
// default, on loopback.
func livePrometheus(t *testing.T, st *deploy.Stack, node, alertmanager, nodePassword string) []byte {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(st.File("prometheus/prometheus.yml"), &doc); err != nil {
		t.Fatal(err)
	}
	global := doc["global"].(map[string]any)
	global["scrape_interval"], global["evaluation_interval"] = "1s", "1s"
	doc["alerting"] = map[string]any{"alertmanagers": []any{map[string]any{"static_configs": []any{map[string]any{"targets": []string{alertmanager}}}}}}
	var jobs []any
	var names []string
	for _, j := range doc["scrape_configs"].([]any) {
		job := j.(map[string]any)
		names = append(names, job["job_name"].(string))
		if job["job_name"] != "node" {
			continue
		}
		sc := job["static_configs"].([]any)[0].(map[string]any)
		if got := fmt.Sprint(sc["targets"]); got != "[host.docker.internal:9100]" {
			t.Fatalf("the node job scrapes %s", got)
		}
		sc["targets"] = []string{node}
		auth, _ := job["basic_auth"].(map[string]any)
		if auth["password_file"] != deploy.NodeExporterPasswordPath {
			t.Fatalf("the node job's basic auth %v: want the password file %s", auth, deploy.NodeExporterPasswordPath)
		}
		auth["password_file"] = nodePassword
		jobs = append(jobs, job)
	}
	if slices.Contains(names, "fireops") || !slices.Contains(names, "node") {
		t.Fatalf("scrape jobs %v: want node, and no fireops job for a loopback metrics.listen", names)
	}
	doc["scrape_configs"] = jobs
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// liveAlertmanager is the rendered alertmanager.yml with short grouping
// waits (and a repeat every few seconds, so that a firing alert is sent
// again after each run the test makes), and the Telegram receiver at the
// test's server with the token inline.
func liveAlertmanager(t *testing.T, st *deploy.Stack, token, telegramURL string) []byte {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(st.File("alertmanager/alertmanager.yml"), &doc); err != nil {
		t.Fatal(err)
	}
	short := func(r map[string]any) {
		r["group_wait"], r["group_interval"], r["repeat_interval"] = "1s", "1s", "3s"
	}
	route := doc["route"].(map[string]any)
	short(route)
	for _, r := range route["routes"].([]any) {
		short(r.(map[string]any))
	}
	recv := doc["receivers"].([]any)
	if len(recv) != 1 {
		t.Fatalf("receivers %v", recv)
	}
	r := recv[0].(map[string]any)
	tg, _ := r["telegram_configs"].([]any)
	if len(tg) != 1 || r["webhook_configs"] == nil {
		t.Fatalf("receiver %v: want the webhook and Telegram", r)
	}
	c := tg[0].(map[string]any)
	if c["bot_token_file"] != "/run/secrets/alertmanager_telegram_token" {
		t.Fatalf("telegram_configs %v", c)
	}
	delete(c, "bot_token_file")
	c["bot_token"], c["api_url"] = token, telegramURL
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// liveRulesFile changes the rendered backup rules as rules says; each
// change must apply, so that a change in the rules cannot make the test
// check a rule it no longer changes.
func liveRulesFile(t *testing.T, name string, data []byte, rules liveRules) []byte {
	t.Helper()
	if name != "fireops-backups.yml" {
		return data
	}
	s := string(data)
	replace := func(old, new string, want int) {
		if n := strings.Count(s, old); n != want {
			t.Fatalf("%q is %d times in %s, want %d", old, n, name, want)
		}
		s = strings.ReplaceAll(s, old, new)
	}
	if rules.shortFor {
		replace("for: 5m\n", "for: 1s\n", strings.Count(s, "for: 5m\n"))
	}
	if rules.staleSeconds > 0 {
		// The snapshot's success, the snapshot's and rotate's runs.
		replace("> 26 * 3600", fmt.Sprintf("> %d", rules.staleSeconds), 3)
	}
	return []byte(s)
}

// serveHook records Alertmanager's webhook notifications (at /hook) and
// Telegram messages (at /telegram/bot<token>/sendMessage).
func (m *liveMonitoring) serveHook(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	switch {
	case r.URL.Path == "/hook":
		var msg struct {
			Alerts []struct {
				Status string            `json:"status"`
				Labels map[string]string `json:"labels"`
			} `json:"alerts"`
		}
		if err := json.Unmarshal(body, &msg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		m.mu.Lock()
		for _, a := range msg.Alerts {
			m.notes = append(m.notes, liveNote{at: time.Now(), status: a.Status, labels: a.Labels})
		}
		m.mu.Unlock()
	case r.URL.Path == "/telegram/bot"+m.token+"/sendMessage":
		text := ""
		var msg struct {
			Text string `json:"text"`
		}
		if json.Unmarshal(body, &msg) == nil {
			text = msg.Text
		} else if v, err := url.ParseQuery(string(body)); err == nil {
			text = v.Get("text")
		}
		m.mu.Lock()
		m.telegram = append(m.telegram, text)
		m.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok":true,"result":{"message_id":%d,"date":%d,"chat":{"id":-100123,"type":"group"},"text":"ok"}}`, len(m.telegram), time.Now().Unix())
	default:
		http.NotFound(w, r)
	}
}

func (m *liveMonitoring) telegramTexts() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.telegram)
}

// matching returns the notifications of alerts with status (any with "")
// and these labels.
func (m *liveMonitoring) matching(status string, labels map[string]string) []liveNote {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []liveNote
	for _, n := range m.notes {
		if (status == "" || n.status == status) && hasLabels(n.labels, labels) {
			out = append(out, n)
		}
	}
	return out
}

// notifications returns the notifications since t of alerts whose name
// starts with prefix.
func (m *liveMonitoring) notifications(since time.Time, prefix string) []liveNote {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []liveNote
	for _, n := range m.notes {
		if !n.at.Before(since) && strings.HasPrefix(n.labels["alertname"], prefix) {
			out = append(out, n)
		}
	}
	return out
}

// waitNotified waits for a notification, received after since, of an
// alert with status and these labels.
func (m *liveMonitoring) waitNotified(t *testing.T, since time.Time, status string, labels map[string]string) {
	t.Helper()
	waitForLong(t, fmt.Sprintf("a %s notification of %v", status, labels), func() bool {
		return slices.ContainsFunc(m.matching(status, labels), func(n liveNote) bool { return n.at.After(since) })
	}, func() string {
		return fmt.Sprintf("notifications: %v\nalerts: %v", m.matching("", nil), m.alerts(t, nil))
	})
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// api GETs a Prometheus API path and decodes its data.
func (m *liveMonitoring) api(t *testing.T, path string, data any) {
	t.Helper()
	resp, err := http.Get(m.prom + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Status != "success" {
		t.Fatalf("GET %s: %v %s", path, err, out.Error)
	}
	if err := json.Unmarshal(out.Data, data); err != nil {
		t.Fatal(err)
	}
}

// waitMetric waits until the PromQL query returns a sample, with the value
// want unless want is empty.
func (m *liveMonitoring) waitMetric(t *testing.T, query, want string) {
	t.Helper()
	var last string
	waitForLong(t, "Prometheus to have "+query, func() bool {
		var data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		}
		m.api(t, "/api/v1/query?query="+url.QueryEscape(query), &data)
		last = fmt.Sprint(data.Result)
		return len(data.Result) > 0 && (want == "" || slices.ContainsFunc(data.Result, func(r struct {
			Value [2]any `json:"value"`
		}) bool {
			return r.Value[1] == want
		}))
	}, func() string { return "last result: " + last })
}

// waitEvaluated waits until every rule group has been evaluated after t.
func (m *liveMonitoring) waitEvaluated(t *testing.T, after time.Time) {
	t.Helper()
	waitForLong(t, "the rules evaluated", func() bool {
		var data struct {
			Groups []struct {
				LastEvaluation time.Time `json:"lastEvaluation"`
			} `json:"groups"`
		}
		m.api(t, "/api/v1/rules", &data)
		return len(data.Groups) > 0 && !slices.ContainsFunc(data.Groups, func(g struct {
			LastEvaluation time.Time `json:"lastEvaluation"`
		}) bool {
			return !g.LastEvaluation.After(after)
		})
	}, func() string { return "" })
}

// alerts returns Prometheus' pending and firing alerts that keep says to
// keep (all with nil).
func (m *liveMonitoring) alerts(t *testing.T, keep func(liveAlert) bool) []liveAlert {
	t.Helper()
	var data struct {
		Alerts []liveAlert `json:"alerts"`
	}
	m.api(t, "/api/v1/alerts", &data)
	var out []liveAlert
	for _, a := range data.Alerts {
		if keep == nil || keep(a) {
			out = append(out, a)
		}
	}
	return out
}

// startProcess starts a monitoring process for the test's duration, its
// output in dir/name.log, shown when the test fails.
func startProcess(t *testing.T, dir, name, bin string, args ...string) {
	t.Helper()
	logFile := filepath.Join(dir, name+".log")
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			t.Logf("%s log (last lines):\n%s", name, strings.Join(lines[max(0, len(lines)-15):], "\n"))
		}
	})
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func mustWriteFile(t *testing.T, name, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

// waitForLong polls cond every 200 ms for up to 3 minutes (the alerts go
// through a scrape, a rule evaluation, Alertmanager's group wait), then
// fails with what state says.
func waitForLong(t *testing.T, what string, cond func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s; %s", what, state())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestBusyRunRecordsNothing: a timer's run that finds its lock busy exits
// 4 and did not run: it writes no metrics, so the last run's result (and
// its alerts, or their absence) stays as it was (issue 15).
func TestBusyRunRecordsNothing(t *testing.T) {
	t.Parallel()
	dir, cfg, raw := initHost(t)
	prom, state := filepath.Join(dir, "prom"), filepath.Join(dir, "state")
	mustWriteFile(t, filepath.Join(dir, "data", "notes.txt"), "drones fight fires\n", 0o644)
	if err := os.MkdirAll(prom, 0o755); err != nil {
		t.Fatal(err)
	}
	mustWriteFile(t, cfg, initForFiles(t, raw,
		"paths: [/opt/firetech]", "paths: ["+filepath.Join(dir, "data")+"]",
		"# state_dir: /var/lib/fireops", "state_dir: "+state+"\nmetrics: {textfile_dir: "+prom+"}"), 0o600)
	runFireops(t, cfg, "snapshot", "-q")
	runFireops(t, cfg, "rotate")
	before := readDir(t, prom)
	if len(before) < 4 {
		t.Fatalf("textfiles after a snapshot and a rotate: %v", slices.Sorted(maps.Keys(before)))
	}
	for _, job := range []string{"snapshot", "rotate", "verify"} {
		l, err := lock.Acquire(context.Background(), lock.Dir(state), job, lock.Options{Command: "test holder"})
		if err != nil {
			t.Fatal(err)
		}
		out, err := fireopsCmd(t, cfg, job).CombinedOutput()
		l.Release()
		if exitCode(err) != 4 {
			t.Fatalf("%s with its lock held: %v, want exit 4\n%s", job, err, out)
		}
		if after := readDir(t, prom); !maps.Equal(after, before) {
			t.Fatalf("%s that found its lock busy changed the textfiles", job)
		}
	}
}

// readDir returns the files of dir by name.
func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}
