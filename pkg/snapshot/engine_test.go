package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/firetech/fireops/pkg/keys"
	"github.com/firetech/fireops/pkg/source"
)

// dirStore is a Store on a local folder, for the engine's unit tests; the
// rclone-backed store has its own tests in pkg/remote and the end-to-end
// tests use it.
type dirStore struct {
	name, root string
	failPuts   atomic.Int32 // fail every Put once this many have succeeded (0: never)
	puts       atomic.Int32
}

func (s *dirStore) Name() string { return s.name }
func (s *dirStore) Put(_ context.Context, p string, data []byte) error {
	if f := s.failPuts.Load(); f > 0 && s.puts.Load() >= f {
		return errors.New("injected failure")
	}
	s.puts.Add(1)
	full := filepath.Join(s.root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
		return err
	}
	return os.WriteFile(full, data, 0o600)
}
func (s *dirStore) Get(_ context.Context, p string) (io.ReadCloser, error) {
	f, err := os.Open(filepath.Join(s.root, p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", p, ErrNotFound)
	}
	return f, err
}
func (s *dirStore) GetBytes(_ context.Context, p string, max int64) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(s.root, p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", p, ErrNotFound)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes: %w", p, max, ErrTooLarge)
	}
	return data, err
}
func (s *dirStore) List(_ context.Context, dir string) ([]Entry, error) {
	des, err := os.ReadDir(filepath.Join(s.root, dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	var out []Entry
	for _, d := range des {
		info, err := d.Info()
		if err != nil {
			return nil, err
		}
		out = append(out, Entry{Name: d.Name(), Dir: d.IsDir(), Size: info.Size(), ModTime: info.ModTime()})
	}
	return out, err
}
func (s *dirStore) Delete(_ context.Context, p string) error {
	err := os.Remove(filepath.Join(s.root, p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
func (s *dirStore) Rmdir(_ context.Context, dir string) error {
	return os.RemoveAll(filepath.Join(s.root, dir))
}

// memSource is a source with files held in memory.
type memSource struct {
	kind, name, fp string
	files          map[string][]byte
	fail           bool
}

func (m *memSource) Kind() string                                { return m.kind }
func (m *memSource) Name() string                                { return m.name }
func (m *memSource) Fingerprint(context.Context) (string, error) { return m.fp, nil }
func (m *memSource) WriteTar(_ context.Context, w io.Writer) (source.Stats, error) {
	tw := tar.NewWriter(w)
	names := make([]string, 0, len(m.files))
	for n := range m.files {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		if m.fail && i == len(names)-1 {
			return source.Stats{}, errors.New("source broke off")
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(m.files[n])), Typeflag: tar.TypeReg}); err != nil {
			return source.Stats{}, err
		}
		if _, err := tw.Write(m.files[n]); err != nil {
			return source.Stats{}, err
		}
	}
	return source.Stats{Entries: int64(len(names))}, tw.Close()
}

// memRestorer stages a tar stream in memory.
type memRestorer struct {
	committed map[string][]byte
	// staged is what Stage read, committed or not.
	staged map[string][]byte
}

type memStaged struct {
	r     *memRestorer
	files map[string][]byte
}

func (r *memRestorer) Stage(_ context.Context, rd io.Reader) (source.Staged, error) {
	tr := tar.NewReader(rd)
	s := &memStaged{r: r, files: map[string][]byte{}}
	r.staged = s.files
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return s, nil
		}
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(tr)
		s.files[h.Name] = data
		if err != nil {
			return nil, err
		}
	}
}
func (s *memStaged) Stats() source.Stats          { return source.Stats{Entries: int64(len(s.files))} }
func (s *memStaged) Commit(context.Context) error { s.r.committed = s.files; return nil }
func (s *memStaged) Abort() error                 { return nil }

type env struct {
	opts   Options
	ids    []age.Identity
	pub    ed25519.PublicKey
	sk     ed25519.PrivateKey
	stores []*dirStore
}

func newEnv(t testing.TB, dests int) *env {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	sk, _ := keys.GenerateSigningKey()
	e := &env{ids: []age.Identity{id}, pub: sk.Public().(ed25519.PublicKey), sk: sk}
	e.opts = Options{Host: "gpu01", Recipients: []*age.X25519Recipient{id.Recipient()}, Signer: sk,
		ChunkSize: 64 << 10, Compression: "fastest", Uploads: 3, Version: "test", StateDir: t.TempDir()}
	for i := range dests {
		e.stores = append(e.stores, &dirStore{name: fmt.Sprintf("d%d", i), root: t.TempDir()})
	}
	return e
}

// withState gives the env's runs a fresh reuse state.
func (e *env) withState(t testing.TB) {
	t.Helper()
	state, err := LoadState(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e.opts.State = state
}

// create writes a snapshot of srcs to all of e's destinations and
// returns its result, failing the test if it cannot.
func (e *env) create(t testing.TB, srcs []source.Source) *Result {
	t.Helper()
	res, err := Create(context.Background(), e.opts, e.storeList(), srcs)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// open reads and checks the manifest of snapshot id on st, failing the
// test if it cannot.
func (e *env) open(t testing.TB, st Store, id string) *Manifest {
	t.Helper()
	m, err := Open(context.Background(), st, e.opts.Host, id, e.pub)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// reusingEnv returns an env with one destination and a reuse state, that
// destination's store, and a first snapshot of testSources on it.
func reusingEnv(t testing.TB) (*env, *dirStore, *Result) {
	t.Helper()
	e := newEnv(t, 1)
	e.withState(t)
	return e, e.stores[0], e.create(t, testSources())
}

func (e *env) storeList() []Store {
	out := make([]Store, len(e.stores))
	for i, s := range e.stores {
		out[i] = s
	}
	return out
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func testSources() []source.Source {
	return []source.Source{
		&memSource{kind: "files", name: "stack", fp: "fp1", files: map[string][]byte{
			"opt/a.txt": bytes.Repeat([]byte("training log line\n"), 20000), "opt/b.bin": randomBytes(300<<10, 1)}},
		&memSource{kind: "sqlite", name: "hub", files: map[string][]byte{"hub.sqlite": randomBytes(10<<10, 2)}},
	}
}

func (e *env) restoreAll(t *testing.T, st Store, id string) map[string]map[string][]byte {
	t.Helper()
	ctx := context.Background()
	m, err := Open(ctx, st, e.opts.Host, id, e.pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.CheckPieceIDs(e.sk); err != nil {
		t.Fatal(err)
	}
	if err := CheckPresent(ctx, st, m, nil); err != nil {
		t.Fatal(err)
	}
	if err := CheckHashes(ctx, st, m, nil); err != nil {
		t.Fatal(err)
	}
	idx, err := ReadIndex(ctx, st, m, e.ids)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string][]byte{}
	for _, p := range idx.Parts {
		rs := &memRestorer{}
		if _, err := RestorePart(ctx, st, m, p, e.ids, rs); err != nil {
			t.Fatalf("restore %s: %v", p.ID, err)
		}
		out[p.ID] = rs.committed
	}
	return out
}

func TestRoundTripTwoDestinations(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	srcs := testSources()
	res, err := Create(context.Background(), e.opts, e.storeList(), srcs)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Parts) != 2 || len(res.Destinations) != 2 {
		t.Fatalf("result: %+v", res)
	}
	for _, st := range e.stores {
		got := e.restoreAll(t, st, res.ID)
		for _, s := range srcs {
			ms := s.(*memSource)
			files := got[source.ID(s)]
			if len(files) != len(ms.files) {
				t.Fatalf("%s: %d files restored, want %d", source.ID(s), len(files), len(ms.files))
			}
			for n, data := range ms.files {
				if !bytes.Equal(files[n], data) {
					t.Fatalf("%s/%s differs after restore from %s", source.ID(s), n, st.name)
				}
			}
		}
		ls, err := List(context.Background(), st, "gpu01", e.pub)
		if err != nil || len(ls) != 1 || !ls[0].Complete || ls[0].Parts != 2 {
			t.Fatalf("List = %+v, %v", ls, err)
		}
	}
	// Nothing in the manifest names a part.
	data, _ := os.ReadFile(filepath.Join(e.stores[0].root, "gpu01/snapshots", res.ID, ManifestFile))
	for _, leak := range []string{"stack", "hub", "opt/", "files", "sqlite"} {
		if bytes.Contains(data, []byte(leak)) {
			t.Errorf("manifest leaks %q", leak)
		}
	}
}

// objectFiles lists the object files of a store.
func objectFiles(t *testing.T, st *dirStore) []string {
	t.Helper()
	var out []string
	root := filepath.Join(st.root, "gpu01", ObjectsDir)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if p == root && errors.Is(err, fs.ErrNotExist) {
			return nil // no object yet, or all swept
		}
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// flipMiddleByte alters the file at p in place, same size: its middle
// byte is XORed with mask (bit rot, or a provider that tampers). It ends
// the test when p cannot be read or written, or is empty.
func flipMiddleByte(t testing.TB, p string, mask byte) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 {
		t.Fatalf("%s: empty, no byte to flip", p)
	}
	data[len(data)/2] ^= mask
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// snapPieces lists the files of the pieces of snapshot id, in the order
// of its first part's list, then the others'.
func snapPieces(t *testing.T, e *env, st *dirStore, id string) []string {
	t.Helper()
	var out []string
	for _, l := range snapLists(t, e, st, id) {
		for _, p := range l.Pieces {
			out = append(out, filepath.Join(st.root, PiecePath("gpu01", p.ID)))
		}
	}
	return out
}

// snapLists returns the piece lists of snapshot id.
func snapLists(t *testing.T, e *env, st *dirStore, id string) []*PieceList {
	t.Helper()
	ctx := context.Background()
	m, err := Open(ctx, st, "gpu01", id, e.pub)
	if err != nil {
		t.Fatal(err)
	}
	var out []*PieceList
	for _, ref := range m.Lists {
		l, err := fetchList(ctx, st, "gpu01", ref)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

func TestTamperIsDetected(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		tamper func(t *testing.T, e *env, st *dirStore, id string, other string)
		quick  bool   // verify quick (present + sizes) already catches it
		want   string // in the error: the cause, not a decryption error it led to
	}{
		{"flip a byte", func(t *testing.T, e *env, st *dirStore, id, _ string) {
			c := snapPieces(t, e, st, id)[0]
			flipMiddleByte(t, c, 1)
		}, false, "piece 0 ("},
		{"flip a byte of the age header", func(t *testing.T, e *env, st *dirStore, id, _ string) {
			c := snapPieces(t, e, st, id)[0]
			data, _ := os.ReadFile(c)
			data[100] ^= 1 // inside the recipient stanza: age alone says "incorrect identity"
			os.WriteFile(c, data, 0o600)
		}, false, "sha256 differs from the piece list"},
		{"flip a byte of a later piece", func(t *testing.T, e *env, st *dirStore, id, _ string) {
			c := snapPieces(t, e, st, id)[1]
			data, _ := os.ReadFile(c)
			data[10] ^= 1
			os.WriteFile(c, data, 0o600)
		}, false, "piece 1 ("},
		{"truncate a piece", func(t *testing.T, e *env, st *dirStore, id, _ string) {
			os.Truncate(snapPieces(t, e, st, id)[0], 100)
		}, true, "piece 0 ("},
		{"delete a piece", func(t *testing.T, e *env, st *dirStore, id, _ string) {
			os.Remove(snapPieces(t, e, st, id)[1])
		}, true, "piece 1 ("},
		{"forge a piece of the same size encrypted to the recipient", func(t *testing.T, e *env, st *dirStore, id, _ string) {
			// Anyone can encrypt to the public recipient: a same-size
			// piece of attacker plaintext must never reach a restorer.
			c := snapPieces(t, e, st, id)[0]
			old, _ := os.ReadFile(c)
			l := snapLists(t, e, st, id)[0]
			evil := bytes.Repeat([]byte("X"), int(l.Pieces[0].Size))
			for pad := 0; ; pad++ {
				var buf bytes.Buffer
				aw, _ := age.Encrypt(&buf, e.opts.Recipients[0])
				writeRawFrame(aw, evil)
				aw.Close()
				if buf.Len() == len(old) {
					os.WriteFile(c, buf.Bytes(), 0o600)
					return
				}
				if buf.Len() > len(old) || pad > 3 {
					// Sizes differ by the frame: trim the plaintext to match.
					evil = evil[:len(evil)-(buf.Len()-len(old))]
				}
			}
		}, false, "sha256 differs from the piece list"},
		{"delete a piece list", func(t *testing.T, e *env, st *dirStore, id, _ string) {
			m, _ := Open(context.Background(), st, "gpu01", id, e.pub)
			os.Remove(filepath.Join(st.root, PiecePath("gpu01", m.Lists[0].ID)))
		}, true, "piece list"},
		{"edit the manifest", func(t *testing.T, e *env, st *dirStore, id, _ string) {
			p := filepath.Join(st.root, "gpu01/snapshots", id, ManifestFile)
			data, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(data, []byte(`"host": "gpu01"`), []byte(`"host":  "gpu01"`), 1), 0o600)
		}, true, "manifest"},
		{"swap in a piece of another snapshot", func(t *testing.T, e *env, st *dirStore, id, other string) {
			mine, theirs := snapPieces(t, e, st, id), snapPieces(t, e, st, other)
			data, _ := os.ReadFile(theirs[0])
			os.WriteFile(mine[0], data, 0o600)
		}, true, "piece 0 ("},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, 1)
			st := e.stores[0]
			ctx := context.Background()
			// Two snapshots of same-shaped data: pieces can be swapped
			// (random data: every piece is stored raw, so equal plaintext
			// sizes make equal stored sizes).
			mk := func(seed uint64) string {
				src := &memSource{kind: "files", name: "x", files: map[string][]byte{"f": randomBytes(200<<10, seed)}}
				res, err := Create(ctx, e.opts, e.storeList(), []source.Source{src})
				if err != nil {
					t.Fatal(err)
				}
				return res.ID
			}
			other := mk(7)
			id := mk(8)
			tc.tamper(t, e, st, id, other)

			var err error
			m, err := Open(ctx, st, "gpu01", id, e.pub)
			if err == nil {
				err = CheckPresent(ctx, st, m, nil)
			}
			if tc.quick && (err == nil || !errors.Is(err, ErrIntegrity)) {
				t.Fatalf("verify quick: err = %v, want an integrity error", err)
			}
			if err == nil {
				// verify hashes finds it without the identity.
				if herr := CheckHashes(ctx, st, m, nil); herr == nil || !errors.Is(herr, ErrIntegrity) {
					t.Fatalf("verify hashes: err = %v, want an integrity error", herr)
				}
			}
			if err == nil {
				var idx *Index
				idx, err = ReadIndex(ctx, st, m, e.ids)
				if err == nil {
					rs := &memRestorer{}
					_, err = RestorePart(ctx, st, m, idx.Parts[0], e.ids, rs)
					if rs.committed != nil {
						t.Fatal("a tampered part was committed")
					}
					for _, data := range rs.staged {
						if bytes.Contains(data, []byte("XXXXXXXX")) {
							t.Fatal("forged plaintext reached the restorer")
						}
					}
				}
			}
			if err == nil || !errors.Is(err, ErrIntegrity) {
				t.Fatalf("err = %v, want an integrity error", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not name what failed (%q): %v", tc.want, err)
			}
		})
	}
}

func TestWrongIdentity(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	ctx := context.Background()
	res, err := Create(ctx, e.opts, e.storeList(), testSources())
	if err != nil {
		t.Fatal(err)
	}
	m, err := Open(ctx, e.stores[0], "gpu01", res.ID, e.pub)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := age.GenerateX25519Identity()
	// The data is intact: a wrong key is not damage.
	if _, err := ReadIndex(ctx, e.stores[0], m, []age.Identity{other}); !errors.Is(err, ErrWrongIdentity) || errors.Is(err, ErrIntegrity) {
		t.Fatalf("err = %v", err)
	}
	idx, err := ReadIndex(ctx, e.stores[0], m, e.ids)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RestorePart(ctx, e.stores[0], m, idx.Parts[0], []age.Identity{other}, &memRestorer{}); !errors.Is(err, ErrWrongIdentity) || errors.Is(err, ErrIntegrity) {
		t.Fatalf("restore with a wrong identity: err = %v", err)
	}
	// Another signing key: the manifest is refused.
	sk, _ := keys.GenerateSigningKey()
	if _, err := Open(ctx, e.stores[0], "gpu01", res.ID, sk.Public().(ed25519.PublicKey)); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("foreign signing key: err = %v", err)
	}
}

// TestSourceFailureLeavesNoSnapshot: when every part's source fails,
// nothing is left that looks complete (one failing part among good ones:
// TestFailedPartFailsOnlyThatPart).
func TestSourceFailureLeavesNoSnapshot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	srcs := testSources()
	for _, s := range srcs {
		s.(*memSource).files["z"] = []byte("zz")
		s.(*memSource).fail = true
	}
	_, err := Create(context.Background(), e.opts, e.storeList(), srcs)
	if err == nil || !strings.Contains(err.Error(), "source broke off") || !strings.Contains(err.Error(), "sqlite:hub") {
		t.Fatalf("err = %v", err)
	}
	for _, st := range e.stores {
		ls, _ := List(context.Background(), st, "gpu01", e.pub)
		if len(ls) != 0 {
			t.Errorf("%s: snapshots left behind: %+v", st.name, ls)
		}
	}
	// The pieces uploaded stay, known: the next run references them.
	srcs[0].(*memSource).fail = false
	delete(srcs[0].(*memSource).files, "z")
	res, err := Create(context.Background(), e.opts, e.storeList(), srcs[:1])
	if err != nil {
		t.Fatal(err)
	}
	if p := res.Parts[0]; p.Uploaded*2 > p.Stored {
		t.Errorf("the next run uploaded %d of the %d stored bytes of a part the failed run had uploaded", p.Uploaded, p.Stored)
	}
	e.restoreAll(t, e.stores[0], res.ID)
}

func TestOneDestinationFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	e.stores[1].failPuts.Store(3)
	res, err := Create(context.Background(), e.opts, e.storeList(), testSources())
	if err == nil || !strings.Contains(err.Error(), "destination d1") {
		t.Fatalf("err = %v, want one naming destination d1", err)
	}
	if res == nil || res.Destinations[0].Err != nil || res.Destinations[1].Err == nil {
		t.Fatalf("result: %+v", res)
	}
	e.restoreAll(t, e.stores[0], res.ID)
	if ls, _ := List(context.Background(), e.stores[1], "gpu01", e.pub); len(ls) != 0 {
		t.Errorf("failed destination keeps a snapshot: %+v", ls)
	}
}

func TestReuseUnchangedParts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	ctx := context.Background()
	e.withState(t)
	srcs := testSources()
	first, err := Create(ctx, e.opts, e.storeList(), srcs)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Create(ctx, e.opts, e.storeList(), srcs)
	if err != nil {
		t.Fatal(err)
	}
	if second.Destinations[0].Reused != 1 {
		t.Fatalf("reused %d parts, want 1 (the part with a fingerprint)", second.Destinations[0].Reused)
	}
	// Each snapshot restores on its own, also after the first is deleted.
	e.stores[0].Rmdir(ctx, SnapshotPath("gpu01", first.ID))
	got := e.restoreAll(t, e.stores[0], second.ID)
	if len(got["files:stack"]) != 2 {
		t.Fatalf("reused part did not restore: %v", got)
	}
	// A piece the state names but the destination lost is uploaded again.
	ent, ok := e.opts.State.Get("gpu01", "d0", "files:stack")
	if !ok {
		t.Fatal("no state entry for the reused part")
	}
	l, err := fetchList(ctx, e.stores[0], "gpu01", ent.List)
	if err != nil {
		t.Fatal(err)
	}
	lost := filepath.Join(e.stores[0].root, PiecePath("gpu01", l.Pieces[0].ID))
	os.Remove(lost)
	third, err := Create(ctx, e.opts, e.storeList(), srcs)
	if err != nil {
		t.Fatal(err)
	}
	if third.Destinations[0].Reused != 0 {
		t.Fatal("a missing piece was referenced instead of uploaded")
	}
	if _, err := os.Stat(lost); err != nil {
		t.Fatalf("the lost piece was not uploaded again: %v", err)
	}
	e.restoreAll(t, e.stores[0], third.ID)
	// A lost state file and known-objects log: every part is read again,
	// nothing is uploaded again (the log is rebuilt from the piece lists),
	// and it still restores.
	fresh, _ := LoadState(t.TempDir())
	e.opts.State = fresh
	e.opts.StateDir = t.TempDir()
	fourth, err := Create(ctx, e.opts, e.storeList(), srcs)
	if err != nil || fourth.Destinations[0].Reused != 0 {
		t.Fatalf("after losing the state: %v, reused %d", err, fourth.Destinations[0].Reused)
	}
	for _, p := range fourth.Parts {
		if p.Uploaded != 0 {
			t.Errorf("after losing the state, part %s uploaded %d bytes again", p.ID, p.Uploaded)
		}
	}
	e.restoreAll(t, e.stores[0], fourth.ID)
	// A changed fingerprint uploads the part again.
	srcs[0].(*memSource).fp = "fp2"
	fifth, err := Create(ctx, e.opts, e.storeList(), srcs)
	if err != nil || fifth.Destinations[0].Reused != 0 {
		t.Fatalf("changed part: %v, reused %d", err, fifth.Destinations[0].Reused)
	}
}

func TestCancelLeavesNoManifest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Create(ctx, e.opts, e.storeList(), testSources()); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	ls, _ := List(context.Background(), e.stores[0], "gpu01", e.pub)
	if len(ls) != 0 {
		t.Fatalf("left %+v", ls)
	}
}

func TestChunkPathsSort(t *testing.T) {
	t.Parallel()
	if ChunkName(9) >= ChunkName(10) || path.Base(ChunkPath("h", "o", 123)) != "000123" {
		t.Fatal("chunk names do not sort numerically")
	}
	id := NewSnapshotID(mustTime(t))
	if !ValidSnapshotID(id) || !strings.HasPrefix(id, "20261128T030405Z-") {
		t.Fatalf("snapshot id %q", id)
	}
}

func mustTime(t *testing.T) (tm time.Time) {
	t.Helper()
	tm, _ = time.Parse(time.RFC3339, "2026-11-28T03:04:05Z")
	return tm
}

// gatedStore is a dirStore whose Put first runs before (to hold or fail
// one upload at a chosen moment).
type gatedStore struct {
	*dirStore
	before func(p string) error
}

func (s *gatedStore) Put(ctx context.Context, p string, data []byte) error {
	if err := s.before(p); err != nil {
		return err
	}
	return s.dirStore.Put(ctx, p, data)
}

// TestDestinationFailingWhileAnotherIsSlowKeepsBuffers: a destination
// that fails while another one is slow must not strand the stored-piece
// buffers its queue held (once all are stranded the run blocks for ever):
// the slow destination still gets every piece and a restorable snapshot.
func TestDestinationFailingWhileAnotherIsSlowKeepsBuffers(t *testing.T) {
	t.Parallel()
	for _, dests := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d destinations", dests), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, dests)
			failing := dests - 1
			var failed atomic.Bool
			stores := make([]Store, dests)
			for i, st := range e.stores {
				gs := &gatedStore{dirStore: st, before: func(string) error { return nil }}
				switch i {
				case 0: // slow until the last destination failed
					gs.before = func(p string) error {
						for strings.Contains(p, "/objects/") && !failed.Load() {
							time.Sleep(time.Millisecond)
						}
						return nil
					}
				case failing:
					var n atomic.Int32
					gs.before = func(p string) error {
						if strings.Contains(p, "/objects/") && n.Add(1) == 2 {
							failed.Store(true)
							return errors.New("injected failure")
						}
						return nil
					}
				}
				stores[i] = gs
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			src := &memSource{kind: "files", name: "big", files: map[string][]byte{"f": randomBytes(3<<20, 3)}}
			res, err := Create(ctx, e.opts, stores, []source.Source{src})
			if ctx.Err() != nil {
				t.Fatal("the run blocked: buffers were stranded")
			}
			if err == nil || res == nil || res.Destinations[0].Err != nil || res.Destinations[failing].Err == nil {
				t.Fatalf("err = %v, result %+v", err, res)
			}
			e.restoreAll(t, e.stores[0], res.ID)
		})
	}
}

// TestCorruptStateEntryIsNotReused: a state file that still decodes but
// whose entry does not hold together (the part names another object, or
// another stored size) must not make a snapshot that cannot be restored:
// the part is uploaded again.
func TestCorruptStateEntryIsNotReused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		corrupt func(e *StateEntry)
	}{
		{"part names another list", func(e *StateEntry) { e.Part.List = strings.Repeat("ab", 32) }},
		{"list has another size", func(e *StateEntry) { e.List.Size++ }},
		{"list id is not an id", func(e *StateEntry) { e.List.ID, e.Part.List = "../x", "../x" }},
		{"part has another size", func(e *StateEntry) { e.Part.Size++ }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, 1)
			ctx := context.Background()
			dir := t.TempDir()
			state, err := LoadState(dir)
			if err != nil {
				t.Fatal(err)
			}
			e.opts.State = state
			srcs := testSources()
			if _, err := Create(ctx, e.opts, e.storeList(), srcs); err != nil {
				t.Fatal(err)
			}
			ent, ok := state.Get("gpu01", "d0", "files:stack")
			if !ok {
				t.Fatal("no state entry after the first snapshot")
			}
			tc.corrupt(&ent)
			state.Put("gpu01", "d0", "files:stack", ent)
			if err := state.Save(); err != nil {
				t.Fatal(err)
			}
			if e.opts.State, err = LoadState(dir); err != nil {
				t.Fatal(err)
			}
			res, err := Create(ctx, e.opts, e.storeList(), srcs)
			if err != nil {
				t.Fatal(err)
			}
			if res.Destinations[0].Reused != 0 {
				t.Errorf("an inconsistent state entry was reused")
			}
			e.restoreAll(t, e.stores[0], res.ID)
		})
	}
}

// countingStore counts the chunk downloads of a dirStore.
type countingStore struct {
	*dirStore
	gets atomic.Int32
}

func (c *countingStore) Get(ctx context.Context, p string) (io.ReadCloser, error) {
	c.gets.Add(1)
	return c.dirStore.Get(ctx, p)
}

// failingRestorer reads a little of the payload, then fails on its own
// (a full disk, a target in use).
type failingRestorer struct{}

var errDiskFull = errors.New("no space left on device")

func (failingRestorer) Stage(_ context.Context, r io.Reader) (source.Staged, error) {
	io.ReadFull(r, make([]byte, 1024))
	return nil, errDiskFull
}

// TestRestoreStopsOnRestorerFailure: when the restorer fails for a reason
// of its own, RestorePart returns that error, not an integrity one, and
// does not download the rest of the part to look for another cause.
func TestRestoreStopsOnRestorerFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.opts.ChunkSize = 1 << 20
	ctx := context.Background()
	src := &memSource{kind: "files", name: "big", files: map[string][]byte{"f": randomBytes(24<<20, 9)}}
	res, err := Create(ctx, e.opts, e.storeList(), []source.Source{src})
	if err != nil {
		t.Fatal(err)
	}
	st := &countingStore{dirStore: e.stores[0]}
	m, err := Open(ctx, st, "gpu01", res.ID, e.pub)
	if err != nil {
		t.Fatal(err)
	}
	chunks := res.Parts[0].Pieces
	_, err = RestorePart(ctx, st, m, res.Parts[0], e.ids, failingRestorer{})
	if !errors.Is(err, errDiskFull) || errors.Is(err, ErrIntegrity) {
		t.Fatalf("err = %v, want the restorer's own error", err)
	}
	if got := int(st.gets.Load()); got >= chunks {
		t.Fatalf("downloaded %d of %d pieces after the restorer had failed", got, chunks)
	}
}
