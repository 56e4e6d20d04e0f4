package remote

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestErrorsHideInlineSecrets: rclone repeats the unparsed rest of an
// inline remote in its errors, URL-escaped (pass%3DSECRET in a Propfind
// URL), and a server may echo the path it was asked for; neither reaches
// the error of Open.
func TestErrorsHideInlineSecrets(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "PROPFIND" {
			// Answer 500 and echo the request, as many servers do.
			http.Error(w, "cannot PROPFIND "+r.URL.String(), http.StatusInternalServerError)
			return
		}
		http.Error(w, "no", http.StatusUnauthorized)
	}))
	defer srv.Close()
	const secret = "S3CRETpw"
	for _, remote := range []string{
		// The URL unquoted: rclone takes "http" as the URL and the rest
		// as the path, and reports it in a Propfind error.
		":webdav,url=" + srv.URL + "/,user=bob,pass=" + secret + ":dir",
		// The rest after a stray colon lands in the path asked of the server.
		":webdav,url='" + srv.URL + "/',vendor=other:,pass=" + secret + ":dir",
		":webdav,url='" + srv.URL + "/',vendor=other:,headers='Authorization,Bearer " + secret + "':dir",
		":webdav,url='" + srv.URL + "/',vendor=other:,token=\"{\"\"access_token\"\":\"\"" + secret + "\"\"}\":dir",
	} {
		_, err := Open(context.Background(), Options{Remote: remote, Retries: -1, LowLevelRetries: -1})
		if err == nil {
			t.Fatalf("Open(%s) succeeded", remote)
		}
		msg := err.Error()
		for _, form := range []string{secret, url.QueryEscape(secret), "pass%3D" + secret} {
			if strings.Contains(msg, form) {
				t.Errorf("Open(%s): error shows %q: %s", remote, form, msg)
			}
		}
		if !strings.Contains(msg, "REDACTED") || !strings.HasPrefix(msg, "destination ") {
			t.Errorf("Open(%s): error = %s", remote, msg)
		}
		t.Logf("%s", msg)
	}
}
