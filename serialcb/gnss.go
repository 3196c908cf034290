package serialcb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strconv"
)

// GNSS packet bounds.
const (
	// nmeaMax is the longest NMEA sentence accepted, line end included.
	// NMEA 0183 says 82; receivers' proprietary sentences run longer (gpsd
	// accepts up to 102 bytes), so some slack is kept.
	nmeaMax = 256
	// ubxMaxPayload bounds a UBX payload: a false B5 62 inside binary data
	// then holds the stream back by at most this many bytes before its
	// checksum fails and the hunt resumes.
	ubxMaxPayload = 8192
	ubxOverhead   = 8 // sync (2), class, id, length (2), checksum (2)
	// RTCM 3: D3, 6 reserved zero bits and a 10-bit length, the message,
	// CRC-24Q.
	rtcmOverhead = 6
	rtcmMaxLen   = 1023

	ubxSync1  = 0xB5
	ubxSync2  = 0x62
	rtcmSync  = 0xD3
	gnssMaxPk = ubxMaxPayload + ubxOverhead
)

// gnss is the Framer returned by GNSS.
type gnss struct{}

var (
	_ Framer       = gnss{}
	_ boundaryLen  = gnss{}
	_ fielder      = gnss{}
	_ partialGuard = gnss{}
)

// GNSS returns a Framer for the mixed streams of GNSS receivers, which
// interleave NMEA 0183 sentences with binary packets on one port, often
// with no line break between a binary packet and the next '$'. Like gpsd's
// packet layer it hunts for a packet start by its sync bytes and keeps a
// packet only when its own checksum holds:
//
//   - NMEA 0183: '$' or '!', printable ASCII, '*', two hex digits (the XOR
//     of the bytes between), CR LF or LF. The payload is the sentence
//     without its line end, as with lines framing.
//   - u-blox UBX: B5 62, class, id, a little-endian u16 length, the
//     payload, and the 8-bit Fletcher checksum over class to payload.
//   - RTCM 3: D3, a 10-bit length (the 6 bits above it zero), the message,
//     and its CRC-24Q.
//
// Binary packets are delivered whole, sync and checksum included. Each
// frame carries fields (Frame.Fields) saying what it is:
// {"proto":"nmea","sentence":"GNRMC"}, {"proto":"ubx","class":1,"id":7},
// {"proto":"rtcm3","msg":1005}, so routes can send each protocol to its
// own sinks.
//
// A byte that starts no valid packet (a sync byte whose packet fails its
// checksum, or announces an impossible length, or any other byte) is
// noise: it is dropped and the hunt resumes at the next byte, so a
// corrupted packet costs only itself and the packets after it are found
// wherever they start. A candidate packet is held until its announced end
// has arrived; a false UBX sync inside binary data may so delay (never
// lose) the packets after it by up to 8 KiB. The max frame is raised to the
// largest packet accepted (8,200 bytes). A partial packet cannot be
// checked, so partial_at_stop "emit" is refused (see PortConfig.Validate).
func GNSS() Framer { return gnss{} }

// Split implements Framer.
func (gnss) Split(buf []byte) (int, []byte) {
	if len(buf) == 0 {
		return 0, nil
	}
	switch buf[0] {
	case '$', '!':
		return splitNMEA(buf)
	case ubxSync1:
		return splitUBX(buf)
	case rtcmSync:
		return splitRTCM(buf)
	}
	// Noise: drop up to the next possible sync byte within noiseChunk.
	window := buf[:min(len(buf), noiseChunk)]
	for i := 1; i < len(window); i++ {
		switch window[i] {
		case '$', '!', ubxSync1, rtcmSync:
			return i, nil
		}
	}
	return len(window), nil
}

// splitNMEA checks the sentence starting at buf[0].
func splitNMEA(buf []byte) (int, []byte) {
	end := min(len(buf), nmeaMax)
	for i := 1; i < end; i++ {
		c := buf[i]
		if c == '\n' {
			line := buf[:i]
			if line[len(line)-1] == '\r' {
				line = line[:len(line)-1]
			}
			if !nmeaSumOK(line) {
				return 1, nil
			}
			return i + 1, line[:len(line):len(line)]
		}
		if c == '\r' {
			if i+1 < len(buf) && buf[i+1] != '\n' {
				return 1, nil // a CR not ending the line: not a sentence
			}
			continue
		}
		if c < 0x20 || c > 0x7E {
			return 1, nil // not a sentence: hunt again from the next byte
		}
		if c == '$' || c == '!' {
			return 1, nil // a new sentence starts: this one was cut short
		}
	}
	if end == nmeaMax {
		return 1, nil // too long to be a sentence
	}
	return 0, nil
}

// nmeaSumOK checks "$body*hh" (no line end).
func nmeaSumOK(p []byte) bool {
	if len(p) < 4 || p[len(p)-3] != '*' {
		return false
	}
	want, ok := hexByte(p[len(p)-2], p[len(p)-1])
	if !ok {
		return false
	}
	var sum byte
	for _, c := range p[1 : len(p)-3] {
		sum ^= c
	}
	return sum == want
}

// splitUBX checks the UBX packet starting at buf[0] (0xB5).
func splitUBX(buf []byte) (int, []byte) {
	if len(buf) < 6 {
		if len(buf) >= 2 && buf[1] != ubxSync2 {
			return 1, nil
		}
		return 0, nil
	}
	if buf[1] != ubxSync2 {
		return 1, nil
	}
	n := int(binary.LittleEndian.Uint16(buf[4:6]))
	if n > ubxMaxPayload {
		return 1, nil
	}
	total := n + ubxOverhead
	if len(buf) < total {
		return 0, nil
	}
	var a, b byte
	for _, c := range buf[2 : total-2] {
		a += c
		b += a
	}
	if a != buf[total-2] || b != buf[total-1] {
		return 1, nil
	}
	return total, buf[:total:total]
}

// splitRTCM checks the RTCM 3 frame starting at buf[0] (0xD3).
func splitRTCM(buf []byte) (int, []byte) {
	if len(buf) < 3 {
		if len(buf) >= 2 && buf[1]&0xFC != 0 {
			return 1, nil
		}
		return 0, nil
	}
	if buf[1]&0xFC != 0 {
		return 1, nil
	}
	n := int(buf[1]&0x03)<<8 | int(buf[2])
	total := n + rtcmOverhead
	if len(buf) < total {
		return 0, nil
	}
	crc := crc24q(buf[:total-3])
	if byte(crc>>16) != buf[total-3] || byte(crc>>8) != buf[total-2] || byte(crc) != buf[total-1] {
		return 1, nil
	}
	return total, buf[:total:total]
}

// Skip implements Framer. It is never needed: every packet accepted fits
// the max (boundaryLen), so Split always decides within it.
func (gnss) Skip(buf []byte) (int, bool) { return min(1, len(buf)), true }

func (gnss) boundaryLen() int { return gnssMaxPk }

// appendFields implements fielder.
func (gnss) appendFields(dst, p []byte) []byte {
	switch {
	case len(p) >= 6 && p[0] == ubxSync1:
		dst = append(dst, `{"proto":"ubx","class":`...)
		dst = strconv.AppendUint(dst, uint64(p[2]), 10)
		dst = append(dst, `,"id":`...)
		dst = strconv.AppendUint(dst, uint64(p[3]), 10)
		return append(dst, '}')
	case len(p) >= 3 && p[0] == rtcmSync:
		dst = append(dst, `{"proto":"rtcm3"`...)
		if n := int(p[1]&3)<<8 | int(p[2]); n >= 2 && len(p) >= 5 {
			dst = append(dst, `,"msg":`...)
			dst = strconv.AppendUint(dst, uint64(p[3])<<4|uint64(p[4]>>4), 10)
		}
		return append(dst, '}')
	case len(p) > 0 && (p[0] == '$' || p[0] == '!'):
		dst = append(dst, `{"proto":"nmea","sentence":"`...)
		addr := p[1:]
		if i := bytes.IndexAny(addr, ",*"); i >= 0 {
			addr = addr[:i]
		}
		for _, c := range addr[:min(len(addr), 16)] {
			if c == '"' || c == '\\' || c < 0x20 || c > 0x7E {
				c = '_'
			}
			dst = append(dst, c)
		}
		return append(dst, `"}`...)
	}
	return dst
}

// errGNSSPartial explains why gnss framing refuses partial_at_stop emit.
var errGNSSPartial = errors.New("gnss framing cannot emit a partial frame at stop: a packet is known good only by its checksum, which a partial packet lacks (use partial_at_stop: drop)")

// partialErr implements partialGuard.
func (gnss) partialErr() error { return errGNSSPartial }

// crc24qTable is computed once and never written.
var crc24qTable = func() *[256]uint32 {
	var t [256]uint32
	for i := range t {
		c := uint32(i) << 16
		for range 8 {
			c <<= 1
			if c&0x1000000 != 0 {
				c ^= 0x1864CFB
			}
		}
		t[i] = c & 0xFFFFFF
	}
	return &t
}()

// crc24q is the CRC-24Q of RTCM 3 (poly 0x1864CFB, init 0).
func crc24q(p []byte) uint32 {
	var c uint32
	for _, b := range p {
		c = (c<<8)&0xFFFFFF ^ crc24qTable[byte(c>>16)^b]
	}
	return c
}
