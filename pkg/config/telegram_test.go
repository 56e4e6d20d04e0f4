package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/firetech/fireops/pkg/exitcode"
)

// TestStackTelegram: stack.alerts.telegram takes the bot token from a
// secret file (relative to the config) and a chat id; config check lists
// the file with the other secrets; one without the other, a missing or
// world-readable token file, or a type error is a usage error naming the
// key.
func TestStackTelegram(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if err := os.WriteFile(filepath.Join(f.dir, "tg"), []byte("123:abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "tg-open"), []byte("123:abc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.parse(t, "stack: {alerts: {telegram: {bot_token_file: tg, chat_id: -1001234567890}}}\n")
	if err != nil {
		t.Fatal(err)
	}
	tg := cfg.Stack.Alerts.Telegram
	if tg.BotTokenFile != filepath.Join(f.dir, "tg") || tg.ChatID != -1001234567890 {
		t.Errorf("telegram %+v", tg)
	}
	want := FileStatus{Key: "stack.alerts.telegram.bot_token_file", Path: tg.BotTokenFile, Status: "ok (0600)"}
	if files := cfg.Check().Files; !slices.Contains(files, want) {
		t.Errorf("config check files = %+v, want %+v among them", files, want)
	}

	for _, tc := range []struct{ name, yaml, want string }{
		{"no chat", "stack: {alerts: {telegram: {bot_token_file: tg}}}\n", "stack.alerts.telegram.chat_id"},
		{"no token", "stack: {alerts: {telegram: {chat_id: 42}}}\n", "stack.alerts.telegram.bot_token_file"},
		{"token file missing", "stack: {alerts: {telegram: {bot_token_file: nope, chat_id: 42}}}\n", "stack.alerts.telegram.bot_token_file"},
		{"token file readable by all", "stack: {alerts: {telegram: {bot_token_file: tg-open, chat_id: 42}}}\n", "stack.alerts.telegram.bot_token_file"},
		{"chat id not a number", "stack:\n  alerts:\n    telegram:\n      bot_token_file: tg\n      chat_id: '@ops'\n", "line 5: stack.alerts.telegram.chat_id"},
		{"unknown key", "stack: {alerts: {telegram: {token: x}}}\n", `unknown key "token" in stack.alerts.telegram`},
	} {
		_, err := f.parse(t, tc.yaml)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if exitcode.Code(err) != exitcode.Usage || exitcode.Hint(err) == "" {
			t.Errorf("%s: exit code %d, hint %q", tc.name, exitcode.Code(err), exitcode.Hint(err))
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q lacks %q", tc.name, err, tc.want)
		}
	}
}
