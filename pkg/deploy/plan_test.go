package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteIsIdempotentAndRemovesStaleFiles(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t, "gpu")
	cfg.Stack.Dir = filepath.Join(t.TempDir(), "stack")
	st, err := Render(cfg, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	changes, err := st.Write()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		if c.Action != "create" {
			t.Fatalf("first write: %s %s", c.Action, c.Path)
		}
	}
	compose := filepath.Join(st.Dir, "compose.yaml")
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(compose, old, old); err != nil {
		t.Fatal(err)
	}
	changes, err = st.Write()
	if err != nil {
		t.Fatal(err)
	}
	if Changed(changes) {
		t.Fatalf("second write changed something: %+v", changes)
	}
	if fi, _ := os.Stat(compose); !fi.ModTime().Equal(old) {
		t.Error("an unchanged file was rewritten")
	}

	// GPUs off: the GPU files go, compose.yaml changes, the rest stays.
	cfg.Stack.GPUs = false
	st2, err := Render(cfg, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := st2.Plan("")
	if err != nil {
		t.Fatal(err)
	}
	actions := map[string]string{}
	for _, c := range plan {
		actions[c.Path] = c.Action
	}
	for p, want := range map[string]string{
		"prometheus/rules/gpu.yml": "remove", "grafana/dashboards/gpu.json": "remove", "gpu-exporter/counters.csv": "remove",
		"compose.yaml": "update", "hub/jupyterhub_config.py": "update", "loki/loki.yaml": "unchanged",
	} {
		if actions[p] != want {
			t.Errorf("%s: %s, want %s", p, actions[p], want)
		}
	}
	var diff bytes.Buffer
	if err := WriteDiff(&diff, plan); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--- a/compose.yaml\n+++ b/compose.yaml\n", "-  gpu-exporter:\n", "--- a/prometheus/rules/gpu.yml\n+++ /dev/null\n", "-c.Spawner.pre_spawn_hook = gpu_pre_spawn_hook\n"} {
		if !strings.Contains(diff.String(), want) {
			t.Errorf("diff lacks %q", want)
		}
	}
	if _, err := st2.Write(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(st.Dir, "prometheus/rules/gpu.yml")); !os.IsNotExist(err) {
		t.Errorf("gpu.yml not removed: %v", err)
	}
}

func TestManifestCannotRemoveOtherFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(outside, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets", "k"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	manifest := strings.Join([]string{outside, "../" + filepath.Base(outside), "secrets/k", "a/../../b"}, "\n")
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	paths, err := readManifest(dir)
	if err != nil || len(paths) != 0 {
		t.Fatalf("readManifest accepted %v (%v)", paths, err)
	}
}

func TestUnifiedDiff(t *testing.T) {
	t.Parallel()
	a := "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n"
	b := "1\n2\n3\nfour\n5\n6\n7\n8\n9\n10\neleven\n"
	var out bytes.Buffer
	if err := WriteDiff(&out, []Change{{Path: "f", Action: "update", old: []byte(a), new: []byte(b)}}); err != nil {
		t.Fatal(err)
	}
	want := "--- a/f\n+++ b/f\n@@ -1,10 +1,11 @@\n 1\n 2\n 3\n-4\n+four\n 5\n 6\n 7\n 8\n 9\n 10\n+eleven\n"
	if out.String() != want {
		t.Errorf("diff:\n%s\nwant:\n%s", out.String(), want)
	}
}
