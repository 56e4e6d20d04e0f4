package main

import (
	"regexp"
	"strings"
	"testing"
)

// initStackSources matches the sources of the config `fireops init` writes
// that back up the stack itself (the hub database, MongoDB, the Docker
// volumes), each with its list items.
var initStackSources = regexp.MustCompile(`(?m)^  (sqlite|mongo|volumes):.*\n(    - .*\n)*`)

// initForFiles edits the config `fireops init` wrote for a test that backs
// up folders: the stack's own sources and the textfile metrics are taken
// out, the local destination is "backups" beside the config, then each old
// string of oldnew is replaced by the new one after it. A string that is
// not in the config exactly once fails the test, so that a template change
// cannot make an edit silently match nothing.
func initForFiles(t *testing.T, raw string, oldnew ...string) string {
	t.Helper()
	if n := len(initStackSources.FindAllString(raw, -1)); n != 3 {
		t.Fatalf("the config init wrote has %d of the stack's sources sqlite, mongo, volumes, want 3:\n%s", n, raw)
	}
	y := initStackSources.ReplaceAllString(raw, "")
	oldnew = append([]string{
		"metrics:\n  textfile_dir: /var/lib/prometheus/node-exporter\n", "",
		"    remote: /var/backups/fireops\n", "    remote: backups\n",
	}, oldnew...)
	for i := 0; i+1 < len(oldnew); i += 2 {
		if n := strings.Count(y, oldnew[i]); n != 1 {
			t.Fatalf("%q is %d times in the config init wrote, want once:\n%s", oldnew[i], n, y)
		}
		y = strings.Replace(y, oldnew[i], oldnew[i+1], 1)
	}
	return y
}
