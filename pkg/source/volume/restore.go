package volume

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
	"golang.org/x/sys/unix"

	"github.com/firetech/fireops/pkg/leftover"
	"github.com/firetech/fireops/pkg/source"
	swaps "github.com/firetech/fireops/pkg/swap"
	"github.com/firetech/fireops/pkg/tarsafe"
)

// ErrInUse is wrapped by the error for a restore into a volume that running
// containers use, without Force.
var ErrInUse = errors.New("volume is in use by running containers")

// ErrNotReplaceable is wrapped by the error for a restore over a non-empty
// volume that fireops cannot reach directly (not root, remote Engine, a
// driver other than plain "local"): the Engine API can add files to a
// volume but not remove any.
var ErrNotReplaceable = errors.New("the volume's content cannot be replaced through the Engine API")

// RestoreOptions tune a Restorer.
type RestoreOptions struct {
	// Force restores into a volume that running containers use (they see
	// the new content at once; restart them).
	Force bool
	// Write is how the staging volume is filled and the target replaced:
	// ReadAuto (default when empty), ReadMountpoint (directly in the
	// volumes' folders, as root on the Engine's host) or ReadAPI (through
	// helper containers; the target must then be empty or missing).
	Write string
	// Keep lists files of the live volume (relative paths) that stay as
	// they are, each with its -wal, -journal and -shm files: the files the
	// part's snapshot left out ([LeftOut]), whose own part restores them.
	Keep []string
	// Log receives warnings; nil discards them.
	Log *slog.Logger
}

// Restorer writes a volume part into the volume target through a staging
// volume.
//
// Stage first removes the staging volumes that restores into the same
// target killed before their end left (see [Client.CleanStaging]), then
// creates a staging volume "fireops-staging-<run tag>-<random>" (labelled
// LabelStaging=target and LabelHost) and writes the whole part into it: as root on the
// Engine's host with [tarsafe.Extract] into its folder, otherwise through a
// helper container and the Engine (CopyToContainer), after fireops checked
// every entry (no absolute names, no "..", nothing through a symlink, no
// devices). The live volume is not touched.
//
// Commit (after the engine checked the payload's hash and entry count)
// creates the target when it is missing and replaces its content. Directly:
// the live volume's entries are moved into a holding folder next to the
// staging volume's, the staged entries moved in (renames on one
// filesystem), the root's owner, mode and time applied, the kept files
// moved back; a failed rename moves everything back. The volume's root
// folder stays the same, so containers that mount it see the new content.
// Through the API the target must be empty: the staged content is copied
// into it by the Engine. Then the staging volume is removed.
//
// Both refuse a target that running containers use, unless Force. Abort,
// and a failed Commit, remove the staging volume, the helper containers
// and a target volume that the restore itself created.
type Restorer struct {
	c      *Client
	target string
	o      RestoreOptions
	keep   []string // Keep with companions
	log    *slog.Logger
}

var _ source.Restorer = (*Restorer)(nil)

// NewRestorer returns a Restorer into the volume target. Close releases
// its Engine client (Commit and Abort do too).
func NewRestorer(target string, o RestoreOptions) (*Restorer, error) {
	if target == "" {
		return nil, errors.New("volume: restore: no target volume")
	}
	switch o.Write {
	case "":
		o.Write = ReadAuto
	case ReadAuto, ReadMountpoint, ReadAPI:
	default:
		return nil, fmt.Errorf("volume: restore: unknown write mode %q", o.Write)
	}
	r := &Restorer{target: target, o: o, log: o.Log}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	for _, k := range o.Keep {
		rel, err := cleanRel(k)
		if err != nil {
			return nil, fmt.Errorf("volume: restore: keep %q: %w", k, err)
		}
		r.keep = append(r.keep, rel)
		for _, suf := range companions {
			r.keep = append(r.keep, rel+suf)
		}
	}
	c, err := NewClient(r.log)
	if err != nil {
		return nil, err
	}
	r.c = c
	return r, nil
}

// TargetInfo is what a restore plan needs to know about a target volume.
type TargetInfo struct {
	// Exists says the volume exists.
	Exists bool
	// Empty says it holds nothing (only when Exists).
	Empty bool
	// Users are the running (or paused) containers that mount it.
	Users []string
	// Direct is nil when fireops can replace the volume's content in its
	// folder (root on the Engine's host, plain local volume), else why not.
	Direct error
}

// Target inspects a restore target.
func (c *Client) Target(ctx context.Context, name string) (TargetInfo, error) {
	var ti TargetInfo
	v, err := c.inspect(ctx, name)
	if errors.Is(err, ErrGone) {
		return ti, nil
	}
	if err != nil {
		return ti, err
	}
	ti.Exists = true
	if ti.Users, err = c.Users(ctx, name); err != nil {
		return ti, err
	}
	dir, derr := c.hostFolder(v)
	ti.Direct = derr
	if derr == nil {
		ti.Empty, err = emptyDir(dir)
	} else {
		ti.Empty, err = c.emptyViaAPI(ctx, name)
	}
	return ti, err
}

// emptyDir reports whether a folder has no entries.
func emptyDir(dir string) (bool, error) {
	d, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer d.Close()
	_, err = d.Readdirnames(1)
	if err == io.EOF {
		return true, nil
	}
	return false, err
}

// emptyViaAPI reports whether a volume has no entries, reading the first
// two entries of the Engine's archive of it.
func (c *Client) emptyViaAPI(ctx context.Context, name string) (empty bool, err error) {
	h, err := c.newHelper(ctx, name, false)
	if err != nil {
		return false, err
	}
	defer func() { err = errors.Join(err, h.remove()) }()
	rc, _, err := c.cli.CopyFromContainer(ctx, h.id, helperMount)
	if err != nil {
		return false, c.wrap("archive volume "+name, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	if _, err := tr.Next(); err != nil {
		return false, fmt.Errorf("volume: %s: the Engine's archive: %w", name, err)
	}
	_, err = tr.Next()
	if err == io.EOF {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("volume: %s: the Engine's archive: %w", name, err)
	}
	return false, nil
}

// Close releases the Engine client.
func (r *Restorer) Close() error { return r.c.Close() }

// inUse fails with ErrInUse when running containers use the target and
// Force is off; with Force it logs them when warn is set.
func (r *Restorer) inUse(ctx context.Context, warn bool) error {
	users, err := r.c.Users(ctx, r.target)
	if err != nil || len(users) == 0 {
		return err
	}
	if !r.o.Force {
		return fmt.Errorf("volume: %s: %w: %s (stop them, or use --force)", r.target, ErrInUse, strings.Join(users, ", "))
	}
	if !warn {
		return nil
	}
	r.log.Warn("restoring into a volume that running containers use (--force): they see the new content at once; restart them",
		"volume", r.target, "containers", strings.Join(users, ", "))
	return nil
}

// staged is a volume part written into a staging volume.
type staged struct {
	r        *Restorer
	name     string // the staging volume
	dir      string // its folder, on the direct path
	direct   bool
	h        *helper // the staging volume's helper, on the api path
	st       source.Stats
	x        tarsafe.Stats // Extract's, on the direct path: the root's metadata for Commit
	done     bool
	released bool
}

// Stage writes the part into a new staging volume (see Restorer).
func (r *Restorer) Stage(ctx context.Context, in io.Reader) (source.Staged, error) {
	s, err := r.stage(ctx, in)
	if err != nil {
		r.c.Close()
		return nil, err
	}
	return s, nil
}

func (r *Restorer) stage(ctx context.Context, in io.Reader) (*staged, error) {
	if err := r.inUse(ctx, true); err != nil {
		return nil, err
	}
	tv, err := r.c.inspect(ctx, r.target)
	exists := err == nil
	if err != nil && !errors.Is(err, ErrGone) {
		return nil, err
	}
	if _, err := r.c.cleanStaging(ctx, r.target, r.log); err != nil {
		r.log.Warn("staging volumes that interrupted restores left were not all removed", "err", err)
	}
	s := &staged{r: r, name: leftover.Name(stagingPrefix, randomHex(6))}
	labels := map[string]string{LabelStaging: r.target, LabelHost: runHost()}
	if r.o.Write == ReadAPI || os.Geteuid() != 0 || !r.c.local() {
		labels[labelSwap] = "no" // see hostFolder: nothing can be swapped in its folder
	}
	if err := r.c.createVolume(ctx, s.name, labels); err != nil {
		return nil, err
	}
	fail := func(err error) (*staged, error) {
		return nil, errors.Join(fmt.Errorf("volume: restore into %s: %w", r.target, err), s.release())
	}
	sv, err := r.c.inspect(ctx, s.name)
	if err != nil {
		return fail(err)
	}
	// Direct when both folders are reachable here.
	var why error
	if r.o.Write == ReadAPI {
		why = errors.New("write: api")
	} else if s.dir, why = r.c.hostFolder(sv); why == nil && exists {
		_, why = r.c.hostFolder(tv)
	}
	s.direct = why == nil
	if r.o.Write == ReadMountpoint && !s.direct {
		return fail(fmt.Errorf("writing the volume directly is not possible: %w", why))
	}
	if !s.direct && exists {
		empty, err := r.c.emptyViaAPI(ctx, r.target)
		if err != nil {
			return fail(err)
		}
		if !empty {
			return fail(fmt.Errorf("%w (%v): restore into a new volume with --to volume:NEW, or run fireops as root on the Engine's host", ErrNotReplaceable, why))
		}
	}
	if s.direct {
		x, err := tarsafe.Extract(ctx, in, s.dir, tarsafe.Options{})
		if err != nil {
			return fail(err)
		}
		s.x = x
		s.st = source.Stats{Entries: x.Entries, Details: map[string]string{
			"files": strconv.FormatInt(x.Files, 10), "dirs": strconv.FormatInt(x.Dirs, 10),
			"symlinks": strconv.FormatInt(x.Symlinks, 10), "hardlinks": strconv.FormatInt(x.Links, 10),
			"bytes": strconv.FormatInt(x.Bytes, 10),
		}}
		return s, nil
	}
	if s.h, err = r.c.newHelper(ctx, s.name, true); err != nil {
		return fail(err)
	}
	var c counts
	err = r.c.copyIn(ctx, s.h, func(w io.Writer) error { return forEngine(ctx, in, w, &c) })
	if err != nil {
		return fail(err)
	}
	s.st = c.stats("api", nil)
	delete(s.st.Details, "read")
	delete(s.st.Details, "special_skipped")
	return s, nil
}

// copyIn streams what produce writes (a tar with names under helperMount)
// into the helper container's volume (CopyToContainer at "/").
func (c *Client) copyIn(ctx context.Context, h *helper, produce func(io.Writer) error) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := produce(pw)
		pw.CloseWithError(err)
		done <- err
	}()
	err := c.cli.CopyToContainer(ctx, h.id, "/", pr, container.CopyToContainerOptions{})
	pr.CloseWithError(errors.New("the Engine stopped reading"))
	perr := <-done
	if perr != nil {
		return perr
	}
	if err != nil {
		return c.wrap("write into the volume through the Engine", err)
	}
	return nil
}

// forEngine reads a volume part's tar stream from in, checks every entry
// with tarsafe's entry policy (tarsafe.Checker: what tarsafe.Extract
// refuses is refused, and the modes it never applies are taken out), and
// writes it to w with names under helperMount for CopyToContainer. It
// reads in to its end. Sparse files are refused: the Engine's extraction
// would write their holes as zeros, a terabyte for a truncated file.
func forEngine(ctx context.Context, in io.Reader, w io.Writer, c *counts) error {
	top := strings.TrimPrefix(helperMount, "/")
	engine := func(n string) string {
		if n == "." {
			return top + "/"
		}
		return top + "/" + n
	}
	policy := tarsafe.NewChecker(tarsafe.Options{})
	_, n, err := retar(ctx, in, w, func(hdr *tar.Header) (*tar.Header, error) {
		c.entries++
		if tarsafe.IsSparse(hdr) {
			return nil, fmt.Errorf("entry %q: %w: a sparse file of %d bytes, which the Engine would write dense, its holes as zeros; restore as root on the Engine's host (the mountpoint path keeps the holes)", hdr.Name, tarsafe.ErrUnsupported, hdr.Size)
		}
		h, err := policy.Check(hdr)
		if err != nil {
			return nil, fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		out := normalize(hdr)
		out.Name, out.Mode = engine(h.Name), h.Mode
		switch hdr.Typeflag {
		case tar.TypeDir:
			if !strings.HasSuffix(out.Name, "/") {
				out.Name += "/"
			}
			c.dirs++
		case tar.TypeReg:
			out.Typeflag = tar.TypeReg
			c.files++
		case tar.TypeSymlink:
			c.symlinks++
		case tar.TypeLink:
			out.Linkname = engine(h.Link)
			c.links++
		}
		return out, nil
	})
	c.bytes += n
	var broke *brokeOff
	switch {
	case errors.Is(err, errNoEndMarker):
		return fmt.Errorf("read entry %d: %w (no end-of-archive marker)", c.entries+1, io.ErrUnexpectedEOF)
	case errors.As(err, &broke) && broke.file == "":
		return fmt.Errorf("read entry %d: %w", c.entries+1, err)
	case err != nil:
		return err
	}
	_, err = io.CopyBuffer(io.Discard, in, make([]byte, copyBufferSize))
	return err
}

// Stats reports what was staged: Entries and, in Details, files, dirs,
// symlinks, hardlinks and bytes.
func (s *staged) Stats() source.Stats { return s.st }

// release removes the staging volume, its helper and the Engine client.
func (s *staged) release() error {
	if s.released {
		return nil
	}
	s.released = true
	err := errors.Join(s.h.remove(), s.r.c.removeVolume(s.name))
	return errors.Join(err, s.r.c.Close())
}

// Abort removes the staging volume; after Commit it does nothing.
func (s *staged) Abort() error {
	if s.done {
		return nil
	}
	s.done = true
	return s.release()
}

// Commit replaces the target's content with the staged one (see Restorer).
func (s *staged) Commit(ctx context.Context) (err error) {
	if s.done {
		return errors.New("volume: restore already committed or aborted")
	}
	s.done = true
	defer func() {
		if errors.Is(err, errKeepStaging) {
			s.released = true // the volume stays; its helper and the client go
			err = fmt.Errorf("%w (volume %s): copy what is needed back by hand, then remove it with docker volume rm: %w",
				err, s.name, errors.Join(s.h.remove(), s.r.c.Close()))
			return
		}
		err = errors.Join(err, s.release())
	}()
	if err := ctx.Err(); err != nil {
		return err
	}
	r := s.r
	if err := r.inUse(ctx, false); err != nil {
		return err
	}
	created := false
	if _, err := r.c.inspect(ctx, r.target); errors.Is(err, ErrGone) {
		if err := r.c.createVolume(ctx, r.target, nil); err != nil {
			return err
		}
		created = true
	} else if err != nil {
		return err
	}
	if err := s.replace(ctx); err != nil {
		if created {
			if rerr := r.c.removeVolume(r.target); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
		return fmt.Errorf("volume: restore into %s: %w", r.target, err)
	}
	return nil
}

// replace puts the staged content into the (existing) target.
func (s *staged) replace(ctx context.Context) error {
	r := s.r
	tv, err := r.c.inspect(ctx, r.target)
	if err != nil {
		return err
	}
	if s.direct {
		dir, err := r.c.hostFolder(tv)
		if err != nil {
			return err
		}
		// The staged root took the archive's metadata only now (swap
		// gives it to the live root).
		if err := tarsafe.ApplyRoot(s.dir, s.x); err != nil {
			return err
		}
		return swap(dir, s.dir, holdFolder(s.dir), r.keep)
	}
	empty, err := r.c.emptyViaAPI(ctx, r.target)
	if err != nil {
		return err
	}
	if !empty {
		return fmt.Errorf("%w: %s is no longer empty", ErrNotReplaceable, r.target)
	}
	th, err := r.c.newHelper(ctx, r.target, true)
	if err != nil {
		return err
	}
	defer th.remove()
	rc, _, err := r.c.cli.CopyFromContainer(ctx, s.h.id, helperMount)
	if err != nil {
		return r.c.wrap("archive staging volume "+s.name, err)
	}
	defer rc.Close()
	var n int64
	if err := r.c.copyIn(ctx, th, func(w io.Writer) error {
		var err error
		n, err = relay(ctx, rc, w)
		return err
	}); err != nil {
		return err
	}
	if n != s.st.Entries {
		return fmt.Errorf("copied %d entries from the staging volume, %d were staged", n, s.st.Entries)
	}
	return nil
}

// relay copies the Engine's archive of a helper's volume to w entry by
// entry, failing when it ends without the end-of-archive marker.
func relay(ctx context.Context, r io.Reader, w io.Writer) (int64, error) {
	n, _, err := retar(ctx, r, w, func(hdr *tar.Header) (*tar.Header, error) { return hdr, nil })
	if errors.Is(err, errNoEndMarker) {
		return n, errors.New("the Engine's archive of the staging volume ended early")
	}
	return n, err
}

// keepFolder opens the folder dir (slash-separated, relative to root, ""
// for root itself) one component at a time, each relative to the one
// above with O_NOFOLLOW|O_DIRECTORY, and returns its descriptor. With
// create, a missing component is made (mode 0755, as the extraction
// makes the folders above a file). ok is false, and nothing is held,
// when a component is a symlink, not a folder, or (without create)
// missing.
func keepFolder(root, dir string, create bool) (fd int, ok bool, err error) {
	fd, err = tarsafe.Openat(unix.AT_FDCWD, root, root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	if err != nil {
		return -1, false, err
	}
	p := root
	for _, name := range strings.Split(strings.Trim(dir, "/"), "/") {
		if name == "" {
			continue
		}
		p = filepath.Join(p, name)
		next, err := tarsafe.Openat(fd, name, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
		if errors.Is(err, fs.ErrNotExist) && create {
			if err = unix.Mkdirat(fd, name, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
				next, err = tarsafe.Openat(fd, name, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
			}
		}
		unix.Close(fd)
		switch {
		case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR), errors.Is(err, fs.ErrNotExist):
			return -1, false, nil
		case err != nil:
			return -1, false, err
		}
		fd = next
	}
	return fd, true, nil
}

// throughFd is the path of name in the folder open as fd, through
// /proc/self/fd: a rename of it acts in that very folder, whatever was
// done meanwhile to the path the folder was opened by.
func throughFd(fd int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(fd) + "/" + name
}

// swap replaces the entries of the folder live with those of staged,
// keeping the live files keep (relative paths), through the holding
// folder hold (created; same filesystem). The kept files are first moved
// into the staged tree (where the part has nothing of that name), then
// the live entries into hold, then the staged entries into live. The root
// folder of live stays; it gets staged's owner, mode and times. On a
// failed rename everything moved so far is moved back.
//
// With --force a running container may keep writing into live during the
// swap: an entry that vanishes before it is moved aside is skipped, the
// folder is listed again until it is empty (a few rounds at most), and an
// entry recreated under a restored name is moved aside before the restored
// one takes its place. Files the container creates after the last round
// stay beside the restored content.
func swap(live, staged, hold string, keep []string) error {
	return swapWith(os.Rename, live, staged, hold, keep)
}

// swapWith is swap with its renames done by rename (tests make some fail).
// The moves and their undo are pkg/swap's: the live entries go into hold
// under their aside names (NAME.fireops-old, then numbered: a name a
// writer recreates never meets the one moved before it).
func swapWith(rename func(from, to string) error, live, staged, hold string, keep []string) error {
	if err := tarsafe.SyncFS(staged); err != nil {
		return err
	}
	// The staged root's metadata, before renames change its times.
	root, err := os.Lstat(staged)
	if err != nil {
		return err
	}
	if err := os.Mkdir(hold, 0o700); err != nil {
		return fmt.Errorf("create holding folder: %w", err)
	}
	sw := swaps.New(swaps.Options{AsideDir: hold, Retries: swapRounds, Rename: rename})
	undo := func(cause error) error {
		if err := sw.Undo(); err != nil {
			return fmt.Errorf("%w; and moving the live content back failed (look in %s and %s): %w: %w", cause, hold, staged, errKeepStaging, err)
		}
		return cause
	}
	// The kept files are reached through folders opened one by one
	// without following a symlink (keepFolder), and moved through those
	// folders' descriptors: the user owns both trees (the live one, which
	// a running container may change meanwhile, and the staged one, from
	// their snapshot), so a path component swapped for a symlink must not
	// move a file from, or put one into, a folder outside the volume.
	var held []int
	defer func() {
		for _, fd := range held {
			unix.Close(fd)
		}
	}()
	for _, k := range keep {
		dir, base := path.Split(path.Clean(k))
		srcDir, ok, err := keepFolder(live, dir, false)
		if err != nil {
			return undo(fmt.Errorf("keep %s: %w", k, err))
		}
		if !ok {
			continue // not in the live tree as a file below real folders
		}
		held = append(held, srcDir)
		var st unix.Stat_t
		if err := unix.Fstatat(srcDir, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue
		}
		dstDir, ok, err := keepFolder(staged, dir, true)
		if err != nil {
			return undo(fmt.Errorf("keep %s: %w", k, err))
		}
		if !ok {
			continue // the part holds something else on the way: the restored tree wins
		}
		held = append(held, dstDir)
		if err := unix.Fstatat(dstDir, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
			continue // the part holds it after all: the restored one wins
		}
		if err := sw.Move(throughFd(srcDir, base), throughFd(dstDir, base)); err != nil {
			return undo(fmt.Errorf("keep %s: %w", k, err))
		}
	}
	// A running writer may add entries while they are moved aside: list
	// the folder again until it is empty (a few rounds at most).
	for round := 0; round < swapRounds; round++ {
		liveNames, err := names(live)
		if err != nil {
			return undo(err)
		}
		if len(liveNames) == 0 {
			break
		}
		for _, n := range liveNames {
			if _, _, err := sw.MoveAside(filepath.Join(live, n)); err != nil {
				return undo(err)
			}
		}
	}
	stagedNames, err := names(staged)
	if err != nil {
		return undo(err)
	}
	for _, n := range stagedNames {
		// Put moves aside what a writer recreated under the name (a
		// folder cannot be renamed over a non-empty one, nor a file over
		// a folder) and tries again, a few times at most.
		if err := sw.Put(filepath.Join(staged, n), filepath.Join(live, n)); err != nil {
			return undo(err)
		}
	}
	if err := copyRootMeta(root, live); err != nil {
		return fmt.Errorf("the content is restored, but: %w", err)
	}
	if err := tarsafe.SyncFS(live); err != nil {
		return fmt.Errorf("the content is restored, but: %w", err)
	}
	if err := os.RemoveAll(hold); err != nil {
		return fmt.Errorf("restored, but removing the old content in %s failed: %w", hold, err)
	}
	return nil
}

// stagingPrefix starts the name of a staging volume: the run's tag
// (pkg/leftover) and a random part follow.
const stagingPrefix = "fireops-staging-"

// LabelHost is put on a staging volume: the id of the host whose run made
// it ([leftover.Host]); only that host removes it when the run is gone.
const LabelHost = "org.firetech.fireops.host"

// labelSwap is "no" on a staging volume whose run could not write it
// directly: no swap can have moved live content into its holding folder.
const labelSwap = "org.firetech.fireops.swap"

// runHost is leftover.Host; tests give their process a host of its own,
// so that no other process on this host removes what they made.
var runHost = leftover.Host

// holdFolder is where swap moves the live volume's content aside: next to
// the staging volume's folder dir (its _data), inside the volume's own
// folder, so that removing the staging volume removes it too.
func holdFolder(dir string) string { return filepath.Join(filepath.Dir(dir), "fireops-old") }

// CleanStaging removes the staging volumes (and their helper containers)
// that restores killed before their end (SIGKILL, a power loss) left
// behind; fireops rotate calls it. They may hold plaintext of a user's
// volume. See [Client.CleanStaging].
func CleanStaging(ctx context.Context, log *slog.Logger) ([]string, error) {
	c, err := NewClient(log)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.CleanStaging(ctx, log)
}

// CleanStaging removes the staging volumes that restores killed before
// their end left: those whose name carries the tag of a run of this host
// (LabelHost) that is not alive (pkg/leftover), never one of a live run or
// of another host, with the helper containers that run made for them, and
// logs each. It keeps, and names in a warning, a staging volume whose
// holding folder exists (a swap was interrupted, or failed and could not
// be undone: it may hold the live volume's content), one whose folder it
// cannot look into when its run could have swapped there, one that
// another container uses, and one without a tag (an older fireops). It
// returns the volumes it removed.
func (c *Client) CleanStaging(ctx context.Context, log *slog.Logger) ([]string, error) {
	return c.cleanStaging(ctx, "", log)
}

// cleanStaging is CleanStaging for the staging volumes of restores into
// target ("": all).
func (c *Client) cleanStaging(ctx context.Context, target string, log *slog.Logger) ([]string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := LabelStaging
	if target != "" {
		f += "=" + target
	}
	vs, err := c.cli.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", f))})
	if err != nil {
		return nil, c.wrap("list staging volumes", err)
	}
	var removed []string
	var errs []error
	for _, v := range vs.Volumes {
		o, ok := leftover.OwnerOf(v.Name, stagingPrefix)
		if !ok {
			log.Warn("staging volume left by an older fireops or another program: remove it (docker volume rm) when no restore runs; it may hold a user's files",
				"volume", v.Name, "target", v.Labels[LabelStaging])
			continue
		}
		if o.Alive || v.Labels[LabelHost] != runHost() {
			continue // a live run's, or another host's
		}
		if v.Labels[labelSwap] != "no" {
			dir, err := c.hostFolder(*v)
			if err != nil {
				log.Warn("staging volume of an interrupted restore kept: its folder cannot be looked into, and the live volume's content may be in it; run fireops as root on the Engine's host, or remove it by hand",
					"volume", v.Name, "target", v.Labels[LabelStaging], "why", err.Error())
				continue
			}
			if _, err := os.Lstat(holdFolder(dir)); !errors.Is(err, fs.ErrNotExist) {
				log.Warn("staging volume of an interrupted restore kept: the restore stopped while it swapped content, and the live volume's old content may be in its holding folder; move back what is needed, then docker volume rm it",
					"volume", v.Name, "target", v.Labels[LabelStaging], "holding_folder", holdFolder(dir))
				continue
			}
		}
		if err := c.removeHelpers(ctx, v.Name); err != nil {
			log.Warn("staging volume of an interrupted restore kept", "volume", v.Name, "err", err)
			continue
		}
		if err := c.removeVolume(v.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, v.Name)
		log.Warn("removed what an interrupted fireops run left behind", "volume", v.Name, "target", v.Labels[LabelStaging], "pid", o.PID)
	}
	return removed, errors.Join(errs...)
}

// removeHelpers removes the helper containers that mount vol (a dead
// run's), failing when another container uses it.
func (c *Client) removeHelpers(ctx context.Context, vol string) error {
	cs, err := c.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("volume", vol))})
	if err != nil {
		return c.wrap("list the containers using "+vol, err)
	}
	for _, ct := range cs {
		if ct.Labels[LabelHelper] == "" || ct.Labels[LabelVolume] != vol {
			return fmt.Errorf("container %s uses it", containerName(ct))
		}
	}
	for _, ct := range cs {
		if err := (&helper{c: c, id: ct.ID}).remove(); err != nil {
			return err
		}
	}
	return nil
}

// errKeepStaging marks a failed swap whose undo failed too: live content
// may be in the holding folder inside the staging volume, which must then
// not be removed.
var errKeepStaging = errors.New("the staging volume is kept")

// swapRounds bounds how often swap lists a live folder that a running
// writer keeps filling.
const swapRounds = 5

// names returns the entries of a folder.
func names(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// copyRootMeta gives the folder dst the owner, mode and times of fi (a
// staged root on this host: its ids can be given here, so only a refusal,
// fs.ErrPermission, is left).
func copyRootMeta(fi fs.FileInfo, dst string) error {
	m, ok := tarsafe.MetaOf(fi)
	if !ok {
		return fmt.Errorf("%s: no stat data", fi.Name())
	}
	return tarsafe.ApplyMeta(unix.AT_FDCWD, dst, m, tarsafe.MetaOptions{IgnoreChown: []error{fs.ErrPermission}})
}
