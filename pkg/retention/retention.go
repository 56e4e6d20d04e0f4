// Package retention decides which snapshots a retention policy keeps, the
// way restic's `forget` does: keep_last, keep_hourly, keep_daily,
// keep_weekly, keep_monthly, keep_yearly and keep_within, with every time
// bucket taken in UTC. The rules are counted per part (parts.go): a
// snapshot never stands in for a part it does not hold.
//
// It is pure planning: it never touches a destination. Its safety nets are
// part of the contract: an empty policy is refused, the newest complete
// snapshot and the newest holding each live part are always kept, a
// damaged snapshot (a manifest that does not verify) is never removed by a
// policy, and an incomplete snapshot is removed only once it is older than
// the grace period.
package retention

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Policy is a restic-style retention policy. A count of 0 turns its rule
// off.
type Policy struct {
	KeepLast    int `json:"keep_last,omitempty"`
	KeepHourly  int `json:"keep_hourly,omitempty"`
	KeepDaily   int `json:"keep_daily,omitempty"`
	KeepWeekly  int `json:"keep_weekly,omitempty"`
	KeepMonthly int `json:"keep_monthly,omitempty"`
	KeepYearly  int `json:"keep_yearly,omitempty"`
	// KeepWithin keeps every snapshot taken less than this before the
	// newest complete snapshot (restic's --keep-within: counted back from
	// the newest snapshot, not from now, so that a host whose backups
	// stopped does not lose its history).
	KeepWithin time.Duration `json:"keep_within,omitempty"`
}

// ErrEmptyPolicy is returned for a policy whose rules are all off: it
// would remove every snapshot but the newest, which is never what anyone
// meant.
var ErrEmptyPolicy = errors.New("the retention policy is empty: every keep_* rule is 0")

// Empty reports whether no rule is on.
func (p Policy) Empty() bool {
	return p.KeepLast <= 0 && p.KeepHourly <= 0 && p.KeepDaily <= 0 && p.KeepWeekly <= 0 &&
		p.KeepMonthly <= 0 && p.KeepYearly <= 0 && p.KeepWithin <= 0
}

// Validate refuses an empty policy and negative values.
func (p Policy) Validate() error {
	for _, r := range []struct {
		name string
		n    int
	}{{"keep_last", p.KeepLast}, {"keep_hourly", p.KeepHourly}, {"keep_daily", p.KeepDaily},
		{"keep_weekly", p.KeepWeekly}, {"keep_monthly", p.KeepMonthly}, {"keep_yearly", p.KeepYearly}} {
		if r.n < 0 {
			return fmt.Errorf("%s is %d: use 0 (rule off) or a positive count", r.name, r.n)
		}
	}
	if p.KeepWithin < 0 {
		return fmt.Errorf("keep_within is negative (%s)", p.KeepWithin)
	}
	if p.Empty() {
		return ErrEmptyPolicy
	}
	return nil
}

// String lists the rules that are on, e.g. "keep_last 3, keep_daily 7".
func (p Policy) String() string {
	var parts []string
	for _, r := range p.rules() {
		if r.count > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", r.name, r.count))
		}
	}
	if p.KeepWithin > 0 {
		parts = append(parts, "keep_within "+FormatDuration(p.KeepWithin))
	}
	if len(parts) == 0 {
		return "empty"
	}
	return strings.Join(parts, ", ")
}

// State is what a snapshot folder on a destination is.
type State string

// The states of a snapshot folder.
const (
	// Complete snapshots have a manifest that verifies; the policy applies
	// to them.
	Complete State = "complete"
	// Incomplete folders have no manifest: a run that was interrupted, or
	// one still being written.
	Incomplete State = "incomplete"
	// Damaged folders have a manifest that does not verify or decode.
	Damaged State = "damaged"
)

// Snapshot is one snapshot folder as the planner sees it.
type Snapshot struct {
	// ID is the snapshot id.
	ID string `json:"id"`
	// Time is when the snapshot was taken; its UTC calendar decides the
	// buckets.
	Time time.Time `json:"time"`
	// State is complete, incomplete or damaged.
	State State `json:"state"`
	// Activity is the last sign of life of an incomplete snapshot (its
	// `started` file, the newest file time in its folder); zero means
	// unknown, and Time is used instead.
	Activity time.Time `json:"activity,omitzero"`
	// Parts are the parts a complete snapshot holds, as opaque tags (the
	// manifest's keyed part tags: equal tags are the same part). Nil when
	// the snapshot does not record them (written before fireops did): it
	// counts as holding every part.
	Parts []string `json:"parts,omitempty"`
	// PartCount is how many parts the snapshot holds, for display (the
	// manifest's count, also when Parts is nil).
	PartCount int `json:"part_count,omitempty"`
	// Only marks a snapshot of selected parts (snapshot --only): a part
	// it does not hold was not looked at.
	Only bool `json:"only,omitempty"`
	// FailedParts counts the parts its run could not read: they were
	// meant to be in it, so it proves nothing about them.
	FailedParts int `json:"failed_parts,omitempty"`
}

// Decision says what happens to one snapshot and why.
type Decision struct {
	Snapshot
	// Keep is true when the snapshot stays.
	Keep bool `json:"keep"`
	// Reasons name the rules that keep it, or why it goes.
	Reasons []string `json:"reasons"`
}

// Action returns "keep" or "remove".
func (d Decision) Action() string {
	if d.Keep {
		return "keep"
	}
	return "remove"
}

// Reasons given by the planner besides the rule names.
const (
	ReasonNewest            = "newest complete snapshot (never removed)"
	ReasonNewestOfPart      = "newest snapshot holding a part (never removed)"
	ReasonNoRule            = "no rule keeps it"
	ReasonDamaged           = "damaged: never removed by a policy, inspect it"
	ReasonIncompleteOld     = "incomplete, older than the grace period"
	ReasonIncompleteInGrace = "incomplete, within the grace period (may still be written)"
)

type rule struct {
	name   string
	count  int
	bucket func(t time.Time, n int) int64
}

func (p Policy) rules() []rule {
	return []rule{
		{"keep_last", p.KeepLast, func(_ time.Time, n int) int64 { return int64(n) }},
		{"keep_hourly", p.KeepHourly, func(t time.Time, _ int) int64 {
			return int64(t.Year())*1000000 + int64(t.Month())*10000 + int64(t.Day())*100 + int64(t.Hour())
		}},
		{"keep_daily", p.KeepDaily, func(t time.Time, _ int) int64 {
			return int64(t.Year())*10000 + int64(t.Month())*100 + int64(t.Day())
		}},
		{"keep_weekly", p.KeepWeekly, func(t time.Time, _ int) int64 {
			y, w := t.ISOWeek()
			return int64(y)*100 + int64(w)
		}},
		{"keep_monthly", p.KeepMonthly, func(t time.Time, _ int) int64 { return int64(t.Year())*100 + int64(t.Month()) }},
		{"keep_yearly", p.KeepYearly, func(t time.Time, _ int) int64 { return int64(t.Year()) }},
	}
}

// Plan decides, for every snapshot, keep or remove with the reasons.
// Complete snapshots follow the policy, counted per part (see the package
// doc of parts.go); damaged ones are kept; incomplete ones are removed
// once their last activity is more than grace before now. The newest
// complete snapshot, and the newest holding each live part, are always
// kept. The result is ordered newest first by start time (Time, to the
// nanosecond; the same start: the higher id first). Plan refuses an
// invalid or empty policy and a negative grace.
func Plan(p Policy, snaps []Snapshot, now time.Time, grace time.Duration) ([]Decision, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if grace < 0 {
		return nil, fmt.Errorf("incomplete_grace is negative (%s)", grace)
	}
	out := make([]Decision, len(snaps))
	for i, s := range snaps {
		s.Time = s.Time.UTC()
		if !s.Activity.IsZero() {
			s.Activity = s.Activity.UTC()
		}
		if s.State == "" {
			s.State = Complete
		}
		out[i] = Decision{Snapshot: s, Reasons: []string{}}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.Time.Equal(b.Time) {
			return a.Time.After(b.Time)
		}
		return a.ID > b.ID
	})

	var complete []*Decision
	for i := range out {
		d := &out[i]
		switch d.State {
		case Complete:
			complete = append(complete, d)
		case Damaged:
			d.Keep, d.Reasons = true, []string{ReasonDamaged}
		case Incomplete:
			last := d.Time
			if d.Activity.After(last) {
				last = d.Activity
			}
			if now.Sub(last) > grace {
				d.Reasons = []string{ReasonIncompleteOld}
			} else {
				d.Keep, d.Reasons = true, []string{ReasonIncompleteInGrace}
			}
		default:
			return nil, fmt.Errorf("snapshot %s: unknown state %q", d.ID, d.State)
		}
	}
	if len(complete) == 0 {
		return out, nil
	}
	planParts(p, complete)
	return out, nil
}

// FormatDuration writes whole days as "7d" and anything else as Go does.
func FormatDuration(d time.Duration) string {
	if d != 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
