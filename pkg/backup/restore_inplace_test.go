package backup

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/bootstrap"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/snapshot"
	"github.com/firetech/fireops/pkg/source"
	"github.com/firetech/fireops/pkg/source/files"
)

// filesOnlyConfig writes a config whose one files source "stack" names
// paths, backed up to a local destination under dir.
func filesOnlyConfig(t *testing.T, dir string, init *bootstrap.Result, paths ...string) *config.Config {
	t.Helper()
	return loadTestConfig(t, dir, "fireops", init, "sources:\n  files: [{name: stack, paths: ["+strings.Join(paths, ", ")+"]}]\n")
}

// TestRestoreAllRefusesFolderAboveArchivedPath: the snapshot was taken
// while the config named STACK/config; the config now names STACK. The
// archive holds STACK as the folder above config/ only: restore --all
// --force must refuse it (naming the archived path), not replace STACK by
// a folder holding only config/ (compose.yaml, never in the snapshot,
// would be deleted). With the config naming the archived path again, the
// part is put back.
func TestRestoreAllRefusesFolderAboveArchivedPath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	init, err := bootstrap.Init(bootstrap.Options{Dir: filepath.Join(dir, "etc"), Host: "gpu01"})
	must(t, err)
	stack := filepath.Join(dir, "opt", "firetech")
	conf := filepath.Join(stack, "config")
	must(t, os.MkdirAll(conf, 0o755))
	must(t, os.WriteFile(filepath.Join(conf, "a.yaml"), []byte("a: 1"), 0o644))
	must(t, os.WriteFile(filepath.Join(stack, "compose.yaml"), []byte("precious"), 0o644))
	if _, err := Snapshot(ctx, filesOnlyConfig(t, dir, init, conf), SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(filepath.Join(conf, "a.yaml"), []byte("a: 2"), 0o644))

	cfg := filesOnlyConfig(t, dir, init, stack)
	rr, err := Restore(ctx, cfg, RestoreOptions{Snapshot: "latest", All: true, Force: true})
	if exitcode.Code(err) != exitcode.Usage {
		t.Fatalf("restore --all --force with the config naming the folder above the archived path: %v", err)
	}
	if len(rr.Parts) != 1 || rr.Parts[0].Status != StatusRefused ||
		!strings.Contains(rr.Parts[0].Error, "above the paths the snapshot archived ("+conf+")") {
		t.Errorf("plan: %+v", rr.Parts)
	}
	if b, err := os.ReadFile(filepath.Join(stack, "compose.yaml")); err != nil || string(b) != "precious" {
		t.Errorf("compose.yaml, never in the snapshot: %q %v", b, err)
	}
	if b, _ := os.ReadFile(filepath.Join(conf, "a.yaml")); string(b) != "a: 2" {
		t.Errorf("a refused part was written: a.yaml %q", b)
	}

	cfg = filesOnlyConfig(t, dir, init, conf)
	if _, err := Restore(ctx, cfg, RestoreOptions{Snapshot: "latest", All: true, Force: true}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(conf, "a.yaml")); string(b) != "a: 1" {
		t.Errorf("a.yaml after the restore: %q", b)
	}
	if b, err := os.ReadFile(filepath.Join(stack, "compose.yaml")); err != nil || string(b) != "precious" {
		t.Errorf("compose.yaml after the restore of config/: %q %v", b, err)
	}
}

// TestInPlacePathsMustBeArchived: which configured paths a files part may
// be put back over, given the paths it recorded as archived.
func TestInPlacePathsMustBeArchived(t *testing.T) {
	t.Parallel()
	recorded := map[string]string{files.DetailRoots: `["/opt/firetech/config","/etc/fireops"]`}
	for _, tc := range []struct {
		name    string
		details map[string]string
		paths   []string
		err     string // "" when allowed
	}{
		{"an archived path", recorded, []string{"/opt/firetech/config"}, ""},
		{"both archived paths", recorded, []string{"/opt/firetech/config", "/etc/fireops"}, ""},
		{"inside an archived path", recorded, []string{"/opt/firetech/config/hub"}, ""},
		{"above an archived path", recorded, []string{"/opt/firetech"}, "/opt/firetech is above the paths the snapshot archived (/opt/firetech/config, /etc/fireops)"},
		{"above among archived", recorded, []string{"/etc/fireops", "/opt"}, "/opt is above the paths"},
		{"not archived", recorded, []string{"/srv/other"}, "/srv/other is not among the paths the snapshot archived"},
		{"a name that only starts like one", recorded, []string{"/opt/firetech/config2"}, "is not among"},
		{"no record (older fireops)", map[string]string{"files": "3"}, []string{"/opt/firetech/config"}, "does not record which paths it archived"},
		{"no details at all", nil, []string{"/opt/firetech/config"}, "does not record which paths it archived"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := &config.Config{Sources: config.Sources{Files: []config.FileSource{{Name: "stack", Paths: tc.paths}}}}
			p := snapshot.Part{ID: "files:stack", Kind: files.Kind, Name: "stack", Stats: source.Stats{Details: tc.details}}
			got, err := inPlacePaths(cfg, p)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if len(got) != len(tc.paths) {
					t.Errorf("paths %v", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || exitcode.Code(err) != exitcode.Usage {
				t.Fatalf("err = %v (code %d), want usage error with %q", err, exitcode.Code(err), tc.err)
			}
			if !strings.Contains(exitcode.Hint(err), "--to DIR") {
				t.Errorf("hint %q does not name --to DIR", exitcode.Hint(err))
			}
			// The restorer checks the same, not only the plan.
			if _, err := newInPlaceRestorer(cfg, p, true); err == nil {
				t.Error("the restorer accepted what the plan refuses")
			}
		})
	}
}

// TestInPlaceCreatesParentsWithArchiveMeta: folders above a path that are
// missing on the (new) server are created with the owner, mode and
// modification time the archive has for them, not as root 0755; a restore
// that is aborted removes the folders it created.
func TestInPlaceCreatesParentsWithArchiveMeta(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t) // it sets folder owners
	ctx := context.Background()
	base := t.TempDir()
	srv, app := filepath.Join(base, "srv"), filepath.Join(base, "srv", "app")
	conf, data := filepath.Join(app, "conf"), filepath.Join(app, "data")
	must(t, os.MkdirAll(conf, 0o755))
	must(t, os.MkdirAll(data, 0o755))
	must(t, os.WriteFile(filepath.Join(conf, "x"), []byte("x"), 0o600))
	must(t, os.WriteFile(filepath.Join(data, "y"), []byte("y"), 0o600))
	must(t, os.Chmod(srv, 0o711))
	must(t, os.Chown(srv, 1001, 1002))
	must(t, os.Chmod(app, 0o750|os.ModeSetgid))
	must(t, os.Chown(app, 1000, 1000))
	old := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, d := range []string{app, srv} {
		must(t, os.Chtimes(d, old, old))
	}
	src, err := files.New(config.FileSource{Name: "s", Paths: []string{conf, data}})
	must(t, err)
	var buf bytes.Buffer
	if _, err := src.WriteTar(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	must(t, os.RemoveAll(srv)) // the bare machine

	// Aborted: the folders it created are gone again.
	r := &inPlaceRestorer{paths: []string{conf, data}}
	st, err := r.Stage(ctx, bytes.NewReader(buf.Bytes()))
	must(t, err)
	must(t, st.Abort())
	if _, err := os.Lstat(srv); err == nil {
		t.Error("an aborted restore left the folders it created")
	}

	st, err = r.Stage(ctx, bytes.NewReader(buf.Bytes()))
	must(t, err)
	must(t, st.Commit(ctx))
	for _, tc := range []struct {
		path     string
		mode     os.FileMode
		uid, gid uint32
	}{
		{srv, 0o711, 1001, 1002},
		{app, 0o750 | os.ModeSetgid, 1000, 1000},
	} {
		fi, err := os.Stat(tc.path)
		must(t, err)
		sys := fi.Sys().(*syscall.Stat_t)
		if got := fi.Mode() & (os.ModePerm | os.ModeSetgid); got != tc.mode || sys.Uid != tc.uid || sys.Gid != tc.gid {
			t.Errorf("%s restored as %v %d:%d, the snapshot has %v %d:%d", tc.path, got, sys.Uid, sys.Gid, tc.mode, tc.uid, tc.gid)
		}
		if !fi.ModTime().Equal(old) {
			t.Errorf("%s: mtime %v, the snapshot has %v", tc.path, fi.ModTime(), old)
		}
	}
	for _, p := range []string{filepath.Join(conf, "x"), filepath.Join(data, "y")} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
	if ents, _ := os.ReadDir(app); len(ents) != 2 {
		t.Errorf("%s holds %v, want conf and data only", app, ents)
	}
}
