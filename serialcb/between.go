package serialcb

import "bytes"

// between is the Framer returned by Between.
type between struct {
	start, end []byte
	include    bool
}

var (
	_ Framer      = between{}
	_ resumer     = between{}
	_ boundaryLen = between{}
	_ finisher    = between{}
)

// Between returns a Framer for frames that open with the start sequence
// and close with the end sequence, each one or more bytes (stx-etx is
// Between([]byte{2}, []byte{3}, false) without escapes). The payload is the
// bytes between them, or with include the whole frame, delimiters
// included, as node-serialport's start-end parser gives it. An empty start
// or end is taken as STX (0x02) or ETX (0x03).
//
// Resynchronisation: bytes before a start are noise, hunted through byte by
// byte; a start seen inside a frame before its end abandons the frame begun
// before it (noise) and starts a new one, so a frame cut short costs only
// itself. When start and end are the same sequence (7E 7E, as HDLC flags)
// it ends the frame, and each frame needs a pair of its own: a flag shared
// by two frames ends the first only.
// Empty frames are dropped unless include is set. A frame over the max is
// skipped up to its end, or up to the next start. The max is raised to at
// least 16 bytes plus the longer delimiter (see noiseChunk).
func Between(start, end []byte, include bool) Framer {
	if len(start) == 0 {
		start = []byte{stxByte}
	}
	if len(end) == 0 {
		end = []byte{etxByte}
	}
	return between{start: bytes.Clone(start), end: bytes.Clone(end), include: include}
}

// Split implements Framer.
func (b between) Split(buf []byte) (int, []byte) { return b.SplitFrom(buf, 0) }

// SplitFrom implements resumer: a delimiter may straddle from, so the
// search backs up by the longer delimiter's length less one.
func (b between) SplitFrom(buf []byte, from int) (int, []byte) {
	ls, le := len(b.start), len(b.end)
	window := buf[:min(len(buf), noiseChunk+ls-1)]
	switch i := bytes.Index(window, b.start); {
	case i < 0:
		return max(len(window)-(ls-1), 0), nil // noise; its tail may begin a start
	case i > 0:
		return i, nil
	}
	from = max(ls, from-max(ls, le)+1)
	if from > len(buf) {
		return 0, nil
	}
	rest := buf[from:]
	j := bytes.Index(rest, b.end)
	k := bytes.Index(rest, b.start)
	if k >= 0 && (j < 0 || k < j) {
		return from + k, nil // a new start before the end: restart there
	}
	if j < 0 {
		return 0, nil
	}
	j += from
	n := j + le
	if b.include {
		return n, buf[:n:n]
	}
	if j == ls {
		return n, nil // empty frame
	}
	return n, buf[ls:j:j]
}

// Skip implements Framer. buf[0] never begins a boundary: on the first
// call it begins the oversize frame's start; later calls get the bytes a
// previous call kept, one more than a delimiter could have begun in.
func (b between) Skip(buf []byte) (int, bool) {
	if len(buf) > 1 {
		j := bytes.Index(buf[1:], b.end)
		k := bytes.Index(buf[1:], b.start)
		switch {
		case k >= 0 && (j < 0 || k < j):
			return 1 + k, true
		case j >= 0:
			return 1 + j + len(b.end), true
		}
	}
	// Keep the bytes a delimiter may begin in, and the one before them.
	return max(len(buf)-max(len(b.start), len(b.end)), 0), false
}

func (b between) boundaryLen() int { return noiseChunk + max(len(b.start), len(b.end)) }

// finish implements finisher: a partial frame loses its start (unless
// include), as it would have before its end.
func (b between) finish(buf []byte) []byte {
	if !bytes.HasPrefix(buf, b.start) {
		return nil
	}
	if b.include {
		return buf[:len(buf):len(buf)]
	}
	if len(buf) == len(b.start) {
		return nil
	}
	return buf[len(b.start):len(buf):len(buf)]
}
