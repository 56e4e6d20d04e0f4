package tarsafe

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ApplyMeta is the one way fireops gives a restored folder its owner,
// mode and times: Extract for every folder it writes, ApplyRoot for a
// staging folder's root, files.Restorer for a staging folder the archive
// has no "./" entry for, files.InPlace for the folders it creates above
// its paths, and the volume restore for a live volume's root. What those
// callers need differently is in MetaOptions, each field saying whose
// need it is.

// TimesToSet says which of a folder's times [ApplyMeta] sets.
type TimesToSet int

const (
	// TimesBoth sets the access and the modification time (the zero
	// value).
	TimesBoth TimesToSet = iota
	// TimesMtime sets the modification time and leaves the access time
	// as it is.
	TimesMtime
	// TimesNone leaves both times as they are.
	TimesNone
)

// MetaOptions are what differs between the callers of [ApplyMeta]. The
// zero value is Extract's rule: both times set, an owner that cannot be
// given (EPERM, EINVAL) left, the first other failure returned at once.
type MetaOptions struct {
	// Times says which times are set. Extract, ApplyRoot and the volume
	// restore's live root set both (TimesBoth): they copy a whole entry.
	// files.InPlace gives the folders it creates above its paths the
	// archive's owner, mode and modification time, what it promises
	// (TimesMtime): their access time stays that of the restore that
	// created them. files.Restorer's staging folder, when the archive
	// has no "./" entry, takes the replaced folder's owner and mode but
	// not its times, which would say nothing of the restored content
	// (TimesNone).
	Times TimesToSet
	// IgnoreChown lists the errors of the chown (matched with errors.Is)
	// that only mean the owner cannot be given here: the owner is then
	// left as it is and the mode and times still set. Nil means EPERM
	// and EINVAL, Extract's rule for ids that come from an archive (not
	// root; an id outside this user namespace); files.InPlace, which
	// copies the ids of the staged copies Extract made, uses it too. Two
	// callers that copy a folder's ids keep the narrower lists they
	// always had, so that there an id the kernel calls invalid is
	// reported, not hidden: the volume restore's live root, which takes
	// the staged root's ids ([fs.ErrPermission]: EPERM, EACCES), and
	// files.Restorer's staging folder without a "./" entry, which takes
	// the replaced folder's, this host's own (EPERM).
	IgnoreChown []error
	// KeepGoing sets the mode and the times even after an earlier step
	// failed, and returns every failure joined. files.InPlace sets it:
	// it applies the folders' metadata last, after the restored paths
	// are live, where a folder that did not get its owner should still
	// get its mode and time. Without it the first failure is returned
	// at once (the other callers, which then fail the restore).
	KeepGoing bool
}

// fchown is unix.Fchown; tests make it fail.
var fchown = unix.Fchown

// ApplyMeta gives a folder m's owner, mode and times, in that order:
// chown before chmod, because the kernel may clear the setuid and setgid
// bits on a chown (it does on anything but a folder), so the mode set
// after it keeps them; the times last, as Extract always set them.
//
// The folder is the open folder dirfd itself when name is "" (Extract's
// folders, already open); otherwise name in dirfd (unix.AT_FDCWD with a
// path), opened with O_NOFOLLOW|O_DIRECTORY and applied through that
// descriptor: a symbolic link at name is refused, never followed, and so
// is anything that is not a folder; every step acts on the one folder
// opened, whatever is renamed there meanwhile. An m.UID and m.GID of -1
// leave the owner (no chown is made). Errors name the step ("chown",
// "chmod", "set times") and, when given, name; see MetaOptions for which
// are ignored and when it stops.
func ApplyMeta(dirfd int, name string, m Meta, o MetaOptions) error {
	fd := dirfd
	if name != "" {
		var err error
		fd, err = Openat(dirfd, name, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
	}
	var errs []error
	// failed records the failure of step and reports whether to stop.
	failed := func(step string, err error) bool {
		if name != "" {
			err = fmt.Errorf("%s: %s: %w", name, step, err)
		} else {
			err = fmt.Errorf("%s: %w", step, err)
		}
		errs = append(errs, err)
		return !o.KeepGoing
	}
	if m.UID != -1 || m.GID != -1 {
		if err := fchown(fd, m.UID, m.GID); err != nil && !o.chownIgnored(err) && failed("chown", err) {
			return errs[0]
		}
	}
	if err := unix.Fchmod(fd, syscallMode(m.Mode)); err != nil && failed("chmod", err) {
		return errs[0]
	}
	if o.Times != TimesNone {
		atime := unix.NsecToTimespec(m.Atime.UnixNano())
		if o.Times == TimesMtime {
			atime = unix.Timespec{Nsec: unix.UTIME_OMIT}
		}
		ts := []unix.Timespec{atime, unix.NsecToTimespec(m.Mtime.UnixNano())}
		if err := unix.UtimesNanoAt(fd, ".", ts, unix.AT_SYMLINK_NOFOLLOW); err != nil && failed("set times", err) {
			return errs[0]
		}
	}
	return errors.Join(errs...)
}

// chownIgnored reports whether a chown error is one o leaves.
func (o MetaOptions) chownIgnored(err error) bool {
	if o.IgnoreChown == nil {
		return chown(err) == nil // Extract's rule for its files and links too
	}
	for _, e := range o.IgnoreChown {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// MetaOf returns the owner, mode (permission bits with setuid, setgid
// and sticky) and times of fi, a stat result (os.Lstat, Lstatat), for
// [ApplyMeta]. When fi holds no stat data it returns false, with UID and
// GID -1 (owner left) and only the modification time.
func MetaOf(fi fs.FileInfo) (Meta, bool) {
	m := Meta{Mode: fi.Mode() & (fs.ModePerm | setIDBits), UID: -1, GID: -1, Mtime: fi.ModTime()}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return m, false
	}
	m.UID, m.GID = int(st.Uid), int(st.Gid)
	m.Atime, m.Mtime = time.Unix(st.Atim.Unix()), time.Unix(st.Mtim.Unix())
	return m, true
}
