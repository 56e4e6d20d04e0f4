package files

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/leftovertest"
	"github.com/firetech/fireops/pkg/leftover"
)

// rootArchive is a tar whose "./" entry makes the root world-readable,
// with a setuid file.
func rootArchive(t *testing.T) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := time.Unix(1600000000, 0)
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755, ModTime: mt},
		{Typeflag: tar.TypeReg, Name: "secret", Mode: 0o644, Size: 1, ModTime: mt},
		{Typeflag: tar.TypeReg, Name: "tool", Mode: 0o4755, Size: 1, ModTime: mt},
	} {
		must(t, tw.WriteHeader(h))
		if h.Size > 0 {
			tw.Write([]byte{'x'})
		}
	}
	must(t, tw.Close())
	return buf.Bytes()
}

// TestStagingPrivateUntilCommit: the staging folder stays 0700 while it
// holds the restored files, whatever the archive's "./" says; Commit gives
// the target the archive's mode. No setuid bit is restored.
func TestStagingPrivateUntilCommit(t *testing.T) {
	t.Parallel()
	target := filepath.Join(t.TempDir(), "target")
	r, err := NewRestorer(target, false)
	must(t, err)
	st, err := r.Stage(context.Background(), bytes.NewReader(rootArchive(t)))
	must(t, err)
	staging := st.(*staged).staging
	fi, err := os.Stat(staging)
	must(t, err)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("staging folder mode %v while staged, want 0700", fi.Mode())
	}
	if d := st.Stats().Details["setid_dropped"]; d != "1" {
		t.Errorf("setid_dropped = %q, want 1", d)
	}
	must(t, st.Commit(context.Background()))
	if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("target after Commit: %v, %v; want 0755", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(target, "tool")); err != nil || fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 || fi.Mode().Perm() != 0o755 {
		t.Errorf("tool: %v, %v; want 0755 without setuid", fi.Mode(), err)
	}
}

// TestLeftoverStagingRemoved: a staging folder that a killed restore left
// next to the target is removed, with a log line, by the next Stage there;
// a live run's staging folder is not.
func TestLeftoverStagingRemoved(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	dead := filepath.Join(base, stagingPrefix+leftovertest.KilledTag(t)+"-42")
	must(t, os.MkdirAll(filepath.Join(dead, "etc"), 0o700))
	must(t, os.WriteFile(filepath.Join(dead, "etc", "secret"), []byte("plaintext"), 0o600))
	live, err := os.MkdirTemp(base, leftover.Pattern(stagingPrefix))
	must(t, err)

	r, err := NewRestorer(filepath.Join(base, "target"), false)
	must(t, err)
	var logs bytes.Buffer
	r.SetLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	st, err := r.Stage(context.Background(), bytes.NewReader(rootArchive(t)))
	must(t, err)
	defer st.Abort()
	if _, err := os.Lstat(dead); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the killed restore's staging folder is still there: %v", err)
	}
	if !strings.Contains(logs.String(), "removed what an interrupted fireops run left behind") || !strings.Contains(logs.String(), dead) {
		t.Errorf("no log line for the removal:\n%s", logs.String())
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("a live run's staging folder was removed: %v", err)
	}
	if s := st.(*staged).staging; !strings.HasPrefix(filepath.Base(s), stagingPrefix+leftover.Tag()+"-") {
		t.Errorf("staging folder %s does not carry the run's tag %s", s, leftover.Tag())
	}
}
