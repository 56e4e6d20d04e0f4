package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/config/obscure"
	"github.com/rclone/rclone/fs/hash"
	"github.com/rclone/rclone/fs/object"
	"golang.org/x/net/webdav"

	"github.com/firetech/fireops/internal/davtest"
)

// webdavRemote is the inline connection string of a WebDAV server (or a
// proxy in front of one) at u.
func webdavRemote(u, root string) string {
	return fmt.Sprintf(":webdav,url='%s',vendor=rclone:%s", u, root)
}

func chunk(seed, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(seed*31 + i*7 + i/251)
	}
	return b
}

func mustOpen(t *testing.T, ctx context.Context, o Options) *Remote {
	t.Helper()
	if o.RetryBase == 0 {
		o.RetryBase = time.Millisecond
	}
	r, err := Open(ctx, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return r
}

// roundTrip runs the whole API against r; every backend must pass it.
func roundTrip(t *testing.T, r *Remote) {
	ctx := context.Background()
	a, b := chunk(1, 3000), chunk(2, 5000)

	skipped, err := r.PutChunk(ctx, "objects/aa/0", a)
	if err != nil || skipped {
		t.Fatalf("Put new: skipped=%v err=%v", skipped, err)
	}
	// The same bytes again: skipped where the backend's hash vouches for
	// them; where it keeps none, replaced (a same-size object may hold
	// other bytes: another encryption of the same piece).
	skipped, err = r.PutChunk(ctx, "objects/aa/0", a)
	if err != nil || skipped != (r.ht != hash.None) {
		t.Fatalf("Put same again: skipped=%v err=%v, want skipped=%v", skipped, err, r.ht != hash.None)
	}
	if err := r.Put(ctx, "objects/aa/1", b); err != nil {
		t.Fatal(err)
	}
	// Same path, different content of another size: uploaded again.
	if skipped, err := r.PutChunk(ctx, "objects/aa/1", a); err != nil || skipped {
		t.Fatalf("Put changed: skipped=%v err=%v", skipped, err)
	}
	if err := r.Put(ctx, "snapshots/s1/manifest.json", []byte(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	wantSkipped := 0
	if r.ht != hash.None {
		wantSkipped = 1
	}
	if st := r.Stats(); st.Uploaded != int64(5-wantSkipped) || st.Skipped != int64(wantSkipped) || st.UploadedBytes != int64((3-wantSkipped)*len(a)+len(b)+7) {
		t.Errorf("Stats = %+v", st)
	}
	// Same path, other bytes of the same size: never skipped.
	a2 := chunk(3, 3000)
	if skipped, err := r.PutChunk(ctx, "objects/aa/0", a2); err != nil || skipped {
		t.Fatalf("Put same size, other bytes: skipped=%v err=%v", skipped, err)
	}
	if got, err := r.GetBytes(ctx, "objects/aa/0", 1<<20); err != nil || !bytes.Equal(got, a2) {
		t.Fatalf("after replacing: %v, bytes equal %v", err, bytes.Equal(got, a2))
	}
	if _, err := r.PutChunk(ctx, "objects/aa/0", a); err != nil {
		t.Fatal(err)
	}

	// Get streams the bytes back.
	rc, err := r.Get(ctx, "objects/aa/1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, a) {
		t.Fatalf("Get = %d bytes, %v; want the new content", len(got), err)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}

	// GetBytes and its limit.
	if got, err := r.GetBytes(ctx, "snapshots/s1/manifest.json", 7); err != nil || string(got) != `{"v":1}` {
		t.Fatalf("GetBytes = %q, %v", got, err)
	}
	if _, err := r.GetBytes(ctx, "snapshots/s1/manifest.json", 6); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("GetBytes over the limit: %v, want ErrTooLarge", err)
	}

	// Stat.
	size, mt, err := r.Stat(ctx, "objects/aa/0")
	if err != nil || size != int64(len(a)) || mt.IsZero() || time.Since(mt) > time.Hour {
		t.Fatalf("Stat = %d, %v, %v", size, mt, err)
	}

	// Not found, the same way everywhere.
	notFound := map[string]func() error{
		"stat":     func() error { _, _, err := r.Stat(ctx, "objects/zz/0"); return err },
		"get":      func() error { _, err := r.Get(ctx, "objects/zz/0"); return err },
		"getbytes": func() error { _, err := r.GetBytes(ctx, "nothing", 10); return err },
		"stat dir": func() error { _, _, err := r.Stat(ctx, "no/such/dir/x"); return err },
	}
	for name, fn := range notFound {
		err := fn()
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s of a missing object: %v, want ErrNotFound", name, err)
			continue
		}
		if !errors.Is(err, fs.ErrorObjectNotFound) && !errors.Is(err, fs.ErrorDirNotFound) {
			t.Errorf("%s: %v does not wrap rclone's not-found error", name, err)
		}
		var e *Error
		if !errors.As(err, &e) || e.Dest != r.Name() || !strings.Contains(err.Error(), r.Name()) {
			t.Errorf("%s: %v does not name the destination %q", name, err, r.Name())
		}
	}

	// List.
	root, err := r.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if names := entryNames(root); names != "objects/ snapshots/" {
		t.Errorf("List root = %s", names)
	}
	objs, err := r.List(ctx, "objects/aa")
	if err != nil {
		t.Fatal(err)
	}
	if names := entryNames(objs); names != "0 1" {
		t.Errorf("List objects/aa = %s", names)
	}
	for _, e := range objs {
		if e.Size != int64(len(a)) || e.ModTime.IsZero() {
			t.Errorf("entry %+v", e)
		}
	}
	if l, err := r.List(ctx, "no/such/dir"); err != nil || len(l) != 0 {
		t.Errorf("List missing dir = %v, %v; want empty", l, err)
	}

	// Delete, twice.
	for range 2 {
		if err := r.Delete(ctx, "objects/aa/0"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	if _, _, err := r.Stat(ctx, "objects/aa/0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat after Delete: %v", err)
	}

	// Rmdir removes a tree, twice; never the root.
	for range 2 {
		if err := r.Rmdir(ctx, "objects"); err != nil {
			t.Fatalf("Rmdir: %v", err)
		}
	}
	if root, err := r.List(ctx, ""); err != nil || entryNames(root) != "snapshots/" {
		t.Errorf("List root after Rmdir = %s, %v", entryNames(root), err)
	}
	for _, d := range []string{"", ".", "/"} {
		if err := r.Rmdir(ctx, d); err == nil {
			t.Errorf("Rmdir(%q) accepted", d)
		}
	}
	// Paths that would leave the root are refused.
	for _, p := range []string{"../x", "a/../../x", "/etc/passwd", ""} {
		if err := r.Put(ctx, p, a); err == nil {
			t.Errorf("Put(%q) accepted", p)
		}
	}

	start := time.Now()
	concurrentPuts(t, r)
	t.Logf("concurrent puts took %v; stats %+v", time.Since(start), r.Stats())
}

// concurrentPuts uploads chunks of several objects at once (parents created
// concurrently) and reads every one back.
func concurrentPuts(t *testing.T, r *Remote) {
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 12 {
		wg.Go(func() {
			p := fmt.Sprintf("objects/c%d/%d", i%3, i)
			if err := r.Put(ctx, p, chunk(i, 1000+i)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range 12 {
		got, err := r.GetBytes(ctx, fmt.Sprintf("objects/c%d/%d", i%3, i), 1<<20)
		if err != nil || !bytes.Equal(got, chunk(i, 1000+i)) {
			t.Errorf("chunk %d: %d bytes, %v", i, len(got), err)
		}
	}
}

func entryNames(es []Entry) string {
	var s []string
	for _, e := range es {
		n := e.Name
		if e.Dir {
			n += "/"
		}
		s = append(s, n)
	}
	return strings.Join(s, " ")
}

func TestLocal(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "not", "yet")
	r := mustOpen(t, context.Background(), Options{Name: "local", Remote: dir})
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("Open did not create the root: %v", err)
	}
	if r.HashType() != "md5" {
		t.Errorf("HashType = %s, want md5", r.HashType())
	}
	roundTrip(t, r)
	// What rclone wrote is plain files under the root.
	if b, err := os.ReadFile(filepath.Join(dir, "snapshots", "s1", "manifest.json")); err != nil || string(b) != `{"v":1}` {
		t.Errorf("file on disk: %q, %v", b, err)
	}
}

func TestLocalSkipComparesHash(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	r := mustOpen(t, ctx, Options{Name: "local", Remote: dir})
	a := chunk(1, 100)
	if err := r.Put(ctx, "o/0", a); err != nil {
		t.Fatal(err)
	}
	// Same size, other bytes (a corrupted or foreign object): sent again.
	b := chunk(2, 100)
	if skipped, err := r.PutChunk(ctx, "o/0", b); err != nil || skipped {
		t.Fatalf("Put same size, other content: skipped=%v err=%v", skipped, err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "o", "0")); !bytes.Equal(got, b) {
		t.Error("object not replaced")
	}
}

func TestLocalRootIsFile(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), Options{Name: "local", Remote: f})
	if err == nil || !strings.Contains(err.Error(), `destination "local"`) || !strings.Contains(err.Error(), "is a file") {
		t.Fatalf("Open on a file: %v", err)
	}
}

func TestWebDAV(t *testing.T) {
	t.Parallel()
	dav := davtest.Start(t)
	dir := dav.Dir
	r := mustOpen(t, context.Background(), Options{Name: "dav", Remote: dav.Remote("fireops")})
	if fi, err := os.Stat(filepath.Join(dir, "fireops")); err != nil || !fi.IsDir() {
		t.Fatalf("Open did not create the root: %v", err)
	}
	// vendor=rclone keeps no hash: size-only comparison.
	if r.HashType() != "none" {
		t.Errorf("HashType = %s, want none", r.HashType())
	}
	roundTrip(t, r)
	if b, err := os.ReadFile(filepath.Join(dir, "fireops", "snapshots", "s1", "manifest.json")); err != nil || string(b) != `{"v":1}` {
		t.Errorf("file on the server: %q, %v", b, err)
	}
}

func TestWebDAVVendorOther(t *testing.T) {
	t.Parallel()
	u := davtest.Start(t).URL
	r := mustOpen(t, context.Background(), Options{Name: "dav", Remote: fmt.Sprintf(":webdav,url='%s',vendor=other:x", u)})
	ctx := context.Background()
	if err := r.Put(ctx, "a/b", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if got, err := r.GetBytes(ctx, "a/b", 5); err != nil || string(got) != "hello" {
		t.Fatalf("GetBytes = %q, %v", got, err)
	}
}

func TestStringRedacts(t *testing.T) {
	t.Parallel()
	u := davtest.Start(t).URL
	pass := obscure.MustObscure("s3cret")
	remote := fmt.Sprintf(":webdav,url='%s',vendor=rclone,user=bob,pass=%s:x", u, pass)
	r := mustOpen(t, context.Background(), Options{Remote: remote})
	if strings.Contains(r.String(), pass) || !strings.Contains(r.String(), "REDACTED") {
		t.Errorf("String() = %s", r.String())
	}
	// Without a name, errors name the redacted remote.
	_, _, err := r.Stat(context.Background(), "missing")
	if err == nil || strings.Contains(err.Error(), pass) || !strings.Contains(err.Error(), "REDACTED") {
		t.Errorf("error = %v", err)
	}
}

// flakyProxy forwards to target and fails the requests fail picks: half of
// the failures drop the connection, the other half answer 503.
type flakyProxy struct {
	n, failed, puts atomic.Int64
	fail            func(n int64, r *http.Request) bool
	*httptest.Server
}

// everyNth fails every nth request, but each method and path at most once,
// so that a bounded number of retries always gets through.
func everyNth(n int64) func(int64, *http.Request) bool {
	var mu sync.Mutex
	seen := map[string]bool{}
	return func(i int64, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		key := r.Method + " " + r.URL.Path
		if i%n != 0 || seen[key] {
			return false
		}
		seen[key] = true
		return true
	}
}

func startFlakyProxy(t *testing.T, target string, fail func(n int64, r *http.Request) bool) *flakyProxy {
	t.Helper()
	tu, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &flakyProxy{fail: fail}
	rp := httputil.NewSingleHostReverseProxy(tu)
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := p.n.Add(1)
		if r.Method == http.MethodPut {
			p.puts.Add(1)
		}
		if p.fail(n, r) {
			if p.failed.Add(1)%2 == 1 {
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					_ = conn.Close()
					return
				}
			}
			http.Error(w, "flaky", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func TestWebDAVFlaky(t *testing.T) {
	t.Parallel()
	dav := davtest.Start(t)
	dir := dav.Dir
	p := startFlakyProxy(t, dav.URL, everyNth(3))
	ctx := context.Background()
	// LowLevelRetries -1: every failure reaches Remote's own retries.
	r := mustOpen(t, ctx, Options{Name: "flaky", Remote: webdavRemote(p.URL, "fireops"), LowLevelRetries: -1, Retries: 8})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if err := r.Put(ctx, fmt.Sprintf("objects/f/%d", i), chunk(i, 2000)); err != nil {
				t.Errorf("Put %d through a flaky proxy: %v", i, err)
			}
		})
	}
	wg.Wait()
	for i := range 8 {
		got, err := os.ReadFile(filepath.Join(dir, "fireops", "objects", "f", fmt.Sprint(i)))
		if err != nil || !bytes.Equal(got, chunk(i, 2000)) {
			t.Errorf("chunk %d on the server: %d bytes, %v", i, len(got), err)
		}
	}
	if p.failed.Load() == 0 || r.Stats().Retries == 0 {
		t.Errorf("no failure was injected or retried: failed=%d stats=%+v", p.failed.Load(), r.Stats())
	}
	t.Logf("requests=%d failed=%d stats=%+v", p.n.Load(), p.failed.Load(), r.Stats())
}

func TestWebDAVFailureNamesDestination(t *testing.T) {
	t.Parallel()
	p := startFlakyProxy(t, davtest.Start(t).URL, func(_ int64, r *http.Request) bool { return r.Method == http.MethodPut })
	ctx := context.Background()
	r := mustOpen(t, ctx, Options{Name: "yandex-like", Remote: webdavRemote(p.URL, "fireops"), LowLevelRetries: -1, Retries: 1})
	_, err := r.PutChunk(ctx, "objects/ab/3", chunk(1, 100))
	var e *Error
	if !errors.As(err, &e) || e.Dest != "yandex-like" || e.Path != "objects/ab/3" || e.Op != "put" {
		t.Fatalf("Put error = %#v", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, `destination "yandex-like": put objects/ab/3: 2 attempts failed`) {
		t.Errorf("message = %s", msg)
	}
	if p.puts.Load() != 2 {
		t.Errorf("PUT requests = %d, want 2 (Retries 1)", p.puts.Load())
	}
	if errors.Is(err, ErrNotFound) {
		t.Error("a failed upload matches ErrNotFound")
	}

	// No retry at all with a negative Retries.
	p.puts.Store(0)
	r0 := mustOpen(t, ctx, Options{Name: "once", Remote: webdavRemote(p.URL, "fireops"), LowLevelRetries: -1, Retries: -1})
	if err := r0.Put(ctx, "objects/ab/4", chunk(1, 100)); err == nil || !strings.Contains(err.Error(), `destination "once": put objects/ab/4`) {
		t.Errorf("Put error = %v", err)
	}
	if p.puts.Load() != 1 {
		t.Errorf("PUT requests = %d, want 1", p.puts.Load())
	}
}

func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close() // nothing listens there any more
	_, err := Open(context.Background(), Options{Name: "gone", Remote: webdavRemote(u, "x"), Retries: 1, RetryBase: time.Millisecond, LowLevelRetries: -1})
	if err == nil || !strings.HasPrefix(err.Error(), `destination "gone": open`) {
		t.Fatalf("Open of a dead server: %v", err)
	}
}

// TestOpenRetriesNetworkErrors: a server that drops every connection is
// tried again (Retries times) before Open gives up; a configuration error
// is not tried again.
func TestOpenRetriesNetworkErrors(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	_, err = Open(context.Background(), Options{Name: "blip", Remote: webdavRemote("http://"+ln.Addr().String(), "x"),
		Retries: 2, RetryBase: time.Millisecond, LowLevelRetries: -1})
	if err == nil || !strings.Contains(err.Error(), "3 attempts failed") {
		t.Fatalf("Open of a server dropping connections: %v", err)
	}
	if n := accepted.Load(); n < 3 {
		t.Errorf("%d connections, want at least 3 (1 + 2 retries)", n)
	}
	// The retries are in the error: no Remote is returned to count them.
	var re *Error
	if !errors.As(err, &re) || re.Retries != 2 {
		t.Errorf("Open's error %#v: want a *Error with Retries 2", re)
	}

	// A remote that names an unknown backend fails at once.
	start := accepted.Load()
	_, err = Open(context.Background(), Options{Name: "typo", Remote: ":nosuchbackend:x", Retries: 2, RetryBase: time.Hour})
	if err == nil || strings.Contains(err.Error(), "attempts failed") || accepted.Load() != start {
		t.Fatalf("Open with an unknown backend: %v", err)
	}
}

func TestOpenHonoursContext(t *testing.T) {
	t.Parallel()
	// A server that never answers: Open returns when ctx ends.
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block }))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(block) })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Open(ctx, Options{Name: "slow", Remote: webdavRemote(srv.URL, "x")})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
		t.Fatalf("Open = %v after %v", err, time.Since(start))
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 30: maxBackoff} {
		for range 20 {
			if d := backoff(time.Second, n); d < want/2 || d > want*3/2 {
				t.Errorf("backoff(1s, %d) = %v, want within [%v, %v]", n, d, want/2, want*3/2)
			}
		}
	}
}

func TestBackendsRegistered(t *testing.T) {
	t.Parallel()
	for _, b := range []string{"local", "webdav", "yandex", "s3"} {
		if _, err := fs.Find(b); err != nil {
			t.Errorf("backend %s not linked in: %v", b, err)
		}
	}
	// Only those: a remote of another kind is refused clearly.
	if _, err := fs.Find("drive"); err == nil {
		t.Error("backend drive is linked in")
	}
	_, err := Open(context.Background(), Options{Name: "gd", Remote: ":drive:x"})
	if err == nil || !strings.Contains(err.Error(), `destination "gd"`) {
		t.Errorf("Open of an unsupported backend: %v", err)
	}
}

func TestVerifyUpload(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	data := []byte("chunk bytes")
	o := object.NewMemoryObject("o/0", time.Now(), data)
	sum, err := o.Hash(ctx, hash.MD5)
	if err != nil {
		t.Fatal(err)
	}
	r := &Remote{ht: hash.MD5, verifyHash: true}
	for _, tc := range []struct {
		name string
		size int64
		sum  string
		ok   bool
	}{
		{"match", int64(len(data)), sum, true},
		{"other hash", int64(len(data)), strings.Repeat("0", 32), false},
		{"other size", int64(len(data)) + 1, sum, false},
	} {
		err := r.verify(ctx, o, tc.size, tc.sum)
		if (err == nil) != tc.ok {
			t.Errorf("%s: verify = %v", tc.name, err)
		}
		if same, _ := r.matches(ctx, o, tc.size, tc.sum); same != tc.ok {
			t.Errorf("%s: matches = %v", tc.name, same)
		}
	}
	// Size only where the backend keeps no hash.
	if err := (&Remote{ht: hash.None}).verify(ctx, o, int64(len(data)), ""); err != nil {
		t.Error(err)
	}
}

// TestRetryDoesNotTrustSizeAlone: a first PUT that leaves an object of the
// right size but wrong content and then fails must not make the retry skip
// the upload on a backend without hashes (WebDAV with vendor=rclone).
func TestRetryDoesNotTrustSizeAlone(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dav := &webdav.Handler{FileSystem: webdav.Dir(dir), LockSystem: webdav.NewMemLS()}
	var puts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			// rclone removes a failed upload; a server that cannot (or a
			// body still being written after the failure) leaves it there.
			http.Error(w, "busy", http.StatusInternalServerError)
			return
		}
		if r.Method == http.MethodPut && puts.Add(1) == 1 {
			// Store a same-size body of other bytes, then fail.
			body, _ := io.ReadAll(r.Body)
			for i := range body {
				body[i] ^= 0xff
			}
			full := filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/")))
			os.MkdirAll(filepath.Dir(full), 0o755)
			os.WriteFile(full, body, 0o644)
			http.Error(w, "lost", http.StatusServiceUnavailable)
			return
		}
		dav.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	r := mustOpen(t, ctx, Options{Name: "dav", Remote: webdavRemote(srv.URL, "fireops"), RetryBase: time.Millisecond, LowLevelRetries: -1})
	data := chunk(5, 4096)
	skipped, err := r.PutChunk(ctx, "objects/x/000000", data)
	if err != nil || skipped {
		t.Fatalf("PutChunk = skipped %v, %v; want a real second upload", skipped, err)
	}
	got, err := r.GetBytes(ctx, "objects/x/000000", 1<<20)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored object differs from the data (err %v)", err)
	}
}
