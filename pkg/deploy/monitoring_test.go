package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/firetech/fireops/internal/testenv"
)

// TestFireopsScrapeTarget: Prometheus, in a container, scrapes the daemon
// only at an address it reaches; a loopback metrics.listen (the default)
// gets no scrape job, which would be down for ever (issue 15).
func TestFireopsScrapeTarget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ listen, want string }{
		{"", ""},
		{"127.0.0.1:9798", ""},
		{"127.0.1.1:9798", ""},
		{"[::1]:9798", ""},
		{"localhost:9798", ""},
		{"0.0.0.0:9798", "host.docker.internal:9798"},
		{"[::]:9798", "host.docker.internal:9798"},
		{":9798", "host.docker.internal:9798"},
		{"172.17.0.1:9798", "172.17.0.1:9798"},
		{"[fd00::5]:9798", "[fd00::5]:9798"},
		{"gpu01.lan:9798", "gpu01.lan:9798"},
		{"0.0.0.0:0", ""},
	} {
		if got := FireopsScrapeTarget(tc.listen); got != tc.want {
			t.Errorf("metrics.listen %q: target %q, want %q", tc.listen, got, tc.want)
		}
	}
}

// scrapeJobs returns the rendered prometheus.yml's jobs and their targets.
func scrapeJobs(t *testing.T, st *Stack) map[string][]string {
	t.Helper()
	var doc struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(st.File("prometheus/prometheus.yml"), &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, j := range doc.ScrapeConfigs {
		for _, s := range j.StaticConfigs {
			out[j.JobName] = append(out[j.JobName], s.Targets...)
		}
	}
	return out
}

// TestRenderMetricsPaths: the job results reach Prometheus by default:
// node-exporter mounts metrics.textfile_dir (or node-exporter's own folder,
// the one `fireops init` writes, when it is empty), and the daemon is
// scraped only where containers reach it.
func TestRenderMetricsPaths(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, textfile, listen string
		mount, target          string
	}{
		{"defaults", "", "127.0.0.1:9798", "/var/lib/prometheus/node-exporter:/textfile:ro", ""},
		{"init", "/var/lib/prometheus/node-exporter", "127.0.0.1:9798", "/var/lib/prometheus/node-exporter:/textfile:ro", ""},
		{"elsewhere", "/srv/textfile", "0.0.0.0:9798", "/srv/textfile:/textfile:ro", "host.docker.internal:9798"},
	} {
		cfg := loadConfig(t, "gpu")
		cfg.Stack.Dir = t.TempDir()
		cfg.Metrics.TextfileDir, cfg.Metrics.Listen = tc.textfile, tc.listen
		st, err := Render(cfg, RenderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var compose struct {
			Services map[string]struct {
				Volumes []string `yaml:"volumes"`
			} `yaml:"services"`
		}
		if err := yaml.Unmarshal(st.File("compose.yaml"), &compose); err != nil {
			t.Fatal(err)
		}
		if vols := compose.Services["node-exporter"].Volumes; !strings.Contains(strings.Join(vols, " "), tc.mount) {
			t.Errorf("%s: node-exporter mounts %v, want %s", tc.name, vols, tc.mount)
		}
		jobs := scrapeJobs(t, st)
		if got := strings.Join(jobs["fireops"], " "); got != tc.target {
			t.Errorf("%s: fireops scrape targets %q, want %q", tc.name, got, tc.target)
		}
		if got := strings.Join(jobs["node"], " "); got != "host.docker.internal:9100" {
			t.Errorf("%s: node targets %q", tc.name, got)
		}
	}
}

// testTelegramToken is the bot token of the test configs' Telegram
// receiver (a made-up one, in the format @BotFather gives).
const testTelegramToken = "123456789:AAFtest-token_for-fireops-tests"

var (
	amcheckOnce sync.Once
	amcheckBin  string
	amcheckErr  error
)

// amcheck returns tools/amcheck (the config loader of the Alertmanager
// release the stack runs), built once per test run.
func amcheck(t *testing.T) string {
	t.Helper()
	amcheckOnce.Do(func() {
		root, err := testenv.RepoRoot()
		if err != nil {
			amcheckErr = err
			return
		}
		goBin, err := exec.LookPath("go")
		if err != nil {
			amcheckErr = err
			return
		}
		dir, err := os.MkdirTemp("", "amcheck-")
		if err != nil {
			amcheckErr = err
			return
		}
		amcheckBin = filepath.Join(dir, "amcheck")
		cmd := exec.Command(goBin, "build", "-o", amcheckBin, ".")
		cmd.Dir = filepath.Join(root, "tools", "amcheck")
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			amcheckErr = &buildError{err: err, out: string(out)}
		}
	})
	if amcheckErr != nil {
		testenv.Unavailable(t, "tools/amcheck (Alertmanager's config loader)", amcheckErr)
	}
	return amcheckBin
}

// debianAlertmanagerConfig writes, next to the rendered alertmanager.yml
// (its templates are named relative to it), a copy for Debian's
// Alertmanager 0.25 and returns its path relative to st.Dir. 0.25 knows
// telegram_configs but not bot_token_file (0.26 and later, the stack's
// image): the copy has the token itself, read from the stack's secret.
// Everything else is the rendered file.
func debianAlertmanagerConfig(t *testing.T, st *Stack) string {
	t.Helper()
	data := string(st.File("alertmanager/alertmanager.yml"))
	const line = "bot_token_file: /run/secrets/alertmanager_telegram_token"
	if strings.Contains(data, line) {
		token, err := os.ReadFile(filepath.Join(st.Dir, SecretsDir, "alertmanager-telegram-token"))
		if err != nil {
			t.Fatal(err)
		}
		data = strings.Replace(data, line, "bot_token: "+jsonString(string(token)), 1)
	}
	const name = "alertmanager/alertmanager-debian.yml"
	if err := os.WriteFile(filepath.Join(st.Dir, name), []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestReceivers: stack.alerts renders one receiver with e-mail, webhook
// and Telegram (Alertmanager's own telegram_configs, the token from a
// secret file deploy copies from bot_token_file), or none that notifies
// anyone; HasReceiver says which.
func TestReceivers(t *testing.T) {
	t.Parallel()
	type receiver struct {
		Name            string `yaml:"name"`
		EmailConfigs    []any  `yaml:"email_configs"`
		WebhookConfigs  []any  `yaml:"webhook_configs"`
		TelegramConfigs []struct {
			BotToken     string `yaml:"bot_token"`
			BotTokenFile string `yaml:"bot_token_file"`
			ChatID       int64  `yaml:"chat_id"`
			ParseMode    string `yaml:"parse_mode"`
			Message      string `yaml:"message"`
		} `yaml:"telegram_configs"`
	}
	var doc struct {
		Templates []string `yaml:"templates"`
		Route     struct {
			Receiver string `yaml:"receiver"`
		} `yaml:"route"`
		Receivers []receiver `yaml:"receivers"`
	}

	st := renderToDir(t, "cpu")
	if !HasReceiver(st.cfg) {
		t.Fatal("HasReceiver: false for e-mail, webhook and Telegram")
	}
	am := st.File("alertmanager/alertmanager.yml")
	if err := yaml.Unmarshal(am, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Route.Receiver != "operators" || len(doc.Receivers) != 1 {
		t.Fatalf("route to %q, receivers %+v", doc.Route.Receiver, doc.Receivers)
	}
	r := doc.Receivers[0]
	if len(r.EmailConfigs) != 2 || len(r.WebhookConfigs) != 1 || len(r.TelegramConfigs) != 1 {
		t.Fatalf("receiver %+v", r)
	}
	tg := r.TelegramConfigs[0]
	if tg.BotToken != "" || tg.BotTokenFile != "/run/secrets/alertmanager_telegram_token" || tg.ChatID != -1001234567890 ||
		tg.ParseMode != "HTML" || tg.Message != `{{ template "fireops.telegram.message" . }}` {
		t.Errorf("telegram_configs %+v", tg)
	}
	if strings.Contains(string(am), testTelegramToken) {
		t.Error("the bot token is in alertmanager.yml")
	}
	if !slices.Equal(doc.Templates, []string{"notifications.tmpl"}) || st.File(NotificationTemplates) == nil {
		t.Errorf("templates %v", doc.Templates)
	}
	// The token reaches Alertmanager as a Compose secret, from the file
	// bot_token_file names (trimmed), readable by the container's user.
	token, err := os.ReadFile(filepath.Join(st.Dir, SecretsDir, "alertmanager-telegram-token"))
	if err != nil || string(token) != testTelegramToken {
		t.Errorf("secret alertmanager-telegram-token: %q, %v", token, err)
	}
	var compose struct {
		Services map[string]struct {
			Secrets []string `yaml:"secrets"`
		} `yaml:"services"`
		Secrets map[string]struct {
			File string `yaml:"file"`
		} `yaml:"secrets"`
	}
	if err := yaml.Unmarshal(st.File("compose.yaml"), &compose); err != nil {
		t.Fatal(err)
	}
	if s := compose.Services["alertmanager"].Secrets; !slices.Contains(s, "alertmanager_telegram_token") ||
		compose.Secrets["alertmanager_telegram_token"].File != "./secrets/alertmanager-telegram-token" {
		t.Errorf("alertmanager's secrets %v, %+v", s, compose.Secrets["alertmanager_telegram_token"])
	}

	// No receiver: alerts stay in the UIs.
	cfg := loadConfig(t, "gpu")
	cfg.Stack.Dir = t.TempDir()
	if HasReceiver(cfg) {
		t.Fatal("HasReceiver: true without e-mail, webhook or Telegram")
	}
	st, err = Render(cfg, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	doc.Receivers = nil
	if err := yaml.Unmarshal(st.File("alertmanager/alertmanager.yml"), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Route.Receiver != "ui-only" || len(doc.Receivers) != 1 || doc.Receivers[0].EmailConfigs != nil ||
		doc.Receivers[0].WebhookConfigs != nil || doc.Receivers[0].TelegramConfigs != nil {
		t.Errorf("without a receiver: route to %q, receivers %+v", doc.Route.Receiver, doc.Receivers)
	}
	if strings.Contains(string(st.File("compose.yaml")), "alertmanager_telegram_token") {
		t.Error("the Telegram secret without stack.alerts.telegram")
	}
	// Telegram alone is a receiver.
	cfg.Stack.Alerts.Telegram.BotTokenFile, cfg.Stack.Alerts.Telegram.ChatID = "/etc/fireops/telegram-token", 42
	if !HasReceiver(cfg) {
		t.Error("HasReceiver: false for Telegram alone")
	}
}

// TestTelegramMessage renders the Telegram message for a firing and a
// resolved alert with the template engine of the Alertmanager release the
// stack runs (tools/amcheck), in HTML parse mode as its Telegram notifier
// does: in Russian, the alerts' text escaped.
func TestTelegramMessage(t *testing.T) {
	t.Parallel()
	st := renderToDir(t, "cpu")
	alerts := `[
 {"labels": {"alertname": "FireopsJobFailed", "severity": "warning", "task": "snapshot", "host": "cpu01"},
  "annotations": {"summary": "The last fireops snapshot run failed", "description": "Exit <1> & a hint"},
  "startsAt": "2026-12-02T03:05:00Z", "endsAt": "2999-01-01T00:00:00Z"},
 {"labels": {"alertname": "FireopsNoRecentSnapshot", "severity": "critical", "host": "cpu01"},
  "annotations": {"summary": "No successful fireops snapshot for more than 26 hours"},
  "startsAt": "2026-12-01T03:05:00Z", "endsAt": "2026-12-02T04:10:00Z"}]`
	cmd := exec.Command(amcheck(t), "alertmanager/alertmanager.yml", "operators")
	cmd.Dir = st.Dir
	cmd.Stdin = strings.NewReader(alerts)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("amcheck: %v\n%s", err, out)
	}
	msg := string(out)
	for _, want := range []string{
		"🔥 <b>Тревога: 1</b> · ✅ <b>Устранено: 1</b> — сервер <code>cpu01</code>\n",
		"🟡 Внимание: <b>FireopsJobFailed</b>\nThe last fireops snapshot run failed\n<i>Exit &lt;1&gt; &amp; a hint</i>\ntask: <code>snapshot</code>\nНачало: 02.12.2026 03:05 UTC\n",
		"✅ Устранено: <b>FireopsNoRecentSnapshot</b>\nNo successful fireops snapshot for more than 26 hours\nНачало: 01.12.2026 03:05 UTC, конец: 02.12.2026 04:10 UTC",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the message lacks %q", want)
		}
	}
	if strings.Contains(msg, "<1>") || strings.Contains(msg, "\n\n\n") {
		t.Error("unescaped text or blank lines")
	}
	if t.Failed() {
		t.Logf("message:\n%s", msg)
	}
}

// TestCoverageReceivers: config check warns about a stack whose alerts
// reach no one, and not once e-mail, a webhook or Telegram is set.
func TestCoverageReceivers(t *testing.T) {
	t.Parallel()
	const webhook = `alerts: {webhook_url: "https://alerts.example.org/hook"}`
	if !strings.Contains(coveredStack, webhook) {
		t.Fatalf("coveredStack has no %s", webhook)
	}
	for _, tc := range []struct {
		name, alerts string
		warn         bool
	}{
		{"none", "alerts: {}", true},
		{"webhook", webhook, false},
		{"telegram", "alerts: {telegram: {bot_token_file: DIR/tg, chat_id: -100123}}", false},
		{"empty email section", "alerts: {email: {}}", true},
		{"email", "alerts: {email: {to: [ops@example.org], from: fireops@example.org, smarthost: 'smtp.example.org:587'}}", false},
	} {
		dir := t.TempDir()
		mustWrite(t, filepath.Join(dir, "tg"), testTelegramToken+"\n", 0o600)
		cfg := loadCoverage(t, dir, filepath.Join(dir, "stack"), strings.ReplaceAll(strings.Replace(coveredStack, webhook, tc.alerts, 1), "DIR", dir))
		cov, err := CheckCoverage(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := slices.Contains(cov.Uncovered, NoReceiverWarning); got != tc.warn {
			t.Errorf("%s: receiver warning %v, want %v (%q)", tc.name, got, tc.warn, cov.Uncovered)
		}
	}
}
