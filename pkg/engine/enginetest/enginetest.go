// Package enginetest gives tests a Docker Engine that runs but refuses
// every request, the way dockerd answers a client whose API version is
// newer than its own: an Engine that answered, with an error.
package enginetest

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// RefusedMessage is the error message the refusing Engine answers with.
const RefusedMessage = "client version 9.99 is too new. Maximum supported API version is 1.41"

// Refusing starts an HTTP server that answers every request with HTTP 400
// and RefusedMessage, and points the Docker client's environment at it:
// DOCKER_HOST its address, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH empty,
// DOCKER_API_VERSION apiVersion ("" for none). The server is closed when
// the test ends (a test may close it earlier to have the Engine gone). It
// sets environment variables, so its test cannot be parallel.
func Refusing(t testing.TB, apiVersion string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"message":"` + RefusedMessage + `"}`))
	}))
	t.Cleanup(srv.Close)
	t.Setenv("DOCKER_TLS_VERIFY", "")
	t.Setenv("DOCKER_CERT_PATH", "")
	t.Setenv("DOCKER_API_VERSION", apiVersion)
	t.Setenv("DOCKER_HOST", "tcp://"+srv.Listener.Addr().String())
	return srv
}
