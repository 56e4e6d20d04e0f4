package tarsafe

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// SyncFS flushes the filesystem holding dir (syncfs(2)). Extract does not
// fsync what it writes; a restorer calls SyncFS on its staging folder
// before the staged tree replaces the live one: one call instead of an
// fsync per file.
func SyncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
