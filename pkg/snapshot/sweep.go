package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"time"
)

// Sweep is what the object sweep found and did on one destination.
type Sweep struct {
	// Total is the number of objects on the destination before the sweep
	// (v1 objects and v2 pieces and piece lists).
	Total int `json:"total"`
	// Referenced objects are named by a remaining manifest, directly or
	// through its piece lists.
	Referenced int `json:"referenced"`
	// Removed objects were unreferenced and older than the grace period
	// (with a dry run: would be removed).
	Removed int `json:"removed"`
	// FreedBytes is the stored size of the removed objects.
	FreedBytes int64 `json:"freed_bytes"`
	// Young objects are unreferenced but written within the grace period:
	// an upload in progress, kept.
	Young int `json:"young"`
	// Skipped says why the sweep (and the removal of incomplete
	// snapshots) did not run.
	Skipped string `json:"skipped,omitempty"`
}

// RemoveSnapshot removes a complete snapshot: its started file first,
// then its manifest (from then on it reads as incomplete), its signature,
// and the folder with what is left. Its objects stay until a sweep finds
// them unreferenced.
//
// The started file goes first so that a removal that stops half way
// (rotate killed, the destination gone) leaves a folder with neither a
// manifest nor a started file, which no snapshot run ever leaves (a run
// writes its started file before anything else): the next rotate
// recognises it (HalfRemoved) and finishes it at once, instead of taking
// it for a fresh incomplete snapshot (the deletions bump the folder's
// time) and waiting a whole grace period.
func RemoveSnapshot(ctx context.Context, st Store, host, id string) error {
	dir := SnapshotPath(host, id)
	for _, f := range []string{StartedFile, ManifestFile, SignatureFile} {
		if err := st.Delete(ctx, path.Join(dir, f)); err != nil {
			return fmt.Errorf("remove snapshot %s: delete %s: %w", id, f, err)
		}
	}
	if err := st.Rmdir(ctx, dir); err != nil {
		return fmt.Errorf("remove snapshot %s: %w", id, err)
	}
	return nil
}

// RemoveIncomplete removes an incomplete snapshot folder, its started file
// first (see RemoveSnapshot), unless a manifest appeared since it was
// listed (a snapshot that just finished).
func RemoveIncomplete(ctx context.Context, st Store, host, id string) error {
	dir := SnapshotPath(host, id)
	_, err := st.GetBytes(ctx, path.Join(dir, ManifestFile), 1)
	switch {
	case err == nil:
		return fmt.Errorf("remove incomplete snapshot %s: it has a manifest now; run rotate again", id)
	case !errors.Is(err, ErrNotFound):
		return fmt.Errorf("remove incomplete snapshot %s: %w", id, err)
	}
	if err := st.Delete(ctx, path.Join(dir, StartedFile)); err != nil {
		return fmt.Errorf("remove incomplete snapshot %s: delete %s: %w", id, StartedFile, err)
	}
	if err := st.Rmdir(ctx, dir); err != nil {
		return fmt.Errorf("remove incomplete snapshot %s: %w", id, err)
	}
	return nil
}

// HalfRemoved tells whether a snapshot folder is one whose removal began:
// it holds neither a manifest nor a started file (RemoveSnapshot deletes
// the started file first; a snapshot run writes it first). Rotate
// finishes such a folder at once, whatever its age. It is meant for a
// caller that holds the objects lock (no snapshot of this host runs).
func HalfRemoved(ctx context.Context, st Store, host, id string) (bool, error) {
	files, err := st.List(ctx, SnapshotPath(host, id))
	if err != nil {
		return false, fmt.Errorf("list snapshot %s: %w", id, err)
	}
	for _, f := range files {
		if f.Name == StartedFile || f.Name == ManifestFile {
			return false, nil
		}
	}
	return true, nil
}

// SweepObjects removes the objects (v1 object folders, v2 pieces and
// piece lists) that no manifest of a remaining snapshot references and
// whose newest write is older than grace. The caller holds the objects
// lock, so no snapshot is running that could reference an object no
// manifest names yet. Every manifest on the destination counts, damaged
// ones included (read without their signature; a manifest that cannot be
// read at all stops the sweep, since what it references is unknown). With
// dryRun, the snapshots in removed count as gone and nothing is deleted.
func SweepObjects(ctx context.Context, st Store, host string, now time.Time, grace time.Duration,
	removed map[string]bool, dryRun bool, log *slog.Logger) (Sweep, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var sw Sweep
	refs, err := referenced(ctx, st, host, removed, dryRun, log)
	if err != nil {
		sw.Skipped = "a manifest or piece list could not be read"
		return sw, fmt.Errorf("sweep skipped: %w", err)
	}
	top, err := st.List(ctx, path.Join(host, ObjectsDir))
	if err != nil {
		return sw, fmt.Errorf("sweep: list objects: %w", err)
	}
	old := func(t time.Time) bool { return !t.IsZero() && now.Sub(t) > grace }
	// A progress display counts the folders listed (pieces spread evenly
	// over the 256 prefix folders) and the objects removed.
	task := progressFrom(ctx).Start("sweep", st.Name(), Folders, int64(len(top)))
	defer task.Finish(TaskFailed) // unless it got to its end
	for _, e := range top {
		task.Add(1)
		switch {
		case e.Dir && ValidObjectID(e.Name): // a v1 object: a folder of chunks
			sw.Total++
			if refs[e.Name] {
				sw.Referenced++
				continue
			}
			chunks, err := st.List(ctx, ObjectPath(host, e.Name))
			if err != nil {
				return sw, fmt.Errorf("sweep: list object %s: %w", e.Name, err)
			}
			newest, size := e.ModTime, int64(0)
			for _, c := range chunks {
				size += c.Size
				if c.ModTime.After(newest) {
					newest = c.ModTime
				}
			}
			if !old(newest) {
				sw.Young++
				continue
			}
			if !dryRun {
				if err := st.Rmdir(ctx, ObjectPath(host, e.Name)); err != nil {
					return sw, fmt.Errorf("sweep: remove object %s: %w", e.Name, err)
				}
				log.Debug("object removed", "destination", st.Name(), "object", e.Name, "bytes", size)
			}
			sw.Removed++
			sw.FreedBytes += size
			task.AddRemoved(size)
		case e.Dir && prefixRE.MatchString(e.Name): // v2 objects
			files, err := st.List(ctx, path.Join(host, ObjectsDir, e.Name))
			if err != nil {
				return sw, fmt.Errorf("sweep: list objects/%s: %w", e.Name, err)
			}
			for _, f := range files {
				if f.Dir || !ValidPieceID(f.Name) || f.Name[:2] != e.Name {
					continue
				}
				sw.Total++
				if refs[f.Name] {
					sw.Referenced++
					continue
				}
				if !old(f.ModTime) {
					sw.Young++
					continue
				}
				if !dryRun {
					if err := st.Delete(ctx, PiecePath(host, f.Name)); err != nil {
						return sw, fmt.Errorf("sweep: remove object %s: %w", f.Name, err)
					}
					log.Debug("object removed", "destination", st.Name(), "object", f.Name, "bytes", f.Size)
				}
				sw.Removed++
				sw.FreedBytes += f.Size
				task.AddRemoved(f.Size)
			}
		}
	}
	task.Finish(TaskDone)
	if !dryRun && sw.Removed > 0 {
		log.Info("objects swept", "destination", st.Name(), "removed", sw.Removed, "freed_bytes", sw.FreedBytes, "young", sw.Young)
	}
	return sw, nil
}

// referenced returns the ids of the objects named by the manifests on the
// destination now: v1 objects, and v2 piece lists with every piece they
// name (each distinct list read once); with dryRun, those of the snapshots
// in removed are left out as if they were gone. A piece list that is
// gone, cannot be read or does not match its manifest stops the sweep:
// what the snapshot references is then unknown, and its pieces may still
// serve once the list is put back (from another destination's copy, or
// by removing that snapshot by hand once inspected).
func referenced(ctx context.Context, st Store, host string, removed map[string]bool, dryRun bool, log *slog.Logger) (map[string]bool, error) {
	dirs, err := st.List(ctx, path.Join(host, SnapshotsDir))
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	refs := map[string]bool{}
	for _, e := range dirs {
		if !e.Dir || (dryRun && removed[e.Name]) {
			continue
		}
		data, err := st.GetBytes(ctx, path.Join(SnapshotPath(host, e.Name), ManifestFile), maxManifestSize)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read manifest of %s: %w", e.Name, err)
		}
		var m Manifest
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("manifest of %s does not decode (%v): remove that snapshot folder by hand once inspected", e.Name, err)
		}
		for _, obj := range m.Objects {
			refs[obj.ID] = true
		}
		for _, l := range m.Lists {
			if !ValidPieceID(l.ID) || refs[l.ID] {
				continue
			}
			refs[l.ID] = true
			// The signed size plus a byte, as fetchList reads it: a longer
			// list still reaches the "does not match" check below.
			data, err := st.GetBytes(ctx, PiecePath(host, l.ID), signedLimit(l.Size)+1)
			if errors.Is(err, ErrNotFound) {
				return nil, fmt.Errorf("piece list %s of snapshot %s is missing: put it back or remove that snapshot folder by hand once inspected", l.ID, e.Name)
			}
			if err != nil {
				return nil, fmt.Errorf("read piece list %s of %s: %w", l.ID, e.Name, err)
			}
			sum := sha256.Sum256(data)
			if int64(len(data)) != l.Size || hex.EncodeToString(sum[:]) != l.SHA256 {
				return nil, fmt.Errorf("piece list %s of snapshot %s does not match its manifest: put it back or remove that snapshot folder by hand once inspected", l.ID, e.Name)
			}
			var pl PieceList
			if err := json.Unmarshal(data, &pl); err != nil {
				return nil, fmt.Errorf("piece list %s of %s does not decode (%v): remove that snapshot folder by hand once inspected", l.ID, e.Name, err)
			}
			for _, p := range pl.Pieces {
				refs[p.ID] = true
			}
		}
	}
	return refs, nil
}
