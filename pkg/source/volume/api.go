package volume

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/firetech/fireops/internal/textcut"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/tarsafe"
)

// endMarker is the size of tar's end-of-archive marker: two zero blocks.
const endMarker = 1024

// engineFailed says why the Engine's archive breaks off.
const engineFailed = "the Engine failed while reading the volume (a file that changed size, or a file or folder replaced, during the read does that; see dockerd's log, or set pause_containers)"

// The Engine's archiver walks the volume by path, as the helper container
// sees it ("/v/a/b"), and leaves out without an error (not even a line in
// dockerd's log) every name it cannot lstat: a path of enginePathMax bytes
// or more (PATH_MAX, ENAMETOOLONG), with all that lies below it. So a
// folder whose Engine path, with "/" and a name of up to nameMax bytes,
// reaches enginePathMax may have lost names, and the stream cannot say
// which or whether: the api path refuses such a folder (errTooDeep)
// rather than archive it incomplete. A folder whose path in the volume is
// 3,836 bytes or shorter is safe.
const (
	enginePathMax = 4096 // PATH_MAX on Linux, the terminating NUL included
	nameMax       = 255  // NAME_MAX of ext4, xfs, btrfs, tmpfs
)

// errTooDeep is wrapped by the error of a volume holding a folder too deep
// for the Engine's archive.
var errTooDeep = errors.New("too deep for the Docker Engine's archive")

// enginePathLen is the length of the path of rel as the Engine's archiver
// sees it: helperMount, "/", rel.
func enginePathLen(rel string) int {
	if rel == "." {
		return len(helperMount)
	}
	return len(helperMount) + 1 + len(rel)
}

// mayLoseNames reports whether the Engine may have left out names inside
// the folder rel: its path, "/" and the longest name reach enginePathMax.
func mayLoseNames(rel string) bool {
	return enginePathLen(rel)+1+nameMax >= enginePathMax
}

// shortName abbreviates a long path for a message: its first and last
// 100 bytes (whole characters) around an ellipsis.
func shortName(rel string) string {
	const keep = 100
	if len(rel) <= 2*keep+20 {
		return rel
	}
	head, tail := len(textcut.Prefix(rel, keep)), len(rel)-keep
	for tail < len(rel) && !utf8.RuneStart(rel[tail]) {
		tail++
	}
	return rel[:head] + "…" + rel[tail:]
}

// engineName maps a name of the Engine's archive of helperMount ("v/",
// "v/a/b") to the path relative to the volume root ("." or "a/b").
func engineName(name string) (string, error) {
	n, err := tarsafe.CleanName(name)
	if err != nil {
		return "", err
	}
	top := strings.TrimPrefix(helperMount, "/")
	if n == top {
		return ".", nil
	}
	rel, ok := strings.CutPrefix(n, top+"/")
	if !ok {
		return "", fmt.Errorf("unexpected entry %q outside %s", name, helperMount)
	}
	return rel, nil
}

// writeAPI archives the volume through the Engine (CopyFromContainer from
// the helper container) and re-encodes the stream with the names and
// headers of the mountpoint path (see rewriteEngine).
func (s *Source) writeAPI(ctx context.Context, p *pinned, w io.Writer) (counts, error) {
	rc, _, err := s.c.cli.CopyFromContainer(ctx, p.h.id, helperMount)
	if err != nil {
		return counts{}, s.c.wrap("archive volume "+s.name, err)
	}
	defer rc.Close()
	return s.rewriteEngine(ctx, rc, w, p.why)
}

// rewriteEngine re-encodes the Engine's archive of helperMount, read from
// r, into w with the names and headers of the mountpoint path. It fails,
// rather than write an archive that silently misses files, when the
// stream ends without tar's end-of-archive marker (the Engine failed half
// way), when it does not start with the volume's root folder (the Engine
// could not read it), and at a folder whose names the Engine may have left
// out for their length (errTooDeep; why is the reason the mountpoint path
// is not used, for the hint, or "").
func (s *Source) rewriteEngine(ctx context.Context, r io.Reader, w io.Writer, why string) (counts, error) {
	var c counts
	fail := func(err error) (counts, error) {
		if ctx.Err() != nil {
			return c, ctx.Err()
		}
		return c, fmt.Errorf("volume:%s: the Engine's archive: %w", s.name, err)
	}
	var (
		dropped     = map[string]bool{} // entries left out: links to them are too
		droppedDirs []string            // folders left out with their contents
		symlinks    = map[string]string{}
		rootSeen    bool
		tooDeep     error
	)
	entries, bytes, err := retar(ctx, r, w, func(hdr *tar.Header) (*tar.Header, error) {
		rel, err := engineName(hdr.Name)
		if err != nil {
			return nil, err
		}
		// The archiver leaves out a folder it cannot read, the root too;
		// the root comes first.
		if !rootSeen {
			if rel != "." || hdr.Typeflag != tar.TypeDir {
				return nil, fmt.Errorf("it starts with %q, not the volume's root folder: the Engine could not read the volume", hdr.Name)
			}
			rootSeen = true
		}
		if s.excluded[rel] || underAny(droppedDirs, rel) {
			dropped[rel] = true
			if hdr.Typeflag == tar.TypeDir {
				droppedDirs = append(droppedDirs, rel)
			}
			return nil, nil
		}
		out := normalize(hdr)
		out.Name = archiveName(rel)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if mayLoseNames(rel) {
				tooDeep = s.tooDeep(rel, why)
				return nil, tooDeep
			}
			out.Name += "/"
			if rel == "." {
				out.Name = "./"
			}
			c.dirs++
		case tar.TypeReg: // tar.Reader turns the legacy TypeRegA into TypeReg or TypeDir
			out.Typeflag = tar.TypeReg
			c.files++
		case tar.TypeSymlink:
			symlinks[rel] = hdr.Linkname
			c.symlinks++
		case tar.TypeLink:
			target, err := engineName(hdr.Linkname)
			if err != nil {
				return nil, err
			}
			if dropped[target] {
				dropped[rel] = true
				return nil, nil
			}
			if link, ok := symlinks[target]; ok {
				// The Engine links later names of any file with several;
				// the mountpoint path stores a symlink under each name.
				out.Typeflag, out.Linkname = tar.TypeSymlink, link
				symlinks[rel] = link
				c.symlinks++
				break
			}
			out.Linkname = archiveName(target)
			out.Size = 0
			c.links++
		case tar.TypeFifo, tar.TypeChar, tar.TypeBlock:
			dropped[rel] = true
			c.special++
			return nil, nil
		default:
			return nil, fmt.Errorf("entry %q has unsupported type %q", hdr.Name, hdr.Typeflag)
		}
		return out, nil
	})
	c.entries, c.bytes = entries, bytes
	var werr *writeError
	var broke *brokeOff
	switch {
	case err == nil && !rootSeen:
		return fail(errors.New("it holds no entry for the volume's root folder: the Engine could not read the volume"))
	case err == nil:
		return c, nil
	case tooDeep != nil && errors.Is(err, tooDeep):
		return c, err
	case errors.As(err, &werr):
		return c, fmt.Errorf("volume:%s: %w", s.name, err)
	case errors.Is(err, errNoEndMarker), errors.As(err, &broke):
		// The Engine writes the end marker only when its archiver got
		// through; when it fails half way it just ends the stream.
		return fail(fmt.Errorf("%w: %s", err, engineFailed))
	}
	return fail(err)
}

// errNoEndMarker is retar's error for a stream that ends without tar's
// end-of-archive marker (two zero blocks).
var errNoEndMarker = errors.New("it ended without tar's end-of-archive marker")

// brokeOff is retar's error for a stream that ends inside an entry: in
// its header (file is ""), or after n of size bytes of file's contents.
type brokeOff struct {
	file    string
	n, size int64
}

func (b *brokeOff) Error() string {
	if b.file == "" {
		return "it broke off inside an entry's header"
	}
	return fmt.Sprintf("%s: it broke off after %d of %d bytes", b.file, b.n, b.size)
}

// Unwrap says a stream that broke off ended unexpectedly.
func (b *brokeOff) Unwrap() error { return io.ErrUnexpectedEOF }

// writeError is retar's error when writing to w fails: at what, and why.
type writeError struct {
	what string
	err  error
}

func (e *writeError) Error() string { return e.what + ": " + e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// errWriter keeps the first error of w, so that retar tells a failed
// write from a failed read.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

// retar re-encodes the tar stream r into w entry by entry: the one loop
// behind the api read path (rewriteEngine), the api write path
// (forEngine) and the copy between two volumes through the Engine
// (relay). edit returns the header to write for each entry read, or nil
// to leave the entry out; a regular file's contents follow its header.
// r is read through a check of ctx. It returns the entries written and
// the bytes of contents copied. It stops at edit's first error, returned
// as it is; the stream's own faults are errNoEndMarker (it ends without
// tar's end-of-archive marker: the Engine just ends its stream when its
// archiver fails half way), a *brokeOff (it ends inside an entry) or a
// read error naming the entry, and a failed write is a *writeError.
func retar(ctx context.Context, r io.Reader, w io.Writer, edit func(hdr *tar.Header) (*tar.Header, error)) (entries, bytes int64, err error) {
	cr := &tarsafe.CountingReader{R: tarsafe.ContextReader(ctx, r)}
	tr := tar.NewReader(cr)
	ew := &errWriter{w: w}
	tw := tar.NewWriter(ew)
	buf := make([]byte, copyBufferSize)
	for read := int64(1); ; read++ {
		before := cr.N
		hdr, err := tr.Next()
		if err == io.EOF {
			if cr.N-before < endMarker {
				return entries, bytes, errNoEndMarker
			}
			break
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return entries, bytes, &brokeOff{}
		}
		if err != nil {
			return entries, bytes, fmt.Errorf("read entry %d: %w", read, err)
		}
		out, err := edit(hdr)
		if err != nil {
			return entries, bytes, err
		}
		if out == nil {
			continue // left out
		}
		if err := tw.WriteHeader(out); err != nil {
			return entries, bytes, &writeError{what: out.Name, err: err}
		}
		entries++
		if out.Typeflag != tar.TypeReg {
			continue
		}
		n, err := io.CopyBuffer(tw, tr, buf)
		bytes += n
		switch {
		case err != nil && ew.err != nil:
			return entries, bytes, &writeError{what: out.Name, err: err}
		case errors.Is(err, io.ErrUnexpectedEOF):
			return entries, bytes, &brokeOff{file: out.Name, n: n, size: out.Size}
		case err != nil:
			return entries, bytes, fmt.Errorf("%s: %w", out.Name, err)
		case n != out.Size:
			return entries, bytes, fmt.Errorf("%s: %d of %d bytes", out.Name, n, out.Size)
		}
	}
	if err := tw.Close(); err != nil {
		return entries, bytes, &writeError{what: "finish archive", err: err}
	}
	return entries, bytes, nil
}

// tooDeep is the error for the folder rel, which the Engine's archive may
// hold incomplete (see enginePathMax); why is the reason the mountpoint
// path is not used, or "".
func (s *Source) tooDeep(rel, why string) error {
	hint := "read this volume through its mountpoint, which has no such limit: run fireops as root with read: auto or mountpoint"
	if why != "" {
		hint += " (now it cannot be used: " + why + ")"
	}
	err := fmt.Errorf("volume:%s: folder ./%s (%d bytes) is %w: the Engine leaves out, without an error, every path inside it of %d bytes or more (PATH_MAX); the api read path refuses the volume rather than archive it incomplete",
		s.name, shortName(rel), len(rel), errTooDeep, enginePathMax)
	return exitcode.New(exitcode.Failure, err, hint)
}

// underAny reports whether rel lies inside one of the folders dirs.
func underAny(dirs []string, rel string) bool {
	for _, d := range dirs {
		if strings.HasPrefix(rel, d+"/") {
			return true
		}
	}
	return false
}
