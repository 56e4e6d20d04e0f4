// Package redact hides credentials in text fireops prints: inline rclone
// connection strings (":webdav,url=...,pass=...:path"), the errors rclone
// builds from them (which repeat parts of the string, URL-escaped), URLs
// with a password or a secret-looking query parameter, and Authorization
// header values. It is the one redaction every package uses.
//
// A value is hidden when its key names a credential: the options rclone
// marks IsPassword or Sensitive that hold one (pass, password, token,
// client_secret, secret_access_key, session_token, bearer_token,
// sse_customer_key, sse_customer_key_base64, sse_kms_key_id,
// service_account_credentials, headers, sas_url, connection_string, ...)
// and any key whose name contains pass, token, secret, key, credential,
// signature, auth, cookie or private. User names, hosts and paths stay
// readable.
package redact

import (
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Mask replaces every hidden value.
const Mask = "REDACTED"

// String returns s with every credential it can find replaced by Mask: the
// values of key=value pairs whose key names a credential (unquoted,
// 'quoted', "quoted", with rclone's doubled quotes inside, \"escaped\",
// or URL-escaped as in key%3Dvalue), JSON "key":"value" pairs, the
// password of user:password@ in a URL, and Bearer tokens.
func String(s string) string {
	s = scan(s, nil)
	return userinfo(s)
}

// Error returns err with its message passed through String (and hidden
// values removed, see Values); errors.Is and errors.As still see err. A
// nil err stays nil.
func Error(err error, hidden ...string) error {
	if err == nil {
		return nil
	}
	msg := Known(String(err.Error()), hidden)
	if msg == err.Error() {
		return err
	}
	return &redacted{msg: msg, err: err}
}

type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }

// Values returns the credential values String would hide in s (unquoted),
// and the passwords of URLs in them, so that Known can hide them where
// they appear without their key, as rclone's errors may show them.
func Values(s string) []string {
	var out []string
	var add func(string)
	add = func(v string) {
		out = append(out, v)
		scan(v, add) // a header list holds a Bearer token
	}
	scan(s, add)
	for _, v := range append([]string{s}, out...) {
		out = append(out, urlPasswords(v)...)
	}
	return out
}

// minKnown is the shortest value Known hides: shorter ones would hide
// ordinary words.
const minKnown = 4

// Known replaces every value of hidden (4 characters or more) in s, raw
// and URL-escaped, by Mask.
func Known(s string, hidden []string) string {
	for _, v := range hidden {
		if len(v) < minKnown {
			continue
		}
		for _, f := range []string{v, url.QueryEscape(v), url.PathEscape(v), strings.ReplaceAll(url.QueryEscape(v), "+", "%20")} {
			s = strings.ReplaceAll(s, f, Mask)
		}
	}
	return s
}

// Webhook returns a webhook URL fit for printing: scheme and host only,
// since services such as Slack put the secret in the path.
func Webhook(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return Mask
	}
	if u.Path == "" && u.RawQuery == "" && u.User == nil {
		return raw
	}
	return u.Scheme + "://" + u.Host + "/" + Mask
}

// URL returns a URL fit for printing: its password and secret-looking
// query parameters hidden, the rest readable.
func URL(raw string) string { return String(raw) }

// isWord reports whether c can be part of a key.
func isWord(c byte) bool {
	return c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// sensitiveWords are the parts of a key that make its value a credential.
var sensitiveWords = []string{"pass", "pwd", "token", "secret", "key", "credential", "signature", "auth", "cookie", "private", "mnemonic", "headers", "sas_url", "connection_string", "otp"}

// sensitive reports whether key (any case) names a credential.
func sensitive(key string) bool {
	k := strings.ToLower(strings.Trim(key, "-_"))
	k = strings.ReplaceAll(k, "-", "_")
	if k == "sig" || k == "bearer" {
		return true
	}
	if strings.HasSuffix(k, "_file") || strings.HasSuffix(k, "_path") || k == "keys" {
		return false // a path to a secret, not the secret
	}
	for _, w := range sensitiveWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// keyStart reports whether a key may start at s[i]: a letter after the
// start of s, a character that is not part of a key, or a %XX escape.
func keyStart(s string, i int) bool {
	c := s[i]
	if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
		return false
	}
	if i == 0 || s[i-1] == '-' || !isWord(s[i-1]) {
		return true
	}
	if i >= 5 && s[i-5:i-2] == "%25" && isHex(s[i-2]) && isHex(s[i-1]) {
		return true // double escaped: %252C
	}
	return i >= 3 && s[i-3] == '%' && isHex(s[i-2]) && isHex(s[i-1])
}

// hasFoldPrefix reports whether s[i:] starts with p, ignoring case.
func hasFoldPrefix(s string, i int, p string) bool {
	return len(s)-i >= len(p) && strings.EqualFold(s[i:i+len(p)], p)
}

// separator returns the length of the key/value separator at s[i] (=,
// %3D, %253D, or : after a quoted key), 0 if none.
func separator(s string, i int, quotedKey bool) int {
	switch {
	case i >= len(s):
		return 0
	case s[i] == '=':
		return 1
	case hasFoldPrefix(s, i, "%3D"):
		return 3
	case hasFoldPrefix(s, i, "%253D"):
		return 5
	case quotedKey && s[i] == ':':
		return 1
	case quotedKey && hasFoldPrefix(s, i, "%3A"):
		return 3
	}
	return 0
}

// quotes are the quote marks a value may open with, longest first.
var quotes = []string{`\"`, `"`, `'`, "%22", "%27", "%2522", "%2527"}

// quoteAt returns the quote mark at s[i], "" if none.
func quoteAt(s string, i int) string {
	for _, q := range quotes {
		if hasFoldPrefix(s, i, q) {
			return q
		}
	}
	return ""
}

// closeQuote returns the index of the quote q closing a value that starts
// at i: the first q not doubled (rclone and CSV write a quote inside a
// value as two). len(s) if unclosed.
func closeQuote(s string, i int, q string) int {
	for i < len(s) {
		if !hasFoldPrefix(s, i, q) {
			i++
			continue
		}
		if hasFoldPrefix(s, i+len(q), q) {
			i += 2 * len(q)
			continue
		}
		return i
	}
	return len(s)
}

// unquotedEnd returns where an unquoted value starting at i ends: at a
// space, a separator of a connection string, URL query or header list, or
// the URL-escaped form of one.
func unquotedEnd(s string, i int) int {
	for ; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\n', '\r', ',', ':', '&', ';', '"', '\'', '\\', ')', ']', '}', '<', '>':
			return i
		case '%':
			for _, e := range []string{"%2C", "%3A", "%26", "%20", "%22", "%27", "%3B", "%252C", "%253A"} {
				if hasFoldPrefix(s, i, e) {
					return i
				}
			}
		}
	}
	return i
}

// listSep returns the length of a list separator (, or %2C) at s[i].
func listSep(s string, i int) int {
	switch {
	case i < len(s) && s[i] == ',':
		return 1
	case hasFoldPrefix(s, i, "%2C"):
		return 3
	}
	return 0
}

// scan hides the credential values of s; found, when set, gets each one.
func scan(s string, found func(string)) string {
	var b strings.Builder
	last := 0 // s[last:] is not written yet
	for i := 0; i < len(s); {
		if !keyStart(s, i) {
			i++
			continue
		}
		j := i
		for j < len(s) && isWord(s[j]) {
			j++
		}
		key := s[i:j]
		quoted := i > 0 && (s[i-1] == '"' || s[i-1] == '\'')
		k := j
		if quoted && (hasFoldPrefix(s, k, `\"`)) {
			k += 2
		}
		for quoted && k < len(s) && (s[k] == '"' || s[k] == '\'') {
			k++
		}
		for k < len(s) && s[k] == ' ' {
			k++
		}
		var n int
		if strings.EqualFold(key, "bearer") || strings.EqualFold(key, "basic") {
			// An Authorization value: "Bearer TOKEN", maybe URL-escaped.
			switch {
			case k > j:
				n = 0
			case hasFoldPrefix(s, k, "%20"):
				n = 3
			case k < len(s) && s[k] == '+':
				n = 1
			}
			if k > j || n > 0 {
				v := k + n
				end := unquotedEnd(s, v)
				if end-v >= 8 || strings.EqualFold(key, "bearer") && end > v {
					b.WriteString(s[last:v])
					b.WriteString(Mask)
					if found != nil {
						found(s[v:end])
					}
					last, i = end, end
					continue
				}
			}
			i = j
			continue
		}
		n = separator(s, k, quoted)
		if n == 0 && k > j && i >= 2 && s[i-2:i] == "--" {
			n, k = k-j, j // a command line flag: --pass VALUE
		}
		if n == 0 || !sensitive(key) {
			i = j
			continue
		}
		v := k + n
		for v < len(s) && s[v] == ' ' {
			v++
		}
		start, end, q := v, 0, quoteAt(s, v)
		if q == `"` && hasFoldPrefix(s, v, `""`) && !hasFoldPrefix(s, v, `"""`) && quoted {
			q = `""` // a JSON key inside a doubled-quote value
		}
		if q != "" {
			start = v + len(q)
			end = closeQuote(s, start, q)
		} else {
			end = unquotedEnd(s, v)
			if strings.Contains(strings.ToLower(key), "headers") {
				// An unquoted header list: name,value.
				if m := listSep(s, end); m > 0 {
					end = unquotedEnd(s, end+m)
				}
			}
		}
		if end == start {
			i = j
			continue
		}
		if found != nil {
			found(unquote(s[start:end], q))
		}
		b.WriteString(s[last:start])
		b.WriteString(Mask)
		last, i = end, end
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// unquote undoes the doubling of q inside a quoted value.
func unquote(v, q string) string {
	if q == "" {
		return v
	}
	return strings.ReplaceAll(v, q+q, q)
}

// userinfo hides the password of scheme://user:password@host, raw or
// URL-escaped.
func userinfo(s string) string {
	var b strings.Builder
	last := 0
	for i := 0; i < len(s); i++ {
		var n int
		switch {
		case hasFoldPrefix(s, i, "//"):
			n = 2
		case hasFoldPrefix(s, i, "%2F%2F"):
			n = 6
		default:
			continue
		}
		start, end, ok := password(s, i+n)
		if !ok {
			i += n - 1
			continue
		}
		b.WriteString(s[last:start])
		b.WriteString(Mask)
		last, i = end, end-1
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// password finds user:password@ at s[i:]: the password's bounds.
func password(s string, i int) (start, end int, ok bool) {
	colon := -1
	for j := i; j < len(s); j++ {
		c := s[j]
		switch {
		case c == '/' || c == ' ' || c == '\t' || c == '\n' || c == '?' || c == '#' || c == '"' || c == '\'' || c == ',' || hasFoldPrefix(s, j, "%2F"):
			return 0, 0, false
		case c == '@' || hasFoldPrefix(s, j, "%40"):
			if colon < 0 || j == colon {
				return 0, 0, false
			}
			return colon, j, true
		case colon < 0 && c == ':':
			colon = j + 1
		case colon < 0 && hasFoldPrefix(s, j, "%3A"):
			colon = j + 3
		}
	}
	return 0, 0, false
}

// urlPasswords returns the passwords of the URLs in s.
func urlPasswords(s string) []string {
	var out []string
	for i := 0; i+2 <= len(s); i++ {
		if s[i:i+2] != "//" {
			continue
		}
		if start, end, ok := password(s, i+2); ok {
			p := s[start:end]
			if u, err := url.PathUnescape(p); err == nil && u != p {
				out = append(out, u)
			}
			out = append(out, p)
		}
	}
	return out
}

// Line returns s made safe to print as one line on a terminal or in a log:
// newlines, carriage returns and tabs become spaces, and every other
// control character (C0, DEL, C1), the bidirectional-override characters
// and bytes that are not UTF-8 are written as escapes (\x1b, \u202e).
// Text fireops did not write (a storage server's error body, a hub user's
// file name) reaches messages through it, so that it can neither move the
// cursor, hide text nor forge a log line.
func Line(s string) string { return escape(s, false) }

// Text returns s made safe to print on a terminal as text that may span
// lines, such as a table: like Line, but tabs and newlines stay as they
// are (a table's column and row separators); carriage returns, every other
// control character, the bidirectional-override characters and bytes that
// are not UTF-8 are written as escapes (\x0d, \x1b, \u202e).
func Text(s string) string { return escape(s, true) }

// escape is Line (keep false) or Text (keep true).
func escape(s string, keep bool) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unsafeRune(r) && !(keep && (r == '\t' || r == '\n')) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case keep && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case !keep && (r == '\n' || r == '\r' || r == '\t'):
			b.WriteByte(' ')
		case unsafeRune(r) && r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// unsafeRune reports whether r must not reach a terminal as it is.
func unsafeRune(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) ||
		(r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}
