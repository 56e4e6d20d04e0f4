package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestSafeTable: a table cell cannot reach the terminal with an escape
// sequence, a bidi override or a byte that is not UTF-8; columns align on
// the escaped text; a rune cut across two Writes stays whole.
func TestSafeTable(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	w := newTable(&out, 2, 4, 2)
	fmt.Fprintln(w, "ID\tRESULT")
	fmt.Fprintln(w, "a\tBAD: \x1b]0;pwned\x07\x1b[2J")
	fmt.Fprintln(w, "evil\u202egpj.exe\tok")
	fmt.Fprint(w, "bad\xff\t")
	é := "é"
	w.Write([]byte("caf" + é[:1]))
	w.Write([]byte(é[1:] + "\n"))
	w.Write([]byte("cut" + é[:1]))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "ID                 RESULT\n" +
		`a                  BAD: \x1b]0;pwned\x07\x1b[2J` + "\n" +
		`evil\u202egpj.exe  ok` + "\n" +
		`bad\xff            café` + "\n" +
		`cut\xc3`
	if got := out.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}
