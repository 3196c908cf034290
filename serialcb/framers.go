package serialcb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// This file holds the binary, pattern and timing framers: fixed, len,
// stx-etx, slip, cobs, regex and idle. Like Lines they keep no state between
// calls.
//
// Escaping framers (stx-etx with an escape byte, slip, cobs) decode a
// complete frame in place: they rewrite the frame's own bytes in the buf
// passed to Split, and only once its end has been found, so the bytes they
// touch are always consumed by that same call. A Cutter may pass the slice
// given to Feed straight to Split, so with these framers Feed may rewrite
// the bytes of complete frames in its argument. The read loop reads into a
// buffer it reuses, so that costs nothing; a caller that needs its input
// intact afterwards must Feed a copy.

// noiseChunk is the most noise bytes stx-etx and regex drop per Split
// call. The Cutter treats any Split result longer than the max as an
// oversize frame, so a framer that drops noise in larger pieces would report
// a long run of garbage as oversize when it arrived in one read and not
// when it arrived in small ones. Those framers raise the max to at least
// noiseChunk and look for a frame start only within the next noiseChunk
// bytes, which also keeps a long run of noise linear to drop.
const noiseChunk = 16

// Framing bytes.
const (
	stxByte = 0x02
	etxByte = 0x03

	slipEnd    = 0xC0
	slipEsc    = 0xDB
	slipEscEnd = 0xDC
	slipEscEsc = 0xDD
)

// fixedLen is the Framer returned by Fixed.
type fixedLen struct{ n int }

var (
	_ Framer      = fixedLen{}
	_ boundaryLen = fixedLen{}
)

// Fixed returns a Framer that cuts every n bytes; the payload is the n
// bytes. An n below 1 is taken as 1. A fixed stream has no boundary
// marker, so there is no resynchronisation within a stream: a lost or
// extra byte shifts every later frame. Frames line up again when the
// Cutter is Reset, which the read loop does at every (re)open of the port.
// The max frame size is raised to at least n.
func Fixed(n int) Framer { return fixedLen{n: max(n, 1)} }

// Split implements Framer.
func (f fixedLen) Split(buf []byte) (int, []byte) {
	if len(buf) < f.n {
		return 0, nil
	}
	return f.n, buf[:f.n:f.n]
}

// Skip implements Framer. It is never needed (the max is at least n), and
// drops one frame's worth if called.
func (f fixedLen) Skip(buf []byte) (int, bool) { return min(f.n, len(buf)), true }

func (f fixedLen) boundaryLen() int { return f.n }

// LenConfig describes a length-prefixed frame: Offset header bytes, then a
// Width-byte unsigned length, then the rest of the frame.
type LenConfig struct {
	// Width of the length field in bytes: 1, 2 or 4.
	Width int
	// LittleEndian selects the byte order of a 2- or 4-byte length.
	LittleEndian bool
	// Offset is where the length field starts: the bytes before it (a sync
	// byte, an address, a type) belong to the frame.
	Offset int
	// Inclusive means the length counts the whole frame, header and length
	// field included; otherwise it counts the bytes after the length field.
	Inclusive bool
}

// lenPrefix is the Framer returned by Len.
type lenPrefix struct {
	cfg LenConfig
	hdr int // Offset + Width
}

var (
	_ Framer      = lenPrefix{}
	_ boundaryLen = lenPrefix{}
)

// ErrBadLenConfig is returned by Len for a width other than 1, 2 or 4 or a
// negative offset.
var ErrBadLenConfig = errors.New("length prefix: width must be 1, 2 or 4 and offset >= 0")

// Len returns a Framer for length-prefixed frames. The payload is the
// whole frame, header and length field included, so fields before the
// length and checksums computed over the whole frame stay available; a
// decoder can strip the header.
//
// A length prefix has no marker to resynchronise on, so the framer trusts
// every plausible length: a frame longer than the max is dropped whole, by
// its announced length, and cutting carries on right after it, whatever the
// read boundaries. Lengths that cannot be right are noise: an inclusive
// length smaller than the header, or any frame over 16 MiB (the largest
// max frame a port accepts); their first byte is dropped and parsing starts
// again at the next byte. A garbled but plausible length cuts wrong frames
// until the stream realigns (or the port is reopened); pair the framer with
// a checksum validator to catch them.
//
// To skip an oversize frame across reads without state of its own, Skip
// rewrites the last header-size bytes it keeps (bytes of the dropped frame)
// into a header announcing what remains of it.
func Len(cfg LenConfig) (Framer, error) {
	if (cfg.Width != 1 && cfg.Width != 2 && cfg.Width != 4) || cfg.Offset < 0 {
		return nil, ErrBadLenConfig
	}
	return lenPrefix{cfg: cfg, hdr: cfg.Offset + cfg.Width}, nil
}

// total returns the frame length announced by the header at buf[0:], which
// must hold at least hdr bytes, and whether it is possible at all.
func (l lenPrefix) total(buf []byte) (int, bool) {
	f := buf[l.cfg.Offset : l.cfg.Offset+l.cfg.Width]
	var v uint64
	switch {
	case l.cfg.Width == 1:
		v = uint64(f[0])
	case l.cfg.Width == 2 && l.cfg.LittleEndian:
		v = uint64(binary.LittleEndian.Uint16(f))
	case l.cfg.Width == 2:
		v = uint64(binary.BigEndian.Uint16(f))
	case l.cfg.LittleEndian:
		v = uint64(binary.LittleEndian.Uint32(f))
	default:
		v = uint64(binary.BigEndian.Uint32(f))
	}
	n := v
	if !l.cfg.Inclusive {
		n += uint64(l.hdr)
	}
	return int(n), n >= uint64(l.hdr) && n <= maxMaxFrame
}

// put writes a header announcing a frame of n bytes into buf[0:hdr].
func (l lenPrefix) put(buf []byte, n int) {
	if !l.cfg.Inclusive {
		n -= l.hdr
	}
	f := buf[l.cfg.Offset : l.cfg.Offset+l.cfg.Width]
	switch {
	case l.cfg.Width == 1:
		f[0] = byte(n)
	case l.cfg.Width == 2 && l.cfg.LittleEndian:
		binary.LittleEndian.PutUint16(f, uint16(n))
	case l.cfg.Width == 2:
		binary.BigEndian.PutUint16(f, uint16(n))
	case l.cfg.LittleEndian:
		binary.LittleEndian.PutUint32(f, uint32(n))
	default:
		binary.BigEndian.PutUint32(f, uint32(n))
	}
}

// Split implements Framer.
func (l lenPrefix) Split(buf []byte) (int, []byte) {
	if len(buf) < l.hdr {
		return 0, nil
	}
	n, ok := l.total(buf)
	switch {
	case !ok:
		return 1, nil // impossible header: noise, hunt from the next byte
	case n > len(buf):
		return 0, nil
	}
	return n, buf[:n:n]
}

// Skip implements Framer. buf starts with the header of a frame longer than
// the max (or, on later calls, with the header Skip wrote); it drops that
// frame whole (see Len).
func (l lenPrefix) Skip(buf []byte) (int, bool) {
	if len(buf) < l.hdr {
		return 0, false
	}
	n, ok := l.total(buf)
	switch {
	case !ok:
		return 1, true // not a header: Split would have called it noise
	case n <= len(buf):
		return n, true
	}
	d := len(buf) - l.hdr
	l.put(buf[d:], n-d)
	return d, false
}

// boundaryLen keeps the max above the header, so the header Skip keeps
// always fits in the Cutter's buffer.
func (l lenPrefix) boundaryLen() int { return l.hdr + 1 }

// stxEtx is the Framer returned by StxEtx.
type stxEtx struct {
	esc    byte
	hasEsc bool
}

var (
	_ Framer      = stxEtx{}
	_ boundaryLen = stxEtx{}
	_ finisher    = stxEtx{}
)

// StxEtx returns a Framer for frames between STX (0x02) and ETX (0x03);
// the payload is the bytes between them. With hasEsc, esc makes the byte
// after it literal (esc STX, esc ETX, esc esc), and the payload holds the
// unescaped bytes (decoded in place, see the note on escaping framers).
//
// Resynchronisation: bytes outside STX…ETX are noise; an unescaped STX
// inside a frame abandons the frame begun before it (noise) and starts a
// new one, so a frame cut short by a glitch costs only itself. Empty frames
// (STX ETX) are dropped as noise. A frame over the max is skipped up to its
// ETX, or up to the next STX, whichever comes first. The max is raised to
// at least 16 bytes (see noiseChunk).
func StxEtx(esc byte, hasEsc bool) Framer { return stxEtx{esc: esc, hasEsc: hasEsc} }

// Split implements Framer.
func (s stxEtx) Split(buf []byte) (int, []byte) {
	window := buf[:min(len(buf), noiseChunk)]
	i := bytes.IndexByte(window, stxByte)
	switch {
	case i < 0:
		return len(window), nil // no frame start: noise
	case i > 0:
		return i, nil
	}
	for j := 1; j < len(buf); j++ {
		switch c := buf[j]; {
		case s.hasEsc && c == s.esc:
			j++ // the next byte is literal
		case c == stxByte:
			return j, nil // restart at this STX
		case c == etxByte:
			if j == 1 {
				return 2, nil // empty frame
			}
			return j + 1, s.unescape(buf[1:j])
		}
	}
	return 0, nil
}

// unescape decodes the body of a frame (the bytes between STX and ETX) in
// place; an escape byte at its very end, whose escaped byte never came, is
// dropped.
func (s stxEtx) unescape(body []byte) []byte {
	if !s.hasEsc {
		return body[:len(body):len(body)]
	}
	w := 0
	for r := 0; r < len(body); r, w = r+1, w+1 {
		if body[r] == s.esc {
			r++
			if r == len(body) {
				break
			}
		}
		body[w] = body[r]
	}
	return body[:w:w]
}

// finish implements finisher: a partial frame loses its STX and is
// unescaped, as it would have been before an ETX.
func (s stxEtx) finish(buf []byte) []byte {
	if len(buf) < 2 || buf[0] != stxByte {
		return nil
	}
	return s.unescape(buf[1:])
}

// Skip implements Framer. buf[0] is never a boundary: on the first call it
// is the oversize frame's STX, later it is a byte a previous call kept.
func (s stxEtx) Skip(buf []byte) (int, bool) {
	j := 0
	for j < len(buf) {
		c := buf[j]
		switch {
		case s.hasEsc && c == s.esc:
			if j+1 == len(buf) {
				return j, false // keep the escape for the next call
			}
			if j+2 == len(buf) {
				return j, false // keep the pair, so its escape is not lost
			}
			j += 2
			continue
		case j > 0 && c == stxByte:
			return j, true
		case j > 0 && c == etxByte:
			return j + 1, true
		}
		j++
	}
	return max(len(buf)-1, 0), false // keep the last byte: a new STX may follow
}

// boundaryLen is noiseChunk, which is more than the 3 bytes Skip may keep.
func (s stxEtx) boundaryLen() int { return noiseChunk }

// slip is the Framer returned by SLIP.
type slip struct{}

var (
	_ Framer      = slip{}
	_ resumer     = slip{}
	_ boundaryLen = slip{}
	_ finisher    = slip{}
)

// SLIP returns a Framer for RFC 1055 SLIP: frames end with END (0xC0); in
// a frame ESC (0xDB) ESC_END (0xDC) stands for 0xC0 and ESC ESC_ESC (0xDD)
// for 0xDB. The payload is the unescaped bytes, decoded in place (see the
// note on escaping framers). As in RFC 1055, ESC followed by any other byte
// stands for that byte; a dangling ESC before END is dropped.
//
// Every END is a boundary, so resynchronisation is immediate: garbage
// merges into the frame it precedes, and senders that start each frame
// with END (as RFC 1055 recommends) lose nothing. Empty frames (END END)
// are dropped as noise. A frame over the max is skipped up to its END.
func SLIP() Framer { return slip{} }

// Split implements Framer.
func (s slip) Split(buf []byte) (int, []byte) { return s.SplitFrom(buf, 0) }

// SplitFrom implements resumer.
func (slip) SplitFrom(buf []byte, from int) (int, []byte) {
	i := bytes.IndexByte(buf[from:], slipEnd)
	if i < 0 {
		return 0, nil
	}
	i += from
	if p := slipDecode(buf[:i]); p != nil {
		return i + 1, p
	}
	return i + 1, nil
}

// finish implements finisher: a partial frame is unescaped as it would
// have been before an END.
func (slip) finish(buf []byte) []byte { return slipDecode(buf) }

// slipDecode unescapes the bytes of one frame (without its END) in place;
// nil when nothing is left.
func slipDecode(enc []byte) []byte {
	if bytes.IndexByte(enc, slipEsc) < 0 {
		if len(enc) == 0 {
			return nil
		}
		return enc[:len(enc):len(enc)]
	}
	w := 0
	for r := 0; r < len(enc); r++ {
		c := enc[r]
		if c == slipEsc {
			r++
			if r == len(enc) {
				break // dangling ESC
			}
			switch c = enc[r]; c {
			case slipEscEnd:
				c = slipEnd
			case slipEscEsc:
				c = slipEsc
			}
		}
		enc[w] = c
		w++
	}
	if w == 0 {
		return nil
	}
	return enc[:w:w]
}

// Skip implements Framer.
func (slip) Skip(buf []byte) (int, bool) {
	if i := bytes.IndexByte(buf, slipEnd); i >= 0 {
		return i + 1, true
	}
	return len(buf), false
}

func (slip) boundaryLen() int { return 1 }

// cobs is the Framer returned by COBS.
type cobs struct{}

var (
	_ Framer      = cobs{}
	_ resumer     = cobs{}
	_ boundaryLen = cobs{}
	_ finisher    = cobs{}
)

// COBS returns a Framer for Consistent Overhead Byte Stuffing frames, each
// ended by a 0x00 byte. The payload is the decoded frame, decoded in place
// (see the note on escaping framers).
//
// Every 0x00 is a boundary, so resynchronisation is immediate. Empty frames
// and malformed ones (a code byte pointing past the end of the frame) are
// dropped as noise. A frame over the max is skipped up to its 0x00.
func COBS() Framer { return cobs{} }

// Split implements Framer.
func (c cobs) Split(buf []byte) (int, []byte) { return c.SplitFrom(buf, 0) }

// SplitFrom implements resumer.
func (cobs) SplitFrom(buf []byte, from int) (int, []byte) {
	i := bytes.IndexByte(buf[from:], 0)
	if i < 0 {
		return 0, nil
	}
	i += from
	return i + 1, cobsDecode(buf[:i])
}

// finish implements finisher: a partial frame is decoded as it would have
// been before a 0x00, so one whose last code points past its end is
// malformed.
func (cobs) finish(buf []byte) []byte { return cobsDecode(buf) }

// cobsDecode decodes the bytes of one frame (without its 0x00) in place;
// nil when malformed or empty.
func cobsDecode(enc []byte) []byte {
	w := 0
	for r := 0; r < len(enc); {
		code := int(enc[r])
		if code == 0 || r+code > len(enc) {
			return nil // malformed
		}
		w += copy(enc[w:], enc[r+1:r+code])
		r += code
		if code < 0xFF && r < len(enc) {
			enc[w] = 0
			w++
		}
	}
	if w == 0 {
		return nil
	}
	return enc[:w:w]
}

// Skip implements Framer.
func (cobs) Skip(buf []byte) (int, bool) {
	if i := bytes.IndexByte(buf, 0); i >= 0 {
		return i + 1, true
	}
	return len(buf), false
}

func (cobs) boundaryLen() int { return 1 }

// Modbus RTU fixes the inter-frame gap at 1.75 ms (and the inter-character
// one at 750 µs) above 19200 baud, where 3.5 real character times would be
// too short for a receiver to time: an idle gap given in characters uses a
// character time of 500 µs there.
const (
	fastBaud     = 19200
	fastCharTime = 500 * time.Microsecond
)

// idleFramer is the Framer returned by Idle and IdleChars.
type idleFramer struct {
	gap   time.Duration // the gap as a duration, or 0
	chars float64       // the gap in character times, or 0
}

var (
	_ Framer      = idleFramer{}
	_ resumer     = idleFramer{}
	_ IdleFlusher = idleFramer{}
	_ gapBounded  = idleFramer{}
)

// Idle returns a Framer whose frames end with silence on the line: the
// bytes that arrived before a gap of at least gap are one frame, whatever
// they hold. The payload is those bytes. A gap of 0 or less is taken as
// 100µs.
//
// The framer finds no boundary in the bytes themselves: the read loop ends
// the frame (Cutter.Flush) when a read times out after gap with a partial
// frame held (see IdleFlusher and Reader.Run). The gap is measured from
// when the read loop asked for more bytes, which is just after the previous
// ones arrived, so a frame ends gap or a little more after its last byte.
// Fed to a Cutter without a read loop (a recorded capture has no timing),
// the bytes stay pending until Flush.
//
// Resynchronisation is the gap itself: every silence ends the frame in
// progress, so garbage or a truncated frame costs only the frame it is in.
// A frame longer than the max is dropped and reported as oversize, with its
// full length, when its gap comes. Unlike delimited frames a frame may be
// exactly the max long, since the gap takes no bytes.
func Idle(gap time.Duration) Framer { return idleFramer{gap: max(gap, minGap)} }

// IdleChars is Idle with the gap in character times of the port's line
// (PortConfig.CharTime): IdleChars(3.5) is the Modbus RTU inter-frame gap,
// t3.5. Above 19200 baud a character time counts as 500 µs, after the
// Modbus RTU rule, so IdleChars(3.5) is then 1.75 ms. chars of 0 or less
// are taken as 3.5.
func IdleChars(chars float64) Framer {
	if chars <= 0 {
		chars = 3.5
	}
	return idleFramer{chars: chars}
}

// IdleGap implements IdleFlusher. The gap is at least 100µs.
func (f idleFramer) IdleGap(cfg PortConfig) time.Duration {
	if f.chars == 0 {
		return f.gap
	}
	gap := cfg.charTimes(f.chars)
	if cfg.Baud > fastBaud {
		gap = time.Duration(f.chars * float64(fastCharTime))
	}
	return max(gap, minGap)
}

// Split implements Framer: there is no boundary in the bytes.
func (idleFramer) Split([]byte) (int, []byte) { return 0, nil }

// SplitFrom implements resumer, so a long frame arriving in small reads is
// not rescanned.
func (idleFramer) SplitFrom([]byte, int) (int, []byte) { return 0, nil }

// Skip implements Framer: only the gap ends an oversize frame, so every
// byte before it is dropped.
func (idleFramer) Skip(buf []byte) (int, bool) { return len(buf), false }

func (idleFramer) gapBounded() {}

// parseIdle parses the argument of "idle:": "Nc" (character times) or a Go
// duration.
func parseIdle(arg string) (Framer, error) {
	if n, ok := strings.CutSuffix(arg, "c"); ok {
		chars, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
		if err != nil || !(chars > 0 && chars <= 10000) {
			return nil, errors.New("want idle:Nc with 0 < N <= 10000 character times, such as idle:3.5c")
		}
		return IdleChars(chars), nil
	}
	d, err := parseGap(arg)
	if err != nil {
		return nil, fmt.Errorf("want idle:Nc (character times, such as idle:3.5c) or idle:DUR with DUR from %v to %v (such as idle:5ms)", minGap, maxGap)
	}
	return Idle(d), nil
}

// framingHelp documents the grammar, for ParseFraming's errors and docs.
const framingHelp = `"lines" (same as ""), "lines:<delimiter>" with Go escapes (lines:\r\n, lines:\x03, lines:;), ` +
	`either with ":flush=DUR" (lines:flush=200ms, lines:\r\n:flush=200ms), "idle:Nc" or "idle:DUR" (idle:3.5c, idle:5ms), ` +
	`"fixed:N", "len:u8|u16be|u16le|u32be|u32le[:offset=K][:inclusive]", "stx-etx[:esc=0xNN]", ` +
	`"slip", "cobs", "gnss" (NMEA 0183 mixed with UBX and RTCM 3), "regex:EXPR"`

// parseBinaryFraming parses the specs other than lines; ok is false for an
// unknown name.
func parseBinaryFraming(spec string) (f Framer, ok bool, err error) {
	name, arg, hasArg := strings.Cut(spec, ":")
	fail := func(format string, args ...any) (Framer, bool, error) {
		return nil, true, fmt.Errorf("framing %q: %s", spec, fmt.Sprintf(format, args...))
	}
	switch name {
	case "idle":
		if !hasArg {
			return fail("want idle:Nc (such as idle:3.5c) or idle:DUR (such as idle:5ms)")
		}
		f, err := parseIdle(arg)
		if err != nil {
			return fail("%v", err)
		}
		return f, true, nil
	case "fixed":
		n, err := strconv.Atoi(arg)
		if !hasArg || err != nil || n < 1 {
			return fail("want fixed:N with N >= 1 bytes")
		}
		return Fixed(n), true, nil
	case "len":
		if !hasArg {
			return fail("want len:u8|u16be|u16le|u32be|u32le[:offset=K][:inclusive]")
		}
		parts := strings.Split(arg, ":")
		var cfg LenConfig
		switch parts[0] {
		case "u8":
			cfg.Width = 1
		case "u16be":
			cfg.Width = 2
		case "u16le":
			cfg.Width, cfg.LittleEndian = 2, true
		case "u32be":
			cfg.Width = 4
		case "u32le":
			cfg.Width, cfg.LittleEndian = 4, true
		default:
			return fail("length type %q: want u8, u16be, u16le, u32be or u32le", parts[0])
		}
		for _, opt := range parts[1:] {
			k, v, _ := strings.Cut(opt, "=")
			switch {
			case opt == "inclusive":
				cfg.Inclusive = true
			case k == "offset":
				n, err := strconv.Atoi(v)
				if err != nil || n < 0 || n > 1024 {
					return fail("offset=%q: want 0..1024", v)
				}
				cfg.Offset = n
			default:
				return fail("unknown option %q: want offset=K or inclusive", opt)
			}
		}
		l, err := Len(cfg)
		if err != nil {
			return fail("%v", err)
		}
		return l, true, nil
	case "stx-etx":
		if !hasArg {
			return StxEtx(0, false), true, nil
		}
		v, ok := strings.CutPrefix(arg, "esc=")
		if !ok {
			return fail("unknown option %q: want esc=0xNN", arg)
		}
		b, err := strconv.ParseUint(v, 0, 8)
		if err != nil {
			return fail("esc=%q: want a byte such as 0x10", v)
		}
		if b == stxByte || b == etxByte {
			return fail("the escape byte cannot be STX or ETX")
		}
		return StxEtx(byte(b), true), true, nil
	case "gnss":
		if hasArg {
			return fail("gnss takes no arguments")
		}
		return GNSS(), true, nil
	case "slip", "cobs":
		if hasArg {
			return fail("%s takes no arguments", name)
		}
		if name == "slip" {
			return SLIP(), true, nil
		}
		return COBS(), true, nil
	case "regex":
		if !hasArg || arg == "" {
			return fail("want regex:EXPR")
		}
		re, err := regexp.Compile(arg)
		if err != nil {
			return fail("%v", err)
		}
		if re.Match(nil) {
			return fail("the pattern matches the empty string")
		}
		return Regex(re), true, nil
	}
	return nil, false, nil
}
