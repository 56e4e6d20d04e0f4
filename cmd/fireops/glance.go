package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/firetech/fireops/internal/humanbytes"
)

// now is the clock of the tables' ages (a variable for tests).
var now = time.Now

// localTime formats a time for a table: the machine's time zone, to the
// minute ("2026-12-02 14:05"); the JSON output keeps full UTC times.
func localTime(t time.Time) string { return timeIn(t, time.Local) }

// timeIn formats t in a time zone to the minute, "-" when unknown.
func timeIn(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(loc).Format("2006-01-02 15:04")
}

// ago says how long ago t was, in the largest whole unit: "just now"
// (under a minute), "5 min ago", "3 h ago", "2 d ago"; a time in the
// future (a clock that differs) is "in the future".
func ago(t, at time.Time) string {
	d := at.Sub(t)
	switch {
	case t.IsZero():
		return "-"
	case d < -time.Minute:
		return "in the future"
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%d d ago", int(d/(24*time.Hour)))
}

// maxListedParts is how many part ids a table cell names before it
// counts the rest.
const maxListedParts = 3

// shortParts names a few parts and counts the others:
// "files:stack, sqlite:hub, +4 more".
func shortParts(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	if len(ids) <= maxListedParts {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s, +%d more", strings.Join(ids[:maxListedParts-1], ", "), len(ids)-maxListedParts+1)
}

// percent formats a share from 0 to 1 as a whole percentage; a share
// above 0 or below 1 is never rounded to "0%" or "100%".
func percent(share float64) string {
	p := int(share*100 + 0.5)
	switch {
	case share > 0 && p == 0:
		p = 1
	case share < 1 && p == 100:
		p = 99
	}
	return fmt.Sprintf("%d%%", p)
}

// bytesOr formats n, or "-" when unknown.
func bytesOr(n int64, known bool) string {
	if !known {
		return "-"
	}
	return humanbytes.Format(n)
}
