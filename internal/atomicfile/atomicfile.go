// Package atomicfile replaces files so that a reader, or the machine
// after a crash, finds either the old content or the new, never a part:
// the data goes to a temp file in the same folder (a rename across file
// systems is not atomic), the file is fsynced, renamed into place, and
// the folder is fsynced so that the rename itself is durable.
//
// One small helper rather than github.com/google/renameio/v2: renameio
// applies the umask unless told otherwise, may place its temp file in
// $TMPDIR, and has no create-only variant; the callers here need the exact
// mode (0600 secrets, 0644 metrics textfiles), the temp file beside the
// target (node-exporter's folder) and, for secrets, a write that refuses
// to replace an existing file.
package atomicfile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteFile atomically replaces (or creates) path with data, with mode
// exactly (the umask does not apply). The temp file is
// ".<name>.tmp<random>" in path's folder: it starts with a dot and does not
// end in the target's extension, so globs on the folder skip it. It is
// removed on any error.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	return Write(path, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Write is WriteFile for a streamed content: write writes it to the temp
// file; an error from write leaves path as it was.
func Write(path string, mode os.FileMode, write func(io.Writer) error) error {
	tmp, err := writeTemp(path, mode, write)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// Create writes a new file path with data and mode, refusing to replace an
// existing one (the error then satisfies errors.Is(err, fs.ErrExist)): the
// temp file is hard-linked into place, so path appears complete or not at
// all.
func Create(path string, data []byte, mode os.FileMode) error {
	tmp, err := writeTemp(path, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// writeTemp writes a new temp file beside path with mode, fsynced and
// closed, and returns its name; on error nothing is left.
func writeTemp(path string, mode os.FileMode, write func(io.Writer) error) (_ string, err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(name)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return "", err
	}
	if err := write(f); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return name, nil
}

// SyncDir fsyncs the folder dir, making the renames, links and removals in
// it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
