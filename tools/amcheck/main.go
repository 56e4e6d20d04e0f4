// Command amcheck loads an Alertmanager configuration with the loader of
// the Alertmanager release the stack runs (the version in go.mod, that of
// the default stack.images.alertmanager), the way Alertmanager does at
// start-up: the configuration and every template file it names. Debian's
// amtool is older and does not know every key the stack renders (the
// Telegram receiver's bot_token_file). pkg/deploy's tests run it on every
// rendered alertmanager.yml. It lives in its own module so that
// Alertmanager's dependencies stay out of fireops'.
//
//	amcheck FILE                      check FILE and its templates
//	amcheck FILE RECEIVER < alerts    also print the message RECEIVER's
//	                                  first telegram_configs entry sends
//	                                  for these alerts (a JSON array of
//	                                  Prometheus alerts: labels,
//	                                  annotations, startsAt, endsAt)
//
// It exits 1 when the configuration, a template or the message is bad,
// and 2 on a usage error.
package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"

	"github.com/prometheus/alertmanager/config"
	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/alertmanager/types"
	"github.com/prometheus/common/model"
)

func main() {
	if len(os.Args) != 2 && len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: amcheck FILE [RECEIVER < alerts.json]")
		os.Exit(2)
	}
	cfg, err := config.LoadFile(os.Args[1])
	if err != nil {
		fail("%s: %v", os.Args[1], err)
	}
	tmpl, err := template.FromGlobs(cfg.Templates)
	if err != nil {
		fail("%s: templates: %v", os.Args[1], err)
	}
	if len(os.Args) == 2 {
		fmt.Printf("%s: %d receivers, %d template files: ok\n", os.Args[1], len(cfg.Receivers), len(cfg.Templates))
		return
	}
	var msg, mode string
	for _, r := range cfg.Receivers {
		if r.Name == os.Args[2] && len(r.TelegramConfigs) > 0 {
			msg, mode = r.TelegramConfigs[0].Message, r.TelegramConfigs[0].ParseMode
		}
	}
	if msg == "" {
		fail("receiver %q has no telegram_configs", os.Args[2])
	}
	var in []model.Alert
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "amcheck: reading a JSON array of alerts:", err)
		os.Exit(2)
	}
	alerts := make([]*types.Alert, len(in))
	for i := range in {
		alerts[i] = &types.Alert{Alert: in[i]}
	}
	tmpl.ExternalURL = &url.URL{Scheme: "http", Host: "alertmanager:9093"}
	data := tmpl.Data(os.Args[2], model.LabelSet{}, alerts...)
	// As the Telegram notifier does: html/template in HTML parse mode.
	out, err := tmpl.ExecuteTextString(msg, data)
	if mode == "HTML" {
		out, err = tmpl.ExecuteHTMLString(msg, data)
	}
	if err != nil {
		fail("telegram message: %v", err)
	}
	fmt.Print(out)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "amcheck: "+format+"\n", args...)
	os.Exit(1)
}
