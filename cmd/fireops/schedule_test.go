package main

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/davtest"
	"github.com/firetech/fireops/internal/testutil"
)

// davConfig writes keys with init and a config backing up dir/data (one
// 3 MiB file) to a WebDAV server in 1 MiB chunks, with extra YAML lines
// appended; it returns the config path.
func davConfig(t *testing.T, dav *davtest.Server, extra string) (cfg, data string) {
	t.Helper()
	dir := t.TempDir()
	cfg = filepath.Join(dir, "fireops.yaml")
	runFireops(t, cfg, "init", "--dir", dir, "--host", "gpu01")
	data = filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	writeData(t, data, 1)
	y := davFilesYAML(t, cfg, dir, data, dav.Remote("fireops"))
	y += "\n" + extra + "\n"
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg, data
}

func writeData(t *testing.T, dir string, seed byte) {
	t.Helper()
	b := make([]byte, 3<<20)
	for i := range b {
		b[i] = byte(i*13) ^ seed ^ byte(i>>9)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.bin"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond every 20 ms for at most a minute (a safety net, not
// a timing assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, what, 20*time.Millisecond, cond)
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestLocksTwoProcesses starts two snapshots at once against a destination
// that holds uploads: one holds the lock, the other exits 4 naming it.
// Then the holder is killed with SIGKILL, and the next run is not blocked.
func TestLocksTwoProcesses(t *testing.T) {
	t.Parallel()
	dav := davtest.Start(t)
	cfg, _ := davConfig(t, dav, "")
	dav.HoldPutsAfter(2)
	var cmds [2]*exec.Cmd
	var errs [2]strings.Builder
	done := make(chan int, 2)
	for i := range cmds {
		cmds[i] = fireopsCmd(t, cfg, "snapshot", "-q")
		cmds[i].Stderr = &errs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range cmds {
		go func() { cmds[i].Wait(); done <- i }()
	}
	t.Cleanup(func() {
		dav.Release()
		for _, c := range cmds {
			c.Process.Kill()
		}
	})
	loser := <-done
	winner := 1 - loser
	if code := cmds[loser].ProcessState.ExitCode(); code != 4 {
		t.Fatalf("the second snapshot exited %d, want 4 (lock busy):\n%s", code, errs[loser].String())
	}
	msg := errs[loser].String()
	if !strings.Contains(msg, "another snapshot run holds the lock") || !strings.Contains(msg, "pid "+strconv.Itoa(cmds[winner].Process.Pid)) ||
		!regexp.MustCompile(`started \d{4}-\d\d-\d\dT`).MatchString(msg) || !strings.Contains(msg, "fireops: hint: ") {
		t.Fatalf("lock-busy message does not name the holder (pid %d):\n%s", cmds[winner].Process.Pid, msg)
	}

	// --lock-wait waits, then gives up with the same code.
	out, err := fireopsCmd(t, cfg, "snapshot", "-q", "--lock-wait", "300ms").CombinedOutput()
	if exitCode(err) != 4 || !strings.Contains(string(out), "waited") {
		t.Fatalf("snapshot --lock-wait 300ms: %v\n%s", err, out)
	}
	// Other kinds are not blocked by a snapshot.
	runFireops(t, cfg, "snapshots")

	// The holder dies without a chance to clean up: the kernel drops its
	// lock, and the next snapshot runs.
	waitFor(t, "the holder to reach the held upload", func() bool { return dav.Puts() >= 3 })
	if err := cmds[winner].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	dav.Release()
	out2 := runFireops(t, cfg, "snapshot", "-q")
	if !strings.Contains(out2, " ok ") {
		t.Fatalf("snapshot after the holder was killed:\n%s", out2)
	}
}

// daemon is a running `fireops schedule` with its JSON log lines.
type daemon struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []map[string]any
	done  chan error
}

func startDaemon(t *testing.T, cfg string) *daemon {
	t.Helper()
	d := &daemon{cmd: fireopsCmd(t, cfg, "schedule", "--log-format", "json", "--stop-timeout", "1m"), done: make(chan error, 1)}
	startLogged(t, d)
	return d
}

// find returns the log lines with msg and the given attributes.
func (d *daemon) find(msg string, attrs ...string) []map[string]any {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []map[string]any
	for _, l := range d.lines {
		if l["msg"] != msg {
			continue
		}
		ok := true
		for i := 0; i+1 < len(attrs); i += 2 {
			if fmt.Sprint(l[attrs[i]]) != attrs[i+1] {
				ok = false
			}
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

func (d *daemon) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b strings.Builder
	for _, l := range d.lines {
		j, _ := json.Marshal(l)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// scrape returns the samples of a /metrics page by "name{labels}".
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// TestScheduleDaemon runs `fireops schedule` with a snapshot every 2 s:
// two snapshots, /metrics with their results, then SIGTERM in the middle
// of the third: the daemon exits 0 and that snapshot has no manifest.
func TestScheduleDaemon(t *testing.T) {
	t.Parallel()
	dav := davtest.Start(t)
	prom := t.TempDir()
	cfg, data := davConfig(t, dav, fmt.Sprintf(`metrics: {textfile_dir: %s, listen: "127.0.0.1:0"}
schedule: {snapshot: "@every 2s", rotate: "", verify: "", gpu_check: ""}`, prom))
	d := startDaemon(t, cfg)
	waitFor(t, "the metrics server", func() bool { return len(d.find("serving metrics")) > 0 })
	url := "http://" + d.find("serving metrics")[0]["addr"].(string) + "/metrics"
	waitFor(t, "two snapshots", func() bool { return len(d.find("job finished", "task", "snapshot", "result", "success")) >= 2 })

	m := scrape(t, url)
	for name, want := range map[string]float64{
		`fireops_snapshot_last_run_success`:                         1,
		`fireops_snapshot_destination_success{destination="local"}`: 1,
		`fireops_snapshot_last_success_parts`:                       1,
		`fireops_schedule_last_run_success{task="snapshot"}`:        1,
	} {
		if got, ok := m[name]; !ok || got != want {
			t.Errorf("/metrics %s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if n := m[`fireops_schedule_runs_total{result="success",task="snapshot"}`]; n < 2 {
		t.Errorf("runs_total success = %v, want >= 2", n)
	}
	if ts := m[`fireops_snapshot_last_success_timestamp_seconds`]; time.Since(time.Unix(int64(ts), 0)) > time.Hour {
		t.Errorf("last success timestamp %v is not recent", ts)
	}
	build := false
	for k := range m {
		build = build || strings.HasPrefix(k, "fireops_build_info{version=")
	}
	if !build {
		t.Errorf("no fireops_build_info in /metrics")
	}
	if _, err := os.Stat(filepath.Join(prom, "fireops_snapshot_success.prom")); err != nil {
		t.Errorf("the daemon's snapshot wrote no textfile: %v", err)
	}

	// Changed data, uploads held: the next snapshot stops in the middle.
	// The run records each upload in its known-objects log (state_dir/
	// known, 72 bytes a record) as it ends; SIGTERM comes once it
	// recorded two pieces and waits on the next.
	hostDir := filepath.Join(dav.Dir, "fireops", "gpu01")
	snaps := filepath.Join(hostDir, "snapshots")
	objectsBefore := objectFiles(t, hostDir)
	knownLogs := filepath.Join(filepath.Dir(cfg), "state", "known", "*.log")
	knownBefore := filesSize(t, knownLogs)
	dav.HoldPutsAfter(3)
	base := dav.Puts()
	writeData(t, data, 2)
	waitFor(t, "a snapshot to reach the held upload", func() bool { return dav.Puts() >= base+4 })
	waitFor(t, "the snapshot to record two uploads", func() bool { return filesSize(t, knownLogs) >= knownBefore+2*72 })
	var inflight []string
	es, _ := os.ReadDir(snaps)
	for _, e := range es {
		if _, err := os.Stat(filepath.Join(snaps, e.Name(), "manifest.json")); errors.Is(err, fs.ErrNotExist) {
			inflight = append(inflight, e.Name())
		}
	}
	if len(inflight) != 1 {
		t.Fatalf("want one snapshot in progress, found %v", inflight)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-d.done:
	case <-time.After(2 * time.Minute): // a safety net well above --stop-timeout
		t.Fatalf("the daemon did not exit after SIGTERM:\n%s", d.log())
	}
	dav.Release()
	if err != nil {
		t.Fatalf("daemon exit after SIGTERM: %v\n%s", err, d.log())
	}
	if _, err := os.Stat(filepath.Join(snaps, inflight[0], "manifest.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the interrupted snapshot %s has a manifest: %v", inflight[0], err)
	}
	// The pieces the interrupted snapshot uploaded stay (rotate sweeps
	// them after the grace period if nothing references them).
	uploaded := map[string]string{}
	for id, sum := range objectFiles(t, hostDir) {
		if _, ok := objectsBefore[id]; !ok {
			uploaded[id] = sum
		}
	}
	if len(uploaded) == 0 {
		t.Errorf("the interrupted snapshot left no uploaded piece: %d objects before it and after", len(objectsBefore))
	}
	if len(d.find("job failed", "task", "snapshot", "result", "interrupted")) != 1 || len(d.find("scheduler stopped")) != 1 {
		t.Fatalf("log of the stop:\n%s", d.log())
	}
	// What is on the destination still verifies, and the daemon's lock is
	// free again.
	runFireops(t, cfg, "verify", "--all", "-q")

	// The next snapshot of the same data references the pieces the
	// interrupted one uploaded, and does not upload again those it
	// recorded (the two waited for above). Up to two pieces may differ:
	// the first, which holds the tar headers of the folders above the
	// data, whose times change when parallel tests write to the same
	// temporary folder (its id is then another, and rotate sweeps the old
	// one), and the second when that change moves the first cut (the
	// chunker finds its way back within a piece).
	runFireops(t, cfg, "snapshot", "-q")
	latest := ""
	es, _ = os.ReadDir(snaps)
	for _, e := range es {
		if _, err := os.Stat(filepath.Join(snaps, e.Name(), "manifest.json")); err == nil && e.Name() > latest {
			latest = e.Name()
		}
	}
	refs := referencedObjects(t, hostDir, latest)
	after := objectFiles(t, hostDir)
	var unreferenced []string
	reused := 0
	for id, sum := range uploaded {
		switch {
		case !refs[id]:
			unreferenced = append(unreferenced, id)
		case after[id] == sum:
			reused++
		}
	}
	if len(unreferenced) > 2 || reused == 0 {
		t.Errorf("of %d pieces uploaded by the interrupted snapshot, the next one (%s) references %d as stored, and leaves unreferenced %v (at most two may be)",
			len(uploaded), latest, reused, unreferenced)
	}
	runFireops(t, cfg, "verify", "latest", "--level", "full", "-q")
}

// objectFiles returns the format 2 objects under a host folder of a
// destination (objects/<2 hex>/<64 hex>): id -> SHA-256 of the bytes.
func objectFiles(t *testing.T, hostDir string) map[string]string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(hostDir, "objects", "[0-9a-f][0-9a-f]", "*"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = fmt.Sprintf("%x", sha256.Sum256(b))
	}
	return out
}

// referencedObjects returns the ids a format 2 snapshot references: the
// piece lists its manifest names, and the pieces they list (read as
// plaintext, the way a backup host without the identity sees them).
func referencedObjects(t *testing.T, hostDir, snap string) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(hostDir, "snapshots", snap, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Version int
		Lists   []struct{ ID string }
	}
	if err := json.Unmarshal(raw, &m); err != nil || m.Version != 2 || len(m.Lists) == 0 {
		t.Fatalf("manifest of %s: version %d, %d lists (%v)", snap, m.Version, len(m.Lists), err)
	}
	refs := map[string]bool{}
	for _, l := range m.Lists {
		refs[l.ID] = true
		raw, err := os.ReadFile(filepath.Join(hostDir, "objects", l.ID[:2], l.ID))
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			Format string
			Pieces [][]any
		}
		if err := json.Unmarshal(raw, &list); err != nil || list.Format != "fireops-pieces" {
			t.Fatalf("piece list %s: format %q (%v)", l.ID, list.Format, err)
		}
		for _, p := range list.Pieces {
			id, _ := p[0].(string)
			refs[id] = true
		}
	}
	return refs
}

// filesSize is the total size of the files matching a glob.
func filesSize(t *testing.T, glob string) int64 {
	t.Helper()
	paths, err := filepath.Glob(glob)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}
