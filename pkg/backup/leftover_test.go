package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firetech/fireops/pkg/leftover"
)

// killedTag returns the run tag of a process that was killed with
// SIGKILL: what a killed fireops run's staging names carry.
func killedTag(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tag, err := leftover.TagOf(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	return tag
}

// TestInPlaceLeftoversRemoved: the staging and undo folders a killed
// in-place restore left next to its paths are removed, each with a log
// line, when the next one stages; a live run's are kept.
func TestInPlaceLeftoversRemoved(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	path := filepath.Join(base, "opt", "firetech")
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
	parent := filepath.Dir(path)
	var dead []string
	for _, prefix := range []string{stagingPrefix, undoPrefix} {
		d := filepath.Join(parent, prefix+killedTag(t)+"-7")
		if err := os.MkdirAll(filepath.Join(d, "restored"), 0o700); err != nil {
			t.Fatal(err)
		}
		dead = append(dead, d)
	}
	live, err := os.MkdirTemp(parent, leftover.Pattern(stagingPrefix))
	if err != nil {
		t.Fatal(err)
	}

	var arch bytes.Buffer
	tw := tar.NewWriter(&arch)
	rel := strings.TrimPrefix(path, "/")
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: rel + "/", Mode: 0o755, ModTime: time.Unix(1600000000, 0)})
	tw.Close()

	var logs bytes.Buffer
	r := &inPlaceRestorer{paths: []string{path}}
	r.SetLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	st, err := r.Stage(context.Background(), &arch)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Abort()
	for _, d := range dead {
		if _, err := os.Lstat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is still there: %v", d, err)
		}
		if !strings.Contains(logs.String(), "path="+d) {
			t.Errorf("no log line for %s:\n%s", d, logs.String())
		}
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("a live run's staging folder was removed: %v", err)
	}
	if s := st.(*inPlaceStaged).staging; !strings.HasPrefix(filepath.Base(s), stagingPrefix+leftover.Tag()+"-") {
		t.Errorf("staging folder %s does not carry the run's tag", s)
	}
}
