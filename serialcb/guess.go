package serialcb

import (
	"bytes"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"
)

// Guess is one framing GuessFraming tried on a sample, with how much of
// the sample it explains.
type Guess struct {
	// Framing is a ParseFraming spec; Validate a ParseValidator spec or "".
	Framing, Validate string
	// Explained is how many bytes of the sample fall in frames this framing
	// cuts (delimiters included) that look right: they pass Validate, or
	// have a structure random bytes rarely have.
	Explained int
	// Share is Explained over the sample's length.
	Share float64
	// Frames is how many such frames there are; Note says more.
	Frames int
	Note   string
	// tier orders guesses that explain as much: 0 checksum-checked,
	// 1 structural, 2 timing only.
	tier int
}

// minGuessFrames is how many good frames a framing needs before it counts:
// one or two can be luck.
const minGuessFrames = 3

// GuessFraming tries the framings a device of unknown protocol most often
// uses on sample and returns them, those explaining most bytes first:
// text lines (and NMEA sentences checked by their checksum), gnss, SLIP,
// COBS, a length prefix after a sync byte, and, when the sample came from
// a port, idle gaps. gaps are the offsets in sample after which the line
// was silent for at least gap (nil for a recorded file); an idle guess
// uses gap as its gap. Framings that explain nothing are left out.
func GuessFraming(sample []byte, gaps []int, gap time.Duration) []Guess {
	var out []Guess
	add := func(g Guess) {
		if g.Frames >= minGuessFrames && g.Explained > 0 {
			g.Share = float64(g.Explained) / float64(max(len(sample), 1))
			out = append(out, g)
		}
	}
	add(guessLines(sample, false))
	add(guessLines(sample, true))
	add(guessGNSS(sample))
	for _, g := range guessDecoded(sample, "slip", slipEnd, slipFrame) {
		add(g)
	}
	for _, g := range guessDecoded(sample, "cobs", 0, cobsFrame) {
		add(g)
	}
	add(guessLen(sample))
	for _, g := range guessIdle(sample, gaps, gap) {
		add(g)
	}
	// Most bytes first; within 2 points, the better-founded guess.
	slices.SortStableFunc(out, func(a, b Guess) int {
		if d := a.Share - b.Share; d > 0.02 || d < -0.02 {
			if d > 0 {
				return -1
			}
			return 1
		}
		return a.tier - b.tier
	})
	return out
}

// guessLines scores lines framing: printable text lines, or with nmea
// only sentences whose checksum holds.
func guessLines(sample []byte, nmea bool) Guess {
	g := Guess{Framing: "lines", tier: 1}
	if nmea {
		g.Validate, g.tier = "nmea", 0
	}
	for p := sample; ; {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			break
		}
		line := bytes.TrimSuffix(p[:i], []byte{'\r'})
		ok := len(line) > 0 && len(line) <= 4096
		if nmea {
			ok = ok && (NMEA{}).Valid(line) == nil
		} else {
			ok = ok && utf8.Valid(line) && textShare(line) >= 0.95
		}
		if ok {
			g.Explained += i + 1
			g.Frames++
		}
		p = p[i+1:]
	}
	if nmea {
		g.Note = fmt.Sprintf("%d sentences with a good checksum", g.Frames)
	} else {
		g.Note = fmt.Sprintf("%d text lines", g.Frames)
	}
	return g
}

// textShare is the share of p that is printable ASCII, tab or UTF-8.
func textShare(p []byte) float64 {
	n := 0
	for _, c := range p {
		if c >= 0x20 && c < 0x7f || c == '\t' || c >= 0x80 {
			n++
		}
	}
	return float64(n) / float64(max(len(p), 1))
}

// guessGNSS scores gnss framing: the bytes of packets whose checksum holds.
func guessGNSS(sample []byte) Guess {
	g := Guess{Framing: "gnss", tier: 0}
	var nmea, ubx, rtcm int
	f := gnss{}
	for p := sample; len(p) > 0; {
		n, frame := f.Split(p)
		if n == 0 {
			break // a packet cut short by the end of the sample
		}
		if frame != nil {
			g.Explained += n
			switch frame[0] {
			case ubxSync1:
				ubx++
			case rtcmSync:
				rtcm++
			default:
				nmea++
			}
		}
		p = p[n:]
	}
	g.Frames = nmea + ubx + rtcm
	g.Note = fmt.Sprintf("%d NMEA, %d UBX, %d RTCM 3", nmea, ubx, rtcm)
	if ubx+rtcm == 0 {
		g.tier = 1 // NMEA alone: lines with the nmea validator says it better
	}
	return g
}

// guessValidators are the checksums tried on binary frames.
var guessValidators = []string{"crc16-modbus", "crc16-ccitt", "crc32", "sum8"}

// guessDecoded scores a framing whose frames end at one byte value and
// are decoded (slip, cobs): frames that decode cleanly, and for each
// checksum the frames that also pass it.
func guessDecoded(sample []byte, spec string, end byte, decode func(enc []byte) ([]byte, bool)) []Guess {
	g := Guess{Framing: spec, tier: 1}
	checked := make([]Guess, len(guessValidators))
	var scratch []byte
	malformed := 0
	for p := sample; ; {
		i := bytes.IndexByte(p, end)
		if i < 0 {
			break
		}
		scratch = append(scratch[:0], p[:i]...)
		dec, ok := decode(scratch)
		if !ok {
			malformed++
		}
		if ok && len(dec) >= 2 {
			g.Explained += i + 1
			g.Frames++
			for k, name := range guessValidators {
				v, _ := ParseValidator(name)
				if v.Valid(dec) == nil {
					checked[k].Explained += i + 1
					checked[k].Frames++
				}
			}
		}
		p = p[i+1:]
	}
	g.Note = fmt.Sprintf("%d frames that decode", g.Frames)
	if malformed*10 > g.Frames {
		// Real SLIP or COBS never has a bad escape or code chain; bytes
		// that are neither have them all the time.
		return nil
	}
	out := []Guess{}
	if g.Frames >= minLenFrames { // a few clean frames can be luck
		out = append(out, g)
	}
	for k, c := range checked {
		if c.Frames*10 >= g.Frames*9 { // a checksum that holds for 90% of the frames
			c.Framing, c.Validate, c.tier = spec, guessValidators[k], 0
			c.Note = fmt.Sprintf("%d of %d frames pass %s", c.Frames, g.Frames, guessValidators[k])
			out = append(out, c)
		}
	}
	return out
}

// slipFrame decodes one SLIP frame (without its END); ok is false when an
// ESC is followed by anything but ESC_END or ESC_ESC.
func slipFrame(enc []byte) ([]byte, bool) {
	for i := 0; i < len(enc); i++ {
		if enc[i] == slipEsc {
			if i+1 == len(enc) || (enc[i+1] != slipEscEnd && enc[i+1] != slipEscEsc) {
				return nil, false
			}
			i++
		}
	}
	return slipDecode(enc), true
}

// cobsFrame decodes one COBS frame (without its 0x00); ok is false when
// its code bytes do not land on its end.
func cobsFrame(enc []byte) ([]byte, bool) {
	p := cobsDecode(enc)
	return p, p != nil
}

// guessLen scores length prefixes after a sync byte: for each of the most
// frequent byte values as the sync and each field type, the frames whose
// announced end is followed by the same sync (or the end of the sample),
// keeping the best.
func guessLen(sample []byte) Guess {
	var freq [256]int
	for _, c := range sample {
		freq[c]++
	}
	syncs := make([]int, 256)
	for i := range syncs {
		syncs[i] = i
	}
	slices.SortStableFunc(syncs, func(a, b int) int { return freq[b] - freq[a] })
	best := Guess{Framing: "len", tier: 1}
	for _, s := range syncs[:4] {
		for _, typ := range []string{"u8", "u16le", "u16be"} {
			for _, offset := range []int{1, 2} {
				for _, inclusive := range []bool{false, true} {
					cfg := LenConfig{Width: 1, Offset: offset, Inclusive: inclusive}
					if typ != "u8" {
						cfg.Width, cfg.LittleEndian = 2, typ == "u16le"
					}
					l := lenPrefix{cfg: cfg, hdr: offset + cfg.Width}
					explained, frames, tries := lenChain(sample, byte(s), l)
					// Lengths that land on the sync by chance do so now
					// and then; a real length prefix almost every time.
					if frames*10 >= tries*8 && explained > best.Explained {
						spec := fmt.Sprintf("len:%s:start=%02X", typ, s)
						if offset != 1 {
							spec += fmt.Sprintf(":offset=%d", offset)
						}
						if inclusive {
							spec += ":inclusive"
						}
						best.Framing, best.Explained, best.Frames = spec, explained, frames
					}
				}
			}
		}
	}
	best.Note = fmt.Sprintf("%d frames each followed by the next sync", best.Frames)
	if best.Frames < minLenFrames {
		return Guess{}
	}
	return best
}

// guessMaxLen is the longest frame a len guess counts: long announced
// lengths land on a sync byte by chance too easily to be evidence.
const guessMaxLen = 1024

// minLenFrames is how many frames a len, slip or cobs guess without a
// checksum needs.
const minLenFrames = 8

// lenChain counts the frames starting with sync whose announced length
// leads to the next sync or to the end of sample, and how many syncs it
// tried.
func lenChain(sample []byte, sync byte, l lenPrefix) (explained, frames, tries int) {
	for i := 0; i < len(sample); {
		j := bytes.IndexByte(sample[i:], sync)
		if j < 0 {
			break
		}
		i += j
		p := sample[i:]
		if len(p) < l.hdr {
			break
		}
		tries++
		n, ok := l.total(p)
		if ok && n > l.hdr && n <= guessMaxLen && n <= len(p) && (n == len(p) || p[n] == sync) {
			explained += n
			frames++
			i += n
			continue
		}
		i++
	}
	return explained, frames, tries
}

// guessIdle scores idle framing from the gaps seen on a port: every burst
// is a frame, which any stream with pauses fits, so it ranks below
// structure unless a checksum holds for the bursts (Modbus RTU).
func guessIdle(sample []byte, gaps []int, gap time.Duration) []Guess {
	if len(gaps) == 0 {
		return nil
	}
	spec := fmt.Sprintf("idle:%v", max(gap, time.Millisecond).Round(time.Millisecond))
	g := Guess{Framing: spec, tier: 2}
	checked := make([]Guess, len(guessValidators))
	start := 0
	for _, end := range append(slices.Clone(gaps), len(sample)) {
		if end <= start || end > len(sample) {
			continue
		}
		burst := sample[start:end]
		start = end
		g.Explained += len(burst)
		g.Frames++
		for k, name := range guessValidators {
			v, _ := ParseValidator(name)
			if v.Valid(burst) == nil {
				checked[k].Explained += len(burst)
				checked[k].Frames++
			}
		}
	}
	g.Note = fmt.Sprintf("%d bursts between silences of %v or more (timing only)", g.Frames, gap.Round(100*time.Microsecond))
	// Timing alone explains any stream with pauses: count it at half.
	g.Explained /= 2
	out := []Guess{g}
	for k, c := range checked {
		if c.Frames*10 >= g.Frames*9 {
			c.Framing, c.Validate, c.tier = spec, guessValidators[k], 0
			c.Note = fmt.Sprintf("%d of %d bursts pass %s", c.Frames, g.Frames, guessValidators[k])
			out = append(out, c)
		}
	}
	return out
}
