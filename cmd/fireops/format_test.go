package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/testenv"
)

// docShell returns the ```sh blocks of a markdown file's text, joined.
func docShell(text string) string {
	var b strings.Builder
	in := false
	for _, l := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(l, "```sh"):
			in = true
		case strings.HasPrefix(l, "```"):
			in = false
		case in:
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// runBash runs script with bash -euo pipefail in dir.
func runBash(t *testing.T, dir, script string) (string, error) {
	t.Helper()
	rc := filepath.Join(t.TempDir(), "rclone.conf")
	if err := os.WriteFile(rc, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "RCLONE_CONFIG="+rc)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestFormatDocCommands runs the commands of docs/format.md as written
// (only the example names replaced) with the real tools: for version 2,
// the signature check with the public key alone and OpenSSL, the hash
// checks and the restore, on a snapshot fireops makes here, then tampered
// with; for version 1, its restore and signature check on the first
// release's snapshot (testdata/v1snapshot).
func TestFormatDocCommands(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "rclone", "age", "zstd", "jq", "tar", "openssl", "sha256sum"} {
		if testenv.RequireTool(t, tool) == "" {
			return // skipped locally; fails in CI
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "docs", "format.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	v1at := strings.Index(doc, "\n# Version 1\n")
	if v1at < 0 {
		t.Fatal("docs/format.md has no '# Version 1' heading")
	}
	v2sh, v1sh := docShell(doc[:v1at]), docShell(doc[v1at:])
	for _, want := range []string{"openssl pkeyutl -verify -pubin -inkey pub.pem -rawin", "MCowBQYDK2VwAyEA", "sha256sum -c", "| tar -xpf -"} {
		if !strings.Contains(v2sh, want) {
			t.Fatalf("the version 2 commands of docs/format.md have no %q:\n%s", want, v2sh)
		}
	}

	t.Run("v2", func(t *testing.T) {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "fireops.yaml")
		runFireops(t, cfg, "init", "--dir", dir, "--host", "gpu01")
		data := filepath.Join(dir, "data")
		if err := os.MkdirAll(filepath.Join(data, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		big := make([]byte, 3<<20) // several pieces, stored raw
		rand.Read(big)
		files := map[string][]byte{"notes.txt": []byte("drones fight fires\n"), "sub/model.bin": big}
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(data, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		y, _ := os.ReadFile(cfg)
		ys := initForFiles(t, string(y),
			"paths: [/opt/firetech]", "paths: ["+data+"]",
			"# chunk_size: 32MiB", "chunk_size: 1MiB",
			"# state_dir: /var/lib/fireops", "state_dir: "+filepath.Join(dir, "state"))
		if err := os.WriteFile(cfg, []byte(ys), 0o600); err != nil {
			t.Fatal(err)
		}
		runFireops(t, cfg, "snapshot", "-q")
		snaps, _ := filepath.Glob(filepath.Join(dir, "backups", "gpu01", "snapshots", "*", "manifest.json"))
		if len(snaps) != 1 {
			t.Fatalf("want one snapshot, found %v", snaps)
		}
		id := filepath.Base(filepath.Dir(snaps[0]))

		// The reader's folder: the config (for its public key) and the
		// identity, nothing else.
		wd := t.TempDir()
		for _, f := range []string{"fireops.yaml", "identity.txt"} {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(wd, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		script := strings.NewReplacer("yandex:fireops", filepath.Join(dir, "backups"), "20261128T030000Z-3f9a1c", id).Replace(v2sh)
		out, err := runBash(t, wd, script)
		if err != nil {
			t.Fatalf("docs/format.md's commands: %v\n%s\n%s", err, script, out)
		}
		if !strings.Contains(out, "Signature Verified Successfully") || !strings.Contains(out, "files:stack ") {
			t.Fatalf("docs/format.md's commands said:\n%s", out)
		}
		for name, want := range files {
			got, err := os.ReadFile(filepath.Join(wd, "restored", data, name))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("restored %s: %d bytes, want %d (%v)", name, len(got), len(want), err)
			}
		}
		pieces, _ := filepath.Glob(filepath.Join(wd, "objects", "*", "*"))
		if len(pieces) < 4 {
			t.Fatalf("the part has %d objects (list and pieces), want several pieces", len(pieces))
		}

		// The checks fail on altered data: one byte of the manifest, one
		// byte of a piece.
		line := func(sub string) string {
			for _, l := range strings.Split(script, "\n") {
				if strings.Contains(l, sub) {
					return l
				}
			}
			t.Fatalf("no command with %q", sub)
			return ""
		}
		flip := func(p string, at int64) {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			b := make([]byte, 1)
			f.ReadAt(b, at)
			b[0] ^= 1
			if _, err := f.WriteAt(b, at); err != nil {
				t.Fatal(err)
			}
		}
		flip(filepath.Join(wd, "snap", "manifest.json"), 40)
		if out, err := runBash(t, wd, line("openssl pkeyutl -verify")); err == nil {
			t.Errorf("the signature check passed on an altered manifest:\n%s", out)
		}
		flip(filepath.Join(wd, "snap", "manifest.json"), 40)
		if out, err := runBash(t, wd, line("openssl pkeyutl -verify")); err != nil {
			t.Errorf("the signature check failed on the manifest put back: %v\n%s", err, out)
		}
		var piece string
		for _, p := range pieces {
			if b, _ := os.ReadFile(p); bytes.HasPrefix(b, []byte("age-encryption.org/v1")) {
				piece = p
			}
		}
		flip(piece, 1000)
		check := "L=$(jq -r '.parts[] | select(.id == \"files:stack\") | .list' index.json)\n" + line("sha256sum -c --quiet")
		if out, err := runBash(t, wd, check); err == nil {
			t.Errorf("the piece check passed with %s altered:\n%s", piece, out)
		}
	})

	t.Run("v1", func(t *testing.T) {
		fix := filepath.Join(root, "testdata", "v1snapshot")
		wd := t.TempDir()
		for _, f := range []string{"identity.txt", "signing.key", "repo/fixture/snapshots/20261202T074450Z-19ff96/manifest.json", "repo/fixture/snapshots/20261202T074450Z-19ff96/manifest.sig"} {
			b, err := os.ReadFile(filepath.Join(fix, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(wd, filepath.Base(f)), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(filepath.Join(wd, "here"), 0o755); err != nil {
			t.Fatal(err)
		}
		script := strings.NewReplacer(
			"yandex:fireops/gpu01", filepath.Join(fix, "repo", "fixture"),
			"20261128T030000Z-3f9a1c", "20261202T074450Z-19ff96",
			"0c1f6e2a9b8d4f3e5a7c9b1d2e3f4a5b", "82f8ce32a9ca1497ffdfa31fde9140ec",
			"/restore/here", filepath.Join(wd, "here"),
		).Replace(v1sh)
		out, err := runBash(t, wd, script)
		if err != nil {
			t.Fatalf("docs/format.md's version 1 commands: %v\n%s\n%s", err, script, out)
		}
		if !strings.Contains(out, "Signature Verified Successfully") {
			t.Fatalf("docs/format.md's version 1 commands said:\n%s", out)
		}
		out, err = runBash(t, wd, "find here -name hello.txt -exec sha256sum {} +")
		if err != nil || !strings.Contains(out, "c16e4d1d0fa2d0f58c45190373847136b66af3ae8f7f4befd5e34f5aadd5c85e") {
			t.Fatalf("the version 1 restore has no hello.txt as expected.sha256 says: %v\n%s", err, out)
		}
	})
}
