package serialcb

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

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
	gap    time.Duration // the gap as a duration, or 0
	chars  float64       // the gap in character times, or 0
	onFull bool          // a frame reaching the max is emitted, not dropped
}

// fullEmitter is an optional Framer capability: a frame in progress that
// reaches the max frame size is emitted as a frame, and the next one starts,
// instead of being dropped as oversize.
type fullEmitter interface {
	emitsFull() bool
}

// EmitWhenFull returns the idle framer f (Idle, IdleChars) changed so that
// a frame reaching the max frame size is emitted at once, as
// node-serialport's inter-byte-timeout parser does with its
// maxBufferSize, instead of being dropped as oversize when its gap comes.
// Other framers are returned unchanged.
func EmitWhenFull(f Framer) Framer {
	if i, ok := f.(idleFramer); ok {
		i.onFull = true
		return i
	}
	return f
}

func (f idleFramer) emitsFull() bool { return f.onFull }

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
	arg, opt, hasOpt := strings.Cut(arg, ":")
	if hasOpt {
		switch opt {
		case "on_full=emit":
			f, err := parseIdle(arg)
			if err != nil {
				return nil, err
			}
			return EmitWhenFull(f), nil
		case "on_full=drop":
		default:
			return nil, fmt.Errorf("unknown option %q: want on_full=emit or on_full=drop", opt)
		}
	}
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
