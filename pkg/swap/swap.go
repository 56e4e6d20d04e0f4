// Package swap puts staged copies in place of live ones, and undoes what
// it did when a step fails: the one swap-into-place every restorer uses
// (a files part into a folder or over its configured paths, a volume's
// entries into its live folder), so that a restore either replaces every
// live path it names or leaves them all as they were.
//
// [Swap.Put] moves the live copy at a path aside, then renames the staged
// copy to the path; both are renames on one filesystem, so no path is
// ever half written. The live copy is moved aside, never removed, under
// one naming scheme ([OldName]): NAME.fireops-old next to it (or in
// [Options.AsideDir]), NAME.fireops-old-<UTC second> when that name is
// taken, then NAME.fireops-old-<UTC second>-<n> (in AsideDir, where only
// this swap puts names, NAME.fireops-old-<n> with the swap's own count);
// a rename never replaces what is at an aside name. The caller decides,
// once the swap is done, whether the old copies stay ([Swap.Asides]: what an in-place restore
// leaves for the admin) or go.
//
// Every rename is recorded; [Swap.Undo] renames back, newest first: a
// restored copy goes back to its staged name, the old copy back to its
// path, so the live paths are as they were before the swap. [Swap.Sync]
// fsyncs every folder a rename changed.
//
// Leftovers: the only names the package gives are the aside names, and it
// gives them no run tag on purpose. When a run is killed between moving a
// live copy aside and renaming the staged one in, the aside copy is the
// only copy of the live data: no later run may remove it as a dead run's
// leftover (as pkg/leftover's Clean would). An aside name is a
// kept copy for a person to look at. The staged copies carry the run tag
// the caller gave their folder (pkg/leftover's Pattern): what an interrupted
// undo leaves is under those names, and the next run's clean-up removes
// it.
package swap

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/firetech/fireops/internal/atomicfile"
	"github.com/firetech/fireops/internal/textcut"
)

// OldSuffix follows the name of a live copy moved aside ([OldName]).
const OldSuffix = ".fireops-old"

// stampFormat is the UTC second an aside name carries when NAME.fireops-old
// is taken.
const stampFormat = "20060102T150405Z"

// Options tune a Swap. The zero value moves live copies aside next to
// themselves.
type Options struct {
	// AsideDir, when set, is the folder (existing, on the live paths'
	// filesystem) live copies are moved into, under their own base name
	// with the aside suffix, instead of next to themselves.
	AsideDir string
	// Retries is how often Put moves aside what a running writer put at
	// the path again (after Put moved the live copy aside) and tries the
	// rename once more, before it fails. Zero: Put fails at once.
	Retries int
	// Rename renames a path (nil: os.Rename). Tests make some fail.
	Rename func(from, to string) error
	// Now gives the time aside names carry (nil: time.Now).
	Now func() time.Time
}

// move is one rename done, undone by renaming to back from.
type move struct {
	from, to string
	aside    bool // to is a live copy moved aside
}

// Aside is a live copy moved aside.
type Aside struct {
	// Live is the path it was at; Old is where it is now.
	Live, Old string
}

// Swap is one swap into place: the renames it did, in order.
type Swap struct {
	o     Options
	stamp string
	moves []move
	// held counts the aside names in AsideDir that had to be numbered
	// (see oldName).
	held int
}

// New starts a swap.
func New(o Options) *Swap {
	if o.Rename == nil {
		o.Rename = os.Rename
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Swap{o: o, stamp: o.Now().UTC().Format(stampFormat)}
}

// maxName is the longest file name Linux file systems take (NAME_MAX).
const maxName = 255

// maxOldNames bounds how many aside names OldName tries: more taken ones
// than that is no longer a restore's own leftovers.
const maxOldNames = 1000

// OldName returns the free aside name for live (see the package
// documentation) in dir ("": live's own folder), stamp being the UTC time
// in the format 20060102T150405Z. A name too long for the suffix is cut
// short (at a character boundary) so that the aside name fits in NAME_MAX:
// a live name of up to 255 bytes can always be moved aside. It fails when
// a candidate cannot be looked at (other than not existing), or when
// maxOldNames of them are taken.
func OldName(dir, live, stamp string) (string, error) {
	if dir == "" {
		dir = filepath.Dir(live)
	}
	name := filepath.Base(live)
	for n := 0; n < maxOldNames; n++ {
		suffix := OldSuffix
		switch {
		case n == 1:
			suffix += "-" + stamp
		case n > 1:
			suffix += fmt.Sprintf("-%s-%d", stamp, n)
		}
		if p, free, err := candidate(dir, name, suffix, live); free || err != nil {
			return p, err
		}
	}
	return "", fmt.Errorf("find a name to move %s aside: %s and %d more names are taken", live, filepath.Join(dir, name+OldSuffix), maxOldNames-1)
}

// oldName is the aside name of live: [OldName] next to it. In AsideDir,
// the folder this swap moves live copies into, the first candidate is
// the same (NAME.fireops-old); when it is taken, only this swap can have
// taken it (live names whose first 240-odd bytes are the same are cut to
// one aside name), so instead of searching OldName's candidates, which a
// user who made a thousand such names in a volume would exhaust (and
// which costs a look at every taken one), the name is numbered with this
// swap's own count: NAME.fireops-old-<n>, n counting up, each free name
// found with one look.
func (s *Swap) oldName(live string) (string, error) {
	if s.o.AsideDir == "" {
		return OldName("", live, s.stamp)
	}
	name := filepath.Base(live)
	for n := 0; ; n++ {
		suffix := OldSuffix
		if n > 0 {
			s.held++
			suffix += "-" + strconv.Itoa(s.held)
		}
		if p, free, err := candidate(s.o.AsideDir, name, suffix, live); free || err != nil {
			return p, err
		}
	}
}

// candidate is the aside name in dir of a live copy named name with
// suffix (name cut short to fit NAME_MAX), and whether nothing is there;
// an error when it cannot be looked at.
func candidate(dir, name, suffix, live string) (p string, free bool, err error) {
	p = filepath.Join(dir, textcut.Prefix(name, maxName-len(suffix))+suffix)
	_, err = os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return p, true, nil
	case err != nil:
		return "", false, fmt.Errorf("find a name to move %s aside: %w", live, err)
	}
	return p, false, nil
}

// Move renames from to to and records it, for what a caller moves besides
// the pairs (a volume's kept files into the staged tree).
func (s *Swap) Move(from, to string) error {
	if err := s.o.Rename(from, to); err != nil {
		return err
	}
	s.moves = append(s.moves, move{from: from, to: to})
	return nil
}

// MoveAside moves what is at live to its aside name and returns that
// name; moved is false when nothing is at live (also when a running
// writer removed it meanwhile).
func (s *Swap) MoveAside(live string) (old string, moved bool, err error) {
	if _, err := os.Lstat(live); errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	old, err = s.oldName(live)
	if err != nil {
		return "", false, err
	}
	if err := s.o.Rename(live, old); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", false, nil // removed meanwhile
		}
		return "", false, fmt.Errorf("move %s aside to %s: %w", live, old, err)
	}
	s.moves = append(s.moves, move{from: live, to: old, aside: true})
	return old, true, nil
}

// Put moves what is at live aside (see MoveAside) and renames staged to
// live. When that rename fails because a running writer put something at
// live again, that is moved aside too and the rename tried again, up to
// Options.Retries times. A failed Put leaves what it moved recorded:
// call Undo.
func (s *Swap) Put(staged, live string) error {
	if _, _, err := s.MoveAside(live); err != nil {
		return err
	}
	err := s.o.Rename(staged, live)
	for try := 0; err != nil && !errors.Is(err, fs.ErrNotExist) && try < s.o.Retries; try++ {
		if _, _, aerr := s.MoveAside(live); aerr != nil {
			break
		}
		err = s.o.Rename(staged, live)
	}
	if err != nil {
		return fmt.Errorf("move the restored %s into place: %w", live, err)
	}
	s.moves = append(s.moves, move{from: staged, to: live})
	return nil
}

// Undo renames back everything the swap renamed, newest first, and forgets
// it: the live paths are as they were, the staged copies at their staged
// names. It goes on past a rename that fails and returns them all, each
// naming where the copy is now; nil when everything was put back.
func (s *Swap) Undo() error {
	var errs []error
	for i := len(s.moves) - 1; i >= 0; i-- {
		m := s.moves[i]
		if err := s.o.Rename(m.to, m.from); err != nil {
			errs = append(errs, fmt.Errorf("put back %s from %s: %w", m.from, m.to, err))
		}
	}
	s.moves = nil
	return errors.Join(errs...)
}

// Asides returns the live copies moved aside, in order.
func (s *Swap) Asides() []Aside {
	var out []Aside
	for _, m := range s.moves {
		if m.aside {
			out = append(out, Aside{Live: m.from, Old: m.to})
		}
	}
	return out
}

// Sync fsyncs every folder a rename of the swap changed, so that the
// renames survive a power loss.
func (s *Swap) Sync() error {
	seen := map[string]bool{}
	var errs []error
	for _, m := range s.moves {
		for _, d := range []string{filepath.Dir(m.from), filepath.Dir(m.to)} {
			if seen[d] {
				continue
			}
			seen[d] = true
			if err := atomicfile.SyncDir(d); err != nil {
				errs = append(errs, fmt.Errorf("sync %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}
