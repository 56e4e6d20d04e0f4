package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/firetech/fireops/internal/davtest"
	"github.com/firetech/fireops/internal/testutil"
)

// progressConfig writes a config that `fireops init` made local, with a
// second files part "big" holding one incompressible file of size bytes
// (so that it is read, cut and stored in many pieces), and returns its
// path.
func progressConfig(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "fireops.yaml")
	runFireops(t, cfg, "init", "--dir", dir, "--host", "gpu01")
	for _, d := range []string{"data", "big"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "notes.txt"), []byte("notes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, size)
	r := rand.NewChaCha8([32]byte{19})
	r.Read(b)
	if err := os.WriteFile(filepath.Join(dir, "big", "checkpoint.bin"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	y := initForFiles(t, string(raw),
		"paths: [/opt/firetech]", "paths: ["+filepath.Join(dir, "data")+"]",
		`      exclude: ["*.tmp"]`+"\n", `      exclude: ["*.tmp"]`+"\n    - {name: big, paths: ["+filepath.Join(dir, "big")+"]}\n",
		"# state_dir: /var/lib/fireops", "state_dir: "+filepath.Join(dir, "state"))
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// onTerminal runs fireops with stderr on a pseudo-terminal (200 columns)
// and returns its stdout and everything written to the terminal.
func onTerminal(t *testing.T, cfg string, args ...string) (stdout, screen string) {
	t.Helper()
	return onTerminalSized(t, 50, 200, cfg, args...)
}

// onTerminalSized is onTerminal on a terminal of rows and cols.
func onTerminalSized(t *testing.T, rows, cols uint16, cfg string, args ...string) (stdout, screen string) {
	t.Helper()
	ptmx, tty := openTerminal(t, rows, cols)
	defer ptmx.Close()
	cmd := fireopsCmd(t, cfg, args...)
	cmd.Env = append(os.Environ(), "TERM=xterm")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, tty
	var term bytes.Buffer
	read := make(chan error, 1)
	go func() {
		_, err := io.Copy(&term, ptmx)
		read <- err
	}()
	err := cmd.Run()
	tty.Close() // the reader gets EIO once the child's copies are closed too
	if rerr := <-read; rerr != nil && !errors.Is(rerr, syscall.EIO) {
		t.Fatalf("read the terminal: %v", rerr)
	}
	if err != nil {
		t.Fatalf("fireops %s on a terminal: %v\nstdout:\n%s\nterminal:\n%q", strings.Join(args, " "), err, out.String(), term.String())
	}
	return out.String(), term.String()
}

// ansi matches the terminal control sequences mpb writes (cursor up,
// erase) and the carriage returns of the terminal's line discipline.
var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]|\r`)

// screenLines are the lines of what was written to a terminal, control
// sequences removed.
func screenLines(s string) []string {
	return strings.Split(ansi.ReplaceAllString(s, ""), "\n")
}

// TestProgressOnTerminal: on a terminal, snapshot, restore and verify
// --level full draw progress bars whose last frame shows each part at
// 100% with its rate and time, and the total of the parts; no INFO log
// lines by default (quiet by default), and with -v the log lines stand
// on lines of their own above the bars, never inside one.
func TestProgressOnTerminal(t *testing.T) {
	t.Parallel()
	cfg := progressConfig(t, 24<<20)

	out, screen := onTerminal(t, cfg, "snapshot")
	if !strings.Contains(out, "files:big ") {
		t.Fatalf("snapshot printed no summary table:\n%s", out)
	}
	lines := screenLines(screen)
	mustLine(t, lines, `^files:big +\[=+\] +100% +24\.0 MiB +[0-9.]+ [KMG]?i?B/s +in \d+(s|m\d\ds) +new [0-9.]+ MiB stored, 0 B reused`)
	mustLine(t, lines, `^files:stack +\[=+\] +100% `)
	mustLine(t, lines, `^total +\[=+\] +100% +24\.0 MiB +[0-9.]+ [KMG]?i?B/s +in \d+(s|m\d\ds) +2/2 parts`)
	if strings.Contains(screen, "level=INFO") {
		t.Fatalf("INFO log lines on a terminal without -v:\n%s", screen)
	}

	// A second run reuses both parts: nothing is read.
	_, screen = onTerminal(t, cfg, "snapshot", "-v")
	lines = screenLines(screen)
	mustLine(t, lines, `^files:big +\[=*-*\] +-- +24\.0 MiB +unchanged: reused, not read`)
	logLinesApart(t, lines, `msg="part unchanged, reused"`)

	dir := t.TempDir()
	_, screen = onTerminal(t, cfg, "restore", "latest", "--part", "files:big", "--to", filepath.Join(dir, "big"), "-v")
	lines = screenLines(screen)
	mustLine(t, lines, `^files:big from local +\[=+\] +100% +24\.0 MiB +[0-9.]+ [KMG]?i?B/s +in \d`)
	logLinesApart(t, lines, `level=INFO`)

	_, screen = onTerminal(t, cfg, "verify", "--level", "full")
	lines = screenLines(screen)
	mustLine(t, lines, `^files:big from local +\[=+\] +100% +24\.0 MiB `)
	mustLine(t, lines, `^total +\[=+\] +100% .* 2/2 parts`)
}

// TestNoProgressWithoutTerminal: with stderr on a pipe (cron, systemd,
// scripts) nothing of the display is written, and the log lines are the
// structured INFO lines they always were.
func TestNoProgressWithoutTerminal(t *testing.T) {
	t.Parallel()
	cfg := progressConfig(t, 4<<20)
	cmd := fireopsCmd(t, cfg, "snapshot")
	cmd.Env = append(os.Environ(), "TERM=xterm")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("snapshot: %v\n%s", err, errOut.String())
	}
	stderr := errOut.String()
	for _, bad := range []string{"\x1b", "\r", "100%", "ETA", "[==="} {
		if strings.Contains(stderr, bad) {
			t.Fatalf("stderr without a terminal holds %q:\n%s", bad, stderr)
		}
	}
	for _, want := range []string{`level=INFO msg="snapshot started"`, `level=INFO msg="part stored" part=files:big`} {
		if !strings.Contains(stderr, want) {
			t.Fatalf("stderr without a terminal lacks %s:\n%s", want, stderr)
		}
	}
}

// TestQuietOnTerminal: -q on a terminal draws nothing and logs errors
// only; the results are on stdout.
func TestQuietOnTerminal(t *testing.T) {
	t.Parallel()
	cfg := progressConfig(t, 1<<20)
	out, screen := onTerminal(t, cfg, "snapshot", "-q")
	if !strings.Contains(out, "files:big ") {
		t.Fatalf("snapshot -q printed no summary table:\n%s", out)
	}
	if strings.TrimSpace(screen) != "" {
		t.Fatalf("snapshot -q wrote to the terminal:\n%q", screen)
	}
}

// mustLine fails unless one of lines matches re.
func mustLine(t *testing.T, lines []string, re string) {
	t.Helper()
	r := regexp.MustCompile(re)
	for _, l := range lines {
		if r.MatchString(l) {
			return
		}
	}
	t.Fatalf("no line on the terminal matches %s:\n%s", re, strings.Join(lines, "\n"))
}

// barRE matches a bar as mpb draws it.
var barRE = regexp.MustCompile(`\[[=>-]{8,}\]`)

// logLinesApart fails unless a log line holding want was written, and
// every log line stands on a line of its own: "time=" first, nothing of
// a bar before or after it.
func logLinesApart(t *testing.T, lines []string, want string) {
	t.Helper()
	found := false
	for _, l := range lines {
		if !strings.Contains(l, "level=") {
			continue
		}
		found = found || strings.Contains(l, want)
		if !strings.HasPrefix(l, "time=") || barRE.MatchString(l) {
			t.Fatalf("a log line shares its line with a bar: %q", l)
		}
	}
	if !found {
		t.Fatalf("no log line holds %s:\n%s", want, strings.Join(lines, "\n"))
	}
}

// TestInterruptOnTerminal: Ctrl-C (SIGINT) during a snapshot on a
// terminal ends the bars (the part shows where it stopped) before the
// error is printed, on a line of its own; exit code 130. The uploads are
// held, so that the snapshot is still running when the signal comes.
func TestInterruptOnTerminal(t *testing.T) {
	t.Parallel()
	dav := davtest.Start(t)
	cfg := progressConfig(t, 8<<20)
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	y := testutil.Replace(t, string(raw), "    remote: backups\n", fmt.Sprintf("    remote: %q\n", dav.Remote("fireops")))
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	dav.HoldPutsAfter(2)
	t.Cleanup(dav.Release)

	ptmx, tty := openTerminal(t, 50, 200)
	defer ptmx.Close()
	cmd := fireopsCmd(t, cfg, "snapshot")
	cmd.Env = append(os.Environ(), "TERM=xterm")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	// Read the terminal; say when the big part's bar is drawn (the small
	// part can be read whole before the signal lands: then no part line
	// would show where it stopped, only the total).
	bigBar := regexp.MustCompile(`(?m)^files:big +\[[=>-]{8,}\]`)
	var screen bytes.Buffer
	drawn := make(chan struct{})
	read := make(chan struct{})
	go func() {
		defer close(read)
		buf := make([]byte, 4096)
		seen := false
		for {
			n, err := ptmx.Read(buf)
			screen.Write(buf[:n])
			if !seen && bigBar.MatchString(strings.ReplaceAll(ansi.ReplaceAllString(screen.String(), ""), "\r", "\n")) {
				seen = true
				close(drawn)
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case <-drawn:
	case <-read:
		cmd.Wait()
		t.Fatalf("fireops ended before it drew a bar:\n%q", screen.String())
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	<-read
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("interrupted snapshot: %v, want exit code 130\n%q", err, screen.String())
	}
	lines := screenLines(screen.String())
	t.Logf("the terminal:\n%s", strings.Join(lines, "\n"))
	mustLine(t, lines, `^files:\w+ +\[[=>-]+\] +-- .* stopped after \d+s`)
	var last string
	for _, l := range lines {
		if strings.TrimSpace(l) != "" {
			last = l
		}
	}
	if !strings.HasPrefix(last, "fireops: error: ") && !strings.HasPrefix(last, "fireops: hint: ") {
		t.Fatalf("the last line on the terminal is %q, want the error on a line of its own:\n%s", last, strings.Join(lines, "\n"))
	}
	mustLine(t, lines, `^fireops: error: `)
	for _, l := range lines {
		if strings.Contains(l, "fireops: error:") && barRE.MatchString(l) {
			t.Fatalf("the error shares its line with a bar: %q", l)
		}
	}
}
