package serialcb

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Framer finds frame boundaries. Implementations hold no buffer of their
// own: the Cutter keeps the bytes, so one Framer value may serve many ports.
type Framer interface {
	// Split looks for one frame at the start of buf. It returns the number
	// of bytes consumed (0: need more data) and the frame payload as a
	// subslice of buf (nil when the consumed bytes were noise to drop).
	Split(buf []byte) (n int, frame []byte)
	// Skip is called after the frame in progress grew past the max size. It
	// drops bytes up to the next boundary: it returns how many bytes of buf
	// to discard and whether a boundary was found (resynchronised).
	Skip(buf []byte) (n int, synced bool)
}

// resumer is an optional Framer capability: SplitFrom is Split told that
// Split already returned 0 on buf[:from], so the search may resume near from.
// Without it the Cutter rescans a growing partial frame on every read, which
// costs O(MaxFrame) per read for a long frame arriving in small pieces.
type resumer interface {
	SplitFrom(buf []byte, from int) (n int, frame []byte)
}

// boundaryLen is an optional Framer capability: the longest boundary it
// looks for. The Cutter raises its max frame size to at least this, so the
// bytes Skip keeps (a possible boundary start) always fit in its buffer.
type boundaryLen interface {
	boundaryLen() int
}

// IdleFlusher is an optional Framer capability: the framer wants the frame
// in progress ended (Cutter.Flush) once the line has been silent for
// IdleGap. The idle framer (Idle, IdleChars) has no other boundary; Lines
// with a flush (LinesFlush) uses it for a partial line a device never ends.
//
// The Reader asks once, at NewReader, and arms a read timeout of that gap
// only while a frame is in progress; with nothing pending it reads without
// a timeout, so an idle port costs no CPU.
type IdleFlusher interface {
	// IdleGap returns the silence that ends a frame on a line with cfg's
	// settings (Baud, DataBits, Parity, StopBits; see PortConfig.CharTime);
	// 0 means never.
	IdleGap(cfg PortConfig) time.Duration
}

// gapBounded is an optional Framer capability: the framer's only boundary
// is silence, which takes no bytes in the stream, so the Cutter holds up to
// max bytes pending (not max-1, as when a delimiter must still fit).
type gapBounded interface {
	gapBounded()
}

// finisher is an optional Framer capability: finish turns the partial
// frame a Flush ends into its payload (nil: noise), as Split would have if
// a boundary had followed. It may rewrite buf in place.
type finisher interface {
	finish(buf []byte) []byte
}

// fielder is an optional Framer capability: appendFields appends a JSON
// object describing a payload it cut (what protocol, which message), which
// the Reader stores in Frame.Fields; it appends nothing when it has nothing
// to say. It must not allocate beyond growing dst.
type fielder interface {
	appendFields(dst, payload []byte) []byte
}

// AppendFields appends the fields f gives a payload it cut (see GNSS), as
// the Reader stores them in Frame.Fields, and returns dst unchanged when f
// gives none. It is for tools that cut with a Cutter, such as a monitor.
func AppendFields(f Framer, dst, payload []byte) []byte {
	if fl, ok := innerFramer(f).(fielder); ok {
		return fl.appendFields(dst, payload)
	}
	return dst
}

// partialGuard is an optional Framer capability: the framer cannot turn a
// partial frame into a payload (it is known good only by a checksum at its
// end), so PortConfig.Validate refuses PartialEmit with partialErr.
type partialGuard interface {
	partialErr() error
}

// lines is the Framer returned by Lines and LinesFlush.
type lines struct {
	delim   []byte
	stripCR bool          // delim is "\n": drop a '\r' before it too
	flush   time.Duration // idle flush of a partial line, or 0
	include bool          // the payload keeps the delimiter (and its '\r')
}

var (
	_ Framer      = lines{}
	_ resumer     = lines{}
	_ boundaryLen = lines{}
	_ IdleFlusher = lines{}
	_ finisher    = lines{}
)

// Lines returns a Framer for delimiter-terminated frames; the payload is
// the bytes before the delimiter. An empty delim means "\n". With "\n", a
// '\r' right before it is also removed from the payload, so devices that
// send "\r\n" (NMEA GPS, most modems) work with the default; an explicit
// "\r\n" delimiter works too, and then a lone '\n' is payload.
//
// Empty lines are dropped, not emitted: a blank line carries no data, and
// "\r\n\r\n" or a keep-alive newline would otherwise become empty records in
// every sink. The bytes still count as read.
func Lines(delim []byte) Framer {
	if len(delim) == 0 {
		delim = []byte{'\n'}
	}
	d := bytes.Clone(delim)
	return lines{delim: d, stripCR: len(d) == 1 && d[0] == '\n'}
}

// LinesFlush is Lines(delim) with an idle flush: a partial line that has
// waited after of silence on the line is emitted as a frame (the Reader
// counts it in ReaderStats.Flushed), for devices that end their last line
// late or never, such as a prompt. A '\r' ending the flushed part is
// removed when delim is "\n", as it would have been before the '\n'. An
// after of 0 or less means no flush, like Lines.
func LinesFlush(delim []byte, after time.Duration) Framer {
	l := Lines(delim).(lines)
	l.flush = max(after, 0)
	return l
}

// IdleGap implements IdleFlusher: the flush delay, whatever the line.
func (l lines) IdleGap(PortConfig) time.Duration { return l.flush }

// finish implements finisher.
func (l lines) finish(buf []byte) []byte {
	if l.include {
		if len(buf) == 0 || (l.stripCR && len(buf) == 1 && buf[0] == '\r') {
			return nil
		}
		return buf[:len(buf):len(buf)]
	}
	if l.stripCR && len(buf) > 0 && buf[len(buf)-1] == '\r' {
		buf = buf[:len(buf)-1]
	}
	if len(buf) == 0 {
		return nil
	}
	return buf[:len(buf):len(buf)]
}

// Split implements Framer.
func (l lines) Split(buf []byte) (int, []byte) { return l.SplitFrom(buf, 0) }

// SplitFrom implements resumer: a delimiter may straddle from, so the search
// backs up by len(delim)-1 bytes.
func (l lines) SplitFrom(buf []byte, from int) (int, []byte) {
	start := max(from-(len(l.delim)-1), 0)
	i := bytes.Index(buf[start:], l.delim)
	if i < 0 {
		return 0, nil
	}
	i += start
	n := i + len(l.delim)
	if l.stripCR && i > 0 && buf[i-1] == '\r' {
		i--
	}
	if i == 0 {
		return n, nil // empty line: noise
	}
	if l.include {
		return n, buf[:n:n]
	}
	return n, buf[:i:i]
}

func (l lines) boundaryLen() int { return len(l.delim) }

// Skip implements Framer. Without a delimiter in buf it keeps the last
// len(delim)-1 bytes, which may be the start of a delimiter.
func (l lines) Skip(buf []byte) (int, bool) {
	if i := bytes.Index(buf, l.delim); i >= 0 {
		return i + len(l.delim), true
	}
	return max(len(buf)-(len(l.delim)-1), 0), false
}

// framingSpecs lists the valid specs, for error messages.
const framingSpecs = framingHelp

// ParseFraming turns a --framing spec into a Framer. The grammar is
// name[:arg]:
//
//	""  or "lines"     Lines("\n") (strips a '\r' before the '\n')
//	"lines:<delim>"    Lines(delim); delim is unquoted with Go escapes, so
//	                   `lines:\r\n`, `lines:\x03`, `lines:;` all work
//	"lines[:<delim>]:flush=DUR"
//	                   LinesFlush: the same, and a partial line is a frame
//	                   after DUR (a Go duration: 200ms, 1.5s) of silence
//	"lines[:<delim>]:include"
//	                   the payload keeps the delimiter (with "\n", a '\r'
//	                   before it too); combines with flush=DUR
//	"idle:Nc"          IdleChars(N): a frame ends after N character times
//	                   of silence (idle:3.5c for Modbus RTU)
//	"idle:DUR"         Idle(DUR): a frame ends after DUR of silence (idle:5ms)
//	"idle:…:on_full=emit"
//	                   EmitWhenFull: a frame reaching the max is emitted
//	                   instead of dropped
//	"fixed:N"          Fixed(N): every N bytes
//	"len:T[:offset=K][:inclusive][:start=HEX][:adjust=±N][:max=N]"
//	                   Len: a length field of type T (u8, u16be, u16le,
//	                   u32be, u32le) at byte K (default 0, or just after
//	                   the start bytes); the length counts the bytes after
//	                   the field, or with inclusive the whole frame, plus
//	                   adjust; start= are sync bytes hunted for, max= the
//	                   largest length value; the payload is the whole frame
//	"between:STARTHEX:ENDHEX[:include]"
//	                   Between: frames from one byte sequence to another
//	"stx-etx"          StxEtx: 0x02 payload 0x03
//	"stx-etx:esc=0xNN" the same, with escape byte 0xNN (0x10 for DLE)
//	"slip"             SLIP (RFC 1055), payload unescaped
//	"cobs"             COBS, 0x00-terminated, payload decoded
//	"gnss"             GNSS: NMEA 0183, UBX and RTCM 3 packets hunted by
//	                   their sync bytes, each checked by its checksum
//	"regex:EXPR"       Regex: each match of the Go regexp EXPR is a frame
//
// Any spec may end with ":ready=HEX" (Ready): bytes are discarded until
// that sequence has been seen once after the port opens. The arguments of
// regex and lines are taken verbatim after the first colon, so they may
// contain colons; a lines argument that ends with ":flush=DUR" or
// ":include", or is one of them, carries the option.
// Durations run from 100µs to 1h.
func ParseFraming(spec string) (Framer, error) {
	if i := strings.LastIndex(spec, ":ready="); i >= 0 {
		seq, err := parseHex(spec[i+len(":ready="):])
		if err != nil || len(seq) > 64 {
			return nil, fmt.Errorf("framing %q: ready=: want 1 to 64 bytes in hex, such as ready=52454144590D0A (READY\\r\\n)", spec)
		}
		f, err := ParseFraming(spec[:i])
		if err != nil {
			return nil, err
		}
		return Ready(f, seq), nil
	}
	name, arg, hasArg := strings.Cut(spec, ":")
	switch {
	case spec == "" || spec == "lines":
		return Lines(nil), nil
	case name == "lines" && hasArg:
		return parseLines(spec, arg)
	}
	if f, ok, err := parseBinaryFraming(spec); ok {
		return f, err
	}
	return nil, fmt.Errorf("unknown framing %q: valid specs are %s", spec, framingSpecs)
}

// parseLines parses the argument of "lines:": a delimiter, options at its
// end (":flush=DUR", ":include"), or only options.
func parseLines(spec, arg string) (Framer, error) {
	var flush time.Duration
	include, hadOpt := false, false
	for {
		rest := ""
		if arg == "include" || strings.HasSuffix(arg, ":include") {
			include, hadOpt = true, true
			rest = strings.TrimSuffix(arg, "include")
		} else if i := strings.LastIndex(arg, "flush="); i >= 0 && (i == 0 || arg[i-1] == ':') && flush == 0 {
			v, err := parseGap(arg[i+len("flush="):])
			if err != nil {
				return nil, fmt.Errorf("framing %q: flush: want a duration from %v to %v, such as flush=200ms", spec, minGap, maxGap)
			}
			flush, hadOpt = v, true
			rest = arg[:i]
		} else {
			break
		}
		if rest == ":" {
			return nil, fmt.Errorf("framing %q: empty delimiter (use \"lines:flush=DUR\" or \"lines:include\" for newline)", spec)
		}
		arg = strings.TrimSuffix(rest, ":")
	}
	delim := ""
	if arg != "" || !hadOpt {
		var err error
		if delim, err = unescape(arg); err != nil {
			return nil, fmt.Errorf("framing %q: delimiter: %w", spec, err)
		}
		if delim == "" {
			return nil, fmt.Errorf("framing %q: empty delimiter (use \"lines\" for newline)", spec)
		}
	}
	l := LinesFlush([]byte(delim), flush).(lines)
	l.include = include
	return l, nil
}

// Bounds of an idle gap or flush delay given as a duration: below 100µs the
// scheduler, not the line, decides when a read returns.
const (
	minGap = 100 * time.Microsecond
	maxGap = time.Hour
)

// parseGap parses a Go duration within [minGap, maxGap].
func parseGap(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < minGap || d > maxGap {
		return 0, fmt.Errorf("%v is out of range", d)
	}
	return d, nil
}

// unescape interprets Go escapes (\r, \n, \t, \xNN, \NNN, \uNNNN, \\) in s;
// every other byte stands for itself, so quotes and raw UTF-8 need no escape.
// \xNN is the single byte NN, not the UTF-8 encoding of U+00NN.
func unescape(s string) (string, error) {
	var b strings.Builder
	for s != "" {
		if s[0] != '\\' {
			b.WriteByte(s[0])
			s = s[1:]
			continue
		}
		r, multibyte, tail, err := strconv.UnquoteChar(s, '"')
		if err != nil {
			return "", errors.New(`bad escape: valid are \r \n \t \\ \xNN \NNN \uNNNN`)
		}
		if multibyte {
			b.WriteRune(r)
		} else {
			b.WriteByte(byte(r))
		}
		s = tail
	}
	return b.String(), nil
}
