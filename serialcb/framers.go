package serialcb

import "bytes"

// This file holds the fixed, stx-etx, slip and cobs framers; len, idle,
// regex, between and gnss have files of their own. Like Lines they keep no
// state between calls.
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
