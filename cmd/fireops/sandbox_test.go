//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dvolume "github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.yaml.in/yaml/v3"

	"github.com/firetech/fireops/internal/davtest"
	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/config"
)

// This file runs fireops's jobs the way their systemd units run them, on a
// machine without systemd as PID 1 (systemd-run needs it): each job runs
// in a private mount namespace (unshare --mount --propagation private)
// where a shell script built from the unit file reproduces the unit's file
// system sandbox with bind mounts, then starts the unit's ExecStart with
// the unit's environment, umask, capability bounding set and
// no_new_privs (setpriv). What the units do beyond the file system
// (system call filter, address families, namespaces, /proc hiding) needs
// systemd and is not reproduced; `systemd-analyze verify` and `security`
// check those settings (systemd/systemd_test.go).

// unitSettings are the settings of a service unit that shape what its
// process can see, write and do, read from the unit file.
type unitSettings struct {
	file             string
	execStart        []string
	execStartPre     [][]string // ExecStartPre=+ (run with full privileges, outside the sandbox)
	environment      []string   // KEY=VALUE
	umask            string     // octal
	noNewPrivileges  bool
	capsSet          bool     // CapabilityBoundingSet= is set
	caps             []string // its capabilities (empty: none)
	protectSystem    string
	protectHome      string
	privateTmp       bool
	privateDevices   bool
	protectTunables  bool     // ProtectKernelTunables or ProtectControlGroups: /sys read-only
	readWritePaths   []string // as written: "-" first for a path that may be missing
	stateDirectories []string // host paths: /var/lib/NAME
	conditionPaths   []string // ConditionPathExists=
}

// sandboxIgnored are the [Service] settings that change nothing a job's
// file access depends on here, or that cannot be reproduced without
// systemd (system call filter, address families, namespaces, hiding other
// processes): systemd-analyze checks them. Every other setting must be
// reproduced by unitSandboxScript, or parseUnitSandbox fails, so that the
// test follows the units.
var sandboxIgnored = []string{
	"Type", "ExecReload", "Restart", "RestartSec", "RestartPreventExitStatus", "SuccessExitStatus",
	"TimeoutStartSec", "TimeoutStopSec", "Nice", "IOSchedulingClass", "IOSchedulingPriority",
	"CPUWeight", "IOWeight", "StateDirectoryMode", "ProtectKernelModules", "ProtectKernelLogs",
	"ProtectClock", "ProtectHostname", "RestrictSUIDSGID", "RestrictRealtime", "RestrictNamespaces",
	"LockPersonality", "SystemCallArchitectures", "RestrictAddressFamilies", "SystemCallFilter",
	"SystemCallErrorNumber", "ProtectProc", "MemoryDenyWriteExecute", "RemoveIPC", "KeyringMode",
	"PrivateIPC",
}

// parseUnitSandbox reads a service unit file.
func parseUnitSandbox(file string) (*unitSettings, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	u := &unitSettings{file: file, umask: "0022"}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[]")
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok || strings.HasSuffix(line, `\`) {
			return nil, fmt.Errorf("%s:%d: cannot read %q", file, n, line)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if section == "Unit" && key == "ConditionPathExists" {
			u.conditionPaths = append(u.conditionPaths, val)
			continue
		}
		if section != "Service" {
			continue
		}
		if strings.ContainsAny(val, `"'$%\`) {
			return nil, fmt.Errorf("%s:%d: %s: quotes, escapes and specifiers are not reproduced by this test: extend parseUnitSandbox", file, n, key)
		}
		yes := val == "yes" || val == "true" || val == "1" || val == "on"
		switch key {
		case "ExecStart":
			u.execStart = strings.Fields(strings.TrimLeft(val, "-@:+!"))
		case "ExecStartPre":
			prefix := val[:len(val)-len(strings.TrimLeft(val, "-@:+!"))]
			if prefix != "+" {
				return nil, fmt.Errorf("%s:%d: ExecStartPre=%s: only \"+\" (full privileges, no sandbox) is reproduced by this test", file, n, prefix)
			}
			u.execStartPre = append(u.execStartPre, strings.Fields(val[1:]))
		case "Environment":
			u.environment = append(u.environment, strings.Fields(val)...)
		case "UMask":
			u.umask = val
		case "NoNewPrivileges":
			u.noNewPrivileges = yes
		case "CapabilityBoundingSet":
			if strings.HasPrefix(val, "~") {
				return nil, fmt.Errorf("%s:%d: CapabilityBoundingSet=~ is not reproduced by this test: extend parseUnitSandbox", file, n)
			}
			if !u.capsSet || val == "" {
				u.caps = []string{}
			}
			u.capsSet = true
			u.caps = append(u.caps, strings.Fields(val)...)
		case "ProtectSystem":
			u.protectSystem = val
		case "ProtectHome":
			u.protectHome = val
		case "PrivateTmp":
			u.privateTmp = yes
		case "PrivateDevices":
			u.privateDevices = yes
		case "ProtectKernelTunables", "ProtectControlGroups":
			u.protectTunables = u.protectTunables || yes
		case "ReadWritePaths":
			if val == "" {
				u.readWritePaths = nil
			}
			u.readWritePaths = append(u.readWritePaths, strings.Fields(val)...)
		case "StateDirectory":
			for _, d := range strings.Fields(val) {
				u.stateDirectories = append(u.stateDirectories, filepath.Join("/var/lib", d))
			}
		default:
			if !slices.Contains(sandboxIgnored, key) {
				return nil, fmt.Errorf("%s:%d: %s= is not reproduced by this test: extend parseUnitSandbox and unitSandboxScript, or list it in sandboxIgnored if it changes nothing a job's file access depends on", file, n, key)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	switch {
	case len(u.execStart) == 0:
		return nil, fmt.Errorf("%s: no ExecStart", file)
	case u.protectSystem != "strict":
		return nil, fmt.Errorf("%s: ProtectSystem=%s is not reproduced by this test (strict only)", file, u.protectSystem)
	case !slices.Contains([]string{"", "no", "read-only", "yes", "tmpfs"}, u.protectHome):
		return nil, fmt.Errorf("%s: ProtectHome=%s is not reproduced by this test", file, u.protectHome)
	}
	if _, err := strconv.ParseUint(u.umask, 8, 32); err != nil {
		return nil, fmt.Errorf("%s: UMask=%s: %v", file, u.umask, err)
	}
	return u, nil
}

// unitPath is the PATH systemd gives a service.
const unitPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// stagedPath is a test folder or file mounted over a path of the default
// config (or the unit's ExecStart) before the sandbox is set up, so that
// the job finds it there and the host's own path is neither read nor
// written.
type stagedPath struct{ src, dst string }

// shq quotes s for sh.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// sandboxScriptHead stages the test's paths: a path the host lacks is made
// by a tmpfs over its nearest existing ancestor (never /), whose entries
// are bound back in, so that nothing changes outside the namespace.
const sandboxScriptHead = `set -eu
fail() { echo "sandbox: $*" >&2; exit 97; }
if grep -q ' shared:' /proc/self/mountinfo; then fail "mounts are shared with the host: not a private mount namespace"; fi
# rbind retries a recursive bind a few times: a container that stops on
# the host (another test's) removes its overlay mount point, and the
# kernel drops that mount from this namespace too; a copy of the tree
# that meets it fails with "mount point does not exist", and nothing is
# mounted.
rbind() {
	i=0
	until mount --rbind "$1" "$2"; do
		i=$((i+1)); [ $i -lt 20 ] || fail "mount --rbind $1 $2 kept failing"
		sleep 0.1
	done
}
n=0
reveal() {
	a=$(dirname "$1")
	while [ ! -e "$a" ]; do a=$(dirname "$a"); done
	[ "$a" != / ] || fail "cannot make $1: no ancestor but /"
	n=$((n+1)); h=$hold/$n; mkdir "$h"
	rbind "$a" "$h"
	mount -t tmpfs -o "mode=$(stat -c %a "$a")" tmpfs "$a"
	for e in "$h"/* "$h"/.[!.]* "$h"/..?*; do
		[ -e "$e" ] || [ -L "$e" ] || continue
		b=${e##*/}
		if [ -L "$e" ]; then ln -s "$(readlink "$e")" "$a/$b"
		elif [ -d "$e" ]; then mkdir "$a/$b"; rbind "$e" "$a/$b"
		else : >"$a/$b"; mount --bind "$e" "$a/$b"; fi
	done
	if [ "$2" = d ]; then mkdir -p "$1"; else mkdir -p "$(dirname "$1")"; : >"$1"; fi
}
stage() {
	if [ -d "$1" ]; then t=d; else t=f; fi
	[ -e "$2" ] || reveal "$2" $t
	rbind "$1" "$2"
}
`

// sandboxScriptReadOnly is ProtectSystem=strict: every mount read-only
// (per mount: remount,bind never touches a file system's own flags), but
// /proc, /dev (and /sys unless tunables) and the writable paths.
const sandboxScriptReadOnly = `is_rw() { for r in $rw; do case $1 in "$r"|"$r"/*) return 0;; esac; done; return 1; }
awk '{print $5, $6}' /proc/self/mountinfo >"$hold/mounts"
while read -r m o; do
	case $m in *\\*) fail "mount point $m has escaped characters";; /proc|/proc/*|/dev|/dev/*) continue;; esac
	if [ "$tunables" != yes ]; then case $m in /sys|/sys/*) continue;; esac; fi
	if is_rw "$m"; then continue; fi
	keep=$(echo "$o" | tr , '\n' | grep -xE 'nosuid|nodev|noexec|noatime|nodiratime|relatime' | paste -sd, -) || true
	# A mount that went away meanwhile (see rbind) needs no remount.
	mount -o "remount,bind,ro${keep:+,$keep}" "$m" || ! grep -q " $m " /proc/self/mountinfo || fail "cannot make $m read-only"
done <"$hold/mounts"
`

// sandboxScriptDevices is PrivateDevices=yes: a /dev of its own with the
// pseudo devices only.
const sandboxScriptDevices = `mount --rbind /dev "$hold/dev"
mount -t tmpfs -o mode=0755,nosuid,noexec tmpfs /dev
for d in null zero full random urandom tty; do : >/dev/$d; mount --bind "$hold/dev/$d" /dev/$d; done
ln -s /proc/self/fd /dev/fd; ln -s /proc/self/fd/0 /dev/stdin; ln -s /proc/self/fd/1 /dev/stdout; ln -s /proc/self/fd/2 /dev/stderr
mkdir /dev/shm; mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
`

// unitSandboxScript returns the sh script that, run in a private mount
// namespace, stages the test's paths, sets up u's sandbox (nil: none, a
// command run by an admin at a shell) and execs argv (nil: u's
// ExecStart) with u's environment plus extraEnv. hold is a folder for the
// script's own mounts and files.
func unitSandboxScript(u *unitSettings, stage []stagedPath, hold string, argv, extraEnv []string) (string, error) {
	var b strings.Builder
	b.WriteString(sandboxScriptHead)
	fmt.Fprintf(&b, "hold=%s\n", shq(hold))
	for _, s := range stage {
		fmt.Fprintf(&b, "stage %s %s\n", shq(s.src), shq(s.dst))
	}
	env := []string{unitPath}
	setpriv := []string{}
	if u != nil {
		for _, c := range u.conditionPaths {
			if strings.HasPrefix(c, "!") {
				return "", fmt.Errorf("%s: ConditionPathExists=%s: negated conditions are not reproduced", u.file, c)
			}
			fmt.Fprintf(&b, "[ -e %s ] || fail %s\n", shq(c), shq("ConditionPathExists="+c+" does not hold: the unit would not start"))
		}
		for _, pre := range u.execStartPre {
			b.WriteString("env -i " + shq(unitPath))
			for _, a := range pre {
				b.WriteString(" " + shq(a))
			}
			b.WriteString(" || fail 'ExecStartPre failed: the unit would fail'\n")
		}
		b.WriteString("mkdir \"$hold/dev\"\nrw=''\n")
		for _, p := range u.stateDirectories {
			fmt.Fprintf(&b, "[ -d %[1]s ] || fail %[2]s\nrbind %[1]s %[1]s; rw=\"$rw \"%[1]s\n", shq(p), shq("StateDirectory "+p+" is not staged by the test"))
		}
		for _, p := range u.readWritePaths {
			optional := strings.HasPrefix(p, "-")
			p = strings.TrimPrefix(p, "-")
			if !filepath.IsAbs(p) || strings.ContainsAny(p, " \t\n\\") {
				return "", fmt.Errorf("%s: ReadWritePaths=%s: not an absolute path this test can handle", u.file, p)
			}
			if optional {
				fmt.Fprintf(&b, "if [ -e %[1]s ]; then rbind %[1]s %[1]s; rw=\"$rw \"%[1]s; fi\n", shq(p))
			} else {
				fmt.Fprintf(&b, "[ -e %[1]s ] || fail %[2]s\nrbind %[1]s %[1]s; rw=\"$rw \"%[1]s\n", shq(p), shq("ReadWritePaths="+p+" does not exist: the unit would fail"))
			}
		}
		fmt.Fprintf(&b, "tunables=%s\n", map[bool]string{true: "yes", false: "no"}[u.protectTunables])
		b.WriteString(sandboxScriptReadOnly)
		if u.protectTunables {
			b.WriteString("mount --bind /proc/sys /proc/sys; mount -o remount,bind,ro /proc/sys\n")
		}
		if u.protectHome == "yes" || u.protectHome == "tmpfs" {
			b.WriteString("for h in /home /root /run/user; do if [ -d $h ]; then mount -t tmpfs -o ro,mode=0 tmpfs $h; fi; done\n")
		}
		if u.privateDevices {
			b.WriteString(sandboxScriptDevices)
		}
		if u.privateTmp {
			b.WriteString("for d in /tmp /var/tmp; do if [ -d $d ]; then mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs $d; fi; done\n")
		}
		fmt.Fprintf(&b, "umask %s\n", u.umask)
		env = append(env, u.environment...)
		if u.noNewPrivileges {
			setpriv = append(setpriv, "--no-new-privs")
		}
		if u.capsSet {
			bs := []string{"-all"}
			for _, c := range u.caps {
				bs = append(bs, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
			setpriv = append(setpriv, "--bounding-set", strings.Join(bs, ","))
		}
		if argv == nil {
			argv = u.execStart
		}
	}
	env = append(env, extraEnv...)
	b.WriteString("cd /\nexec env -i")
	for _, e := range env {
		b.WriteString(" " + shq(e))
	}
	if len(setpriv) > 0 {
		b.WriteString(" setpriv")
		for _, a := range setpriv {
			b.WriteString(" " + shq(a))
		}
		b.WriteString(" --")
	}
	for _, a := range argv {
		b.WriteString(" " + shq(a))
	}
	b.WriteString("\n")
	return b.String(), nil
}

// envValue returns the value of key in a list of KEY=VALUE.
func envValue(env []string, key string) string {
	for _, e := range env {
		if k, v, ok := strings.Cut(e, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// replaceEach replaces each old string of oldnew, which must be in s
// exactly once, by the new one after it.
func replaceEach(t *testing.T, s string, oldnew ...string) string {
	t.Helper()
	for i := 0; i+1 < len(oldnew); i += 2 {
		s = testutil.Replace(t, s, oldnew[i], oldnew[i+1])
	}
	return s
}

// TestJobsUnderUnitSandbox runs snapshot, rotate and verify under the
// sandbox of their systemd units (fireops-*.service, read from systemd/),
// with the config `fireops init` writes, on the real Docker Engine and
// MongoDB (FerretDB), as on a new host: /var/backups/fireops does not
// exist yet. The hub database is a WAL-mode SQLite database in its volume,
// first with the hub stopped (no -wal or -shm file beside it), then live,
// with a row only in its -wal file, which the restored copy must hold.
// Every path of the default config is where the config says: the stack
// folder, /etc/fireops, /var/backups, the state and textfile folders,
// rclone's config folder and /usr/local/bin/fireops are test folders (and
// the test binary) mounted there in the job's private mount namespace, so
// the host's own are not touched. The test adapts only what it must: the
// Docker volumes and the MongoDB database get unique names (other tests
// share the Engine and the server), the commented Yandex Disk destination
// is enabled with its rclone remote "yandex" on a WebDAV server on
// loopback, and before rotate the retention keeps the newest snapshot
// only, so that rotate removes one from each destination. The daemon and
// the GPU check are not run (one never ends, the other needs GPUs):
// systemd/systemd_test.go pins what each unit may write.
func TestJobsUnderUnitSandbox(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tool := range []string{"unshare", "setpriv", "mount"} {
		testenv.RequireTool(t, tool)
	}
	if out, err := exec.Command("unshare", "--mount", "--propagation", "private", "true").CombinedOutput(); err != nil {
		testenv.Unavailable(t, "mount namespaces (unshare --mount --propagation private)", fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out))))
	}
	dockerHost := testenv.RequireDocker(t)
	mongoURI, mongoDB := testenv.RequireMongo(t)
	t.Parallel()

	units := map[string]*unitSettings{}
	for _, job := range []string{"snapshot", "rotate", "verify"} {
		u, err := parseUnitSandbox(filepath.Join("..", "..", "systemd", "fireops-"+job+".service"))
		if err != nil {
			t.Fatal(err)
		}
		units[job] = u
	}
	snap := units["snapshot"]
	cfgPath := envValue(snap.environment, "FIREOPS_CONFIG")
	if !filepath.IsAbs(cfgPath) {
		t.Fatalf("%s: no Environment=FIREOPS_CONFIG=<absolute path>", snap.file)
	}
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	mk := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}
	etc, stack, varBackups, state, textfile, rclone := mk("etc"), mk("stack"), mk("var-backups"), mk("state"), mk("textfile"), mk("rclone")
	runFireops(t, filepath.Join(etc, "fireops.yaml"), "init", "--dir", etc, "--host", "sandbox01")
	raw, err := os.ReadFile(filepath.Join(etc, "fireops.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pfx := "fireops-sbx-" + sandboxHex(4)
	y := replaceEach(t, string(raw),
		"volume: jupyterhub-data,", "volume: "+pfx+"-jupyterhub-data,",
		`include: ["jupyterhub-user-*", "jupyterhub-data"]`, `include: ["`+pfx+`-jupyterhub-user-*", "`+pfx+`-jupyterhub-data"]`,
		"  # - name: yandex\n  #   remote: \"yandex:fireops\"\n  #   rclone_config: /root/.config/rclone/rclone.conf\n  #   uploads: 8\n",
		"  - name: yandex\n    remote: \"yandex:fireops\"\n    rclone_config: /root/.config/rclone/rclone.conf\n    uploads: 8\n",
	)
	mongoLine := regexp.MustCompile(`(?m)^  mongo: \{uri_file: ([^,{}]+)\}$`)
	if n := len(mongoLine.FindAllString(y, -1)); n != 1 {
		t.Fatalf("the config init wrote has %d lines \"  mongo: {uri_file: FILE}\", want 1:\n%s", n, y)
	}
	y = mongoLine.ReplaceAllString(y, "  mongo: {uri_file: $1, databases: ["+mongoDB+"]}")
	if err := os.WriteFile(filepath.Join(etc, "fireops.yaml"), []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	// The config's paths with its defaults (config.Parse would want the
	// files there already).
	cfg := config.Default()
	if err := yaml.Unmarshal([]byte(y), cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Destinations) != 2 || !config.IsLocalRemote(cfg.Destinations[0].Remote) || cfg.Destinations[1].RcloneConfig == "" {
		t.Fatalf("want the local destination and yandex with its rclone config, got %+v", cfg.Destinations)
	}
	if len(cfg.Sources.Files) != 1 || !slices.Equal(cfg.Sources.Files[0].Paths, []string{cfg.Stack.Dir}) ||
		cfg.Sources.Mongo == nil || filepath.Dir(filepath.Dir(cfg.Sources.Mongo.URIFile)) != cfg.Stack.Dir {
		t.Fatalf("the files source and the MongoDB URI file are no longer in the stack folder %s: stage their paths", cfg.Stack.Dir)
	}
	stage := []stagedPath{
		{bin, snap.execStart[0]},
		{etc, filepath.Dir(cfgPath)},
		{stack, cfg.Stack.Dir},
		// A new host: the local destination's folder does not exist yet.
		{varBackups, filepath.Dir(cfg.Destinations[0].Remote)},
		{state, cfg.StateDir},
		{textfile, cfg.Metrics.TextfileDir},
		{rclone, filepath.Dir(cfg.Destinations[1].RcloneConfig)},
	}
	for _, u := range units {
		if u.execStart[0] != snap.execStart[0] {
			t.Fatalf("%s runs %s, %s runs %s", u.file, u.execStart[0], snap.file, snap.execStart[0])
		}
		for _, d := range u.stateDirectories {
			if d != cfg.StateDir {
				t.Fatalf("%s: StateDirectory %s is not the config's state_dir %s", u.file, d, cfg.StateDir)
			}
		}
	}

	// The stack folder as deploy leaves it, MongoDB's URI in its secrets.
	for name, body := range map[string]string{
		"compose.yaml":                 "services: {}\n",
		"secrets/hub-fireops-token":    sandboxHex(16) + "\n",
		"hub/jupyterhub_config.py.tmp": "scratch\n",
	} {
		p := filepath.Join(stack, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	uriFile := filepath.Join(stack, strings.TrimPrefix(cfg.Sources.Mongo.URIFile, cfg.Stack.Dir+"/"))
	if err := os.WriteFile(uriFile, []byte(mongoURI+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// rclone's remote "yandex", set up as the config's comment says (a
	// WebDAV server stands in for Yandex Disk).
	dav := davtest.Start(t)
	if err := os.WriteFile(filepath.Join(rclone, "rclone.conf"), []byte("[yandex]\ntype = webdav\nurl = "+dav.URL+"\nvendor = rclone\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dav.Dir, "fireops"), 0o755); err != nil {
		t.Fatal(err)
	}

	// MongoDB: one document in the test's database.
	mc, err := mongo.Connect(options.Client().ApplyURI(mongoURI))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Disconnect(context.Background())
	if _, err := mc.Database(mongoDB).Collection("runs").InsertOne(context.Background(), bson.D{{Key: "name", Value: "first"}}); err != nil {
		t.Fatal(err)
	}

	// The hub's volume with its WAL-mode database, and a user's volume.
	cli, err := client.NewClientWithOpts(client.WithHost(dockerHost), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	vols := map[string]string{}
	for _, name := range []string{pfx + "-jupyterhub-data", pfx + "-jupyterhub-user-ada"} {
		v, err := cli.VolumeCreate(context.Background(), dvolume.CreateOptions{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cli.VolumeRemove(context.Background(), name, true) })
		vols[name] = v.Mountpoint
	}
	if err := os.WriteFile(filepath.Join(vols[pfx+"-jupyterhub-user-ada"], "notebook.ipynb"), []byte(`{"cells": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	hubDB := filepath.Join(vols[pfx+"-jupyterhub-data"], "jupyterhub.sqlite")
	hub := openHubDB(t, hubDB)
	for _, q := range []string{"CREATE TABLE users (name TEXT)", "INSERT INTO users VALUES ('ada')"} {
		if _, err := hub.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := hub.Close(); err != nil {
		t.Fatal(err)
	}
	assertHubFolder := func(when string, want bool) {
		t.Helper()
		for _, side := range []string{"-wal", "-shm"} {
			if _, err := os.Stat(hubDB + side); (err == nil) != want {
				t.Fatalf("%s: %s exists: %v, want %v", when, filepath.Base(hubDB+side), err == nil, want)
			}
		}
	}
	assertHubFolder("the hub stopped", false)
	if h := readHeader(t, hubDB); h[18] != 2 || h[19] != 2 {
		t.Fatalf("%s is not in WAL mode (header bytes 18, 19: %d, %d)", hubDB, h[18], h[19])
	}

	run := func(u *unitSettings, argv ...string) string {
		t.Helper()
		hold, err := os.MkdirTemp(dir, "hold-")
		if err != nil {
			t.Fatal(err)
		}
		var extra []string
		if dockerHost != "" {
			extra = append(extra, "DOCKER_HOST="+dockerHost) // the test's Engine
		}
		script, err := unitSandboxScript(u, stage, hold, argv, extra)
		if err != nil {
			t.Fatal(err)
		}
		what := strings.Join(argv, " ")
		if u != nil {
			what = filepath.Base(u.file)
		}
		start := time.Now()
		var stdout, out bytes.Buffer
		cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script)
		cmd.Stdout, cmd.Stderr = io.MultiWriter(&stdout, &out), &out
		err = cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 97 {
			t.Fatalf("%s: setting up the sandbox failed: %s\nscript:\n%s", what, out.String(), script)
		}
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, out.String())
		}
		t.Logf("%s: ok in %s", what, time.Since(start).Round(time.Millisecond))
		return stdout.String()
	}

	// 1. The hub stopped: SQLite must make the -shm file to read the
	// database, and remove it again.
	run(snap)
	assertHubFolder("after the snapshot of the stopped hub", false)
	// The alerts read the job's result: node-exporter (not root) must
	// read it although the unit's umask is 0077.
	if b, err := os.ReadFile(filepath.Join(textfile, "fireops_snapshot.prom")); err != nil || !strings.Contains(string(b), "\nfireops_snapshot_last_run_success 1\n") {
		t.Fatalf("textfile fireops_snapshot.prom: %v\n%s", err, b)
	}
	for _, f := range []string{"fireops_snapshot.prom", "fireops_snapshot_success.prom"} {
		if fi, err := os.Stat(filepath.Join(textfile, f)); err != nil || fi.Mode().Perm() != 0o644 {
			t.Fatalf("textfile %s: %v, want mode 0644", f, err)
		}
	}
	backups := filepath.Join(varBackups, filepath.Base(cfg.Destinations[0].Remote))
	if fi, err := os.Stat(backups); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the local destination's folder: %v, want one of mode 0700", err)
	}
	for _, p := range []string{filepath.Join(backups, "sandbox01"), filepath.Join(dav.Dir, "fireops", "sandbox01"), filepath.Join(state, "locks")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatal(err)
		}
	}

	// 2. The hub live: a row only in the -wal file.
	hub = openHubDB(t, hubDB)
	defer hub.Close()
	if _, err := hub.Exec("PRAGMA wal_autocheckpoint = 0"); err != nil {
		t.Fatal(err)
	}
	if _, err := hub.Exec("INSERT INTO users VALUES ('bob')"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(hubDB + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("no -wal file with the live row: %v", err)
	}
	run(snap)
	restored := filepath.Join(dir, "restored.sqlite")
	run(nil, snap.execStart[0], "--config", cfgPath, "restore", "latest", "--part", "sqlite:jupyterhub", "--to", restored, "-q")
	got := openHubDB(t, restored)
	defer got.Close()
	var names string
	if err := got.QueryRow("SELECT group_concat(name, ',') FROM (SELECT name FROM users ORDER BY name)").Scan(&names); err != nil || names != "ada,bob" {
		t.Fatalf("restored hub database: users %q (%v), want ada,bob", names, err)
	}

	// listSnapshots returns the ids of the complete snapshots on each
	// destination, oldest first.
	listSnapshots := func() map[string][]string {
		t.Helper()
		out := run(nil, snap.execStart[0], "--config", cfgPath, "snapshots", "--json", "-q")
		var list []struct {
			Destination string
			Snapshots   []struct {
				ID       string
				Complete bool
			}
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("snapshots --json: %v\n%s", err, out)
		}
		ids := map[string][]string{}
		for _, d := range list {
			for _, s := range d.Snapshots {
				if s.Complete {
					ids[d.Destination] = append(ids[d.Destination], s.ID)
				}
			}
			slices.Sort(ids[d.Destination])
		}
		return ids
	}

	// 3. Rotate under its unit, with a policy that keeps the newest
	// snapshot only: it removes the first one from both destinations.
	y = replaceEach(t, y, "# retention: {keep_last: 3, keep_daily: 7, keep_weekly: 4, keep_monthly: 6, incomplete_grace: 24h}",
		"retention: {keep_last: 1, keep_daily: 0, keep_weekly: 0, keep_monthly: 0, incomplete_grace: 24h}")
	if err := os.WriteFile(filepath.Join(etc, "fireops.yaml"), []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	before := listSnapshots()
	run(units["rotate"])
	after := listSnapshots()
	for _, d := range []string{"local", "yandex"} {
		if len(before[d]) != 2 || len(after[d]) != 1 || after[d][0] != before[d][1] {
			t.Fatalf("destination %s: snapshots %v before rotate, %v after, want the newer one only", d, before[d], after[d])
		}
	}
	run(units["verify"])
}

// openHubDB opens (or creates) a WAL-mode SQLite database with one
// connection, as the hub would.
func openHubDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
	return db
}

// readHeader returns the first 100 bytes of a SQLite database file.
func readHeader(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := make([]byte, 100)
	if _, err := f.Read(h); err != nil {
		t.Fatal(err)
	}
	return h
}

// sandboxHex returns n random bytes in hex.
func sandboxHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
