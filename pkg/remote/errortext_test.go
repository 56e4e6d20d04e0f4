package remote

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestErrorTextIsSanitised: a storage server's error body reaches fireops'
// errors (rclone's WebDAV backend quotes it); its newlines and terminal
// escapes must not, or the server could forge log lines or rewrite the
// admin's terminal.
func TestErrorTextIsSanitised(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte("<?xml version=\"1.0\"?>\n<d:error xmlns:d=\"DAV:\" xmlns:s=\"http://sabredav.org/ns\"><s:exception>x</s:exception><s:message>quota\n2026-11-28T03:00:00Z INFO snapshot done ok=true\x1b[2K\x1b[1A</s:message></d:error>"))
	}))
	t.Cleanup(srv.Close)
	_, err := Open(context.Background(), Options{Name: "evil", Remote: webdavRemote(srv.URL, "x"), Retries: 1, RetryBase: time.Millisecond, LowLevelRetries: -1})
	if err == nil {
		t.Fatal("no error from a server that refuses everything")
	}
	if strings.ContainsAny(err.Error(), "\n\x1b") {
		t.Errorf("the server's text reaches the error raw: %q", err.Error())
	}
	if !strings.Contains(err.Error(), `\x1b[2K`) {
		t.Errorf("the escape should be shown escaped: %q", err.Error())
	}
}
