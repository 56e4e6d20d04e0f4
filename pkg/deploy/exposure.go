package deploy

import (
	"bytes"
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/firetech/fireops/pkg/config"
)

// What the stack publishes, and how it is protected (docs/deploy.md,
// "Exposure"): TLS for the hub from stack.tls, and basic auth in front of
// Prometheus whenever its port is published (stack.ports.prometheus):
// Prometheus itself checks it (--web.config.file with a bcrypt hash), and
// its clients (its own scrape of itself, its healthcheck, Grafana's data
// source) read the password from a secret file.

// PrometheusUser is the basic-auth user of a published Prometheus; its
// password is the generated secret prometheus-password.
const PrometheusUser = "prometheus"

// prometheusWebCost is the bcrypt cost of the hash in Prometheus' web
// config (each request is checked against it; Prometheus caches).
const prometheusWebCost = bcrypt.DefaultCost

// prometheusAuth reports whether Prometheus requires basic auth: whenever
// its port is published on the host.
func prometheusAuth(s *config.Stack) bool { return s.Ports.Prometheus != 0 }

// exposureSecretSpecs are the secrets of TLS and of Prometheus' basic auth.
func exposureSecretSpecs(cfg *config.Config) []SecretSpec {
	var specs []SecretSpec
	if prometheusAuth(&cfg.Stack) {
		specs = append(specs,
			SecretSpec{Name: "prometheus-password", UID: uidPrometheus, make: randomHex(16)},
			SecretSpec{Name: "prometheus-web.yml", UID: uidPrometheus, Derived: true, make: prometheusWebConfig},
			// Grafana (uid 472) reads its own copy: a 0600 file has one owner.
			SecretSpec{Name: "grafana-prometheus-password", UID: uidGrafana, Derived: true, make: func(read func(string) ([]byte, error)) ([]byte, error) {
				pw, err := read("prometheus-password")
				if err != nil {
					return nil, err
				}
				return bytes.TrimSpace(pw), nil
			}},
		)
	}
	if t := cfg.Stack.TLS; t.Enabled() {
		copyOf := func(key, name string) func(func(string) ([]byte, error)) ([]byte, error) {
			return func(func(string) ([]byte, error)) ([]byte, error) {
				b, err := os.ReadFile(name)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", key, err)
				}
				return b, nil
			}
		}
		specs = append(specs,
			SecretSpec{Name: "hub-tls-cert", UID: uidRoot, Derived: true, make: copyOf("stack.tls.cert_file", t.CertFile)},
			SecretSpec{Name: "hub-tls-key", UID: uidRoot, Derived: true, make: copyOf("stack.tls.key_file", t.KeyFile)},
		)
	}
	return specs
}

// webConfig is the part of Prometheus' web config fireops writes.
type webConfig struct {
	BasicAuthUsers map[string]string `yaml:"basic_auth_users"`
}

// prometheusWebConfig derives Prometheus' web config from
// prometheus-password. bcrypt salts every hash, so a config whose hash
// still matches the password is returned as it is: the file, and so the
// Prometheus container, changes only when the password does.
func prometheusWebConfig(read func(string) ([]byte, error)) ([]byte, error) {
	return basicAuthWebConfig(read, "Prometheus'", PrometheusUser, "prometheus-password", "prometheus-web.yml")
}

// basicAuthWebConfig derives the web config (--web.config.file, the
// Prometheus exporter toolkit's) of the server whose name is what: basic
// auth for user with the password of the secret pwName, the config being
// the secret cfgName. A config whose hash still matches is returned as it
// is (bcrypt salts every hash).
func basicAuthWebConfig(read func(string) ([]byte, error), what, user, pwName, cfgName string) ([]byte, error) {
	pw, err := read(pwName)
	if err != nil {
		return nil, err
	}
	pw = bytes.TrimSpace(pw)
	if old, err := read(cfgName); err == nil {
		var wc webConfig
		if yaml.Unmarshal(old, &wc) == nil && len(wc.BasicAuthUsers) == 1 {
			if h, ok := wc.BasicAuthUsers[user]; ok && bcrypt.CompareHashAndPassword([]byte(h), pw) == nil {
				return old, nil
			}
		}
	}
	hash, err := bcrypt.GenerateFromPassword(pw, prometheusWebCost)
	if err != nil {
		return nil, fmt.Errorf("hash %s: %w", pwName, err)
	}
	return fmt.Appendf(nil, "# Written by `fireops deploy` from %s: %s web config\n# (--web.config.file): basic auth for every request.\nbasic_auth_users:\n  %s: %s\n",
		pwName, what, user, jsonString(string(hash))), nil
}

// PrometheusAuth tells the templates whether Prometheus requires basic
// auth.
func (d *renderData) PrometheusAuth() bool { return prometheusAuth(d.S) }

// PrometheusUser tells the templates the basic-auth user.
func (d *renderData) PrometheusUser() string { return PrometheusUser }

// withPrometheusAuth turns on basic auth in Prometheus' process: its web
// config, and a healthcheck that authenticates (promtool check healthy
// with prometheus/healthcheck.yml, which names the password file, so the
// password is in no command line).
func withPrometheusAuth(p proc) proc {
	p.Command = append(p.Command, "--web.config.file=/run/secrets/prometheus_web_config")
	p.Health = []string{"CMD", "promtool", "check", "healthy", "--url=http://127.0.0.1:9090", "--http.config.file=/etc/prometheus/healthcheck.yml"}
	return p
}
