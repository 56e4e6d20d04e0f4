package volume

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/firetech/fireops/internal/walktest"
)

// TestSwapLongName: a notebook user names a file in their volume with 250
// bytes (NAME_MAX is 255). Restoring their volume still replaces its
// content: the live entry's aside name NAME.fireops-old would be 262 bytes,
// so it is cut short to fit (an adversarial review found the restore
// spinning for ever on it, with the entries listed before it already moved
// out of the live volume).
func TestSwapLongName(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	live, staged, hold := filepath.Join(base, "live"), filepath.Join(base, "staged"), filepath.Join(base, "hold")
	long := strings.Repeat("x", 250)
	walktest.WriteTree(t, live, map[string]string{"a": "old", long: "planted by the user"})
	walktest.WriteTree(t, staged, map[string]string{"a": "restored"})
	if err := swap(live, staged, hold, nil); err != nil {
		t.Fatalf("swap: %v", err)
	}
	if got := readTree(t, live); len(got) != 1 || got["a"] != "restored" {
		t.Errorf("live after the swap: %v, want only a=restored", got)
	}
}
