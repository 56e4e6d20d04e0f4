package tarsafe

import (
	"archive/tar"
	"errors"
	"fmt"
)

// Header is what the entry policy makes of a tar header ([CheckHeader]).
type Header struct {
	// Name is the entry's name inside the target, cleaned and mapped
	// (Options.Map); "." is the target folder itself.
	Name string
	// Link is a hard link's target, cleaned and mapped ("" for the other
	// types).
	Link string
	// Mode is the header's mode (tar's bits) without those Extract never
	// applies: setuid, setgid and sticky of a regular file or a hard link,
	// setuid of a folder (see modes.go).
	Mode int64
	// Skip says the entry is left out: Options.Map skips its name, or it
	// is a device or named pipe and Options.SkipSpecial is set.
	Skip bool
}

// CheckHeader applies the part of Extract's policy that the header alone
// decides, before anything is written: the name (and a hard link's
// target) is cleaned ([CleanName]: no absolute name, no "..") and mapped;
// the type is one Extract creates (regular file, folder, symbolic link
// with a target, hard link), devices and named pipes wrapping
// ErrUnsupported unless skipped with Options.SkipSpecial; only a folder
// may stand for the target folder itself ("."), and no hard link may
// point at it. Errors wrap ErrUnsafe or ErrUnsupported (but the empty
// symbolic link target's).
//
// Extract calls it for every entry; [Checker] adds what Extract checks on
// disk, for a caller that hands the entries to another extractor.
func CheckHeader(hdr *tar.Header, opts Options) (Header, error) {
	name, ok, err := mapName(hdr.Name, opts)
	if err != nil {
		return Header{}, err
	}
	if !ok {
		return Header{Skip: true}, nil
	}
	h := Header{Name: name, Mode: hdr.Mode}
	switch hdr.Typeflag {
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if opts.SkipSpecial {
			h.Skip = true
			return h, nil
		}
		return h, fmt.Errorf("%w: %s (devices and named pipes are not restored)", ErrUnsupported, typeName(hdr.Typeflag))
	case tar.TypeDir:
		h.Mode &^= tarSetuid
		return h, nil
	}
	if name == "." {
		return h, fmt.Errorf("%w: a %s cannot replace the target folder", ErrUnsafe, typeName(hdr.Typeflag))
	}
	switch hdr.Typeflag {
	case tar.TypeReg: // tar.Reader turns the legacy TypeRegA into TypeReg or TypeDir
		h.Mode &^= tarSetuid | tarSetgid | tarSticky
	case tar.TypeSymlink:
		if hdr.Linkname == "" {
			return h, errors.New("symbolic link with an empty target")
		}
	case tar.TypeLink:
		target, ok, err := mapName(hdr.Linkname, opts)
		if err != nil {
			return h, fmt.Errorf("hard link target: %w", err)
		}
		if !ok {
			return h, fmt.Errorf("%w: hard link to %q, which is not extracted", ErrUnsafe, hdr.Linkname)
		}
		if target == "." {
			return h, fmt.Errorf("%w: hard link to the target folder", ErrUnsafe)
		}
		h.Link = target
		// An extractor that sets the linked file's mode from this header
		// (the Docker Engine's does) must not get back what a regular
		// file's entry had taken out.
		h.Mode &^= tarSetuid | tarSetgid | tarSticky
	default:
		return h, fmt.Errorf("%w: type %q", ErrUnsupported, hdr.Typeflag)
	}
	return h, nil
}

// tar's mode bits for setuid, setgid and sticky (c_ISUID, c_ISGID,
// c_ISVTX).
const (
	tarSetuid = 0o4000
	tarSetgid = 0o2000
	tarSticky = 0o1000
)

// mapName checks and maps an entry name; ok is false when Map skips it.
func mapName(raw string, opts Options) (string, bool, error) {
	n, err := CleanName(raw)
	if err != nil {
		return "", false, err
	}
	if opts.Map != nil {
		m, ok := opts.Map(n)
		if !ok {
			return "", false, nil
		}
		if n, err = CleanName(m); err != nil {
			return "", false, fmt.Errorf("%w (mapped from %q)", err, raw)
		}
	}
	return n, true, nil
}

// Checker applies Extract's entry policy to the entries of one archive,
// in order, without writing them: for a caller that hands them to another
// extractor (the Docker Engine's, through CopyToContainer, which follows
// symbolic links). To [CheckHeader]'s checks it adds those Extract makes
// on disk by never following a symbolic link: no entry, and no hard
// link's target, lies below a symbolic link an earlier entry made (a later
// entry of the same name replaces it), and no hard link points at one.
// Its memory grows with the archive's symbolic links, not its entries:
// with the components of their names that no earlier one had (a
// nameTree), not with their whole names, which a user's volume can make
// hundreds of KiB long; an entry is checked in work linear in its name.
type Checker struct {
	opts     Options
	symlinks nameTree
	any      bool // a symbolic link was met
}

// NewChecker returns a Checker for one archive.
func NewChecker(opts Options) *Checker {
	return &Checker{opts: opts}
}

// Check checks the next entry's header (see Checker).
func (c *Checker) Check(hdr *tar.Header) (Header, error) {
	h, err := CheckHeader(hdr, c.opts)
	if err != nil || h.Skip {
		return h, err
	}
	if err := c.below(h.Name, hdr.Name); err != nil {
		return h, err
	}
	if h.Link != "" {
		if err := c.below(h.Link, hdr.Linkname); err != nil {
			return h, fmt.Errorf("hard link target: %w", err)
		}
		if n := c.symlinks.find(h.Link, false); n != nil && n.symlink {
			return h, fmt.Errorf("%w: hard link target %q is a %s, not a regular file", ErrUnsafe, hdr.Linkname, typeName(tar.TypeSymlink))
		}
	}
	if hdr.Typeflag == tar.TypeSymlink {
		c.symlinks.find(h.Name, true).symlink = true
		c.any = true
	} else if n := c.symlinks.find(h.Name, false); n != nil {
		n.symlink = false // the entry replaces what had its name
	}
	return h, nil
}

// below fails when name (raw in the archive) lies below a symbolic link.
func (c *Checker) below(name, raw string) error {
	if !c.any {
		return nil
	}
	if d := c.symlinks.aboveSymlink(name); d != "" {
		return fmt.Errorf("%w: %q lies below the symbolic link %q", ErrUnsafe, raw, d)
	}
	return nil
}
