package users

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"math/big"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/firetech/fireops/pkg/exitcode"
)

// MaxPasswordBytes is bcrypt's limit. Go's bcrypt refuses longer passwords
// and Python's silently ignores the bytes after it, so fireops refuses them.
const MaxPasswordBytes = 72

// HashCost is the bcrypt cost NativeAuthenticator uses (Python bcrypt's
// gensalt() default).
const HashCost = 12

// CheckPassword refuses passwords NativeAuthenticator could not check the
// same way: empty, longer than MaxPasswordBytes, not UTF-8 (the login form
// sends UTF-8), or holding a NUL byte (Python's bcrypt refuses those).
func CheckPassword(pw []byte) error {
	const hint = "choose another password, or leave it to fireops: run without --password-stdin to generate one"
	switch {
	case len(pw) == 0:
		return exitcode.Usagef(hint, "the password is empty")
	case len(pw) > MaxPasswordBytes:
		return exitcode.Usagef(hint, "the password is %d bytes long; bcrypt uses at most %d bytes, so it is refused", len(pw), MaxPasswordBytes)
	case !utf8.Valid(pw):
		return exitcode.Usagef(hint, "the password is not valid UTF-8")
	case bytes.IndexByte(pw, 0) >= 0:
		return exitcode.Usagef(hint, "the password contains a NUL byte")
	}
	return nil
}

// HashPassword returns the bcrypt hash of pw in the form NativeAuthenticator
// writes ("$2b$12$..."), which it checks with Python's
// bcrypt.hashpw(pw, stored) == stored.
func HashPassword(pw []byte) ([]byte, error) {
	if err := CheckPassword(pw); err != nil {
		return nil, err
	}
	h, err := bcrypt.GenerateFromPassword(pw, HashCost)
	if err != nil {
		return nil, fmt.Errorf("hash password: %w", err)
	}
	// Go writes the $2a$ prefix; for passwords of at most 72 bytes $2a$ and
	// $2b$ hash identically, and $2b$ is what Python's bcrypt writes.
	if bytes.HasPrefix(h, []byte("$2a$")) {
		h[2] = 'b'
	}
	return h, nil
}

// passwordAlphabet has no characters that are easy to confuse (0/O, 1/l/I)
// or awkward to type or quote in a shell.
const passwordAlphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// GeneratePassword returns a random password of 20 characters from a
// 57-character alphabet (about 116 bits).
func GeneratePassword() (string, error) {
	const n = 20
	b := make([]byte, n)
	max := big.NewInt(int64(len(passwordAlphabet)))
	for i := range b {
		v, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", fmt.Errorf("generate password: %w", err)
		}
		b[i] = passwordAlphabet[v.Int64()]
	}
	return string(b), nil
}
