package sqlite

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/leftovertest"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/leftover"
)

// TestLeftoverCopyRemoved: the private copy a killed snapshot left in the
// temp folder (state_dir) is removed, with a log line, by the next copy
// and by CleanLeftovers (rotate); a live run's copy is not.
func TestLeftoverCopyRemoved(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	src := filepath.Join(base, "hub.sqlite")
	makeDB(t, src, "wal", 5).Close()
	tmp := filepath.Join(base, "state")
	must(t, os.Mkdir(tmp, 0o700))
	dead := filepath.Join(tmp, copyPrefix+leftovertest.KilledTag(t)+"-12345")
	must(t, os.Mkdir(dead, 0o700))
	must(t, os.WriteFile(filepath.Join(dead, "copy.sqlite"), []byte("plaintext"), 0o600))
	live, err := os.MkdirTemp(tmp, leftover.Pattern(copyPrefix)) // this process: alive
	must(t, err)

	s, err := New(config.SQLiteSource{Name: "hub", Path: src}, WithTempDir(tmp))
	must(t, err)
	var logs bytes.Buffer
	s.SetLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	var arch bytes.Buffer
	_, err = s.WriteTar(context.Background(), &arch)
	must(t, err)
	if _, err := os.Lstat(dead); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the killed run's copy is still there: %v", err)
	}
	if !strings.Contains(logs.String(), "removed what an interrupted fireops run left behind") || !strings.Contains(logs.String(), dead) {
		t.Errorf("no log line for the removal:\n%s", logs.String())
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("a live run's copy was removed: %v", err)
	}
	// The copy this run made is gone; only the live one stays.
	ents, err := os.ReadDir(tmp)
	must(t, err)
	if len(ents) != 1 || ents[0].Name() != filepath.Base(live) {
		t.Errorf("state dir after the copy: %v", ents)
	}

	// CleanLeftovers (rotate) removes another killed run's copy too.
	dead2 := filepath.Join(tmp, copyPrefix+leftovertest.KilledTag(t)+"-6789")
	must(t, os.Mkdir(dead2, 0o700))
	removed, err := CleanLeftovers(tmp, nil)
	if err != nil || len(removed) != 1 || removed[0] != dead2 {
		t.Errorf("CleanLeftovers = %v, %v", removed, err)
	}
}

// TestLeftoverStagingRemoved: the staging file a killed restore left next
// to the target is removed, with a log line, when the next restore of
// that target stages; a live run's is not, nor another target's.
func TestLeftoverStagingRemoved(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	src := filepath.Join(base, "src.sqlite")
	makeDB(t, src, "wal", 5).Close()
	arch, _ := backup(t, src, base)

	dir := filepath.Join(base, "data")
	must(t, os.Mkdir(dir, 0o755))
	target := filepath.Join(dir, "jupyterhub.sqlite")
	dead := filepath.Join(dir, ".jupyterhub.sqlite.fireops-restore-"+leftovertest.KilledTag(t)+"-1")
	must(t, os.WriteFile(dead, []byte("plaintext"), 0o600))
	live, err := os.CreateTemp(dir, leftover.Pattern(".jupyterhub.sqlite.fireops-restore-"))
	must(t, err)
	live.Close()
	other := filepath.Join(dir, ".other.sqlite.fireops-restore-"+leftovertest.KilledTag(t)+"-2")
	must(t, os.WriteFile(other, nil, 0o600))

	r, err := NewRestorer(target)
	must(t, err)
	var logs bytes.Buffer
	r.SetLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	staged, err := r.Stage(context.Background(), bytes.NewReader(arch))
	must(t, err)
	must(t, staged.Commit(context.Background()))
	if _, err := os.Lstat(dead); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the killed restore's staging file is still there: %v", err)
	}
	if !strings.Contains(logs.String(), "removed what an interrupted fireops run left behind") || !strings.Contains(logs.String(), dead) {
		t.Errorf("no log line for the removal:\n%s", logs.String())
	}
	for _, p := range []string{live.Name(), other} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}
