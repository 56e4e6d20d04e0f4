package snapshot

import "time"

// Start is when the snapshot started: Started (the manifest's start time,
// or an interrupted run's started file's, to the nanosecond), else the
// second its id names. Snapshots order by it, not by their ids: two taken
// in the same second differ only in their random id suffixes.
func (l Listing) Start() time.Time {
	if !l.Started.IsZero() {
		return l.Started
	}
	return l.Time
}

// Newer reports whether l started after o (the same start: the higher id
// is the newer), the order List sorts in.
func (l Listing) Newer(o Listing) bool {
	if a, b := l.Start(), o.Start(); !a.Equal(b) {
		return a.After(b)
	}
	return l.ID > o.ID
}
