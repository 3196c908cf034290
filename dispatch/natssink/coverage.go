package natssink

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Stream coverage.
//
// JetStream publishing to a subject that no stream takes fails at once
// with "no responders" when nobody listens, but when a plain subscriber
// listens on the subject it gets the message, answers nothing, and every
// batch waits ack_timeout for an acknowledgement that never comes. So the
// sink asks the server, at start and again before each Write while the
// answer was "none", whether a stream takes every subject the template can
// render (its pattern), and fails such a Write at once, retryably, with
// what to do. A check that fails (no permission for the JetStream API)
// leaves the answer unknown and writes go ahead as before.

// coverage is the outcome of a stream check.
type coverage int

const (
	coverUnknown coverage = iota // not checked, or the check failed
	coverFull                    // a stream takes every subject of the pattern
	coverNone                    // no stream takes all of them
	coverSuspect                 // an ack timed out: check again
)

// streamsFor asks the server which streams take subjects overlapping
// pattern and reports whether one takes all of them; partial names the
// streams that take only some.
func streamsFor(ctx context.Context, js jetstream.JetStream, pattern string) (full string, partial []string, err error) {
	l := js.ListStreams(ctx, jetstream.WithStreamListSubject(pattern))
	for info := range l.Info() {
		for _, subj := range info.Config.Subjects {
			if subjectCovers(subj, pattern) {
				full = info.Config.Name
			}
		}
		if full == "" {
			partial = append(partial, info.Config.Name)
		}
	}
	if err := l.Err(); err != nil {
		return "", nil, err
	}
	return full, partial, nil
}

// subjectCovers reports whether the subject filter takes every subject
// that pattern (a subject whose tokens may be '*') matches.
func subjectCovers(filter, pattern string) bool {
	f := strings.Split(filter, ".")
	p := strings.Split(pattern, ".")
	for i, ft := range f {
		if ft == ">" {
			return len(p) > i
		}
		if i >= len(p) {
			return false
		}
		if ft != "*" && (ft != p[i] || p[i] == "*") {
			return false
		}
	}
	return len(f) == len(p)
}

// noStreamHelp says what to do when no stream takes the sink's subjects.
func (s *Sink) noStreamHelp() string {
	return fmt.Sprintf("create a stream with subjects %q (nats stream add --subjects %q), or set the sink's stream setting to have it created; frames are retried until then",
		s.pattern, s.pattern)
}

// checkStreams asks the server whether a stream takes the sink's subjects
// and records the answer; a failed check (no permission for the JetStream
// API, a timeout) leaves it unknown, and writes go ahead. It logs when
// the answer changes (start counts as a change).
func (s *Sink) checkStreams(ctx context.Context, js jetstream.JetStream) coverage {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AckTimeout)
	defer cancel()
	full, partial, err := streamsFor(ctx, js, s.pattern)
	var c coverage
	switch {
	case err != nil:
		c = coverUnknown
	case full != "":
		c = coverFull
	default:
		c = coverNone
	}
	prev := coverage(s.coverage.Swap(int32(c)))
	if c == prev || (prev == coverSuspect && c == coverFull) {
		return c
	}
	switch c {
	case coverNone:
		msg := "nats sink: no JetStream stream takes the sink's subjects: writes fail (and are retried) until one does; " + s.noStreamHelp()
		fields := []zap.Field{zap.String("subjects", s.pattern)}
		if len(partial) > 0 {
			fields = append(fields, zap.Strings("streams_taking_only_some", partial))
		}
		s.log.Warn(msg, fields...)
	case coverFull:
		if prev == coverNone {
			s.log.Info("nats sink: a stream now takes the sink's subjects", zap.String("stream", full), zap.String("subjects", s.pattern))
		}
	case coverUnknown:
		if !errors.Is(err, context.Canceled) {
			s.log.Warn("nats sink: cannot check which JetStream stream takes the sink's subjects; publishing anyway",
				zap.String("subjects", s.pattern), zap.Error(err))
		}
	}
	return c
}
