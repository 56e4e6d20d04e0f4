package remote

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/rclone/rclone/fs"

	"github.com/firetech/fireops/pkg/redact"
)

// logTo is the handler rclone's log lines go to (nil: slog's default
// logger, as before SetLogHandler). rclone keeps one logger
// per process, so SetLogHandler installs a forwarder once and swaps the
// handler behind it: apps built in parallel (tests) do not race on
// rclone's global.
var (
	logTo      atomic.Pointer[slog.Handler]
	installLog sync.Once
)

// SetLogHandler sends rclone's own log lines (its notices, warnings and
// errors; an object name it could not store, a retried request) to h
// instead of rclone's default (a line of its own format on stderr), so
// that they follow the application's --log-format and its progress
// display. rclone's levels become slog's one step quieter where rclone
// is chatty: ERROR stays ERROR, WARNING stays WARN, NOTICE becomes INFO,
// INFO and DEBUG become DEBUG. The text rclone wrote (which may hold an
// object name a storage server chose, or an inline connection string's
// secret) is redacted and made one printable line (redact.String,
// redact.Line) and put in the attribute "text" of the record "rclone"; a
// nil h sends them to slog's default logger.
func SetLogHandler(h slog.Handler) {
	if h == nil {
		logTo.Store(nil)
		return
	}
	logTo.Store(&h)
	installLog.Do(func() { fs.SetLogger(forwardHandler{}) })
}

// forwardHandler is the handler rclone logs to: it hands each record,
// rewritten by rcloneRecord, to the handler SetLogHandler stored last.
type forwardHandler struct{}

func (forwardHandler) target() slog.Handler {
	if p := logTo.Load(); p != nil {
		return *p
	}
	return slog.Default().Handler()
}

// Enabled reports whether the target handler takes rclone's level.
func (f forwardHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return f.target().Enabled(ctx, rcloneLevel(l))
}

// Handle passes the rewritten record to the target handler.
func (f forwardHandler) Handle(ctx context.Context, r slog.Record) error {
	h := f.target()
	out := rcloneRecord(r)
	if !h.Enabled(ctx, out.Level) {
		return nil
	}
	return h.Handle(ctx, out)
}

// WithAttrs and WithGroup are not used by rclone's logger (it calls Log
// only); the attributes are dropped rather than kept unredacted.
func (f forwardHandler) WithAttrs([]slog.Attr) slog.Handler { return f }

// WithGroup: see WithAttrs.
func (f forwardHandler) WithGroup(string) slog.Handler { return f }

// rcloneLevel maps the slog level rclone logs at (fs.LogLevelToSlog) to
// the level fireops logs it at (see SetLogHandler).
func rcloneLevel(l slog.Level) slog.Level {
	switch {
	case l >= slog.LevelError:
		return slog.LevelError
	case l >= slog.LevelWarn:
		return slog.LevelWarn
	case l >= fs.SlogLevelNotice:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

// rcloneRecord is r as fireops logs it: the message "rclone", rclone's
// text in the attribute "text", the object it named in "object", each
// redacted and one line.
func rcloneRecord(r slog.Record) slog.Record {
	out := slog.NewRecord(r.Time, rcloneLevel(r.Level), "rclone", r.PC)
	out.AddAttrs(slog.String("text", clean(r.Message)))
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "objectType": // a Go type name (*local.Object): noise
		default:
			out.AddAttrs(slog.String(a.Key, clean(a.Value.String())))
		}
		return true
	})
	return out
}

func clean(s string) string { return redact.Line(redact.String(s)) }
