package volume

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/firetech/fireops/pkg/tarsafe"
)

// endMarker is the size of tar's end-of-archive marker: two zero blocks.
const endMarker = 1024

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
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
// headers of the mountpoint path.
func (s *Source) writeAPI(ctx context.Context, p *pinned, w io.Writer) (counts, error) {
	var c counts
	rc, _, err := s.c.cli.CopyFromContainer(ctx, p.h.id, helperMount)
	if err != nil {
		return c, s.c.wrap("archive volume "+s.name, err)
	}
	defer rc.Close()
	cr := &countingReader{r: tarsafe.ContextReader(ctx, rc)}
	tr := tar.NewReader(cr)
	tw := tar.NewWriter(w)
	buf := make([]byte, copyBufferSize)
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
	)
	for {
		before := cr.n
		hdr, err := tr.Next()
		if err == io.EOF {
			// The Engine writes the end marker only when its archiver got
			// through; when it fails half way it just ends the stream.
			if cr.n-before < endMarker {
				return fail(fmt.Errorf("it ended without tar's end-of-archive marker: the Engine failed while reading the volume (a file that changed size during the read does that; see dockerd's log, or set pause_containers)"))
			}
			break
		}
		if err != nil {
			return fail(err)
		}
		rel, err := engineName(hdr.Name)
		if err != nil {
			return fail(err)
		}
		if s.excluded[rel] || underAny(droppedDirs, rel) {
			dropped[rel] = true
			if hdr.Typeflag == tar.TypeDir {
				droppedDirs = append(droppedDirs, rel)
			}
			continue
		}
		out := normalize(hdr)
		out.Name = archiveName(rel)
		switch hdr.Typeflag {
		case tar.TypeDir:
			out.Name += "/"
			if rel == "." {
				out.Name = "./"
			}
			c.dirs++
		case tar.TypeReg, tar.TypeRegA:
			out.Typeflag = tar.TypeReg
			c.files++
		case tar.TypeSymlink:
			symlinks[rel] = hdr.Linkname
			c.symlinks++
		case tar.TypeLink:
			target, err := engineName(hdr.Linkname)
			if err != nil {
				return fail(err)
			}
			if dropped[target] {
				dropped[rel] = true
				continue
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
			continue
		default:
			return fail(fmt.Errorf("entry %q has unsupported type %q", hdr.Name, hdr.Typeflag))
		}
		if err := tw.WriteHeader(out); err != nil {
			return c, fmt.Errorf("volume:%s: %s: %w", s.name, out.Name, err)
		}
		c.entries++
		if out.Typeflag == tar.TypeReg {
			n, err := io.CopyBuffer(tw, tr, buf)
			c.bytes += n
			if err != nil {
				return fail(fmt.Errorf("%s: %w", out.Name, err))
			}
			if n != out.Size {
				return fail(fmt.Errorf("%s: %d of %d bytes", out.Name, n, out.Size))
			}
		}
	}
	if err := tw.Close(); err != nil {
		return c, fmt.Errorf("volume:%s: finish archive: %w", s.name, err)
	}
	return c, nil
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
