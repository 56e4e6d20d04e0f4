// Package textcut shortens strings to a byte budget without splitting a
// UTF-8 character: for names that must fit a limit (NAME_MAX, MongoDB's
// namespace length) and messages that are cut for a table.
package textcut

import "unicode/utf8"

// Prefix returns the longest prefix of s of at most n bytes that does not
// end inside a UTF-8 character (s itself when it fits; "" when n <= 0).
// Bytes that are not UTF-8 count as characters of their own.
func Prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) && n-cut < utf8.UTFMax-1 {
		cut--
	}
	if !utf8.RuneStart(s[cut]) {
		cut = n // continuation bytes without a start: not a character to keep whole
	}
	return s[:cut]
}
