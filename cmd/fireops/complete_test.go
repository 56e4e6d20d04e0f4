package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fireopsIn runs fireops in this process (the run function) with a
// config and returns its stdout, stderr and exit code.
func fireopsIn(t *testing.T, cfg string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"--config", cfg}, args...), strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

// mustFireopsIn is fireopsIn for a command that must succeed.
func mustFireopsIn(t *testing.T, cfg string, args ...string) string {
	t.Helper()
	out, errs, code := fireopsIn(t, cfg, args...)
	if code != 0 {
		t.Fatalf("fireops %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// localFixture writes, in a temporary folder, the config `fireops init`
// writes made local (a files part "stack" of the folder data, holding a
// few files, the local destination "backups", state_dir "state"), plus
// the oldnew edits; it returns the config's path.
func localFixture(t *testing.T, oldnew ...string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "fireops.yaml")
	mustFireopsIn(t, cfg, "init", "--dir", dir, "--host", "gpu01")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	y := initForFiles(t, string(raw), append([]string{
		"paths: [/opt/firetech]", "paths: [" + filepath.Join(dir, "data") + "]",
		"# state_dir: /var/lib/fireops", "state_dir: " + filepath.Join(dir, "state"),
	}, oldnew...)...)
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"notes.txt": "hello\n", "sub/more.txt": strings.Repeat("more data\n", 500)} {
		if err := os.WriteFile(filepath.Join(dir, "data", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return cfg
}

// completions runs `fireops __complete ARGS...` and returns the values
// offered (descriptions cut off).
func completions(t *testing.T, cfg string, args ...string) []string {
	t.Helper()
	out := mustFireopsIn(t, cfg, append([]string{"__complete"}, args...)...)
	var vals []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(l, ":") { // the directive
			continue
		}
		v, _, _ := strings.Cut(l, "\t")
		vals = append(vals, v)
	}
	return vals
}

// TestCompletion: snapshot ids come from state_dir's record of the
// snapshots this host wrote (newest first, after latest; a destination
// that cannot be reached is not contacted), parts and destinations from
// the config, levels from verify's.
func TestCompletion(t *testing.T) {
	t.Parallel()
	// A second destination nothing listens on: completion never
	// contacts it (an attempt would fail the snapshot, not completion).
	cfg := localFixture(t)
	state := filepath.Join(filepath.Dir(cfg), "state")

	if got := completions(t, cfg, "restore", ""); !slices.Equal(got, []string{"latest"}) {
		t.Errorf("no snapshot yet: %v, want only latest", got)
	}
	mustFireopsIn(t, cfg, "snapshot", "-q")
	var ids []string
	entries, err := os.ReadDir(filepath.Join(filepath.Dir(cfg), "backups", "gpu01", "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		ids = append(ids, e.Name())
	}
	if len(ids) != 1 {
		t.Fatalf("snapshots written: %v", ids)
	}
	for _, args := range [][]string{{"restore", ""}, {"verify", ""}, {"restore", "--dest", "local", ""}} {
		if got, want := completions(t, cfg, args...), []string{"latest", ids[0]}; !slices.Equal(got, want) {
			t.Errorf("%v: %v, want %v", args, got, want)
		}
	}
	if got, want := completions(t, cfg, "restore", ids[0][:8]), []string{ids[0]}; !slices.Equal(got, want) {
		t.Errorf("a prefix: %v, want %v", got, want)
	}
	if got := completions(t, cfg, "restore", "2099"); len(got) != 0 {
		t.Errorf("no id starts so: %v", got)
	}
	if got := completions(t, cfg, "restore", ids[0], ""); len(got) != 0 {
		t.Errorf("a second argument: %v", got)
	}
	if got := completions(t, cfg, "restore", "--dest", "elsewhere", ""); !slices.Equal(got, []string{"latest"}) {
		t.Errorf("--dest another destination: %v", got)
	}
	if got, want := completions(t, cfg, "verify", "--level", ""), []string{"quick", "hashes", "full", "restore-test"}; !slices.Equal(got, want) {
		t.Errorf("levels: %v, want %v", got, want)
	}
	if got, want := completions(t, cfg, "verify", "--level", "h"), []string{"hashes"}; !slices.Equal(got, want) {
		t.Errorf("levels h: %v, want %v", got, want)
	}
	for _, args := range [][]string{{"restore", "latest", "--part", ""}, {"snapshot", "--only", ""}} {
		if got := completions(t, cfg, args...); !slices.Contains(got, "files:stack") || !slices.Contains(got, "volume") {
			t.Errorf("%v: %v, want files:stack and the kinds", args, got)
		}
	}
	for _, args := range [][]string{{"snapshot", "--dest", ""}, {"snapshots", "--dest", ""}, {"verify", "--dest", ""}, {"restore", "--dest", ""}, {"rotate", "--dest", ""}} {
		if got := completions(t, cfg, args...); !slices.Equal(got, []string{"local"}) {
			t.Errorf("%v: %v, want local", args, got)
		}
	}

	// A volume part recorded in state_dir is offered though the config
	// names volumes by pattern only: the record is what completion reads.
	recs, _ := filepath.Glob(filepath.Join(state, "known", "*.parts"))
	if len(recs) != 1 {
		t.Fatalf("per-part records: %v", recs)
	}
	b, err := os.ReadFile(recs[0])
	if err != nil {
		t.Fatal(err)
	}
	tag, _, _ := strings.Cut(string(b), " ")
	older := "20200101T000000Z-abcdef"
	if err := os.WriteFile(recs[0], append(b, []byte(strings.Repeat("0", len(tag)-1)+"1 "+older+" volume:jupyterhub-user-ada\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := completions(t, cfg, "restore", "latest", "--part", "volume:"); !slices.Equal(got, []string{"volume:jupyterhub-user-ada"}) {
		t.Errorf("recorded volume part: %v", got)
	}
	if got, want := completions(t, cfg, "restore", ""), []string{"latest", ids[0], older}; !slices.Equal(got, want) {
		t.Errorf("with an older recorded snapshot: %v, want %v (newest first)", got, want)
	}

	// A fresh state_dir (a new host after a disaster) records none.
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	if got := completions(t, cfg, "restore", ""); !slices.Equal(got, []string{"latest"}) {
		t.Errorf("fresh state_dir: %v, want only latest", got)
	}
	// A config that does not load completes nothing, without an error.
	if got := completions(t, filepath.Join(t.TempDir(), "missing.yaml"), "verify", "--dest", ""); len(got) != 0 {
		t.Errorf("missing config: %v", got)
	}
}
