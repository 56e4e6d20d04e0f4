package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firetech/fireops/pkg/source"
)

// brokenSource writes one large file and breaks off half way through it
// with err, or fails its Fingerprint with fpErr. With err and fpErr nil it
// writes the file whole (the source repaired).
type brokenSource struct {
	kind, name string
	data       []byte
	err, fpErr error
}

func (b *brokenSource) Kind() string { return b.kind }
func (b *brokenSource) Name() string { return b.name }
func (b *brokenSource) Fingerprint(context.Context) (string, error) {
	return "", b.fpErr
}

func (b *brokenSource) WriteTar(_ context.Context, w io.Writer) (source.Stats, error) {
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(&tar.Header{Name: "big.bin", Mode: 0o644, Size: int64(len(b.data)), Typeflag: tar.TypeReg}); err != nil {
		return source.Stats{}, err
	}
	if b.err != nil {
		if _, err := tw.Write(b.data[:len(b.data)*3/4]); err != nil {
			return source.Stats{}, err
		}
		return source.Stats{}, b.err
	}
	if _, err := tw.Write(b.data); err != nil {
		return source.Stats{}, err
	}
	return source.Stats{Entries: 1}, tw.Close()
}

func partIDs(ps []Part) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return out
}

// TestFailedPartFailsOnlyThatPart: a source that breaks off mid-stream
// among good ones (one before it, one after it) and one whose Fingerprint
// fails: the run goes on, every destination gets a signed snapshot of the
// good parts, the index names the failed ones with their reasons
// (credentials redacted, one line), the manifest only counts them, and
// Create's error is a *PartsError naming both. The pieces the broken part
// uploaded are what a failed run's are: known, so the next run references
// them, and unreferenced, so rotate's sweep removes them after the grace
// period (and the next run uploads them again).
func TestFailedPartFailsOnlyThatPart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	ctx := context.Background()
	good := testSources()
	broken := &brokenSource{kind: "volume", name: "jupyterhub-user-mallory", data: randomBytes(1<<20, 7),
		err: errors.New("read ./deep/x: file name too long\nwhile dialing mongodb://fireops:s3cretpw@db:27017")}
	noFP := &brokenSource{kind: "sqlite", name: "notadb", data: []byte("x"), fpErr: errors.New("file is not a database")}
	srcs := []source.Source{good[0], broken, noFP, good[1]}
	res, err := Create(ctx, e.opts, e.storeList(), srcs)
	var pe *PartsError
	if !errors.As(err, &pe) || res == nil {
		t.Fatalf("err = %v (result %v); want a *PartsError and a result", err, res)
	}
	if pe.Held != 2 || len(pe.Failed) != 2 {
		t.Fatalf("PartsError %+v", pe)
	}
	for _, want := range []string{"part volume:jupyterhub-user-mallory: read ./deep/x: file name too long", "part sqlite:notadb: fingerprint: file is not a database", "holds the 2 other parts"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v; want it to say %q", err, want)
		}
	}
	if got := partIDs(res.Parts); !slices.Equal(got, []string{"files:stack", "sqlite:hub"}) {
		t.Fatalf("parts %v", got)
	}
	if len(res.FailedParts) != 2 || res.FailedParts[0].ID != "volume:jupyterhub-user-mallory" || res.FailedParts[1].ID != "sqlite:notadb" {
		t.Fatalf("failed parts %+v", res.FailedParts)
	}
	reason := res.FailedParts[0].Reason
	if strings.Contains(reason, "s3cretpw") || strings.Contains(reason, "\n") || !strings.Contains(reason, "too long; while dialing") {
		t.Errorf("reason %q: want one line, credentials redacted", reason)
	}
	for _, d := range res.Destinations {
		if d.Err != nil {
			t.Fatalf("destination %s failed: %v", d.Name, d.Err)
		}
	}

	for _, st := range e.stores {
		m, err := Open(ctx, st, "gpu01", res.ID, e.pub)
		if err != nil {
			t.Fatalf("%s: the partial snapshot is not a signed, complete one: %v", st.name, err)
		}
		if m.FailedParts != 2 || m.PartCount() != 2 {
			t.Errorf("%s: manifest failed_parts %d, parts %d", st.name, m.FailedParts, m.PartCount())
		}
		data, _ := os.ReadFile(filepath.Join(st.root, SnapshotPath("gpu01", res.ID), ManifestFile))
		for _, leak := range []string{"mallory", "notadb", "too long"} {
			if bytes.Contains(data, []byte(leak)) {
				t.Errorf("%s: the plaintext manifest names %q", st.name, leak)
			}
		}
		idx, err := ReadIndex(ctx, st, m, e.ids)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(partIDs(idx.Parts), []string{"files:stack", "sqlite:hub"}) || !slices.Equal(idx.FailedParts, res.FailedParts) {
			t.Errorf("%s: index parts %v, failed %+v", st.name, partIDs(idx.Parts), idx.FailedParts)
		}
		if got := e.restoreAll(t, st, res.ID); len(got) != 2 || len(got["files:stack"]) != 2 {
			t.Errorf("%s: restored %v", st.name, got)
		}
		ls, err := List(ctx, st, "gpu01", e.pub)
		if err != nil || len(ls) != 1 || !ls[0].Complete || ls[0].Parts != 2 || ls[0].FailedParts != 2 {
			t.Errorf("%s: listing %+v, %v; want a complete snapshot of 2 parts, 2 failed", st.name, ls, err)
		}
	}

	// The broken part uploaded pieces before it broke off; no list of the
	// snapshot references them.
	referenced := map[string]bool{}
	for _, p := range snapPieces(t, e, e.stores[1], res.ID) {
		referenced[p] = true
	}
	for _, l := range mustManifest(t, e, e.stores[1], res.ID).Lists {
		referenced[filepath.Join(e.stores[1].root, PiecePath("gpu01", l.ID))] = true
	}
	var orphans []string
	for _, f := range objectFiles(t, e.stores[1]) {
		if !referenced[f] {
			orphans = append(orphans, f)
		}
	}
	if len(orphans) < 2 {
		t.Fatalf("the broken part left %d unreferenced pieces; the test needs some", len(orphans))
	}

	// On d1, rotate's sweep removes them once past the grace period; the
	// snapshot still checks out whole.
	sw, err := SweepObjects(ctx, e.stores[1], "gpu01", time.Now().Add(time.Hour), time.Minute, nil, false, nil)
	if err != nil || sw.Removed != len(orphans) {
		t.Fatalf("sweep: %+v, %v; want the %d unreferenced pieces removed", sw, err, len(orphans))
	}
	for _, f := range orphans {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("unreferenced piece %s survived the sweep", f)
		}
	}

	// The source repaired: on d0 the next run references the pieces the
	// broken part uploaded (it uploads far less than the part stores); on
	// d1, where they were swept, it uploads them again. Both restore.
	broken.err = nil
	next, err := Create(ctx, e.opts, e.storeList(), []source.Source{broken})
	if err != nil {
		t.Fatal(err)
	}
	p := next.Parts[0]
	if p.Uploaded*2 > p.Stored {
		t.Errorf("d0: the repaired part uploaded %d of its %d stored bytes: the failed run's pieces were not referenced", p.Uploaded, p.Stored)
	}
	if next.Destinations[1].Uploaded < p.Stored {
		t.Errorf("d1: uploaded %d bytes, less than the part's %d: swept pieces were referenced", next.Destinations[1].Uploaded, p.Stored)
	}
	for _, st := range e.stores {
		if got := e.restoreAll(t, st, next.ID); !bytes.Equal(got["volume:jupyterhub-user-mallory"]["big.bin"], broken.data) {
			t.Errorf("%s: the repaired part does not restore", st.name)
		}
	}
}

func mustManifest(t *testing.T, e *env, st *dirStore, id string) *Manifest {
	t.Helper()
	m, err := Open(context.Background(), st, "gpu01", id, e.pub)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestEveryPartFailedLeavesNoSnapshot: when every part fails, nothing is
// signed: no manifest, no snapshot folder, no result; the error names each
// part.
func TestEveryPartFailedLeavesNoSnapshot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	srcs := []source.Source{
		&brokenSource{kind: "files", name: "a", data: randomBytes(300<<10, 1), err: errors.New("permission denied")},
		&brokenSource{kind: "sqlite", name: "b", fpErr: errors.New("file is not a database")},
	}
	res, err := Create(context.Background(), e.opts, e.storeList(), srcs)
	var pe *PartsError
	if res != nil || !errors.As(err, &pe) || pe.Held != 0 || len(pe.Failed) != 2 {
		t.Fatalf("result %v, err %v", res, err)
	}
	if !strings.Contains(err.Error(), "part files:a: permission denied; part sqlite:b: fingerprint: file is not a database") ||
		strings.Contains(err.Error(), "partial") {
		t.Errorf("err = %v", err)
	}
	if ds, _ := os.ReadDir(filepath.Join(e.stores[0].root, "gpu01", SnapshotsDir)); len(ds) != 0 {
		t.Errorf("snapshot folders left: %v", ds)
	}
}

// TestFailedPartNotReusedElsewhere: a part that one destination could
// reuse (unchanged fingerprint) but another must read, whose source then
// breaks off, fails on every destination: no manifest lists a part the
// index names as failed.
func TestFailedPartNotReusedElsewhere(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	e.withState(t)
	ctx := context.Background()
	src := &memSource{kind: "files", name: "x", fp: "fp1", files: map[string][]byte{"a": randomBytes(400<<10, 4), "b": []byte("b")}}
	other := &memSource{kind: "files", name: "y", files: map[string][]byte{"c": []byte("c")}}
	if _, err := Create(ctx, e.opts, e.storeList()[:1], []source.Source{src}); err != nil {
		t.Fatal(err)
	}
	src.fail = true
	res, err := Create(ctx, e.opts, e.storeList(), []source.Source{src, other})
	var pe *PartsError
	if !errors.As(err, &pe) || res == nil || len(res.FailedParts) != 1 || res.Destinations[0].Reused != 0 {
		t.Fatalf("result %+v, err %v", res, err)
	}
	for _, st := range e.stores {
		if m := mustManifest(t, e, st, res.ID); m.PartCount() != 1 || m.FailedParts != 1 {
			t.Errorf("%s: %d parts, %d failed; want 1 and 1", st.name, m.PartCount(), m.FailedParts)
		}
	}
}

// TestCancelDuringPartAbortsRun: a source that fails because the run is
// cancelled is not a failed part: the whole run stops, no manifest.
func TestCancelDuringPartAbortsRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancelling := &cancelSource{cancel: cancel}
	res, err := Create(ctx, e.opts, e.storeList(), []source.Source{testSources()[0], cancelling, testSources()[1]})
	var pe *PartsError
	if res != nil || !errors.Is(err, context.Canceled) || errors.As(err, &pe) {
		t.Fatalf("result %v, err %v", res, err)
	}
	ms, _ := filepath.Glob(filepath.Join(e.stores[0].root, path.Join("gpu01", SnapshotsDir, "*", ManifestFile)))
	if len(ms) != 0 {
		t.Fatalf("a cancelled run left manifests %v", ms)
	}
}

// cancelSource cancels the run while it writes, then fails with the
// context's error, as a source reading under a cancelled context does.
type cancelSource struct{ cancel context.CancelFunc }

func (c *cancelSource) Kind() string                                { return "files" }
func (c *cancelSource) Name() string                                { return "cancelled" }
func (c *cancelSource) Fingerprint(context.Context) (string, error) { return "", nil }
func (c *cancelSource) WriteTar(ctx context.Context, w io.Writer) (source.Stats, error) {
	if _, err := w.Write(randomBytes(200<<10, 5)); err != nil {
		return source.Stats{}, err
	}
	c.cancel()
	return source.Stats{}, ctx.Err()
}
