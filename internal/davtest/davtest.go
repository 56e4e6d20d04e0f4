// Package davtest starts WebDAV servers on loopback for tests: the stand-in
// for Yandex Disk (which speaks WebDAV too), reached through rclone's real
// webdav backend. It can also drop every Nth request (a flaky network) or
// hold uploads (to kill a snapshot in the middle of one).
package davtest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/net/webdav"
)

// Server is a WebDAV server on 127.0.0.1 serving a temporary folder.
type Server struct {
	// URL is the server's base URL.
	URL string
	// Dir is the folder it serves.
	Dir string

	requests atomic.Int64
	drops    sync.Map // numbers of the requests dropped
	puts     atomic.Int64
	failN    atomic.Int64
	mu       sync.Mutex
	hold     chan struct{} // non-nil: PUTs wait on it after holdAfter
	holdAt   int64
}

// Start starts a server for the test's lifetime.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{Dir: t.TempDir()}
	h := &webdav.Handler{FileSystem: webdav.Dir(s.Dir), LockSystem: webdav.NewMemLS()}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.requests.Add(1)
		if f := s.failN.Load(); f > 0 && n%f == 0 && !s.dropped(n) {
			// Drop the connection without an answer, like a proxy that
			// gave up half way.
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
					return
				}
			}
			http.Error(w, "flaky", http.StatusServiceUnavailable)
			return
		}
		if r.Method == http.MethodPut {
			p := s.puts.Add(1)
			s.mu.Lock()
			hold, at := s.hold, s.holdAt
			s.mu.Unlock()
			if hold != nil && p > at {
				select {
				case <-hold:
				case <-r.Context().Done():
					return
				}
			}
		}
		h.ServeHTTP(w, r)
	}))
	ts.Start()
	t.Cleanup(func() {
		s.Release()
		ts.CloseClientConnections()
		ts.Close()
	})
	s.URL = ts.URL
	return s
}

// Remote returns the inline rclone connection string for root on this
// server (vendor rclone, so that rclone streams uploads).
func (s *Server) Remote(root string) string {
	return fmt.Sprintf(":webdav,url='%s',vendor=rclone:%s", s.URL, root)
}

// dropped reports whether request n was dropped before, and marks it.
func (s *Server) dropped(n int64) bool {
	_, seen := s.drops.LoadOrStore(n, true)
	return seen
}

// FailEvery drops the connection of every nth request without an answer,
// like a proxy giving up half way (0: none). Use a prime n: a retried
// operation then meets the drops at other points of its requests.
func (s *Server) FailEvery(n int64) { s.failN.Store(n) }

// HoldPutsAfter makes every PUT after the first n wait until Release.
func (s *Server) HoldPutsAfter(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold, s.holdAt = make(chan struct{}), s.puts.Load()+n
}

// Release lets held PUTs go on and stops holding.
func (s *Server) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hold != nil {
		close(s.hold)
		s.hold = nil
	}
}

// Drops returns the number of connections dropped by FailEvery.
func (s *Server) Drops() int {
	n := 0
	s.drops.Range(func(any, any) bool { n++; return true })
	return n
}

// Puts returns the number of PUT requests seen.
func (s *Server) Puts() int64 { return s.puts.Load() }
