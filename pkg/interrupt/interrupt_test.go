package interrupt

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"

	"github.com/firetech/fireops/pkg/snapshot"
)

// signalCause is like signal.NotifyContext's cause ("interrupt signal
// received"), which matches context.Canceled.
type signalCause string

func (s signalCause) Error() string        { return string(s) }
func (s signalCause) Is(target error) bool { return target == context.Canceled }

// TestInterruptedPartError: a part's or a check's error is only the end of
// work that SIGINT or SIGTERM cut short (its row says "interrupted") when
// the run's context is done and the error is a cancellation, however it
// was wrapped (a local destination's tar reader, net/http's url.Error
// holding the signal's cause); an error of its own, or damage found, keeps
// its text.
func TestInterruptedPartError(t *testing.T) {
	t.Parallel()
	running := context.Background()
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	bySignal, cancelSignal := context.WithCancelCause(context.Background())
	cancelSignal(signalCause("interrupt signal received"))
	plainCause, cancelPlain := context.WithCancelCause(context.Background())
	cause := errors.New("shutting down")
	cancelPlain(cause)
	expired, cancelExpired := context.WithTimeout(context.Background(), 0)
	defer cancelExpired()
	<-expired.Done()

	tarsafe := fmt.Errorf("files:stack: tarsafe: entry %q: %w", "big.bin", context.Canceled)
	httpGet := fmt.Errorf("piece list abc on local: destination %q: get gpu01/objects/ab/abc: %w", "local",
		&url.Error{Op: "Get", URL: "http://127.0.0.1/x", Err: signalCause("interrupt signal received")})
	for _, c := range []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"no error", stopped, nil, false},
		{"not stopped", running, tarsafe, false},
		{"local destination", stopped, tarsafe, true},
		{"webdav under a signal", bySignal, httpGet, true},
		{"the context's own cause", plainCause, fmt.Errorf("read: %w", cause), true},
		{"deadline", expired, fmt.Errorf("read: %w", context.DeadlineExceeded), true},
		{"an error of its own", stopped, errors.New("open /data/x: permission denied"), false},
		{"damage found", stopped, errors.Join(fmt.Errorf("%w: piece abc", snapshot.ErrIntegrity), context.Canceled), false},
	} {
		if got := Is(c.ctx, c.err); got != c.want {
			t.Errorf("%s: interrupted(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
