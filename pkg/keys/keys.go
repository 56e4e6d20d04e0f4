// Package keys creates, reads and checks the key material of fireops: the
// age X25519 identity and recipients that encrypt snapshots, and the
// Ed25519 key that signs manifests.
//
// File formats are chosen so that standard tools read them without fireops:
// the identity file is age's own (`age -d -i identity.txt` works), and the
// signing key is a PKCS#8 PEM block (`openssl pkey -in signing.key` works).
package keys

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/firetech/fireops/internal/atomicfile"
)

// PublicKeyPrefix starts the text form of an Ed25519 signing public key.
const PublicKeyPrefix = "ed25519:"

// IdentityFile returns the content of an age identity file for id, in the
// format `age-keygen` writes.
func IdentityFile(id *age.X25519Identity, created time.Time) []byte {
	return fmt.Appendf(nil, "# created: %s\n# public key: %s\n%s\n",
		created.UTC().Format(time.RFC3339), id.Recipient(), id)
}

// ParseRecipients reads age X25519 recipients, one a line; blank lines and
// lines starting with # are skipped. It fails on the first invalid line,
// naming its number.
func ParseRecipients(r io.Reader) ([]*age.X25519Recipient, error) {
	var out []*age.X25519Recipient
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		rcp, err := age.ParseX25519Recipient(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, rcp)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// LoadIdentities reads the age identities of an identity file.
func LoadIdentities(path string) ([]age.Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open identity file: %w", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("parse identity file %s: %w", path, err)
	}
	return ids, nil
}

// GenerateSigningKey returns a new Ed25519 private key.
func GenerateSigningKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	return priv, nil
}

// MarshalSigningKey encodes key as a PKCS#8 PEM block.
func MarshalSigningKey(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode signing key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseSigningKey decodes a PKCS#8 PEM Ed25519 private key.
func ParseSigningKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM \"PRIVATE KEY\" block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("decode PKCS#8: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want an Ed25519 key", k)
	}
	return priv, nil
}

// LoadSigningKey reads an Ed25519 private key from a PEM file.
func LoadSigningKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	k, err := ParseSigningKey(data)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return k, nil
}

// FormatPublicKey returns the text form of an Ed25519 public key,
// "ed25519:" followed by standard base64.
func FormatPublicKey(pub ed25519.PublicKey) string {
	return PublicKeyPrefix + base64.StdEncoding.EncodeToString(pub)
}

// fingerprintChars is how many base64 characters of a key Fingerprint
// keeps: 48 bits, enough to tell a site's few keys apart.
const fingerprintChars = 8

// Fingerprint returns the short form of an Ed25519 public key that messages
// use: "ed25519:", the first characters of its base64 (how the key starts in
// the config, so that `grep` finds it there), then "...".
func Fingerprint(pub ed25519.PublicKey) string {
	s := FormatPublicKey(pub)
	return s[:min(len(s), len(PublicKeyPrefix)+fingerprintChars)] + "..."
}

// Fingerprints returns the Fingerprint of every key, joined with ", ".
func Fingerprints(pubs []ed25519.PublicKey) string {
	out := make([]string, len(pubs))
	for i, p := range pubs {
		out[i] = Fingerprint(p)
	}
	return strings.Join(out, ", ")
}

// ParsePublicKey parses the text form written by FormatPublicKey.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b64, ok := strings.CutPrefix(strings.TrimSpace(s), PublicKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("public key %q does not start with %q", s, PublicKeyPrefix)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key %q is not %d bytes of base64", s, ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// WriteNewFile creates path with the given mode (exactly: the umask does
// not apply) and content, refusing to overwrite an existing file (the
// error is then "open PATH: file exists", os.IsExist). The content is
// written and fsynced under a temp name beside path and linked into place
// (atomicfile.Create), so path appears complete or not at all: a crash or
// kill -9 mid-write leaves no partial key file, at most a temp file
// ".NAME.tmp*". On a failed write nothing is left.
func WriteNewFile(path string, data []byte, mode os.FileMode) error {
	err := atomicfile.Create(path, data, mode)
	if err == nil {
		return nil
	}
	// Name path, not the temp file, in the errors of creating or linking
	// it, worded as the O_EXCL open that these stand for.
	var le *os.LinkError
	var pe *iofs.PathError
	switch {
	case errors.As(err, &le) && le.New == path:
		return &iofs.PathError{Op: "open", Path: path, Err: le.Err}
	case errors.As(err, &pe) && strings.HasPrefix(filepath.Base(pe.Path), "."+filepath.Base(path)+".tmp") &&
		(pe.Op == "open" || pe.Op == "createtemp"):
		// os.CreateTemp failed (no folder, no permission): the temp
		// file's name means nothing to the admin.
		return &iofs.PathError{Op: "open", Path: path, Err: pe.Err}
	}
	return fmt.Errorf("write %s: %w", path, err)
}
