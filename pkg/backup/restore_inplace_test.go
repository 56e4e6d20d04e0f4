package backup

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/bootstrap"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/partkind"
	"github.com/firetech/fireops/pkg/restore"
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
	testutil.Must(t, err)
	stack := filepath.Join(dir, "opt", "firetech")
	conf := filepath.Join(stack, "config")
	testutil.Must(t, os.MkdirAll(conf, 0o755))
	testutil.Must(t, os.WriteFile(filepath.Join(conf, "a.yaml"), []byte("a: 1"), 0o644))
	testutil.Must(t, os.WriteFile(filepath.Join(stack, "compose.yaml"), []byte("precious"), 0o644))
	if _, err := Snapshot(ctx, filesOnlyConfig(t, dir, init, conf), SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Must(t, os.WriteFile(filepath.Join(conf, "a.yaml"), []byte("a: 2"), 0o644))

	cfg := filesOnlyConfig(t, dir, init, stack)
	rr, err := restore.Restore(ctx, cfg, restore.Options{Snapshot: "latest", All: true, Force: true})
	if exitcode.Code(err) != exitcode.Usage {
		t.Fatalf("restore --all --force with the config naming the folder above the archived path: %v", err)
	}
	if len(rr.Parts) != 1 || rr.Parts[0].Status != restore.StatusRefused ||
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
	if _, err := restore.Restore(ctx, cfg, restore.Options{Snapshot: "latest", All: true, Force: true}); err != nil {
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
			got, err := partkind.InPlacePaths(cfg, p)
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
			if _, err := partkind.NewInPlaceRestorer(cfg, p, true); err == nil {
				t.Error("the restorer accepted what the plan refuses")
			}
		})
	}
}
