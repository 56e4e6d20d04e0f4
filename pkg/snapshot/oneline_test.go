package snapshot

import (
	"errors"
	"strings"
	"testing"
)

// TestOnelineReason: a failed part's reason (stored in the index, printed
// in the snapshot and snapshots tables) is one line with credentials
// hidden and control characters, bidi overrides and bytes that are not
// UTF-8 escaped, cut at maxReason bytes.
func TestOnelineReason(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"open /data/a.txt: permission denied", "open /data/a.txt: permission denied"},
		{"first\n  second\n\nthird", "first; second; third"},
		{"tab\there", "tab here"},
		{"fifo /data/evil\u202egpj.exe\x1b[31m", `fifo /data/evil\u202egpj.exe\x1b[31m`},
		{"bad \xff byte", `bad \xff byte`},
		{"rclone :webdav,url=https://x,pass=hunter22:", "rclone :webdav,url=https://x,pass=REDACTED:"},
	} {
		if got := oneLine(errors.New(c.in)); got != c.want {
			t.Errorf("oneLine(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	long := oneLine(errors.New(strings.Repeat("é", maxReason)))
	if len(long) > maxReason+len("...") || !strings.HasSuffix(long, "...") {
		t.Errorf("a long reason is %d bytes: %q...", len(long), long[:20])
	}
}
