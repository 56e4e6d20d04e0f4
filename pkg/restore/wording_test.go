package restore

import (
	"errors"
	"strings"
	"testing"

	"github.com/firetech/fireops/pkg/destination"
	"github.com/firetech/fireops/pkg/exitcode"
)

// TestPartReasonEscapes: a part's STATUS cell escapes what a terminal
// would act on (a user's file name may hold ESC or a bidi override),
// leaves plain text alone, and still drops the part ID the row names.
func TestPartReasonEscapes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"files:stack: open /data/notes.txt: permission denied", "open /data/notes.txt: permission denied"},
		{"files:stack: open /data/evil\u202egpj.exe\x1b[31m: denied", `open /data/evil\u202egpj.exe\x1b[31m: denied`},
		{"files:stack: two\nlines", "two lines"},
	} {
		if got := partReason("files:stack", errors.New(c.in)); got != c.want {
			t.Errorf("partReason(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestClosestIDs(t *testing.T) {
	ids := []string{"20260101T000000Z-aaaaaa", "20260102T000000Z-bbbbbb", "20260301T000000Z-cccccc", "20260302T000000Z-dddddd"}
	if got := strings.Join(closestIDs(ids, "20260305T000000Z-eeeeee", 3, nil), " "); got != "20260302T000000Z-dddddd 20260301T000000Z-cccccc" {
		t.Fatalf("closest: %s", got)
	}
	if got := strings.Join(closestIDs(ids, "2019", 3, nil), " "); got != "20260302T000000Z-dddddd 20260301T000000Z-cccccc 20260102T000000Z-bbbbbb" {
		t.Fatalf("closest: %s", got)
	}
}

// TestSnapshotNotFoundHint: a restore that found no usable copy because
// the destinations could not be read says what to check (OpenAllHint: not
// to leave one out with --dest OTHER, for every destination that could
// hold the snapshot was tried); an error that carries its own exit code
// and hint keeps them.
func TestSnapshotNotFoundHint(t *testing.T) {
	t.Parallel()
	err := snapshotNotFound("latest", []error{errors.New("snapshot x on nas: dial tcp: connection refused")})
	if exitcode.Code(err) != exitcode.Failure || exitcode.Hint(err) != destination.OpenAllHint || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("unreadable destination: code %d, hint %q, %v", exitcode.Code(err), exitcode.Hint(err), err)
	}
	own := exitcode.New(exitcode.Usage, errors.New("bad option"), "fix the option")
	err = snapshotNotFound("latest", []error{own})
	if exitcode.Code(err) != exitcode.Usage || exitcode.Hint(err) != "fix the option" {
		t.Errorf("own code and hint: code %d, hint %q, %v", exitcode.Code(err), exitcode.Hint(err), err)
	}
}
