package leftover

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Owner is the run that made a tagged name, for what fireops creates
// outside a folder it can list with [Clean] (Docker volumes, MongoDB
// collections): the caller lists them and decides with [OwnerOf].
type Owner struct {
	// PID is the run's process id.
	PID int
	// Rest is the name after the tag and its "-".
	Rest string
	// Alive says the run may still be running (this boot's, and a
	// process with its pid and start time exists, or that cannot be
	// told): what it made must be kept.
	Alive bool
}

// OwnerOf parses name: prefix, then a run tag, "-" and the rest, as
// [Pattern] and [Name] make them. ok is false when name is not under
// prefix or carries no tag there (an older fireops or another program
// made it: nothing tells whether a run still uses it).
func OwnerOf(name, prefix string) (o Owner, ok bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return Owner{}, false
	}
	r, ok := parse(rest)
	if !ok {
		return Owner{}, false
	}
	f := strings.SplitN(rest, "-", 4)
	return Owner{PID: r.pid, Rest: f[3], Alive: r.alive()}, true
}

// Name returns a name for something this run creates outside a folder:
// prefix, this run's tag, "-" and rest.
func Name(prefix, rest string) string { return prefix + Tag() + "-" + rest }

var (
	hostOnce sync.Once
	hostID   string
)

// Host returns 8 hex digits that identify this host: a hash of
// /etc/machine-id, or of the host name without one. A run tag tells
// whether a run lives only on the host that made it; what lives outside
// this host (a Docker Engine or a MongoDB server that other hosts use
// too) carries Host beside the tag, so that one host never removes what
// another host's live run made (its boot id differs, which would read as
// a run from before the last boot).
func Host() string {
	hostOnce.Do(func() {
		id, err := os.ReadFile("/etc/machine-id")
		if err != nil || len(strings.TrimSpace(string(id))) == 0 {
			h, _ := os.Hostname()
			id = []byte("hostname:" + h)
		}
		sum := sha256.Sum256([]byte(strings.TrimSpace(string(id))))
		hostID = hex.EncodeToString(sum[:4])
	})
	return hostID
}

// TempFile opens a new private (0600) file in dir ("": os.TempDir())
// that has no name: with O_TMPFILE it never had one, so nothing is left
// when the process is killed at any moment. Where the filesystem lacks
// O_TMPFILE it is created under prefix with this run's tag and unlinked
// at once; [Clean] of dir and prefix removes one that a run killed
// between the two left behind.
func TempFile(dir, prefix string) (*os.File, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	if !noTmpfile {
		// O_EXCL: the file can never be given a name (linkat) either.
		fd, err := unix.Open(dir, unix.O_RDWR|unix.O_TMPFILE|unix.O_CLOEXEC|unix.O_EXCL, 0o600)
		if err == nil {
			return os.NewFile(uintptr(fd), dir+"/(unnamed)"), nil
		}
		// EOPNOTSUPP: the filesystem lacks it; EISDIR, EINVAL: the kernel
		// does (unix.O_TMPFILE includes O_DIRECTORY, which an old kernel
		// takes as opening the folder). Anything else is a real error.
		if !errors.Is(err, syscall.EOPNOTSUPP) && !errors.Is(err, syscall.EISDIR) && !errors.Is(err, syscall.EINVAL) {
			return nil, &os.PathError{Op: "open", Path: dir, Err: err}
		}
	}
	f, err := os.CreateTemp(dir, Pattern(prefix))
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// noTmpfile makes TempFile take the fallback path (tests).
var noTmpfile = false
