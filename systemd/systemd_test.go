package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/testenv"
)

func units(t *testing.T) (services, timers []string) {
	t.Helper()
	services, _ = filepath.Glob("*.service")
	timers, _ = filepath.Glob("*.timer")
	if len(services) == 0 || len(timers) == 0 {
		t.Fatal("no units found")
	}
	return services, timers
}

// keys returns "Section.Key" -> values of a unit file.
func keys(t *testing.T, file string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	section := ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, _ := strings.Cut(line, "=")
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	return out
}

// TestSystemdAnalyzeVerify runs `systemd-analyze verify` on every unit
// (with ExecStart pointing at an existing program, since fireops is not
// installed here) and fails on any message, warnings included.
func TestSystemdAnalyzeVerify(t *testing.T) {
	t.Parallel()
	sa := testenv.RequireTool(t, "systemd-analyze")
	if sa == "" {
		return
	}
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	services, timers := units(t)
	dir := t.TempDir()
	var files []string
	for _, u := range append(services, timers...) {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, u)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/fireops", truePath)), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	cmd := exec.Command(sa, append([]string{"verify", "--man=no"}, files...)...)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=notice")
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// localDest is the local destination of the config `fireops init` writes;
// mkLocalDest makes it before the sandbox is set up.
const (
	localDest   = "/var/backups/fireops"
	mkLocalDest = "+/bin/mkdir -p -m 0700 " + localDest
)

// writes are the paths each service may write besides its state dir
// (sorted): the textfile folder; the local destination for the jobs that
// write snapshots or remove them; rclone's default config folder for
// those that reach a destination (refreshing an OAuth token, Yandex
// Disk's, writes it back); the Docker volumes' folders for those that read
// the hub's SQLite database (a WAL-mode database is read through its -shm
// file, which SQLite makes beside it). cmd/fireops/sandbox_test.go runs
// the jobs under these settings.
var writes = map[string][]string{
	"fireops-snapshot.service":  {"/root/.config/rclone", localDest, "/var/lib/docker/volumes", "/var/lib/prometheus/node-exporter"},
	"fireops-schedule.service":  {"/root/.config/rclone", localDest, "/var/lib/docker/volumes", "/var/lib/prometheus/node-exporter"},
	"fireops-rotate.service":    {"/root/.config/rclone", localDest, "/var/lib/prometheus/node-exporter"},
	"fireops-verify.service":    {"/root/.config/rclone", "/var/lib/prometheus/node-exporter"},
	"fireops-gpu-check.service": {"/var/lib/prometheus/node-exporter"},
}

// TestHardening: every service keeps the sandboxing the design asks for,
// job services are oneshot with a timer that catches up missed runs, and
// the daemon conflicts with the timers.
func TestHardening(t *testing.T) {
	t.Parallel()
	services, timers := units(t)
	for _, s := range services {
		k := keys(t, s)
		for _, want := range []string{"NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=read-only", "PrivateTmp=yes", "StateDirectory=fireops",
			"CPUWeight=20", "IOWeight=20", "SystemCallFilter=@system-service", "SystemCallErrorNumber=EPERM", "MemoryDenyWriteExecute=yes"} {
			key, val, _ := strings.Cut(want, "=")
			if !slices.Contains(k["Service."+key], val) {
				t.Errorf("%s: no %s", s, want)
			}
		}
		var rw []string
		for _, p := range strings.Fields(strings.Join(k["Service.ReadWritePaths"], " ")) {
			rw = append(rw, strings.TrimPrefix(p, "-"))
		}
		slices.Sort(rw)
		if want := writes[s]; !slices.Equal(rw, want) {
			t.Errorf("%s: ReadWritePaths %v, want %v", s, rw, want)
		}
		if slices.Contains(rw, localDest) && !slices.Contains(k["Service.ExecStartPre"], mkLocalDest) {
			t.Errorf("%s: no ExecStartPre=%s: on a new host the local destination cannot be made (/var/backups is read-only)", s, mkLocalDest)
		}
		exec := strings.Join(k["Service.ExecStart"], " ")
		if !strings.HasPrefix(exec, "/usr/local/bin/fireops ") || !strings.Contains(exec, "--log-format json") {
			t.Errorf("%s: ExecStart %q", s, exec)
		}
		if s == "fireops-schedule.service" {
			conf := strings.Join(k["Unit.Conflicts"], " ")
			for _, tm := range timers {
				if !strings.Contains(conf, tm) {
					t.Errorf("%s does not conflict with %s", s, tm)
				}
			}
			if !slices.Contains(k["Service.ExecReload"], "/bin/kill -HUP $MAINPID") {
				t.Errorf("%s: no reload by SIGHUP", s)
			}
			if !slices.Contains(k["Service.RestartPreventExitStatus"], "2") {
				t.Errorf("%s: restarts on a config error (exit 2)", s)
			}
			continue
		}
		if !slices.Contains(k["Service.Type"], "oneshot") {
			t.Errorf("%s: not Type=oneshot", s)
		}
		if !slices.Contains(k["Service.SuccessExitStatus"], "4") {
			t.Errorf("%s: a busy lock (exit 4) fails the unit", s)
		}
		if s == "fireops-rotate.service" && !strings.Contains(exec, "--lock-wait") {
			t.Errorf("%s: no --lock-wait: the sweep is skipped whenever a snapshot still runs", s)
		}
		if s == "fireops-verify.service" && !strings.Contains(exec, "--level hashes") {
			t.Errorf("%s: verify does not check every stored byte (--level hashes)", s)
		}
		if !slices.Contains(timers, strings.TrimSuffix(s, ".service")+".timer") {
			t.Errorf("%s has no timer", s)
		}
	}
	for _, tm := range timers {
		k := keys(t, tm)
		if !slices.Contains(k["Timer.Persistent"], "true") || len(k["Timer.RandomizedDelaySec"]) != 1 || len(k["Timer.OnCalendar"]) != 1 {
			t.Errorf("%s: want OnCalendar, Persistent=true and RandomizedDelaySec", tm)
		}
		if !slices.Contains(k["Install.WantedBy"], "timers.target") {
			t.Errorf("%s: not WantedBy=timers.target", tm)
		}
	}
}

// TestSecurityExposure: `systemd-analyze security` rates every service at
// an exposure of at most 3.0 (capabilities, system calls, address
// families, devices, ...).
func TestSecurityExposure(t *testing.T) {
	t.Parallel()
	sa := testenv.RequireTool(t, "systemd-analyze")
	if sa == "" {
		return
	}
	services, _ := units(t)
	for _, s := range services {
		out, err := exec.Command(sa, "security", "--offline=true", "--no-pager", s).CombinedOutput()
		if err != nil {
			t.Fatalf("systemd-analyze security %s: %v\n%s", s, err, out)
		}
		m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("%s: no exposure level in:\n%s", s, out)
		}
		level, err := strconv.ParseFloat(string(m[1]), 64)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: exposure %.1f", s, level)
		if level > 3.0 {
			t.Errorf("%s: exposure %.1f, want at most 3.0", s, level)
		}
	}
}
