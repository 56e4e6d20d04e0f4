package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firetech/fireops/pkg/exitcode"
)

// writeCert writes a self-signed certificate valid until notAfter as
// NAME.crt and its key as NAME.key (mode keyMode) into dir.
func writeCert(t *testing.T, dir, name string, notAfter time.Time, keyMode os.FileMode) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: notAfter.Add(-48 * time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), keyMode); err != nil {
		t.Fatal(err)
	}
}

// TestStackTLS: stack.tls takes a certificate and its key (paths relative
// to the config); both or neither; the key is a secret file; both must
// parse and belong together. config check lists both files and warns of
// an expiring certificate and a plain-HTTP hub.api_url.
func TestStackTLS(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	later := time.Now().Add(90 * 24 * time.Hour)
	writeCert(t, f.dir, "hub", later, 0o600)
	writeCert(t, f.dir, "other", later, 0o600)
	writeCert(t, f.dir, "open", later, 0o644)
	writeCert(t, f.dir, "soon", time.Now().Add(3*24*time.Hour), 0o600)
	if err := os.WriteFile(filepath.Join(f.dir, "garbage.crt"), []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	cfg, err := f.parse(t, "stack: {tls: {cert_file: hub.crt, key_file: hub.key}}\nhub: {api_url: \"https://hub.example.org:8000/hub/api\"}\n")
	if err != nil {
		t.Fatal(err)
	}
	if tl := cfg.Stack.TLS; tl.CertFile != filepath.Join(f.dir, "hub.crt") || tl.KeyFile != filepath.Join(f.dir, "hub.key") || !tl.Enabled() {
		t.Errorf("tls %+v", tl)
	}
	r := cfg.Check()
	want := FileStatus{Key: "stack.tls.key_file", Path: cfg.Stack.TLS.KeyFile, Status: "ok (0600)"}
	if !slices.Contains(r.Files, want) || !slices.ContainsFunc(r.Files, func(s FileStatus) bool { return s.Key == "stack.tls.cert_file" }) {
		t.Errorf("config check files = %+v, want both TLS files", r.Files)
	}
	if notes := cfg.TLSNotes(time.Now()); len(notes) != 0 {
		t.Errorf("notes %v for a certificate valid for 90 days and an https api_url", notes)
	}

	// Warnings, not errors: an expiring certificate, a plain-HTTP api_url,
	// an expired certificate.
	soon, err := f.parse(t, "stack: {tls: {cert_file: soon.crt, key_file: soon.key}}\n")
	if err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(soon.Check().Notes, "\n")
	if !strings.Contains(notes, "stack.tls.cert_file: "+filepath.Join(f.dir, "soon.crt")+" expires on ") || !strings.Contains(notes, "hub.api_url http://127.0.0.1:8000/hub/api is plain HTTP") {
		t.Errorf("notes %q: want the expiry and the api_url", notes)
	}
	if n := strings.Join(soon.TLSNotes(time.Now().Add(10*24*time.Hour)), "\n"); !strings.Contains(n, " expired on ") {
		t.Errorf("notes 10 days later %q: want expired", n)
	}

	for _, tc := range []struct{ name, yaml, want string }{
		{"no key", "stack: {tls: {cert_file: hub.crt}}\n", "stack.tls.key_file: is empty but stack.tls.cert_file is set"},
		{"no cert", "stack: {tls: {key_file: hub.key}}\n", "stack.tls.cert_file: is empty but stack.tls.key_file is set"},
		{"cert missing", "stack: {tls: {cert_file: nope.crt, key_file: hub.key}}\n", "stack.tls.cert_file: open " + filepath.Join(f.dir, "nope.crt")},
		{"cert not PEM", "stack: {tls: {cert_file: garbage.crt, key_file: hub.key}}\n", "no PEM CERTIFICATE block"},
		{"key readable by all", "stack: {tls: {cert_file: open.crt, key_file: open.key}}\n", "stack.tls.key_file: " + filepath.Join(f.dir, "open.key") + " holds a secret but is readable by group or others"},
		{"key missing", "stack: {tls: {cert_file: hub.crt, key_file: nope.key}}\n", "stack.tls.key_file: " + filepath.Join(f.dir, "nope.key") + " does not exist"},
		{"key of another certificate", "stack: {tls: {cert_file: hub.crt, key_file: other.key}}\n", "stack.tls.key_file: " + filepath.Join(f.dir, "other.key") + ": private key does not match public key"},
		{"key is the certificate", "stack: {tls: {cert_file: hub.crt, key_file: hub.crt}}\n", "stack.tls.key_file"},
		{"unknown key", "stack: {tls: {cert: x}}\n", `unknown key "cert" in stack.tls`},
	} {
		if tc.name == "key is the certificate" {
			// A certificate file is 0644; make a private copy so that the
			// parse, not the mode, refuses it.
			b, _ := os.ReadFile(filepath.Join(f.dir, "hub.crt"))
			if err := os.WriteFile(filepath.Join(f.dir, "crt-as-key"), b, 0o600); err != nil {
				t.Fatal(err)
			}
			tc.yaml = "stack: {tls: {cert_file: hub.crt, key_file: crt-as-key}}\n"
		}
		_, err := f.parse(t, tc.yaml)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if exitcode.Code(err) != exitcode.Usage {
			t.Errorf("%s: exit code %d", tc.name, exitcode.Code(err))
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q lacks %q", tc.name, err, tc.want)
		}
	}
}
