package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/firetech/fireops/pkg/keys"
)

// StackTLS is TLS for the hub (stack.tls): when both files are set, the
// hub's proxy serves HTTPS on stack.ports.hub with them (docs/deploy.md,
// "Exposure"). deploy copies them into the stack's secrets, so a renewed
// certificate reaches the hub with the next `fireops deploy`.
type StackTLS struct {
	// CertFile is the PEM certificate chain, the server's certificate
	// first (Let's Encrypt's fullchain.pem).
	CertFile string `yaml:"cert_file" json:"cert_file"`
	// KeyFile is the PEM private key of the certificate: a secret file
	// (0600, owned by root or the user running fireops).
	KeyFile string `yaml:"key_file" json:"key_file"`
}

// Enabled reports whether TLS is configured.
func (t StackTLS) Enabled() bool { return t.CertFile != "" && t.KeyFile != "" }

// maxPEM bounds what is read of a certificate or key file.
const maxPEM = 1 << 20

// validateTLS checks stack.tls: both files or neither; the certificate
// file readable and holding a certificate; the key a secret file; and the
// key the certificate's (both parsed).
func (c *Config) validateTLS(p *problems) {
	t := c.Stack.TLS
	switch {
	case t.CertFile == "" && t.KeyFile == "":
		return
	case t.CertFile == "":
		p.add("stack.tls.cert_file", "set both stack.tls.cert_file and stack.tls.key_file, or neither", "is empty but stack.tls.key_file is set")
		return
	case t.KeyFile == "":
		p.add("stack.tls.key_file", "set both stack.tls.cert_file and stack.tls.key_file, or neither", "is empty but stack.tls.cert_file is set")
		return
	}
	certPEM, err := readPEM(t.CertFile, false)
	if err != nil {
		p.add("stack.tls.cert_file", "point it at the PEM certificate chain (e.g. /etc/letsencrypt/live/NAME/fullchain.pem); relative paths start at the config file's folder", "%v", err)
		return
	}
	if _, err := leafCertificate(certPEM); err != nil {
		p.add("stack.tls.cert_file", "point it at the PEM certificate chain, the server's certificate first (e.g. fullchain.pem)", "%s: %v", t.CertFile, err)
		return
	}
	if !checkSecretFile(p, "stack.tls.key_file", t.KeyFile, true) {
		return
	}
	keyPEM, err := readPEM(t.KeyFile, true)
	if err != nil {
		p.add("stack.tls.key_file", "", "%v", err)
		return
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		p.add("stack.tls.key_file", "use the private key that belongs to stack.tls.cert_file (e.g. privkey.pem beside fullchain.pem)",
			"%s: %s", t.KeyFile, strings.TrimPrefix(err.Error(), "tls: "))
	}
}

// readPEM reads at most maxPEM bytes of a certificate or (secret) key file.
func readPEM(name string, secret bool) ([]byte, error) {
	var f *os.File
	var err error
	if secret {
		f, err = keys.OpenSecretFile(name)
	} else {
		f, err = os.Open(name)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEM+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(b) > maxPEM {
		return nil, fmt.Errorf("%s is larger than 1 MiB: not a PEM certificate or key", name)
	}
	return b, nil
}

// leafCertificate parses the first certificate of a PEM chain.
func leafCertificate(chain []byte) (*x509.Certificate, error) {
	for rest := chain; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("no PEM CERTIFICATE block in it")
		}
		if block.Type == "CERTIFICATE" {
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse the certificate: %w", err)
			}
			return cert, nil
		}
	}
}

// TLSNotes are the warnings about stack.tls that do not make the config
// invalid: a certificate that has expired or expires within 14 days of
// now, and a hub.api_url that speaks plain HTTP to the hub's HTTPS port.
func (c *Config) TLSNotes(now time.Time) []string {
	t := c.Stack.TLS
	if !t.Enabled() {
		return nil
	}
	var notes []string
	if chain, err := readPEM(t.CertFile, false); err == nil {
		if leaf, err := leafCertificate(chain); err == nil {
			switch left := leaf.NotAfter.Sub(now); {
			case left <= 0:
				notes = append(notes, fmt.Sprintf("stack.tls.cert_file: %s expired on %s: browsers refuse the hub; renew it, then run fireops deploy", t.CertFile, leaf.NotAfter.UTC().Format(time.DateOnly)))
			case left < 14*24*time.Hour:
				notes = append(notes, fmt.Sprintf("stack.tls.cert_file: %s expires on %s: renew it, then run fireops deploy", t.CertFile, leaf.NotAfter.UTC().Format(time.DateOnly)))
			}
		}
	}
	if strings.HasPrefix(c.Hub.APIURL, "http://") {
		notes = append(notes, fmt.Sprintf("hub.api_url %s is plain HTTP but the hub serves HTTPS (stack.tls): fireops users needs https://NAME:%d/hub/api with a name the certificate holds", c.Hub.APIURL, c.Stack.Ports.Hub))
	}
	return notes
}
