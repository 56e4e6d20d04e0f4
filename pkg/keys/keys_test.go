package keys

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
)

func TestIdentityFileRoundTrip(t *testing.T) {
	t.Parallel()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	data := IdentityFile(id, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if !bytes.Contains(data, []byte("# public key: "+id.Recipient().String())) {
		t.Fatalf("identity file lacks the public key comment:\n%s", data)
	}
	path := filepath.Join(t.TempDir(), "identity.txt")
	if err := WriteNewFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ids, err := LoadIdentities(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 || ids[0].(*age.X25519Identity).String() != id.String() {
		t.Fatalf("loaded %v, want the generated identity", ids)
	}
}

func TestParseRecipients(t *testing.T) {
	t.Parallel()
	id, _ := age.GenerateX25519Identity()
	good := id.Recipient().String()
	tests := []struct {
		name    string
		in      string
		want    int
		wantErr string
	}{
		{"one", good + "\n", 1, ""},
		{"comments and blanks", "# team key\n\n" + good + "\n  \n", 1, ""},
		{"two", good + "\n" + good, 2, ""},
		{"empty", "", 0, ""},
		{"bad line named", "# x\nage1notakey\n", 0, "line 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRecipients(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(got) != tc.want {
				t.Fatalf("got %d recipients, err %v; want %d", len(got), err, tc.want)
			}
		})
	}
}

func TestSigningKeyRoundTrip(t *testing.T) {
	t.Parallel()
	k, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	pemData, err := MarshalSigningKey(k)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseSigningKey(pemData)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(k) {
		t.Fatal("parsed key differs")
	}
	pub, err := ParsePublicKey(FormatPublicKey(k.Public().(ed25519.PublicKey)))
	if err != nil || !pub.Equal(k.Public()) {
		t.Fatalf("public key round trip: %v", err)
	}
	for _, bad := range []string{"", "ssh-ed25519 AAAA", "ed25519:!!!", "ed25519:AAAA"} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted", bad)
		}
	}
	if _, err := ParseSigningKey([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")); err == nil {
		t.Error("garbage PEM accepted")
	}
}

func TestWriteNewFileRefusesOverwrite(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "f")
	if err := WriteNewFile(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteNewFile(path, []byte("two"), 0o600); !os.IsExist(err) {
		t.Fatalf("second write: err = %v, want an exists error", err)
	}
	data, _ := os.ReadFile(path)
	if string(data) != "one" {
		t.Fatalf("file was overwritten: %q", data)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
}

func TestFingerprint(t *testing.T) {
	t.Parallel()
	pub := make(ed25519.PublicKey, ed25519.PublicKeySize)
	for i := range pub {
		pub[i] = byte(i)
	}
	// The key's text form is ed25519:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
	if got, want := Fingerprint(pub), "ed25519:AAECAwQF..."; got != want {
		t.Fatalf("Fingerprint = %q, want %q", got, want)
	}
	if !strings.HasPrefix(FormatPublicKey(pub), strings.TrimSuffix(Fingerprint(pub), "...")) {
		t.Fatal("the fingerprint is not how the key starts in the config")
	}
	other := append(ed25519.PublicKey{}, pub...)
	other[0] = 0xff
	if got, want := Fingerprints([]ed25519.PublicKey{pub, other}), "ed25519:AAECAwQF..., ed25519:/wECAwQF..."; got != want {
		t.Fatalf("Fingerprints = %q, want %q", got, want)
	}
}
