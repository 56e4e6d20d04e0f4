package tarsafe

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

func TestSyncFS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := SyncFS(dir); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	err := SyncFS(missing)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("SyncFS of a missing folder: %v", err)
	}
}
