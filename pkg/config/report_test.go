package config

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCheckHidesSecrets: no rclone secret form, nor the stack's webhook
// URL, reaches config check's output, text or JSON.
func TestCheckHidesSecrets(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg, err := f.parse(t, `
keys:
  recipients: [RECIPIENT]
  identity_file: identity.txt
  signing_key_file: signing.key
destinations:
  - name: dav
    remote: ":webdav,url='https://bob:SECRETurlpw@dav.example/',user=bob,pass='SECRETpass,x''y',headers='Authorization,Bearer SECRETbearer':fireops"
  - name: yandex
    remote: ":yandex,token=\"{\"\"access_token\"\":\"\"SECRETaccess\"\",\"\"refresh_token\"\":\"\"SECRETrefresh\"\"}\":fireops"
  - name: s3
    remote: ":s3,access_key_id=AKIA,secret_access_key=SECRETs3,session_token=SECRETsession,sse_customer_key_base64=SECRETsse,region=eu:bucket"
hub:
  api_url: "http://hubuser:SECREThub@127.0.0.1:8000/hub/api"
stack:
  alerts:
    webhook_url: "https://hooks.slack.com/services/T000/B000/SECREThook"
  monitoring:
    grafana_root_url: "https://grafana.example.org/grafana/?token=SECRETgrafana"
`)
	if err != nil {
		t.Fatal(err)
	}
	rep := cfg.Check()
	y, err := rep.YAML()
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{string(y), string(j)} {
		if strings.Contains(out, "SECRET") {
			t.Errorf("config check shows a secret:\n%s", out)
		}
		for _, keep := range []string{"user=bob", "region=eu:bucket", "https://hooks.slack.com/REDACTED", "grafana.example.org/grafana/", "127.0.0.1:8000/hub/api"} {
			if !strings.Contains(out, keep) {
				t.Errorf("config check lost %q:\n%s", keep, out)
			}
		}
	}
	// The config itself is untouched.
	if !strings.Contains(cfg.Stack.Alerts.WebhookURL, "SECREThook") {
		t.Errorf("Check changed the config: %s", cfg.Stack.Alerts.WebhookURL)
	}
}
