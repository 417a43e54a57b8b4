package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"
)

// upLogger is custos up's log: the node's Logf lines (node.Config keeps its
// printf-style interface) become slog records, written as text lines as
// custos always printed them, or as JSON objects one per line.
type upLogger struct {
	h     slog.Handler
	json  bool
	quiet bool
}

func newUpLogger(w io.Writer, format string, quiet bool) *upLogger {
	l := &upLogger{json: format == "json", quiet: quiet}
	if l.json {
		l.h = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})
	} else {
		l.h = &lineHandler{w: w, mu: new(sync.Mutex)}
	}
	return l
}

// prefixRE is a log line's leading component: "node: …", "mesh: …", or
// "custos NAME: …", the CLI's own lines about node NAME.
var prefixRE = regexp.MustCompile(`^(?s)(?:custos ([A-Za-z0-9][A-Za-z0-9._-]*)|([a-z][a-z0-9_-]*)): (.*)$`)

// alarmRE is a message that starts with a word in capitals, as the node
// writes what an operator must act on (AUDIT FAILURE, REVOKED, BREACH DRAFT).
var alarmRE = regexp.MustCompile(`^[A-Z]{3,}[ :]`)

// hclogRE is the level hashicorp/raft's logger puts first ("[WARN]  raft: …").
var hclogRE = regexp.MustCompile(`^\[(TRACE|DEBUG|INFO|WARN|ERROR)\]\s+`)

// parseLine reads a node log line's level and component: lines are INFO;
// alarms in capitals WARN; Raft's lines carry their own level.
func parseLine(line string) (level slog.Level, msg string, attrs []slog.Attr) {
	level, msg = slog.LevelInfo, line
	if m := hclogRE.FindStringSubmatch(msg); m != nil {
		switch m[1] {
		case "TRACE", "DEBUG":
			level = slog.LevelDebug
		case "WARN":
			level = slog.LevelWarn
		case "ERROR":
			level = slog.LevelError
		}
		msg = msg[len(m[0]):]
	}
	if m := prefixRE.FindStringSubmatch(msg); m != nil {
		if m[1] != "" {
			attrs = append(attrs, slog.String("component", "custos"), slog.String("node", m[1]))
		} else {
			attrs = append(attrs, slog.String("component", m[2]))
		}
		msg = m[3]
	}
	if level == slog.LevelInfo && alarmRE.MatchString(msg) {
		level = slog.LevelWarn
	}
	return level, msg, attrs
}

// logf is node.Config.Logf. --quiet keeps errors only. The text log
// prints the line as the node wrote it, as it always did.
func (l *upLogger) logf(format string, a ...any) {
	line := fmt.Sprintf(format, a...)
	level, msg, attrs := parseLine(line)
	if l.quiet && level < slog.LevelError {
		return
	}
	if !l.json {
		l.emit(level, line)
		return
	}
	l.emit(level, msg, attrs...)
}

// errorf records why up ended: an ERROR, shown with --quiet too.
func (l *upLogger) errorf(err error) {
	l.emit(slog.LevelError, sentence("up", err), slog.String("component", "custos"))
}

// say prints one of up's announcements (it is up, where its metrics are):
// a line on stdout in text, as before; in JSON a record with the fields
// as attributes, so that the log holds nothing but JSON. --quiet never
// hid these.
func (l *upLogger) say(stdout io.Writer, text string, attrs ...any) {
	if !l.json {
		fmt.Fprintln(stdout, text)
		return
	}
	r := slog.NewRecord(time.Now(), slog.LevelInfo, text, 0)
	r.Add("component", "custos")
	r.Add(attrs...)
	_ = l.h.Handle(context.Background(), r)
}

func (l *upLogger) emit(level slog.Level, msg string, attrs ...slog.Attr) {
	ctx := context.Background()
	if !l.h.Enabled(ctx, level) {
		return
	}
	r := slog.NewRecord(time.Now(), level, msg, 0)
	r.AddAttrs(attrs...)
	// A log that cannot be written has nowhere to say so.
	_ = l.h.Handle(ctx, r)
}

// lineHandler writes a record as custos's text log always looked: the
// time with its zone (RFC 3339), then the message with its component
// prefix put back ("node: …", "custos NAME: …"), then any other
// attributes as key=value.
type lineHandler struct {
	w     io.Writer
	mu    *sync.Mutex
	attrs []slog.Attr
}

// Enabled: Raft's debug lines were never shown.
func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var component, node string
	var rest []string
	add := func(a slog.Attr) bool {
		switch a.Key {
		case "component":
			component = a.Value.String()
		case "node":
			node = a.Value.String()
		default:
			rest = append(rest, a.Key+"="+quoteIfNeeded(a.Value.String()))
		}
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	var b strings.Builder
	b.WriteString(r.Time.Format(time.RFC3339))
	b.WriteByte(' ')
	switch {
	case component != "" && node != "":
		b.WriteString(component + " " + node + ": ")
	case component != "":
		b.WriteString(component + ": ")
	}
	b.WriteString(r.Message)
	for _, kv := range rest {
		b.WriteString(" " + kv)
	}
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &lineHandler{w: h.w, mu: h.mu, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

// WithGroup is not used by up; attributes keep their own names.
func (h *lineHandler) WithGroup(string) slog.Handler { return h }

func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\n\"=") {
		return fmt.Sprintf("%q", s)
	}
	return s
}
