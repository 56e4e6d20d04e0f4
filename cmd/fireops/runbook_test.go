package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/filters"
	dvolume "github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/firetech/fireops/internal/mongotest"
	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/config"
)

// runbookSubst turns docs/runbook.md's example names into the names of
// testdata/script/runbook.txtar, which runs the commands for real.
var runbookSubst = strings.NewReplacer(
	"volume:jupyterhub-user-ada", "volume:$PREFIX-user-ada",
	"metrics.", "$DB.",
	"/etc/fireops", "$WORK/etc",
	"/srv/restore", "$WORK/restore",
	"yandex:fireops", "$WORK/storage",
	"20261127T030000Z-a1b2c3", "$SNAP",
)

// runbookElsewhere are runbook commands exercised by a Go test instead of
// a script (the file and the test that runs them, checked to exist).
var runbookElsewhere = map[string][2]string{
	"fireops deploy":        {"pkg/deploy/e2e_test.go", "func TestDeployEndToEnd("},
	"fireops deploy status": {"pkg/deploy/e2e_test.go", "func TestDeployEndToEnd("},
}

// runbookCommands returns the command lines of the ```sh blocks of
// docs/runbook.md.
func runbookCommands(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cmds []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "```sh"):
			in = true
		case strings.HasPrefix(line, "```"):
			in = false
		case in && line != "" && !strings.HasPrefix(line, "#"):
			cmds = append(cmds, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cmds
}

// TestRunbookCommandsAreTested keeps docs/runbook.md from rotting: every
// command in its sh blocks, with the example names replaced
// (runbookSubst), must appear in a line of a testdata/script/*.txtar file
// (runbook.txtar runs them against real Docker volumes, MongoDB and the
// hub database), or be listed in runbookElsewhere.
func TestRunbookCommandsAreTested(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	scripts, err := filepath.Glob(filepath.Join(root, "testdata", "script", "*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, s := range scripts {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				lines = append(lines, l)
			}
		}
	}
	cmds := runbookCommands(t, filepath.Join(root, "docs", "runbook.md"))
	if len(cmds) < 20 {
		t.Fatalf("only %d commands found in docs/runbook.md: is the sh block syntax still ```sh?", len(cmds))
	}
	for _, c := range cmds {
		if where, ok := runbookElsewhere[c]; ok {
			b, err := os.ReadFile(filepath.Join(root, where[0]))
			if err != nil || !strings.Contains(string(b), where[1]) {
				t.Errorf("runbook command %q: %s has no %q (%v)", c, where[0], where[1], err)
			}
			continue
		}
		want := runbookSubst.Replace(c)
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, want) }) {
			t.Errorf("runbook command %q is not exercised: no script line contains %q (add it to testdata/script/runbook.txtar)", c, want)
		}
	}
}

// dockerAvailable says why the [docker] condition does not hold: the test
// Engine must answer and the test run as root (the scripts fill volumes
// through their folders).
func dockerAvailable() error {
	if testenv.Env(testenv.EnvDockerHost) == "" {
		if _, err := os.Stat("/var/run/docker.sock"); err != nil {
			return fmt.Errorf("no Docker Engine: DOCKER_HOST is not set")
		}
	}
	cli, err := runbookDocker()
	if err != nil {
		return err
	}
	defer cli.Close()
	if _, err := cli.Ping(context.Background()); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("running as uid %d, not root", os.Geteuid())
	}
	return nil
}

func runbookDocker() (*client.Client, error) {
	testenv.Env(testenv.EnvDockerHost) // applies .cache/testenv.sh to the environment
	return client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
}

// cmdDR is the testscript command `dr` of runbook.txtar (guard it with
// [!docker] and [!mongo]; run testmongo and `fireops init --dir
// $WORK/etc` first):
//
//	dr server        the "server": volumes $PREFIX-user-ada and
//	                 $PREFIX-data (with jupyterhub.sqlite), the folder
//	                 $WORK/opt/firetech, and $WORK/etc/fireops.yaml backing
//	                 them and database $DB up to the destination
//	                 $WORK/storage; $PREFIX is set, its volumes are removed
//	                 when the script ends
//	dr save          records what the server holds now
//	dr same          fails unless the server holds what dr save recorded
//	dr destroy       removes the volumes, the database, the folder and
//	                 $WORK/etc
//	dr snapid VAR    sets VAR to the newest complete snapshot's id
func cmdDR(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 {
		ts.Fatalf("usage: dr server|save|same|destroy|snapid VAR")
	}
	ctx := context.Background()
	work := ts.Getenv("WORK")
	cli, err := runbookDocker()
	ts.Check(err)
	defer cli.Close()
	switch {
	case args[0] == "server" && !neg:
		b := make([]byte, 4)
		rand.Read(b)
		prefix := "fireops-rb-" + hex.EncodeToString(b)
		ts.Setenv("PREFIX", prefix)
		ts.Defer(func() {
			vs, err := cli.VolumeList(context.Background(), dvolume.ListOptions{Filters: filters.NewArgs(filters.Arg("name", "^"+prefix))})
			if err == nil {
				for _, v := range vs.Volumes {
					cli.VolumeRemove(context.Background(), v.Name, true)
				}
			}
		})
		ada, err := cli.VolumeCreate(ctx, dvolume.CreateOptions{Name: prefix + "-user-ada"})
		ts.Check(err)
		data, err := cli.VolumeCreate(ctx, dvolume.CreateOptions{Name: prefix + "-data"})
		ts.Check(err)
		ts.Check(os.MkdirAll(filepath.Join(ada.Mountpoint, "work"), 0o755))
		ts.Check(os.WriteFile(filepath.Join(ada.Mountpoint, "work", "train.ipynb"), []byte(`{"cells": []}`), 0o644))
		ts.Check(os.Symlink("work", filepath.Join(ada.Mountpoint, "latest")))
		ts.Check(os.WriteFile(filepath.Join(data.Mountpoint, "jupyterhub_cookie_secret"), []byte("cookie"), 0o600))
		if out, err := exec.Command("sqlite3", filepath.Join(data.Mountpoint, "jupyterhub.sqlite"),
			"CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users(name) VALUES ('ada'), ('bob');").CombinedOutput(); err != nil {
			ts.Fatalf("sqlite3: %v %s", err, out)
		}
		stack := filepath.Join(work, "opt", "firetech")
		ts.Check(os.MkdirAll(filepath.Join(stack, "hub"), 0o755))
		ts.Check(os.WriteFile(filepath.Join(stack, "compose.yaml"), []byte("name: firetech\n"), 0o644))
		ts.Check(os.WriteFile(filepath.Join(stack, "hub", "jupyterhub_config.py"), []byte("c = get_config()\n"), 0o644))
		cfg, err := config.Load(filepath.Join(work, "etc", "fireops.yaml"))
		ts.Check(err)
		y := fmt.Sprintf(`host: gpu01
keys:
  recipients: [%s]
  identity_file: identity.txt
  signing_key_file: signing.key
  signing_public_key: %s
destinations:
  - {name: local, remote: %s}
chunk_size: 1MiB
state_dir: %s
sources:
  files: [{name: stack, paths: [%s]}]
  sqlite: [{name: jupyterhub, volume: %s-data, file: jupyterhub.sqlite}]
  volumes: {include: ["%s-user-*", "%s-data"]}
  mongo: {uri_file: %s, databases: [%s]}
stack: {name: %s}
metrics: {textfile_dir: %s}
`, strings.Join(cfg.Keys.Recipients, ", "), cfg.Keys.SigningPublicKey, filepath.Join(work, "storage"), filepath.Join(work, "state"),
			stack, prefix, prefix, prefix, ts.Getenv("MONGO_URI_FILE"), ts.Getenv("DB"), prefix, filepath.Join(work, "prom"))
		ts.Check(os.MkdirAll(filepath.Join(work, "prom"), 0o755))
		ts.Check(os.WriteFile(filepath.Join(work, "etc", "fireops.yaml"), []byte(y), 0o600))
	case args[0] == "save" && !neg:
		ts.Check(os.WriteFile(filepath.Join(work, "dr-before.txt"), []byte(drState(ts, cli)), 0o600))
	case args[0] == "same":
		want, err := os.ReadFile(filepath.Join(work, "dr-before.txt"))
		ts.Check(err)
		got := drState(ts, cli)
		if (got == string(want)) == neg {
			ts.Fatalf("the server now:\n%s\nbefore:\n%s", got, want)
		}
	case args[0] == "destroy" && !neg:
		prefix := ts.Getenv("PREFIX")
		for _, v := range []string{prefix + "-user-ada", prefix + "-data"} {
			ts.Check(cli.VolumeRemove(ctx, v, true))
		}
		c, _, err := testMongo()
		ts.Check(err)
		ts.Check(c.Database(ts.Getenv("DB")).Drop(ctx))
		ts.Check(os.RemoveAll(filepath.Join(work, "opt")))
		ts.Check(os.RemoveAll(filepath.Join(work, "etc")))
	case args[0] == "snapid" && len(args) == 2 && !neg:
		snaps := filepath.Join(work, "storage", "gpu01", "snapshots")
		ents, err := os.ReadDir(snaps)
		ts.Check(err)
		id := ""
		for _, e := range ents {
			if _, err := os.Stat(filepath.Join(snaps, e.Name(), "manifest.json")); err == nil && e.Name() > id {
				id = e.Name()
			}
		}
		if id == "" {
			ts.Fatalf("no complete snapshot in %s", snaps)
		}
		ts.Setenv(args[1], id)
	default:
		ts.Fatalf("usage: dr server|save|same|destroy|snapid VAR")
	}
}

// drState describes the server: every file of the volumes and the
// folder (path, type, mode, content hash, link target), the hub
// database's dump, and the database's documents.
func drState(ts *testscript.TestScript, cli *client.Client) string {
	ctx := context.Background()
	prefix := ts.Getenv("PREFIX")
	var out []string
	tree := func(label, root string) {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if d.Name() == "jupyterhub.sqlite" {
				return nil // compared as a dump
			}
			fi, err := os.Lstat(p)
			if err != nil {
				return err
			}
			line := fmt.Sprintf("%s %s %v", label, rel, fi.Mode())
			switch {
			case fi.Mode()&fs.ModeSymlink != 0:
				l, _ := os.Readlink(p)
				line += " -> " + l
			case fi.Mode().IsRegular():
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				line += fmt.Sprintf(" %x", sha256.Sum256(b))
			}
			out = append(out, line)
			return nil
		})
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", label, err))
		}
	}
	for _, v := range []string{prefix + "-user-ada", prefix + "-data"} {
		vi, err := cli.VolumeInspect(ctx, v)
		if err != nil {
			out = append(out, fmt.Sprintf("volume %s: missing", v))
			continue
		}
		tree("volume:"+v, vi.Mountpoint)
		if strings.HasSuffix(v, "-data") {
			dump, err := exec.Command("sqlite3", filepath.Join(vi.Mountpoint, "jupyterhub.sqlite"), ".dump").CombinedOutput()
			if err != nil {
				dump = []byte("no database: " + err.Error())
			}
			out = append(out, "sqlite: "+string(dump))
		}
	}
	tree("files", filepath.Join(ts.Getenv("WORK"), "opt", "firetech"))
	c, _, err := testMongo()
	ts.Check(err)
	hashes, err := mongotest.SortedHashes(c, ts.Getenv("DB"))
	ts.Check(err)
	var names []string
	for n := range hashes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, "mongo "+n+" "+hashes[n])
	}
	return strings.Join(out, "\n") + "\n"
}
