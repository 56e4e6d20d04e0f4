package deploy

import (
	"github.com/firetech/fireops/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/firetech/fireops/pkg/config"
)

// loadConfig parses testdata/configs/<name>.yaml as if it lived in a
// fresh temp dir (with the SMTP password and Telegram token files some
// configs name).
func loadConfig(t *testing.T, name string) *config.Config {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "configs", name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "smtp-password"), []byte("smtp-s3cret-for-tests\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "telegram-token"), []byte(testTelegramToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeTestTLS(t, dir, "hub")
	cfg, err := config.Parse(data, filepath.Join(dir, "fireops.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// render renders a test config with the stack dir set to a fresh temp dir.
func render(t *testing.T, name string, opts RenderOptions) *Stack {
	t.Helper()
	cfg := loadConfig(t, name)
	cfg.Stack.Dir = filepath.Join(t.TempDir(), "stack")
	st, err := Render(cfg, opts)
	if err != nil {
		t.Fatalf("render %s: %v", name, err)
	}
	return st
}

// debianPython is Debian's python3, never a pyenv shim (design.md §10).
func debianPython(t *testing.T) string {
	t.Helper()
	const p = "/usr/bin/python3"
	if _, err := os.Stat(p); err != nil {
		testenv.Unavailable(t, "Debian's python3", err)
	}
	return p
}

// run runs a command and fails the test with its output when it fails.
func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}
