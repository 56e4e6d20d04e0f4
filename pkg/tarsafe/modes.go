package tarsafe

import (
	"archive/tar"
	"fmt"
	"io/fs"
	"time"

	"golang.org/x/sys/unix"
)

// Modes: what Extract applies, and what it leaves to the caller's commit.
//
// The archives fireops restores are written, through their volumes, by
// hub users, and a restore may put one on the host (restore --to DIR).
// So Extract never gives a file the setuid or setgid bit (nor the sticky
// bit, which means nothing on a Linux file): a setuid-root program from a
// volume would give root to whoever can run it. The entries whose bits
// were dropped are counted in Stats.SetIDDropped; put the bits back by
// hand after checking the files. Folders keep setgid and sticky (group
// inheritance, /tmp-like folders; neither grants anything); setuid on a
// folder is dropped (Linux ignores it).
//
// The target folder itself stays as it was created (0700 when Extract
// creates it) whatever the archive's "./" entry says: a staging folder
// must stay private until it is committed. The entry's owner, mode and
// times are returned in Stats.RootMeta for the caller's commit to apply
// with ApplyRoot.

// setIDBits are the mode bits never given to a file.
const setIDBits = fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// Meta is the owner, mode and times an archive gives a folder.
type Meta struct {
	// Mode holds the permission bits, with setgid and sticky (and
	// setuid where MetaOf read it from a folder that has it).
	Mode fs.FileMode
	// UID and GID are numeric owner ids.
	UID, GID int
	// Atime and Mtime are the access and modification times.
	Atime, Mtime time.Time
}

// regularMode returns the mode Extract gives a regular file of hdr, and
// whether it dropped a setuid, setgid or sticky bit.
func regularMode(hdr *tar.Header) (fs.FileMode, bool) {
	m := modeOf(hdr)
	return m &^ setIDBits, m&setIDBits != 0
}

// dirMode returns the mode Extract gives a folder of hdr: setuid dropped.
func dirMode(hdr *tar.Header) fs.FileMode { return modeOf(hdr) &^ fs.ModeSetuid }

// ApplyRoot gives the folder dir the owner, mode and times the archive's
// "./" entry had (st.RootMeta); it does nothing when the archive had no
// such entry (st.Root is false). Call it when committing a staging
// folder, just before it becomes visible. A symbolic link at dir is
// refused; an owner that cannot be set (not root) is left, as by Extract.
func ApplyRoot(dir string, st Stats) error {
	if !st.Root {
		return nil
	}
	if err := ApplyMeta(unix.AT_FDCWD, dir, st.RootMeta, MetaOptions{}); err != nil {
		return fmt.Errorf("tarsafe: %w", err)
	}
	return nil
}

// applyMeta gives the open folder fd m's owner, mode and times
// ([ApplyMeta] with Extract's options).
func applyMeta(fd int, m dirMeta) error {
	return ApplyMeta(fd, "", Meta{Mode: m.mode, UID: m.uid, GID: m.gid, Atime: m.atime, Mtime: m.mtime}, MetaOptions{})
}
