package schedule

import (
	"testing"
	"time"
)

// TestStopTimeoutErrorLists: the jobs that outlasted --stop-timeout are
// named as a list ("snapshot, verify"), not as a Go slice.
func TestStopTimeoutErrorLists(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		jobs []string
		want string
	}{
		{[]string{"snapshot"}, "schedule: job(s) snapshot did not stop within 1m0s"},
		{[]string{"snapshot", "verify"}, "schedule: job(s) snapshot, verify did not stop within 1m0s"},
	} {
		if got := (&StopTimeoutError{Jobs: tc.jobs, Timeout: time.Minute}).Error(); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.jobs, got, tc.want)
		}
	}
}
