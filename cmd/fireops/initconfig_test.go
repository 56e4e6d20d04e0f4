package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// initStackSources matches the sources of the config `fireops init` writes
// that back up the stack itself (the hub database, MongoDB, the Docker
// volumes), each with its list items.
var initStackSources = regexp.MustCompile(`(?m)^  (sqlite|mongo|volumes):.*\n(    - .*\n)*`)

// hostWrites matches an uncommented line of a config that names a folder
// of the host the jobs write to: the local destination
// /var/backups/fireops, the textfile folder
// /var/lib/prometheus/node-exporter, the state folder /var/lib/fireops.
var hostWrites = regexp.MustCompile(`(?m)^[^#\n]*(/var/backups|/var/lib/prometheus|/var/lib/fireops).*$`)

// setStateDir matches the line that sets state_dir: without it the jobs
// write to the default, the host's /var/lib/fireops.
var setStateDir = regexp.MustCompile(`(?m)^state_dir: \S`)

// localConfig edits the config `fireops init` wrote (raw) for a test that
// backs up folders: the stack's own sources (the hub database, MongoDB,
// the Docker volumes jupyterhub-*) and the textfile metrics are taken out,
// the local destination is "backups" beside the config, then each old
// string of oldnew is replaced by the new one after it. It fails when a
// string is not in the config exactly once, so that a template change
// cannot make an edit silently match nothing, and when the result would
// still write to the host: a line naming one of its folders, or no
// state_dir (the default is /var/lib/fireops).
func localConfig(raw string, oldnew ...string) (string, error) {
	if len(oldnew)%2 != 0 {
		return "", fmt.Errorf("local config: %d strings given, want old-new pairs", len(oldnew))
	}
	if n := len(initStackSources.FindAllString(raw, -1)); n != 3 {
		return "", fmt.Errorf("the config init wrote has %d of the stack's sources sqlite, mongo, volumes, want 3:\n%s", n, raw)
	}
	y := initStackSources.ReplaceAllString(raw, "")
	oldnew = append([]string{
		"metrics:\n  textfile_dir: /var/lib/prometheus/node-exporter\n", "",
		"    remote: /var/backups/fireops\n", "    remote: backups\n",
	}, oldnew...)
	for i := 0; i+1 < len(oldnew); i += 2 {
		if n := strings.Count(y, oldnew[i]); n != 1 {
			return "", fmt.Errorf("%q is %d times in the config init wrote, want once:\n%s", oldnew[i], n, y)
		}
		y = strings.Replace(y, oldnew[i], oldnew[i+1], 1)
	}
	if l := hostWrites.FindString(y); l != "" {
		return "", fmt.Errorf("the test's config still names a folder of the host: %q:\n%s", l, y)
	}
	if !setStateDir.MatchString(y) {
		return "", fmt.Errorf("the test's config sets no state_dir: the jobs would write to the host's /var/lib/fireops:\n%s", y)
	}
	return y, nil
}

// initForFiles is localConfig for a Go test: an error fails the test.
func initForFiles(t *testing.T, raw string, oldnew ...string) string {
	t.Helper()
	y, err := localConfig(raw, oldnew...)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// cmdInitLocal is the testscript command
//
//	initlocal FILE [OLD NEW]...
//
// that turns the config `fireops init` wrote at FILE into one that writes
// only under $WORK, as initForFiles does for Go tests (localConfig): the
// stack's sources and the textfile metrics out, the local destination
// "backups" beside the config, the files source "stack" reading
// $WORK/data, state_dir $WORK/state; then each OLD is replaced by its NEW
// (a literal \n in either stands for a newline). A string that is not in
// the config exactly once fails the script.
func cmdInitLocal(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 || len(args)%2 != 1 {
		ts.Fatalf("usage: initlocal FILE [OLD NEW]...")
	}
	file := ts.MkAbs(args[0])
	raw, err := os.ReadFile(file)
	ts.Check(err)
	work := ts.Getenv("WORK")
	oldnew := []string{
		"paths: [/opt/firetech]", "paths: [" + work + "/data]",
		"# state_dir: /var/lib/fireops", "state_dir: " + work + "/state",
	}
	for _, a := range args[1:] {
		oldnew = append(oldnew, strings.ReplaceAll(a, `\n`, "\n"))
	}
	y, err := localConfig(string(raw), oldnew...)
	if err != nil {
		ts.Fatalf("initlocal %s: %v", args[0], err)
	}
	ts.Check(os.WriteFile(file, []byte(y), 0o600))
}

// TestLocalConfig: the config `fireops init` writes, made local, names none
// of the host's folders the jobs write to, nor the stack's sources; an
// edit that matches nothing (or twice), one that leaves the state folder
// the default or one that names a host folder again fails, naming why.
func TestLocalConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	runFireops(t, filepath.Join(dir, "fireops.yaml"), "init", "--dir", dir, "--host", "gpu01")
	raw, err := os.ReadFile(filepath.Join(dir, "fireops.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	state := "state_dir: " + filepath.Join(dir, "state")
	for _, tc := range []struct {
		name   string
		oldnew []string
		err    string // "" when it succeeds
	}{
		{"state folder set", []string{"# state_dir: /var/lib/fireops", state}, ""},
		{"state folder left as the default", nil, "sets no state_dir"},
		{"an edit that matches nothing", []string{"# state_dir: /var/lib/fireops", state, "paths: [/srv/nowhere]", "paths: [x]"}, `"paths: [/srv/nowhere]" is 0 times`},
		{"an edit that matches twice", []string{"# state_dir: /var/lib/fireops", state, "/opt/firetech/secrets/", "x/"}, `"/opt/firetech/secrets/" is 2 times`},
		{"the textfile folder back", []string{"# state_dir: /var/lib/fireops", state + "\nmetrics: {textfile_dir: /var/lib/prometheus/node-exporter}"}, "still names a folder of the host"},
		{"the local destination back", []string{"# state_dir: /var/lib/fireops", state, "remote: backups", "remote: /var/backups/fireops"}, "still names a folder of the host"},
		{"the state folder the default's", []string{"# state_dir: /var/lib/fireops", "state_dir: /var/lib/fireops"}, "still names a folder of the host"},
		{"an odd number of strings", []string{"# state_dir: /var/lib/fireops"}, "want old-new pairs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y, err := localConfig(string(raw), tc.oldnew...)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var settings []string // the lines that are not comments
			for _, l := range strings.Split(y, "\n") {
				if !strings.HasPrefix(strings.TrimSpace(l), "#") {
					settings = append(settings, l)
				}
			}
			for _, bad := range []string{"\n  sqlite:", "\n  mongo:", "\n  volumes:", "jupyterhub-", "\nmetrics:", "/var/"} {
				if strings.Contains("\n"+strings.Join(settings, "\n"), bad) {
					t.Errorf("the local config sets %q:\n%s", bad, y)
				}
			}
			if !strings.Contains(y, "\n    remote: backups\n") || !strings.Contains(y, "\n"+state+"\n") {
				t.Errorf("the local config has not the destination backups and %s:\n%s", state, y)
			}
		})
	}
}
