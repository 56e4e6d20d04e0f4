package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/snapshot"
	"github.com/firetech/fireops/pkg/source"
	"github.com/firetech/fireops/pkg/source/files"
	"github.com/firetech/fireops/pkg/source/sqlite"
)

// wanted reports whether a part id ("kind:name") is selected by only
// (ids or kinds); an empty selection selects everything.
func wanted(only []string, kind, name string) bool {
	return len(only) == 0 || slices.Contains(only, kind) || slices.Contains(only, kind+":"+name)
}

// Sources builds the configured sources, or those selected by only (part
// ids such as files:stack, or kinds such as sqlite). A source kind this
// version cannot read is an error, never a silent skip: a snapshot must
// not look complete without it.
func Sources(_ context.Context, cfg *config.Config, only []string) ([]source.Source, error) {
	var out []source.Source
	s := cfg.Sources
	if s.Mongo != nil && wanted(only, "mongo", "") {
		return nil, exitcode.Usagef("remove sources.mongo for now, or snapshot the other parts with --only",
			"sources.mongo: MongoDB parts are not supported by this version of fireops yet")
	}
	if s.Volumes != nil && wanted(only, "volume", "") {
		return nil, exitcode.Usagef("remove sources.volumes for now, or snapshot the other parts with --only",
			"sources.volumes: Docker volume parts are not supported by this version of fireops yet")
	}
	for i, f := range s.Files {
		if !wanted(only, files.Kind, f.Name) {
			continue
		}
		src, err := files.New(f)
		if err != nil {
			return nil, exitcode.New(exitcode.Usage, fmt.Errorf("sources.files[%d]: %w", i, err), "fix the source in the config")
		}
		out = append(out, src)
	}
	for i, q := range s.SQLite {
		if !wanted(only, sqlite.Kind, q.Name) {
			continue
		}
		if q.Path == "" {
			return nil, exitcode.Usagef("give the database's host path with path: for now",
				"sources.sqlite[%d]: databases inside Docker volumes are not supported by this version of fireops yet", i)
		}
		src, err := sqlite.New(q)
		if err != nil {
			return nil, exitcode.New(exitcode.Usage, fmt.Errorf("sources.sqlite[%d]: %w", i, err), "fix the source in the config")
		}
		out = append(out, src)
	}
	if len(out) == 0 {
		if len(only) > 0 {
			return nil, exitcode.Usagef("name a configured part: files:NAME, sqlite:NAME, or a kind", "--only %v matches no configured source", only)
		}
		return nil, exitcode.Usagef("add a source under sources: (docs/configuration.md)", "config %s has no sources", cfg.File)
	}
	return out, nil
}

// targetFor decides where a part is restored. to is --to; n is the number
// of parts being restored.
func targetFor(cfg *config.Config, p snapshot.Part, to string, n int) (string, error) {
	if to != "" {
		to, _ = filepath.Abs(to)
	}
	switch p.Kind {
	case files.Kind:
		switch {
		case to == "":
			return "", exitcode.Usagef("give --to DIR: the part's paths are recreated under DIR",
				"part %s: restoring files over their original paths is not supported; restore into a folder", p.ID)
		case n > 1:
			return filepath.Join(to, "files-"+p.Name), nil
		}
		return to, nil
	case sqlite.Kind:
		if to == "" {
			for _, q := range cfg.Sources.SQLite {
				if q.Name == p.Name && q.Path != "" {
					return q.Path, nil
				}
			}
			return "", exitcode.Usagef("give --to FILE", "part %s: the config names no path for sqlite source %q", p.ID, p.Name)
		}
		if st, err := os.Stat(to); n > 1 || (err == nil && st.IsDir()) {
			return filepath.Join(to, p.Name+".sqlite"), nil
		}
		return to, nil
	}
	return "", fmt.Errorf("part %s: restoring %s parts is not supported by this version of fireops", p.ID, p.Kind)
}

// checkTarget refuses, before anything is downloaded, a target that would
// be replaced without --force.
func checkTarget(p snapshot.Part, target string, force bool) error {
	if force {
		return nil
	}
	st, err := os.Stat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("part %s: target %s: %w", p.ID, target, err)
	}
	switch {
	case p.Kind == sqlite.Kind:
		return exitcode.Usagef("add --force to replace it (stop the program using it first), or choose another --to",
			"part %s: %s exists", p.ID, target)
	case !st.IsDir():
		return exitcode.Usagef("choose a folder with --to", "part %s: target %s is not a folder", p.ID, target)
	}
	des, err := os.ReadDir(target)
	if err != nil {
		return fmt.Errorf("part %s: target %s: %w", p.ID, target, err)
	}
	if len(des) > 0 {
		return exitcode.Usagef("choose an empty folder with --to, or add --force to replace it", "part %s: target %s is not empty", p.ID, target)
	}
	return nil
}

// restorerFor returns the kind's restorer for a part.
func restorerFor(p snapshot.Part, target string, force bool) (source.Restorer, error) {
	switch p.Kind {
	case files.Kind:
		return files.NewRestorer(target, force)
	case sqlite.Kind:
		return sqlite.NewRestorer(target)
	}
	return nil, fmt.Errorf("part %s: restoring %s parts is not supported by this version of fireops", p.ID, p.Kind)
}
