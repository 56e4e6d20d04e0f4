package snapshot

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestPartErrorNamesPartOnce: a part's error names the part once, however
// often its cause names it again (a source names itself in its errors).
func TestPartErrorNamesPartOnce(t *testing.T) {
	t.Parallel()
	cause := fmt.Errorf("files:big: read /srv/big.bin: %w", context.Canceled)
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"source names itself", cause, "part files:big: read /srv/big.bin: context canceled"},
		{"after a step", fmt.Errorf("fingerprint: %w", cause), "part files:big: fingerprint: read /srv/big.bin: context canceled"},
		{"already a part error", fmt.Errorf("part files:big: %w", cause), "part files:big: read /srv/big.bin: context canceled"},
		{"named further on", fmt.Errorf("integrity check failed: part files:big: piece 0: %w", cause), "integrity check failed: part files:big: piece 0: read /srv/big.bin: context canceled"},
		{"another part's id stays", errors.New("files:other: gone"), "part files:big: files:other: gone"},
		{"a kind alone stays", errors.New("files: restore /x: denied"), "part files:big: files: restore /x: denied"},
	} {
		err := &PartError{ID: "files:big", Err: tc.err}
		if got := err.Error(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
		if errors.Is(tc.err, context.Canceled) && !errors.Is(err, context.Canceled) {
			t.Errorf("%s: the cause is not in the chain", tc.name)
		}
	}
	if got := WithoutPartID("", "files:big: x"); got != "files:big: x" {
		t.Errorf("no id: %q", got)
	}
}
