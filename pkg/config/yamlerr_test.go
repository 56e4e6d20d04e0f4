package config

import (
	"strings"
	"testing"

	"github.com/firetech/fireops/pkg/exitcode"
)

func TestKeyAt(t *testing.T) {
	text := `host: a
destinations:
- name: a
  uploads: 1
- name: b
  retention:
    keep_daily: 7d
sources:
  files:
    - name: x
      paths:
        - /a
    # comment
    - name: y
      exclude: [a]
`
	lines := strings.Split(text, "\n")
	for n, want := range map[int]string{
		1: "host", 2: "destinations", 3: "destinations[0].name", 4: "destinations[0].uploads",
		5: "destinations[1].name", 7: "destinations[1].retention.keep_daily",
		10: "sources.files[0].name", 14: "sources.files[1].name", 15: "sources.files[1].exclude",
	} {
		if got, _, _, _ := keyAt(lines, n); got != want {
			t.Errorf("line %d: got %q, want %q", n, got, want)
		}
	}
}

func TestYAMLErrorsNameKeyAndHint(t *testing.T) {
	for _, tc := range []struct{ yaml, msg, hint string }{
		{"retention:\n  keep_daily: 7d\n", `line 2: retention.keep_daily: "7d" is not a whole number`, "keep_daily: 7"},
		{"schedule:\n  snapshot: * 3 * * *\n", "line 2: schedule.snapshot: YAML cannot read * 3 * * * unquoted", `quote the cron spec: snapshot: "* 3 * * *"`},
		{"gpu:\n  expect_count: 1\n\tmin_driver: 1\n", "line 3: gpu.min_driver: indented with a tab", "spaces, not tabs"},
		{"chunk_size: lots\n", `line 1: chunk_size: invalid size "lots"`, "chunk_size: 32MiB"},
	} {
		_, err := Parse([]byte(tc.yaml), "/etc/fireops/fireops.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.msg)
			continue
		}
		if exitcode.Code(err) != exitcode.Usage {
			t.Errorf("%q: exit code %d, want 2", tc.yaml, exitcode.Code(err))
		}
		if h := exitcode.Hint(err); !strings.Contains(h, tc.hint) {
			t.Errorf("%q: hint %q, want %q", tc.yaml, h, tc.hint)
		}
	}
}
