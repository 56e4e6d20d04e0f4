package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain runs the tests under hostGuard: the test binary fails when a
// test wrote to the host's own backup, state, textfile, config or stack
// folders. Run as "fireops" (a script's exec), it is the program.
func TestMain(m *testing.M) {
	testscript.Main(newHostGuard(m), map[string]func(){
		"fireops": func() { os.Exit(Main()) },
	})
}

// TestScripts runs the end-to-end CLI tests in testdata/script/*.txtar
// against the real main. Scripts get $REPO (the repository root) and the
// test environment variables of internal/testenv.
func TestScripts(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 filepath.Join(root, "testdata", "script"),
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("REPO", root)
			env.Setenv("FIREOPS_CONFIG", filepath.Join(env.WorkDir, "fireops.yaml"))
			return nil
		},
		Condition: scriptCondition,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":     cmdExits,
			"testhub":   cmdTestHub,
			"testmongo": cmdTestMongo,
			"mongo":     cmdMongo,
			"dr":        cmdDR,
			"initlocal": cmdInitLocal,
		},
	})
}

// cmdExits runs `exits N prog args...`: it runs prog like exec and fails
// unless the exit code is exactly N (0 included). Output is kept for
// stdout/stderr checks.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits N prog [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: bad code %q", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exits: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with %d, want %d", args[1], got, want)
	}
}
