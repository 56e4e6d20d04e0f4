package sqlite

import (
	"archive/tar"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/firetech/fireops/pkg/config"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// openRW opens a database for a test's own reads and writes.
func openRW(t testing.TB, path, journal string) *sql.DB {
	t.Helper()
	q := url.Values{"_pragma": {"busy_timeout(10000)"}}
	if journal != "" {
		q["_pragma"] = append(q["_pragma"], "journal_mode("+journal+")")
	}
	db, err := sql.Open("sqlite", dsn(path, q))
	must(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// makeDB creates a database with a batches table (two rows per batch, an
// index) and n batches.
func makeDB(t testing.TB, path, journal string, n int) *sql.DB {
	t.Helper()
	db := openRW(t, path, journal)
	db.SetMaxOpenConns(1)
	_, err := db.Exec(`CREATE TABLE batches (id INTEGER PRIMARY KEY, batch INTEGER NOT NULL, tag TEXT NOT NULL, filler BLOB);
		CREATE INDEX batches_tag ON batches(tag);
		CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT);
		INSERT INTO meta VALUES ('schema', 'v1');
		PRAGMA user_version = 42;`)
	must(t, err)
	tx, err := db.Begin()
	must(t, err)
	for b := 0; b < n; b++ {
		for k := 0; k < 2; k++ {
			_, err := tx.Exec("INSERT INTO batches (batch, tag, filler) VALUES (?, ?, randomblob(700))", b, fmt.Sprintf("MARKER-%06d-%d", b, k))
			must(t, err)
		}
	}
	must(t, tx.Commit())
	return db
}

// makeOwnedDB creates a closed WAL database of n batches (see makeDB)
// with mode 0640, owned by 1000:1000 when the test runs as root: a hub's
// database, whose metadata an archive and a restore must keep.
func makeOwnedDB(t testing.TB, path string, n int) {
	t.Helper()
	makeDB(t, path, "wal", n).Close()
	must(t, os.Chmod(path, 0o640))
	if os.Geteuid() == 0 {
		must(t, os.Chown(path, 1000, 1000))
	}
}

func insertBatch(t testing.TB, db *sql.DB, b int) {
	t.Helper()
	if err := tryInsertBatch(db, b); err != nil {
		t.Fatal(err)
	}
}

func tryInsertBatch(db *sql.DB, b int) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for k := 0; k < 2; k++ {
		if _, err := tx.Exec("INSERT INTO batches (batch, tag, filler) VALUES (?, ?, randomblob(700))", b, fmt.Sprintf("MARKER-%06d-%d", b, k)); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// untar writes the single entry of a sqlite part to dir and returns its
// header and path.
func untar(t testing.TB, arch []byte, dir string) (*tar.Header, string) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(arch))
	hdr, err := tr.Next()
	must(t, err)
	p := filepath.Join(dir, "extracted-"+strconv.FormatInt(time.Now().UnixNano(), 36)+".sqlite")
	f, err := os.Create(p)
	must(t, err)
	_, err = io.Copy(f, tr)
	must(t, err)
	must(t, f.Close())
	if _, err := tr.Next(); err != io.EOF {
		t.Fatalf("second entry: %v", err)
	}
	return hdr, p
}

// emptyDir fails unless dir holds nothing.
func emptyDir(t testing.TB, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	if len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("%s is not empty: %v", dir, names)
	}
}

func TestConsistentCopyUnderWrites(t *testing.T) {
	t.Parallel()
	for _, journal := range []string{"wal", "delete"} {
		t.Run(journal, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			tmp := filepath.Join(base, "tmp")
			must(t, os.Mkdir(tmp, 0o755))
			dbPath := filepath.Join(base, "jupyterhub.sqlite")
			w := makeDB(t, dbPath, journal, 2000)

			// A writer commits batches of two rows, and deletes whole old
			// batches, the whole time the copies are made.
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var committed atomic.Int64
			var failed atomic.Bool
			var werr error // read after wg.Wait
			wg.Add(1)
			go func() {
				defer wg.Done()
				for b := 2000; ctx.Err() == nil; b++ {
					if err := tryInsertBatch(w, b); err != nil {
						werr = err
						failed.Store(true)
						return
					}
					if b%10 == 0 {
						if _, err := w.Exec("DELETE FROM batches WHERE batch = ?", b-1500); err != nil {
							werr = err
							failed.Store(true)
							return
						}
					}
					committed.Add(1)
				}
			}()

			s, err := New(config.SQLiteSource{Name: "hub", Path: dbPath}, WithTempDir(tmp))
			must(t, err)
			lastRows := int64(-1)
			for i := 0; i < 5; i++ {
				before := committed.Load()
				var buf bytes.Buffer
				st, err := s.WriteTar(context.Background(), &buf)
				must(t, err)
				after := committed.Load() // the copy's read has ended
				emptyDir(t, tmp)
				hdr, p := untar(t, buf.Bytes(), base)
				if hdr.Name != "hub.sqlite" || st.Entries != 1 || st.Details["integrity_check"] != "ok" {
					t.Fatalf("copy %d: entry %q, stats %+v", i, hdr.Name, st)
				}
				c := openRW(t, p, "")
				var check string
				must(t, c.QueryRow("PRAGMA integrity_check").Scan(&check))
				var broken, rows int64
				must(t, c.QueryRow("SELECT count(*) FROM (SELECT batch FROM batches GROUP BY batch HAVING count(*) != 2)").Scan(&broken))
				must(t, c.QueryRow("SELECT count(*) FROM batches").Scan(&rows))
				if check != "ok" || broken != 0 {
					t.Fatalf("copy %d: integrity_check %q, %d batches without both rows", i, check, broken)
				}
				if st.Documents != rows+1 || st.Details["rows.batches"] != strconv.FormatInt(rows, 10) {
					t.Errorf("copy %d: Documents %d, details %v, batches rows %d", i, st.Documents, st.Details, rows)
				}
				t.Logf("copy %d: %d rows, %s pages, writer committed %d batches during the copy", i, rows, st.Details["page_count"], committed.Load()-before)
				if rows == lastRows {
					t.Errorf("copy %d: same row count as the previous copy: the writer did not progress", i)
				}
				lastRows = rows
				c.Close()
				// Let the writer commit after this copy's read ended, so that
				// the next copy must see more rows (20 batches add 40 rows
				// and delete at most 4). Counting from before the copy was
				// flaky: those commits could all fall inside the copy's
				// own read, leaving the next copy with the same rows.
				for deadline := time.Now().Add(10 * time.Second); committed.Load() < after+20 && !failed.Load() && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
				}
			}
			cancel()
			wg.Wait()
			if werr != nil {
				t.Fatalf("writer: %v", werr)
			}
			if committed.Load() == 0 {
				t.Fatalf("the writer committed nothing")
			}
		})
	}
}

func TestEntryMetadata(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	dbPath := filepath.Join(base, "hub.sqlite")
	makeOwnedDB(t, dbPath, 10)
	mt := time.Unix(1700000000, 123456789)
	must(t, os.Chtimes(dbPath, mt, mt))
	s, err := New(config.SQLiteSource{Name: "hub", Path: dbPath}, WithTempDir(base))
	must(t, err)
	fp, err := s.Fingerprint(context.Background())
	if !strings.HasPrefix(fp, "sha256:") || err != nil {
		t.Errorf("Fingerprint = %q, %v", fp, err)
	}
	var buf bytes.Buffer
	_, err = s.WriteTar(context.Background(), &buf)
	must(t, err)
	hdr, _ := untar(t, buf.Bytes(), base)
	if hdr.Mode&0o7777 != 0o640 || !hdr.ModTime.Equal(mt) {
		t.Errorf("entry mode %o mtime %v", hdr.Mode, hdr.ModTime)
	}
	if os.Geteuid() == 0 && (hdr.Uid != 1000 || hdr.Gid != 1000) {
		t.Errorf("entry owner %d:%d", hdr.Uid, hdr.Gid)
	}
	// The live database got no root-owned sidecar files from the copy.
	for _, suf := range sidecars {
		if _, err := os.Stat(dbPath + suf); err == nil {
			t.Errorf("copy left %s next to the database", dbPath+suf)
		}
	}
}

// nullInNotNull stores a NULL in a column the schema declares NOT NULL
// (the schema is edited after the row went in). Every row still reads, so
// VACUUM INTO copies the damage as it is, and only integrity_check on the
// copy catches it.
func nullInNotNull(t testing.TB, path string) {
	t.Helper()
	db := openRW(t, path, "")
	db.SetMaxOpenConns(1)
	_, err := db.Exec(`CREATE TABLE n (x INTEGER); INSERT INTO n VALUES (NULL);
		PRAGMA writable_schema = ON;
		UPDATE sqlite_schema SET sql = 'CREATE TABLE n (x INTEGER NOT NULL)' WHERE name = 'n';
		PRAGMA writable_schema = OFF;`)
	must(t, err)
	must(t, db.Close())
}

// garbage overwrites the middle of the file with garbage pages.
func garbage(t testing.TB, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	for i := len(b) / 3; i < len(b)/3+8192 && i < len(b); i++ {
		b[i] = byte(i*7 + 13)
	}
	must(t, os.WriteFile(path, b, 0o644))
}

func TestCorruptDatabase(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		corrupt func(testing.TB, string)
	}{
		{"null in not null", nullInNotNull},
		{"garbage pages", garbage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			tmp := filepath.Join(base, "tmp")
			must(t, os.Mkdir(tmp, 0o755))
			dbPath := filepath.Join(base, "hub.sqlite")
			makeDB(t, dbPath, "delete", 200).Close()
			tc.corrupt(t, dbPath)

			// Backup: fails, naming the database; the temp folder is gone.
			s, err := New(config.SQLiteSource{Name: "hub", Path: dbPath}, WithTempDir(tmp))
			must(t, err)
			_, err = s.WriteTar(context.Background(), io.Discard)
			if err == nil || !strings.Contains(err.Error(), dbPath) {
				t.Fatalf("WriteTar of a corrupt database: %v", err)
			}
			t.Logf("WriteTar: %v", err)
			if tc.name == "null in not null" && !errors.Is(err, ErrIntegrity) {
				t.Errorf("damage not caught by integrity_check: %v", err)
			}
			emptyDir(t, tmp)

			// Restore of a corrupt payload: refused at Stage, nothing left.
			var arch bytes.Buffer
			tw := tar.NewWriter(&arch)
			b, err := os.ReadFile(dbPath)
			must(t, err)
			must(t, tw.WriteHeader(&tar.Header{Name: "hub.sqlite", Mode: 0o600, Size: int64(len(b))}))
			_, err = tw.Write(b)
			must(t, err)
			must(t, tw.Close())
			rdir := filepath.Join(base, "restore")
			r, err := NewRestorer(filepath.Join(rdir, "hub.sqlite"))
			must(t, err)
			if _, err := r.Stage(context.Background(), &arch); !errors.Is(err, ErrIntegrity) {
				t.Fatalf("Stage of a corrupt database: %v", err)
			} else {
				t.Logf("Stage: %v", err)
			}
			emptyDir(t, rdir)
		})
	}
}

func TestFingerprintFollowsContent(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	dbPath := filepath.Join(base, "hub.sqlite")
	db := makeDB(t, dbPath, "wal", 10)
	defer db.Close()
	tmp := t.TempDir()
	s, err := New(config.SQLiteSource{Name: "hub", Path: dbPath}, WithTempDir(tmp))
	must(t, err)
	ctx := context.Background()
	fp1, err := s.Fingerprint(ctx)
	must(t, err)
	fp2, err := s.Fingerprint(ctx) // a second call replaces the first copy
	must(t, err)
	if fp1 != fp2 {
		t.Fatalf("an unchanged database gave two fingerprints: %s %s", fp1, fp2)
	}
	must(t, s.Close())
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("Close left %d temp entries", len(left))
	}
	if _, err := db.Exec("INSERT INTO batches(batch, tag) VALUES (999, 'x')"); err != nil {
		t.Fatal(err)
	}
	fp3, err := s.Fingerprint(ctx)
	must(t, err)
	if fp3 == fp1 {
		t.Fatal("a changed database kept its fingerprint")
	}
	// WriteTar uses the copy the fingerprint was taken of, then removes it.
	var buf bytes.Buffer
	_, err = s.WriteTar(ctx, &buf)
	must(t, err)
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("WriteTar left %d temp entries", len(left))
	}
}

func TestTempDirRemovedOnCancel(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	tmp := filepath.Join(base, "tmp")
	must(t, os.Mkdir(tmp, 0o755))
	dbPath := filepath.Join(base, "hub.sqlite")
	makeDB(t, dbPath, "wal", 3000).Close()
	s, err := New(config.SQLiteSource{Name: "hub", Path: dbPath}, WithTempDir(tmp))
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.WriteTar(ctx, io.Discard); err == nil {
		t.Errorf("cancelled WriteTar succeeded")
	}
	emptyDir(t, tmp)
	// Cancelled while streaming the copy: the writer cancels after 64 KiB.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	if _, err := s.WriteTar(ctx, &cancelWriter{cancel: cancel}); !errors.Is(err, context.Canceled) {
		t.Errorf("WriteTar cancelled mid-stream: %v", err)
	}
	emptyDir(t, tmp)
	// Missing database: an error naming it, not an empty database.
	s, err = New(config.SQLiteSource{Name: "hub", Path: filepath.Join(base, "missing.sqlite")}, WithTempDir(tmp))
	must(t, err)
	if _, err := s.WriteTar(context.Background(), io.Discard); err == nil || !strings.Contains(err.Error(), "missing.sqlite") {
		t.Errorf("missing database: %v", err)
	}
	if _, err := os.Stat(filepath.Join(base, "missing.sqlite")); err == nil {
		t.Errorf("WriteTar created the missing database")
	}
	emptyDir(t, tmp)
}

type cancelWriter struct {
	n      int
	cancel func()
}

func (w *cancelWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	if w.n > 64<<10 {
		w.cancel()
	}
	return len(p), nil
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	for _, cfg := range []config.SQLiteSource{
		{Name: "", Path: "/x"},
		{Name: "a/b", Path: "/x"},
		{Name: "..", Path: "/x"},
		{Name: "hub", Volume: "jupyterhub-data", File: "jupyterhub.sqlite"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func backup(t testing.TB, dbPath, tmp string) ([]byte, int64) {
	t.Helper()
	s, err := New(config.SQLiteSource{Name: "hub", Path: dbPath}, WithTempDir(tmp))
	must(t, err)
	var buf bytes.Buffer
	st, err := s.WriteTar(context.Background(), &buf)
	must(t, err)
	return buf.Bytes(), st.Documents
}

func rows(t testing.TB, path string) (n int64, userVersion int) {
	t.Helper()
	db := openRW(t, path, "")
	defer db.Close()
	must(t, db.QueryRow("SELECT count(*) FROM batches").Scan(&n))
	must(t, db.QueryRow("PRAGMA user_version").Scan(&userVersion))
	return n, userVersion
}

func leftovers(t testing.TB, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".fireops-restore-") {
			t.Errorf("staged file left behind: %s", e.Name())
		}
	}
}

func TestRestore(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	src := filepath.Join(base, "src.sqlite")
	makeOwnedDB(t, src, 50)
	arch, docs := backup(t, src, base)

	t.Run("fresh target", func(t *testing.T) {
		t.Parallel()
		target := filepath.Join(t.TempDir(), "new", "hub.sqlite")
		r, err := NewRestorer(target)
		must(t, err)
		staged, err := r.Stage(context.Background(), bytes.NewReader(arch))
		must(t, err)
		if staged.Stats().Documents != docs || staged.Stats().Details["integrity_check"] != "ok" {
			t.Errorf("staged stats %+v, want %d documents", staged.Stats(), docs)
		}
		if _, err := os.Stat(target); err == nil {
			t.Fatalf("target exists before Commit")
		}
		must(t, staged.Commit(context.Background()))
		must(t, staged.Abort())
		if n, uv := rows(t, target); n != 100 || uv != 42 {
			t.Errorf("restored %d rows, user_version %d", n, uv)
		}
		var mode string
		must(t, openRW(t, target, "").QueryRow("PRAGMA journal_mode").Scan(&mode))
		if mode != "wal" {
			t.Errorf("restored journal mode %q, want wal", mode)
		}
		fi, err := os.Stat(target)
		must(t, err)
		if fi.Mode().Perm() != 0o640 {
			t.Errorf("mode %v", fi.Mode())
		}
		if st := fi.Sys().(*syscall.Stat_t); os.Geteuid() == 0 && (st.Uid != 1000 || st.Gid != 1000) {
			t.Errorf("owner %d:%d", st.Uid, st.Gid)
		}
		leftovers(t, filepath.Dir(target))
	})

	t.Run("over a database with a stale wal", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		target := filepath.Join(dir, "hub.sqlite")
		// The old database: in WAL mode, with commits only in its -wal
		// (as after a crash), copied while open so the -wal stays.
		live := filepath.Join(dir, "live.sqlite")
		db := makeDB(t, live, "wal", 0)
		_, err := db.Exec("PRAGMA wal_autocheckpoint = 0")
		must(t, err)
		for i := 0; i < 300; i++ {
			insertBatch(t, db, 1000+i)
		}
		for _, suf := range []string{"", "-wal"} {
			b, err := os.ReadFile(live + suf)
			must(t, err)
			must(t, os.WriteFile(target+suf, b, 0o644))
		}
		db.Close()
		if fi, err := os.Stat(target + "-wal"); err != nil || fi.Size() == 0 {
			t.Fatalf("no stale wal: %v", err)
		}
		r, err := NewRestorer(target)
		must(t, err)
		staged, err := r.Stage(context.Background(), bytes.NewReader(arch))
		must(t, err)
		must(t, staged.Commit(context.Background()))
		for _, suf := range sidecars {
			if _, err := os.Stat(target + suf); err == nil {
				t.Errorf("%s left behind", target+suf)
			}
		}
		if n, _ := rows(t, target); n != 100 {
			t.Errorf("restored database has %d rows, want 100 (old wal replayed?)", n)
		}
		leftovers(t, dir)
	})

	t.Run("target in use", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		target := filepath.Join(dir, "hub.sqlite")
		hub := makeDB(t, target, "wal", 7) // stays open, like a running hub
		r, err := NewRestorer(target, WithBusyTimeout(time.Second))
		must(t, err)
		staged, err := r.Stage(context.Background(), bytes.NewReader(arch))
		must(t, err)
		if err := staged.Commit(context.Background()); !errors.Is(err, ErrInUse) {
			t.Fatalf("Commit under a running hub: %v", err)
		} else {
			t.Logf("Commit: %v", err)
		}
		var n int
		must(t, hub.QueryRow("SELECT count(*) FROM batches").Scan(&n))
		if n != 14 {
			t.Errorf("live database changed: %d rows", n)
		}
		must(t, staged.Abort())
		leftovers(t, dir)
	})

	// A rollback-journal database locked by a writer: SQLite answers
	// BUSY instead of its journal mode. That is a database in use, not an
	// unreadable one: its -journal must not be removed under the writer.
	t.Run("target locked", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		target := filepath.Join(dir, "hub.sqlite")
		hub := makeDB(t, target, "delete", 7)
		conn, err := hub.Conn(context.Background())
		must(t, err)
		_, err = conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE; INSERT INTO batches (batch, tag) VALUES (99, 'live')")
		must(t, err)
		r, err := NewRestorer(target, WithBusyTimeout(200*time.Millisecond))
		must(t, err)
		staged, err := r.Stage(context.Background(), bytes.NewReader(arch))
		must(t, err)
		if err := staged.Commit(context.Background()); !errors.Is(err, ErrInUse) {
			t.Fatalf("Commit over a locked database: %v", err)
		}
		if _, err := os.Stat(target + "-journal"); err != nil {
			t.Errorf("the writer's -journal was removed: %v", err)
		}
		_, err = conn.ExecContext(context.Background(), "COMMIT")
		must(t, err)
		must(t, conn.Close())
		var n int
		must(t, hub.QueryRow("SELECT count(*) FROM batches").Scan(&n))
		if n != 15 {
			t.Errorf("live database changed: %d rows, want 15", n)
		}
		must(t, staged.Abort())
	})

	t.Run("abort", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		target := filepath.Join(dir, "hub.sqlite")
		makeDB(t, target, "delete", 3).Close()
		before, err := os.ReadFile(target)
		must(t, err)
		r, err := NewRestorer(target)
		must(t, err)
		staged, err := r.Stage(context.Background(), bytes.NewReader(arch))
		must(t, err)
		must(t, staged.Abort())
		after, err := os.ReadFile(target)
		must(t, err)
		if !bytes.Equal(before, after) {
			t.Errorf("Abort changed the target")
		}
		leftovers(t, dir)
		if err := staged.Commit(context.Background()); err == nil {
			t.Errorf("Commit after Abort succeeded")
		}
	})

	t.Run("bad archives", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		target := filepath.Join(dir, "hub.sqlite")
		two := func() []byte {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tr := tar.NewReader(bytes.NewReader(arch))
			hdr, _ := tr.Next()
			body, _ := io.ReadAll(tr)
			for _, name := range []string{"hub.sqlite", "other.sqlite"} {
				h := *hdr
				h.Name = name
				must(t, tw.WriteHeader(&h))
				tw.Write(body)
			}
			tw.Close()
			return buf.Bytes()
		}
		for name, a := range map[string][]byte{
			"empty":      {},
			"two":        two(),
			"truncated":  arch[:len(arch)/2],
			"not sqlite": tarOf(t, "hub.sqlite", []byte(strings.Repeat("not a database ", 1000))),
			"dotdot":     tarOf(t, "../hub.sqlite", []byte("x")),
		} {
			r, err := NewRestorer(target)
			must(t, err)
			if _, err := r.Stage(context.Background(), bytes.NewReader(a)); err == nil {
				t.Errorf("%s: staged", name)
			} else {
				t.Logf("%s: %v", name, err)
			}
			leftovers(t, dir)
			if _, err := os.Stat(target); err == nil {
				t.Errorf("%s: target created", name)
			}
		}
	})
}

func tarOf(t testing.TB, name string, body []byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	must(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(body))}))
	_, err := tw.Write(body)
	must(t, err)
	must(t, tw.Close())
	return buf.Bytes()
}
