package mongo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/auth"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/firetech/fireops/pkg/exitcode"
)

// EnvURI is the environment variable that may hold the MongoDB URI when
// the config names no uri_file.
const EnvURI = "FIREOPS_MONGO_URI"

// maxURIFile bounds what is read of a URI file.
const maxURIFile = 64 << 10

// ReadURIFile reads a MongoDB connection string from a secret file: it
// must be a regular file that only its owner can read (like ssh, fireops
// refuses a group- or world-readable secret), and hold one mongodb:// or
// mongodb+srv:// URI (surrounding blanks and newlines are ignored). The
// URI is never part of an error.
func ReadURIFile(name string) (string, error) {
	st, err := os.Stat(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", exitcode.Usagef("write the mongodb:// URI into "+name+" (chmod 600)", "mongo: URI file %s does not exist", name)
		}
		return "", fmt.Errorf("mongo: URI file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return "", exitcode.Usagef("point it at a regular file", "mongo: URI file %s is not a regular file", name)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", exitcode.Usagef("run: chmod 600 "+name,
			"mongo: URI file %s holds a secret but is readable by group or others (mode %04o)", name, st.Mode().Perm())
	}
	if st.Size() > maxURIFile {
		return "", exitcode.Usagef("put only the URI into the file", "mongo: URI file %s is too large to hold a URI", name)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("mongo: URI file: %w", err)
	}
	uri := strings.TrimSpace(string(b))
	if err := checkURI(uri); err != nil {
		return "", exitcode.Usagef("write one mongodb://USER:PASSWORD@HOST:PORT/ URI into "+name, "mongo: URI file %s: %v", name, err)
	}
	return uri, nil
}

// checkURI checks the form of a URI without quoting it.
func checkURI(uri string) error {
	switch {
	case uri == "":
		return errors.New("empty")
	case !strings.HasPrefix(uri, "mongodb://") && !strings.HasPrefix(uri, "mongodb+srv://"):
		return errors.New("does not start with mongodb:// or mongodb+srv://")
	case strings.ContainsAny(uri, " \t\r\n"):
		return errors.New("holds blanks or several lines; put exactly one URI into it")
	}
	return nil
}

// sensitiveOptions are the URI options (lower case) whose values are
// secrets: the driver's parse errors quote option values verbatim.
var sensitiveOptions = []string{"tlscertificatekeyfilepassword", "sslclientcertificatekeypassword", "authmechanismproperties", "password"}

// secrets returns the strings that must never appear in a message: the
// URI itself, its userinfo and its password, and the values of its
// sensitive options, raw and unescaped.
func secrets(uri string) []string {
	out := []string{uri}
	if _, query, ok := strings.Cut(uri, "?"); ok {
		for _, kv := range strings.FieldsFunc(query, func(r rune) bool { return r == '&' || r == ';' }) {
			k, v, _ := strings.Cut(kv, "=")
			if v == "" || !slices.Contains(sensitiveOptions, strings.ToLower(k)) {
				continue
			}
			out = append(out, v)
			if u, err := url.QueryUnescape(v); err == nil && u != v {
				out = append(out, u)
			}
		}
	}
	rest := uri
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		rest = rest[:i]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return out
	}
	userinfo := rest[:at]
	out = append(out, userinfo)
	if _, pw, ok := strings.Cut(userinfo, ":"); ok && pw != "" {
		out = append(out, pw)
		if u, err := url.PathUnescape(pw); err == nil && u != pw {
			out = append(out, u)
		}
		if u, err := url.QueryUnescape(pw); err == nil && u != pw {
			out = append(out, u)
		}
	}
	return out
}

// redacted is an error whose message has the connection's secrets
// replaced; Unwrap keeps errors.Is and errors.As working on the cause.
type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }

// redact hides the secrets of uri in err's message.
func redact(err error, uri string) error {
	if err == nil || uri == "" {
		return err
	}
	msg := err.Error()
	clean := msg
	for _, s := range secrets(uri) {
		if len(s) >= 3 || s == uri {
			clean = strings.ReplaceAll(clean, s, "***")
		}
	}
	if clean == msg {
		return err
	}
	return &redacted{msg: clean, err: err}
}

// oneLine keeps the first line of a server message (FerretDB appends
// a documentation link on a second line).
func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimSpace(s)
}

// Error codes of the MongoDB server that fireops tells apart.
const (
	codeAuthenticationFailed = 18
	codeUnauthorized         = 13
	codeNamespaceNotFound    = 26
	codeNamespaceExists      = 48
	codeCommandNotFound      = 59
	codeSnapshotTooOld       = 239
	codeNotImplemented       = 238
)

// serverCode returns the server's error code in err, or 0.
func serverCode(err error) int {
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		return int(ce.Code)
	}
	var se mongo.ServerError
	if errors.As(err, &se) {
		for _, c := range []int{codeAuthenticationFailed, codeUnauthorized, codeNamespaceNotFound, codeNamespaceExists,
			codeCommandNotFound, codeSnapshotTooOld, codeNotImplemented} {
			if se.HasErrorCode(c) {
				return c
			}
		}
	}
	return 0
}

// explain turns a driver error into one line that names what failed and,
// where the user can fix the cause, carries a hint. what says what was
// being done ("connect", "read db.coll"). The URI never appears.
func explain(err error, uri, what string) error {
	if err == nil {
		return nil
	}
	err = redact(err, uri)
	var ae *auth.Error
	code := serverCode(err)
	switch {
	case errors.As(err, &ae) || code == codeAuthenticationFailed:
		return exitcode.New(exitcode.Failure, fmt.Errorf("mongo: %s: authentication failed: %s", what, oneLine(err.Error())),
			"check the user, password and authSource in the URI file (docs/mongo.md)")
	case code == codeUnauthorized:
		return exitcode.New(exitcode.Failure, fmt.Errorf("mongo: %s: not authorized: %s", what, oneLine(err.Error())),
			"give the URI's user the backup role (dump) or restore role (restore); see docs/mongo.md")
	case code == codeSnapshotTooOld:
		return exitcode.New(exitcode.Failure, fmt.Errorf("mongo: %s: the snapshot is too old: %s", what, oneLine(err.Error())),
			"the dump ran longer than the server keeps history: raise minSnapshotHistoryWindowInSeconds (docs/mongo.md)")
	case isSelectionError(err) && what == "connect":
		at, cause := unreachable(err)
		return exitcode.New(exitcode.Failure, fmt.Errorf("mongo: %s: cannot reach MongoDB at %s: %s", what, at, cause),
			"check that MongoDB runs and listens at "+at+" and that this host can reach it (the host and port come from the URI file, docs/mongo.md)")
	case isSelectionError(err):
		at, cause := unreachable(err)
		return exitcode.New(exitcode.Failure, fmt.Errorf("mongo: %s: lost the connection to the server at %s: %s", what, at, cause),
			"check that MongoDB runs and is reachable at the URI's host and port")
	case errors.Is(err, mongo.ErrClientDisconnected), mongo.IsNetworkError(err):
		return exitcode.New(exitcode.Failure, fmt.Errorf("mongo: %s: lost the connection to the server: %s", what, oneLine(err.Error())),
			"check that MongoDB runs and is reachable at the URI's host and port")
	}
	return fmt.Errorf("mongo: %s: %w", what, &redacted{msg: oneLine(err.Error()), err: err})
}

// isSelectionError reports a server selection timeout (no server answers).
func isSelectionError(err error) bool {
	return errors.As(err, new(topology.ServerSelectionError)) || strings.Contains(err.Error(), "server selection error")
}

// unreachable shortens a server selection error (the driver's message
// ends in its whole topology description): at names the servers the
// driver tried ("127.0.0.1:27017", or several joined by ", "), cause the
// last error each one gave ("dial tcp 127.0.0.1:27017: connect:
// connection refused"), or why selection stopped when none gave one. err
// is already redacted; the addresses are host:port, never credentials.
func unreachable(err error) (at, cause string) {
	var se topology.ServerSelectionError
	if !errors.As(err, &se) {
		return "the URI's host and port", oneLine(err.Error())
	}
	var addrs, causes []string
	for _, s := range se.Desc.Servers {
		addrs = append(addrs, string(s.Addr))
		if s.LastError == nil {
			continue
		}
		c := oneLine(s.LastError.Error())
		if len(se.Desc.Servers) > 1 {
			c = string(s.Addr) + ": " + c
		}
		causes = append(causes, c)
	}
	at = strings.Join(addrs, ", ")
	if at == "" {
		at = "the URI's host and port"
	}
	switch {
	case len(causes) > 0:
		cause = strings.Join(causes, "; ")
	case errors.Is(se.Wrapped, context.DeadlineExceeded):
		cause = "no answer within the server selection timeout"
	case se.Wrapped != nil:
		cause = oneLine(se.Wrapped.Error())
	default:
		cause = "no server answered"
	}
	return at, cause
}
