package serialcb

import (
	"bytes"
	"encoding/binary"
	"errors"
)

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
	// Start, when set, are sync bytes every frame begins with (Offset must
	// leave room for them): bytes before them are noise, hunted through
	// byte by byte, and a frame whose length is impossible makes the hunt
	// resume one byte after its sync.
	Start []byte
	// Adjust is added to the length field's value before use: the field
	// counts Adjust fewer bytes than the frame holds after it (ccTalk: 3,
	// CCSDS: 1), or -Adjust more.
	Adjust int
	// Max, when above 0, is the largest value the length field may hold;
	// a larger one is impossible, like a length over 16 MiB.
	Max int
}

// lenPrefix is the Framer returned by Len.
type lenPrefix struct {
	cfg LenConfig
	hdr int // Offset + Width
}

// ErrBadLenStart is returned by Len when Offset does not leave room for
// the Start bytes.
var ErrBadLenStart = errors.New("length prefix: the start bytes must come before the length field (offset >= their length)")

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
// a checksum validator to catch them. With Start set the framer hunts for
// those sync bytes instead, so it realigns at the next sync after any
// garbage; Max narrows what counts as plausible.
//
// To skip an oversize frame across reads without state of its own, Skip
// rewrites the last header-size bytes it keeps (bytes of the dropped frame)
// into a header announcing what remains of it.
func Len(cfg LenConfig) (Framer, error) {
	if (cfg.Width != 1 && cfg.Width != 2 && cfg.Width != 4) || cfg.Offset < 0 || cfg.Max < 0 {
		return nil, ErrBadLenConfig
	}
	if cfg.Offset < len(cfg.Start) {
		return nil, ErrBadLenStart
	}
	cfg.Start = bytes.Clone(cfg.Start)
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
	if l.cfg.Max > 0 && v > uint64(l.cfg.Max) {
		return 0, false
	}
	n := int64(v) + int64(l.cfg.Adjust)
	if !l.cfg.Inclusive {
		n += int64(l.hdr)
	}
	return int(n), n >= int64(l.hdr) && n <= maxMaxFrame
}

// put writes a header announcing a frame of n bytes into buf[0:hdr].
func (l lenPrefix) put(buf []byte, n int) {
	if !l.cfg.Inclusive {
		n -= l.hdr
	}
	n -= l.cfg.Adjust
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
	if st := l.cfg.Start; len(st) > 0 {
		window := buf[:min(len(buf), noiseChunk+len(st)-1)]
		switch i := bytes.Index(window, st); {
		case i < 0:
			// No sync: noise, but its last bytes may begin one.
			return max(len(window)-(len(st)-1), 0), nil
		case i > 0:
			return i, nil
		}
	}
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
	// Keep a header, and with a positive Adjust enough bytes after it that
	// the length it announces is not negative.
	k := l.hdr
	if rem := n - len(buf); l.cfg.Adjust > rem {
		k += l.cfg.Adjust - rem
	}
	if k >= len(buf) {
		return 0, false
	}
	d := len(buf) - k
	l.put(buf[d:], n-d)
	return d, false
}

// boundaryLen keeps the max above what Skip keeps, so it always fits in
// the Cutter's buffer, and above the window Split hunts a start in.
func (l lenPrefix) boundaryLen() int {
	b := l.hdr + 1 + max(l.cfg.Adjust, 0)
	if len(l.cfg.Start) > 0 {
		b = max(b, noiseChunk+len(l.cfg.Start))
	}
	return b
}
