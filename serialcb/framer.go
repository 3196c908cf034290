package serialcb

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
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

// lines is the Framer returned by Lines.
type lines struct {
	delim   []byte
	stripCR bool // delim is "\n": drop a '\r' before it too
}

var (
	_ Framer      = lines{}
	_ resumer     = lines{}
	_ boundaryLen = lines{}
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
//	"fixed:N"          Fixed(N): every N bytes
//	"len:T[:offset=K][:inclusive]"
//	                   Len: a length field of type T (u8, u16be, u16le,
//	                   u32be, u32le) at byte K (default 0); the length counts
//	                   the bytes after the field, or with inclusive the whole
//	                   frame; the payload is the whole frame
//	"stx-etx"          StxEtx: 0x02 payload 0x03
//	"stx-etx:esc=0xNN" the same, with escape byte 0xNN (0x10 for DLE)
//	"slip"             SLIP (RFC 1055), payload unescaped
//	"cobs"             COBS, 0x00-terminated, payload decoded
//	"regex:EXPR"       Regex: each match of the Go regexp EXPR is a frame
//
// The arguments of regex and lines are taken verbatim after the first
// colon, so they may contain colons.
func ParseFraming(spec string) (Framer, error) {
	name, arg, hasArg := strings.Cut(spec, ":")
	switch {
	case spec == "" || spec == "lines":
		return Lines(nil), nil
	case name == "lines" && hasArg:
		delim, err := unescape(arg)
		if err != nil {
			return nil, fmt.Errorf("framing %q: delimiter: %w", spec, err)
		}
		if delim == "" {
			return nil, fmt.Errorf("framing %q: empty delimiter (use \"lines\" for newline)", spec)
		}
		return Lines([]byte(delim)), nil
	}
	if f, ok, err := parseBinaryFraming(spec); ok {
		return f, err
	}
	return nil, fmt.Errorf("unknown framing %q: valid specs are %s", spec, framingSpecs)
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
