// Package testutil holds small helpers the tests of every package share:
// [Must] for errors that end a test, [Replace] for editing a text (a
// config `fireops init` wrote, a rendered file) that fails when the text
// to replace is not there exactly once, [SameTree] and [DiffTrees] for
// comparing two folders, and [WaitFor] for polling until something holds.
//
// It is for tests only: nothing outside _test.go files imports it.
package testutil

import (
	"strings"
	"testing"
	"time"
)

// Must ends the test when err is not nil.
func Must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Replace returns s with old replaced by new. It ends the test when old is
// not in s exactly once, so that an edit of a text that changed (a
// template, a rendered file) cannot silently match nothing and leave the
// test running on the unedited text.
func Replace(t testing.TB, s, old, new string) string {
	t.Helper()
	if n := strings.Count(s, old); n != 1 {
		t.Fatalf("replace: %q is %d times in the text, want once:\n%s", old, n, s)
		return s
	}
	return strings.Replace(s, old, new, 1)
}

// ReplaceAll returns s with every old replaced by new. It ends the test
// when old is not in s at all.
func ReplaceAll(t testing.TB, s, old, new string) string {
	t.Helper()
	if old == "" || !strings.Contains(s, old) {
		t.Fatalf("replace: %q is not in the text:\n%s", old, s)
		return s
	}
	return strings.ReplaceAll(s, old, new)
}

// WaitFor calls cond every interval until it returns true. It ends the
// test, naming what it waited for, when cond still returns false after a
// minute: a safety net for a test that waits for another process or
// goroutine, not a timing assertion.
func WaitFor(t testing.TB, what string, every time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
			return
		}
		time.Sleep(every)
	}
}
