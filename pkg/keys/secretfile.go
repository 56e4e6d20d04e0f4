package keys

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// SecretFileError says why a file holding a secret (a key, a token, an
// rclone config) may not be used, and how to fix it.
type SecretFileError struct {
	// Name is the file as given.
	Name string
	// Msg is the problem, one sentence naming the file.
	Msg string
	// Hint is the command or action that fixes it, or "".
	Hint string
	// Err is the underlying error, if any (fs.ErrNotExist for a missing
	// file).
	Err error
}

// Error returns Msg.
func (e *SecretFileError) Error() string { return e.Msg }

// Unwrap returns the underlying error.
func (e *SecretFileError) Unwrap() error { return e.Err }

// OpenSecretFile opens name for reading after checking it the way ssh
// checks its keys: a regular file, not readable by group or others, owned
// by root or the running user, and readable by the running user. The
// checks are made on the opened file, so the file read is the file
// checked. Every refusal is a *SecretFileError; a missing file's wraps
// fs.ErrNotExist. A named pipe is refused without blocking.
func OpenSecretFile(name string) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &SecretFileError{Name: name, Msg: name + " does not exist", Err: err}
		}
		// Say what is wrong with it when stat can tell (a foreign owner
		// explains why it cannot be read).
		if st, serr := os.Stat(name); serr == nil {
			if e := checkSecretStat(name, st); e != nil {
				return nil, e
			}
		}
		if errors.Is(err, fs.ErrPermission) {
			return nil, &SecretFileError{Name: name, Err: err,
				Msg:  fmt.Sprintf("%s is not readable by the running user (uid %d): %v", name, os.Getuid(), errors.Unwrap(err)),
				Hint: "run fireops as the user that owns it, or root"}
		}
		return nil, &SecretFileError{Name: name, Msg: err.Error(), Err: err}
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, &SecretFileError{Name: name, Msg: err.Error(), Err: err}
	}
	if e := checkSecretStat(name, st); e != nil {
		f.Close()
		return nil, e
	}
	// Back to blocking reads (a regular file ignores O_NONBLOCK, but the
	// caller gets an ordinary file).
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { syscall.SetNonblock(int(fd), false) })
	}
	return f, nil
}

// CheckSecretFile is OpenSecretFile without keeping the file open: nil
// when name may be used as a secret file.
func CheckSecretFile(name string) error {
	f, err := OpenSecretFile(name)
	if err != nil {
		return err
	}
	return f.Close()
}

// checkSecretStat checks the type, mode and owner of a secret file.
func checkSecretStat(name string, st fs.FileInfo) *SecretFileError {
	switch {
	case !st.Mode().IsRegular():
		return &SecretFileError{Name: name, Msg: name + " is not a regular file", Hint: "point it at a regular file"}
	case st.Mode().Perm()&0o077 != 0:
		return &SecretFileError{Name: name,
			Msg:  fmt.Sprintf("%s holds a secret but is readable by group or others (mode %04o)", name, st.Mode().Perm()),
			Hint: "run: chmod 600 " + name}
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid != 0 && int(sys.Uid) != os.Getuid() {
		return &SecretFileError{Name: name,
			Msg: fmt.Sprintf("%s holds a secret but is owned by uid %d, neither root nor the running user (uid %d)",
				name, sys.Uid, os.Getuid()),
			Hint: fmt.Sprintf("run: chown %d %s (root or the user running fireops)", os.Getuid(), name)}
	}
	return nil
}
