package leftover

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const childEnv = "FIREOPS_LEFTOVER_CHILD"

// TestMain lets the test binary act as a run that makes a staging folder
// and waits to be killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		p, err := os.MkdirTemp(dir, Pattern(".fireops-staging-"))
		if err == nil {
			err = os.WriteFile(filepath.Join(p, "secret"), []byte("plaintext"), 0o600)
		}
		if err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(2)
		}
		os.Stdout.WriteString(p + "\n")
		select {} // until killed
	}
	os.Exit(m.Run())
}

// TestCleanAfterSIGKILL: a run killed with SIGKILL leaves its staging
// folder; Clean keeps it while the run lives and removes it, with a log
// line, once the run is dead.
func TestCleanAfterSIGKILL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	staging := strings.TrimSpace(line)
	if !strings.Contains(filepath.Base(staging), "-"+strconv.Itoa(cmd.Process.Pid)+"-") {
		t.Fatalf("staging folder %s does not name the run's pid %d", staging, cmd.Process.Pid)
	}

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if removed, err := Clean(dir, ".fireops-staging-", log); err != nil || len(removed) != 0 {
		t.Fatalf("Clean while the run lives: removed %v, %v", removed, err)
	}
	if _, err := os.Stat(filepath.Join(staging, "secret")); err != nil {
		t.Fatalf("a live run's staging was touched: %v", err)
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	removed, err := Clean(dir, ".fireops-staging-", log)
	if err != nil || len(removed) != 1 || removed[0] != staging {
		t.Fatalf("Clean after SIGKILL: removed %v, %v; want %s", removed, err, staging)
	}
	if _, err := os.Lstat(staging); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the killed run's staging is still there: %v", err)
	}
	if !strings.Contains(logs.String(), `msg="removed what an interrupted fireops run left behind" path=`+staging) {
		t.Errorf("log:\n%s", logs.String())
	}
}

// TestClean: which names Clean removes and which it keeps.
func TestClean(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mk := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}
	self := Tag()
	f := strings.Split(self, "-")
	own, err := os.MkdirTemp(dir, Pattern(".x-"))
	if err != nil {
		t.Fatal(err)
	}
	otherBoot := mk(".x-ffffffffffff-" + f[1] + "-" + f[2] + "-1")      // this pid, another boot
	reused := mk(".x-" + f[0] + "-" + f[1] + "-999999999999-2")         // this pid, another start: a reused pid
	gone := mk(".x-" + f[0] + "-" + strconv.Itoa(1<<22+12345) + "-5-3") // no such pid
	legacy := mk(".x-123456789")                                        // an older fireops's name
	unrelated := mk("x-" + f[0] + "-1-1-4")
	link := filepath.Join(dir, ".x-"+f[0]+"-"+strconv.Itoa(1<<22+12346)+"-5-5")
	if err := os.Symlink(unrelated, link); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	removed, err := Clean(dir, ".x-", slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{otherBoot: true, reused: true, gone: true, link: true}
	if len(removed) != len(want) {
		t.Errorf("removed %v", removed)
	}
	for _, p := range removed {
		if !want[p] {
			t.Errorf("removed %s", p)
		}
	}
	for _, p := range []string{own, legacy, unrelated} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if !strings.Contains(logs.String(), "remove it by hand when no fireops run is active") || !strings.Contains(logs.String(), legacy) {
		t.Errorf("the untagged name is not reported:\n%s", logs.String())
	}
	if removed, err := Clean(filepath.Join(dir, "nope"), ".x-", nil); err != nil || removed != nil {
		t.Errorf("Clean of a missing folder: %v, %v", removed, err)
	}
}
