package remote

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/rclone/rclone/fs"

	"github.com/firetech/fireops/internal/testutil"
)

func TestRcloneLevel(t *testing.T) {
	for _, tc := range []struct {
		rclone fs.LogLevel
		want   slog.Level
	}{
		{fs.LogLevelCritical, slog.LevelError},
		{fs.LogLevelError, slog.LevelError},
		{fs.LogLevelWarning, slog.LevelWarn},
		{fs.LogLevelNotice, slog.LevelInfo},
		{fs.LogLevelInfo, slog.LevelDebug},
		{fs.LogLevelDebug, slog.LevelDebug},
	} {
		if got := rcloneLevel(fs.LogLevelToSlog(tc.rclone)); got != tc.want {
			t.Errorf("rclone %s: slog %s, want %s", tc.rclone, got, tc.want)
		}
	}
}

// rclone's own lines reach the handler given to SetLogHandler as a record
// "rclone" whose text is redacted and one printable line.
func TestSetLogHandler(t *testing.T) {
	var out testutil.SyncBuffer
	SetLogHandler(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t.Cleanup(func() { SetLogHandler(nil) })

	fs.Logf("a name\x1b[2J", "bad name \u202etxt.exe\nforged :webdav,url=http://h/,pass=hunter2secret:x")
	fs.Infof(nil, "an rclone INFO line is DEBUG here")

	var rec map[string]any
	for line := range strings.Lines(out.String()) {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("not a JSON record: %q", line)
		}
		if s, _ := r["text"].(string); strings.Contains(s, "bad name") {
			rec = r
		}
		if s, _ := r["text"].(string); strings.Contains(s, "INFO line") {
			t.Errorf("rclone INFO logged at INFO: %v", r)
		}
	}
	if rec == nil {
		t.Fatalf("rclone's notice did not reach the handler: %q", out.String())
	}
	if rec["msg"] != "rclone" || rec["level"] != "INFO" {
		t.Errorf("record %v, want msg rclone at INFO", rec)
	}
	text := rec["text"].(string)
	for _, bad := range []string{"\u202e", "\n", "hunter2secret"} {
		if strings.Contains(text, bad) {
			t.Errorf("text %q holds %q", text, bad)
		}
	}
	if obj := rec["object"].(string); strings.Contains(obj, "\x1b") {
		t.Errorf("object %q holds an escape", obj)
	}
	if _, ok := rec["objectType"]; ok {
		t.Errorf("record %v has objectType", rec)
	}
}
