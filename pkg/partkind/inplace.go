package partkind

// Files parts put back in place by a whole-server restore (restore --all):
// the paths come from the config's files source, and each must be a path
// the snapshot archived or lie inside one (pkg/restore's restore_all.go
// describes the whole restore; files.InPlace does the staging and swap).

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/snapshot"
	"github.com/firetech/fireops/pkg/source/files"
)

// Rank is a part's kind's position in the kinds list (the safe order of
// a whole-server restore: files, volumes, sqlite, mongo).
func Rank(p snapshot.Part) int {
	for i, k := range kinds {
		if k.name() == p.Kind {
			return i
		}
	}
	return len(kinds)
}

// planInPlace plans a files part of a whole-server restore: the paths its
// config source names, and how many of them exist now (kept aside, or
// replaced with force).
func planInPlace(cfg *config.Config, r Request) (string, error) {
	paths, err := InPlacePaths(cfg, r.Part)
	if err != nil {
		return "", err
	}
	var existing int
	for _, path := range paths {
		if _, err := os.Lstat(path); err == nil {
			existing++
		}
	}
	t := strings.Join(paths, ", ")
	switch {
	case existing > 0 && r.Force:
		t += fmt.Sprintf(" (replacing %d existing)", existing)
	case existing > 0:
		t += fmt.Sprintf(" (%d existing kept as *.fireops-old)", existing)
	}
	return t, nil
}

// InPlacePaths returns the paths of the config's files source of a part:
// cleaned, sorted, without paths inside others (as the archive has them).
func InPlacePaths(cfg *config.Config, p snapshot.Part) ([]string, error) {
	for _, f := range cfg.Sources.Files {
		if f.Name != p.Name {
			continue
		}
		var roots []string
		for _, path := range f.Paths {
			path = filepath.Clean(path)
			if !filepath.IsAbs(path) || path == "/" {
				return nil, exitcode.Usagef("restore it into a folder with --part "+p.ID+" --to DIR",
					"part %s: path %q cannot be restored in place", p.ID, path)
			}
			roots = append(roots, path)
		}
		sort.Strings(roots)
		kept := roots[:0]
		for _, r := range roots {
			if len(kept) > 0 && (r == kept[len(kept)-1] || strings.HasPrefix(r, kept[len(kept)-1]+"/")) {
				continue
			}
			kept = append(kept, r)
		}
		if len(kept) == 0 {
			break
		}
		return kept, archivedPaths(p, kept)
	}
	return nil, exitcode.Usagef("put the config back first (it names the paths), or restore the part into a folder with --part "+p.ID+" --to DIR",
		"part %s: the config has no files source %q: its original paths are unknown", p.ID, p.Name)
}

// archivedPaths refuses a configured path that the part did not archive
// as such: only a path the files source was configured with when the
// snapshot was taken (a recorded root), or one inside it, holds
// everything that was there. A folder above a root is in the archive too,
// but holding only the folders down to the root: put back in place, it
// would take everything else in it away (into .fireops-old, or deleted
// with --force). A part without recorded roots (written before fireops
// recorded them) cannot tell the two apart, so it is refused whole.
func archivedPaths(p snapshot.Part, paths []string) error {
	hint := "restore the part into a folder with --part " + p.ID + " --to DIR and copy back what you need, or leave it out of --all with --part"
	roots, ok, err := files.RecordedRoots(p.Details)
	if err != nil {
		return fmt.Errorf("part %s: %w", p.ID, err)
	}
	if !ok {
		return exitcode.Usagef(hint,
			"part %s does not record which paths it archived (written by an older fireops): it cannot be put back in place safely, as a configured folder may hold only the folders above what was archived",
			p.ID)
	}
	for _, path := range paths {
		if slices.ContainsFunc(roots, func(r string) bool { return path == r || strings.HasPrefix(path, r+"/") }) {
			continue
		}
		if slices.ContainsFunc(roots, func(r string) bool { return strings.HasPrefix(r, path+"/") }) {
			return exitcode.Usagef(hint+"; or set the source's paths in the config to the archived ones",
				"part %s: the config's path %s is above the paths the snapshot archived (%s): putting it back in place would remove everything else in it",
				p.ID, path, strings.Join(roots, ", "))
		}
		return exitcode.Usagef(hint+"; or set the source's paths in the config to the archived ones",
			"part %s: the config's path %s is not among the paths the snapshot archived (%s)", p.ID, path, strings.Join(roots, ", "))
	}
	return nil
}

// NewInPlaceRestorer returns the restorer that puts a files part back
// over the paths its config source names (see the top of this file and
// files.InPlace).
func NewInPlaceRestorer(cfg *config.Config, p snapshot.Part, force bool) (*files.InPlace, error) {
	paths, err := InPlacePaths(cfg, p)
	if err != nil {
		return nil, err
	}
	return files.NewInPlace(paths, force), nil
}
