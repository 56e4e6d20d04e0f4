package destination

import (
	"crypto/ed25519"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/keys"
)

// TestTrustedKeys: the trusted set is signing_public_keys, the single
// signing_public_key and signing_key_file's public half, each once, in
// that order; a bad entry is a usage error naming its index.
func TestTrustedKeys(t *testing.T) {
	t.Parallel()
	gen := func() (ed25519.PrivateKey, ed25519.PublicKey, string) {
		sk, err := keys.GenerateSigningKey()
		if err != nil {
			t.Fatal(err)
		}
		pub := sk.Public().(ed25519.PublicKey)
		return sk, pub, keys.FormatPublicKey(pub)
	}
	signer, signerPub, signerText := gen()
	_, oldPub, oldText := gen()
	_, olderPub, olderText := gen()
	file := filepath.Join(t.TempDir(), "signing.key")
	pemData, _ := keys.MarshalSigningKey(signer)
	if err := keys.WriteNewFile(file, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		keys    config.Keys
		want    []ed25519.PublicKey
		wantErr string
	}{
		{"signing key file alone", config.Keys{SigningKeyFile: file}, []ed25519.PublicKey{signerPub}, ""},
		{"single key alone (restore host)", config.Keys{SigningPublicKey: oldText}, []ed25519.PublicKey{oldPub}, ""},
		{"rotation: new key file, old key listed", config.Keys{SigningKeyFile: file, SigningPublicKeys: []string{signerText, oldText}},
			[]ed25519.PublicKey{signerPub, oldPub}, ""},
		{"everything merged, each once", config.Keys{SigningKeyFile: file, SigningPublicKey: olderText, SigningPublicKeys: []string{oldText, signerText, oldText}},
			[]ed25519.PublicKey{oldPub, signerPub, olderPub}, ""},
		{"bad list entry", config.Keys{SigningKeyFile: file, SigningPublicKeys: []string{oldText, "ed25519:AAAA"}}, nil, "keys.signing_public_keys[1]"},
		{"none", config.Keys{}, nil, "no trusted signing key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := TrustedKeys(&config.Config{Keys: tc.keys})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || exitcode.Code(err) != exitcode.Usage {
					t.Fatalf("err = %v (exit %d), want a usage error with %q", err, exitcode.Code(err), tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, tc.want, func(a, b ed25519.PublicKey) bool { return a.Equal(b) }) {
				t.Fatalf("got %s, want %s", keys.Fingerprints(got), keys.Fingerprints(tc.want))
			}
		})
	}
}
