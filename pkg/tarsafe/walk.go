package tarsafe

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"syscall"

	"golang.org/x/sys/unix"
)

// WalkPolicy is what a [Walker] does when the tree changes under it or
// holds what an archive should not: an entry that vanishes or is replaced
// between listing its folder and opening it, a folder moved away while it
// is walked, a named pipe or device, a name too long for an archive.
type WalkPolicy int

const (
	// WalkStrict fails the walk, with an error naming the path: nothing
	// is lost silently (the files source, whose user chose the paths).
	// Sockets are the one exception: a tar cannot hold them and they are
	// runtime artefacts, so they are left out ([SkipSpecial]).
	WalkStrict WalkPolicy = iota
	// WalkTolerant leaves the entry out (a folder with everything in it)
	// and tells [Walker.Skipped] why: the walk goes on (the volume
	// source, whose tree belongs to a user who may change it at any
	// time). Errors that say nothing about the entry (a folder that cannot
	// be read, a failed reopen of a folder still there) still fail it.
	WalkTolerant
)

// WalkSkip is why a [Walker] or an [EntryWriter] left an entry out.
type WalkSkip int

const (
	// SkipVanished: it was removed or replaced (another inode, a symlink)
	// since its folder was listed, or its folder was moved away while it
	// was walked (WalkTolerant only).
	SkipVanished WalkSkip = iota + 1
	// SkipSpecial: a socket (either policy), named pipe or device
	// (WalkTolerant only).
	SkipSpecial
	// SkipTooLong: its archive name would be longer than
	// [Walker.MaxNameLen]; a folder is left out with what it holds
	// (WalkTolerant only).
	SkipTooLong
	// SkipFragmented: a regular file whose data is in too many pieces to
	// archive without its holes ([ErrTooFragmented]; [EntryWriter],
	// WalkTolerant only).
	SkipFragmented
	// SkipHoles: a sparse file whose holes would bring the archive's past
	// [EntryWriter].MaxHoles (WalkTolerant only).
	SkipHoles
)

// WalkEntry is one path met by a [Walker].
type WalkEntry struct {
	Path string // host path
	Rel  string // path relative to the root; "." for the root
	// Dir is the descriptor of the folder holding it (unix.AT_FDCWD for
	// the root), valid during the callback only; Base is its name there
	// (the path for the root). Open it with [OpenRegular] (Dir, Base,
	// Path, Info): never through Path.
	Dir  int
	Base string
	// Info is its lstat; for a folder, the fstat of the folder opened
	// (the inode the lstat saw). Nil in an entry [Walker.Exclude] is
	// given, and may be nil in one [Walker.Skipped] is given.
	Info fs.FileInfo
	Link string // symlink target
}

// specialModes are the types no archive the sources write holds.
const specialModes = fs.ModeSocket | fs.ModeNamedPipe | fs.ModeDevice | fs.ModeCharDevice | fs.ModeIrregular

// Walker walks a tree in archive order, for the sources that archive a
// host folder: the root, then depth first with the names of every folder
// sorted bytewise (the order of the Docker Engine's archiver too). It is
// the defence of those sources against a tree whose owner changes it
// while it is archived (a notebook user who swaps a folder for a symlink
// to /etc mid-backup): the walk archives what was at the root's paths,
// and never what a swap points to.
//
// Nothing is read through a host path below the root, which is opened
// once (its last component not followed): every folder below it is
// opened relative to the folder above with O_NOFOLLOW|O_DIRECTORY (a
// [DirChain]), every symlink read relative to its folder, and each opened
// folder must be the inode the listing saw (device, inode, type; a file
// is checked the same way by [OpenRegular], which the caller opens it
// with). A folder or file renamed over, swapped for a symlink, a hard
// link or a folder from elsewhere between listing and opening (or while
// an earlier file is read) is never walked into or read: the [WalkPolicy]
// says whether that fails the walk or leaves the entry out; whatever is
// renamed above the current folder cannot redirect it. Headers come from
// the fstat of the opened folder or file. Paths of any length and depth
// work: the walk is iterative, holds the path of the current entry only
// and a bounded number of descriptors; an entry whose archive name would
// be longer than an archive a restore can read holds ([MaxNameLen]) is an
// error or left out, by the policy.
//
// Set the fields, then call Walk once for each root; a Walker is not
// safe for concurrent use.
type Walker struct {
	// Policy says what an entry that vanished, was replaced or cannot be
	// archived does: fail the walk, or be left out.
	Policy WalkPolicy
	// Prefix starts every error message ("files:web").
	Prefix string
	// RootFolder refuses a root that is not a folder (a symlink to one
	// included): Walk fails "is not a folder". Otherwise such a root is
	// walked as a single entry, a symlink never followed.
	RootFolder bool
	// MaxNameLen is the longest archive name an entry may have, a
	// folder's trailing "/" included; 0 is [MaxNameLen]. An entry's
	// archive name is taken to be Walk's name, "/" and its Rel.
	MaxNameLen int

	// Visit is called for every entry walked, in archive order: each
	// folder before what it holds. Its error ends the walk.
	Visit func(WalkEntry) error
	// Exclude, when set, is asked about every entry below the root
	// before it is looked at (Info is nil): true leaves it out, a folder
	// with everything in it.
	Exclude func(WalkEntry) bool
	// Excluded, when set, is called with each entry Exclude left out,
	// after its lstat (Info), which is then done for it (a failed one
	// counts as for any entry).
	Excluded func(WalkEntry)
	// Skipped, when set, is told of every entry the policy left out.
	Skipped func(WalkEntry, WalkSkip)
	// BeforeOpen, when set (by tests), is called with the host path of a
	// folder before it is opened.
	BeforeOpen func(path string)

	dirbuf []byte // getdents buffer
	chain  DirChain
	// entered are the folders entered in this Walk (folderID). A folder
	// has one name at a time, so one met again was moved from where it
	// was walked to a place not walked yet: walking it again would let a
	// user who moves a folder along N empty ones (cheap) have it
	// archived N times. About 50 bytes a folder.
	entered map[folderID]struct{}
	stack   []walkFrame // the folders being walked, from the root
	root    string
	nameLen int    // length of the root's archive name
	path    []byte // host path of the entry being walked
}

// walkFrame is a folder being walked: its sorted names and the next one.
type walkFrame struct {
	names []string
	next  int
	plen  int // length of the folder's host path
}

// Walk walks the tree at root (the last component not followed), whose
// archive name is name without a trailing "/" (only its length matters,
// for MaxNameLen). A root that cannot be looked at or opened fails the
// walk under either policy.
func (w *Walker) Walk(ctx context.Context, root, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	fi, err := os.Lstat(root)
	if err != nil {
		return fmt.Errorf("%s: %w", w.Prefix, err)
	}
	if w.RootFolder && !fi.IsDir() {
		return fmt.Errorf("%s: %s is not a folder", w.Prefix, root)
	}
	e := WalkEntry{Path: root, Rel: ".", Dir: unix.AT_FDCWD, Base: root, Info: fi}
	if !fi.IsDir() {
		return w.leaf(e)
	}
	if w.BeforeOpen != nil {
		w.BeforeOpen(root)
	}
	defer w.chain.Close()
	if e.Info, err = w.chain.OpenRoot(root, fi); err != nil {
		return w.lost(e, err, false)
	}
	w.entered = map[folderID]struct{}{w.chain.id(): {}}
	if w.dirbuf == nil {
		w.dirbuf = make([]byte, 32<<10)
	}
	names, err := ReadDirNames(w.chain.Fd(), root, w.dirbuf)
	if err != nil {
		return fmt.Errorf("%s: read folder %s: %w", w.Prefix, root, err)
	}
	if err := w.Visit(e); err != nil {
		return err
	}
	w.root, w.nameLen = root, len(name)
	w.path = append(w.path[:0], root...)
	w.stack = w.stack[:0]
	w.push(names)
	for len(w.stack) > 0 {
		if err := w.step(ctx); err != nil {
			return err
		}
	}
	return nil
}

// push makes the folder just entered (the chain's current one, whose host
// path is w.path) the one walked, with its names.
func (w *Walker) push(names []string) {
	sort.Strings(names)
	w.stack = append(w.stack, walkFrame{names: names, plen: len(w.path)})
}

// step walks the next name of the current folder, or leaves the folder
// when it has none left.
func (w *Walker) step(ctx context.Context) error {
	f := &w.stack[len(w.stack)-1]
	fd := w.chain.Fd()
	if fd < 0 || f.next == len(f.names) {
		if fd < 0 {
			// The folder moved away while a folder inside it was walked
			// (only below the descriptors the chain keeps open; tolerant
			// only, strict failed in Leave): the rest of it is gone from
			// here.
			p := string(w.path[:f.plen])
			w.skip(WalkEntry{Path: p, Rel: w.rel(p)}, SkipVanished)
		}
		w.stack = w.stack[:len(w.stack)-1]
		err := w.chain.Leave()
		switch {
		case err == nil:
		case w.Policy == WalkStrict:
			// A folder far above moved away while this one was walked.
			p := w.root
			if len(w.stack) > 0 {
				p = string(w.path[:w.stack[len(w.stack)-1].plen])
			}
			return fmt.Errorf("%s: %s was moved or replaced during the walk: %w", w.Prefix, p, err)
		case !Gone(err):
			return fmt.Errorf("%s: %s: %w", w.Prefix, w.root, err)
		}
		return nil
	}
	n := f.names[f.next]
	f.next++
	w.path = append(append(w.path[:f.plen], '/'), n...)
	p := string(w.path)
	e := WalkEntry{Path: p, Rel: w.rel(p), Dir: fd, Base: n}
	excluded := w.Exclude != nil && w.Exclude(e)
	if excluded && w.Excluded == nil {
		return nil
	}
	fi, err := Lstatat(fd, n, p)
	if err != nil {
		return w.lost(e, err, errors.Is(err, fs.ErrNotExist))
	}
	e.Info = fi
	if excluded {
		w.Excluded(e)
		return nil
	}
	if l := w.nameLen + 1 + len(e.Rel) + 1; l > w.maxNameLen() { // a folder's name has a "/" at the end
		if w.Policy == WalkStrict {
			return fmt.Errorf("%s: %s...: a path of %d bytes is too long for an archive (add it to exclude)",
				w.Prefix, p[:min(len(p), 200)], len(p))
		}
		w.skip(e, SkipTooLong)
		return nil
	}
	if !fi.IsDir() {
		return w.leaf(e)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if w.BeforeOpen != nil {
		w.BeforeOpen(p)
	}
	if e.Info, err = w.chain.Enter(n, p, fi); err != nil {
		return w.lost(e, err, Gone(err))
	}
	id := w.chain.id() // from the statx of the folder opened
	if _, again := w.entered[id]; again {
		if err := w.chain.Leave(); err != nil { // its parent is open: cannot fail
			return fmt.Errorf("%s: %s: %w", w.Prefix, p, err)
		}
		if w.Policy == WalkStrict {
			return fmt.Errorf("%s: %s was moved during the walk: the folder was walked already under another name", w.Prefix, p)
		}
		w.skip(e, SkipVanished)
		return nil
	}
	w.entered[id] = struct{}{}
	names, err := ReadDirNames(w.chain.Fd(), p, w.dirbuf)
	if err != nil {
		return fmt.Errorf("%s: read folder %s: %w", w.Prefix, p, err)
	}
	if err := w.Visit(e); err != nil {
		return err
	}
	w.push(names)
	return nil
}

// folderID tells folders apart over a walk: device, inode, birth time and
// mount. The inode alone does not: a folder removed after it was walked
// frees its number, which ext4 gives the next folder made at once, and
// that new folder is not the one walked. A file system that keeps no
// birth time gives 0, and its folders are told apart by inode only. The
// mount tells apart one folder mounted twice (a bind mount of it below
// the root): each is walked, as before fireops looked for moves; a move
// (a rename) stays on its mount.
type folderID struct {
	mnt       uint64
	dev, ino  uint64
	btime     int64
	btimeNsec uint32
}

// leaf walks an entry that is not a folder.
func (w *Walker) leaf(e WalkEntry) error {
	switch m := e.Info.Mode(); {
	case m&fs.ModeSocket != 0 || (m&specialModes != 0 && w.Policy == WalkTolerant):
		w.skip(e, SkipSpecial)
		return nil
	case m&specialModes != 0:
		return fmt.Errorf("%s: %s is a %s, which fireops does not archive (add it to exclude)", w.Prefix, e.Path, specialName(m))
	case m&fs.ModeSymlink != 0:
		link, err := Readlinkat(e.Dir, e.Base, e.Path)
		if err != nil {
			// EINVAL: no longer a symlink.
			return w.lost(e, err, errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.EINVAL))
		}
		e.Link = link
	}
	return w.Visit(e)
}

// lost handles err, met looking at or opening e: under WalkTolerant,
// when gone says that e vanished or was replaced, e is left out (nil,
// and Skipped is told); otherwise the error, naming e under WalkStrict
// ([StrictError]).
func (w *Walker) lost(e WalkEntry, err error, gone bool) error {
	if w.Policy == WalkStrict {
		return StrictError(w.Prefix, e.Path, err)
	}
	if gone {
		w.skip(e, SkipVanished)
		return nil
	}
	return fmt.Errorf("%s: %w", w.Prefix, err)
}

// StrictError is the error of a [WalkStrict] walk, whose messages start
// with prefix, for path, which could not be looked at, opened or read:
// it vanished or was replaced since its folder was listed (err wraps
// fs.ErrNotExist or [ErrChanged]: the message says so), or another
// failure.
func StrictError(prefix, path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: %s vanished during the walk: %w", prefix, path, err)
	case errors.Is(err, ErrChanged):
		return fmt.Errorf("%s: %s was replaced during the walk", prefix, path)
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// rel returns the host path p, below the root or the root, relative to
// the root.
func (w *Walker) rel(p string) string {
	if len(p) <= len(w.root) {
		return "."
	}
	return p[len(w.root)+1:]
}

func (w *Walker) skip(e WalkEntry, why WalkSkip) {
	if w.Skipped != nil {
		w.Skipped(e, why)
	}
}

func (w *Walker) maxNameLen() int {
	if w.MaxNameLen > 0 {
		return w.MaxNameLen
	}
	return MaxNameLen
}

// Gone reports whether err says that a name no longer holds what a
// listing saw there: removed, or replaced (another inode, a symlink).
func Gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrChanged)
}

// specialName names the type of a special file, for messages.
func specialName(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	default:
		return "special file"
	}
}
