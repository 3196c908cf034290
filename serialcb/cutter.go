package serialcb

// Cutter applies a Framer to a byte stream and enforces the max frame size.
// It keeps the partial frame between Feeds in one buffer of maxFrame bytes,
// allocated on first use and reused: memory stays bounded whatever the
// input, and steady-state cutting allocates nothing.
//
// MaxFrame bounds the bytes one frame takes in the stream, delimiter
// included: a frame whose boundary has not been found within maxFrame bytes
// is oversize. It is then skipped up to the next boundary, reported once
// with the total dropped, and cutting carries on with the next frame.
//
// A Cutter is not safe for concurrent use; each read loop owns one.
type Cutter struct {
	f    Framer
	res  resumer // f's optional resume capability, or nil
	max  int
	full int // with a fullEmitter framer: emit a frame held this long; else 0

	// gate is the ready sequence bytes must pass before framing starts
	// (see Ready), or nil; gateSeen tells it was seen since the last Reset
	// and gateAt how much of it the latest bytes matched.
	gate     *readyGate
	gateSeen bool
	gateAt   int

	// buf holds the partial frame (or, while skipping, the few bytes Skip
	// kept) between Feeds; len(buf) < max after every Feed, cap(buf) == max.
	buf []byte
	// scanned is how many bytes at the start of buf Split already returned
	// 0 on, so a resumer need not search them again.
	scanned  int
	skipping bool   // inside an oversize frame, dropping up to the next boundary
	dropped  int    // bytes of that oversize frame dropped so far
	noise    uint64 // bytes dropped between frames, in total
}

// NewCutter returns a Cutter for f. A maxFrame below 1, or below the length
// of f's delimiter (for Lines), is raised to that: a smaller limit could not
// hold even an empty frame. For the idle framer, whose boundary (silence)
// takes no bytes, a frame of exactly maxFrame bytes is held and emitted.
func NewCutter(f Framer, maxFrame int) *Cutter {
	c := &Cutter{max: max(maxFrame, 1)}
	if g, ok := f.(readyGate); ok {
		c.gate = &g
		f = g.Framer
	}
	c.f = f
	c.res, _ = f.(resumer)
	if b, ok := f.(boundaryLen); ok {
		c.max = max(c.max, b.boundaryLen())
	}
	if _, ok := f.(gapBounded); ok {
		c.max++ // the buffer holds < max bytes: let it hold maxFrame
	}
	if fe, ok := f.(fullEmitter); ok && fe.emitsFull() {
		c.full = c.max - 1
	}
	return c
}

// Feed consumes p; emit is called for each complete frame (payload valid
// only during the call); oversize is called with the number of bytes dropped
// each time an oversize frame is skipped (once per oversize frame, after
// resync, with the total dropped). Either callback may be nil.
//
// Whole frames found in p are passed to emit straight from p, without a
// copy; only the trailing partial frame is copied into the Cutter's buffer.
// Framers that unescape (slip, cobs, stx-etx with esc) decode in place, so
// Feed may rewrite the bytes of p it consumed: pass a copy if p is needed
// afterwards.
func (c *Cutter) Feed(p []byte, emit func(payload []byte), oversize func(dropped int)) {
	if c.gate != nil && !c.gateSeen {
		k := c.passGate(p)
		c.noise += uint64(k)
		p = p[k:]
	}
	for len(p) > 0 {
		if len(c.buf) == 0 {
			k := c.cut(p, emit, oversize)
			if rest := p[k:]; len(rest) > 0 {
				if c.buf == nil {
					c.buf = make([]byte, 0, c.max)
				}
				c.buf = append(c.buf, rest...) // fits: cut leaves < max bytes
			}
			return
		}
		// A partial frame is held: top it up to at most max bytes, cut, and
		// shift what is left down to the start of the buffer.
		take := min(c.max-len(c.buf), len(p))
		c.buf = append(c.buf, p[:take]...)
		p = p[take:]
		k := c.cut(c.buf, emit, oversize)
		c.buf = c.buf[:copy(c.buf, c.buf[k:])]
	}
}

// cut frames w and returns how many bytes of it were consumed. It leaves
// fewer than max bytes unconsumed, so the rest always fits in buf. w is
// either the caller's p or c.buf; c.scanned refers to the frame at w[0].
func (c *Cutter) cut(w []byte, emit func([]byte), oversize func(int)) int {
	off := 0
	for off < len(w) {
		rest := w[off:]
		if c.skipping {
			n, synced := c.f.Skip(rest)
			n = min(max(n, 0), len(rest)) // a faulty Framer must not break bounds
			if !synced && len(rest)-n >= c.max {
				n = len(rest) // Skip kept too much: drop it all
			}
			off += n
			c.dropped += n
			if !synced {
				break
			}
			c.skipping = false
			c.reportOversize(oversize, c.dropped)
			c.dropped = 0
			continue
		}
		// The framer sees at most max bytes, as it would had the input
		// come in small reads through buf: what is a frame, noise or
		// oversize must not depend on how the input was read.
		window := rest[:min(len(rest), c.max)]
		var n int
		var frame []byte
		if c.res != nil && c.scanned > 0 {
			n, frame = c.res.SplitFrom(window, c.scanned)
		} else {
			n, frame = c.f.Split(window)
		}
		if n <= 0 {
			if c.full > 0 && len(window) >= c.full {
				n, frame = c.full, window[:c.full:c.full] // full: a frame as it stands
			} else if len(window) >= c.max {
				c.skipping = true // no boundary within max bytes
				c.scanned = 0
				continue
			} else {
				c.scanned = len(rest)
				break
			}
		}
		n = min(n, len(rest))
		off += n
		c.scanned = 0
		switch {
		case n > c.max:
			// A framer that returns more than it was shown (a faulty one):
			// drop it as oversize.
			c.reportOversize(oversize, n)
		case frame == nil:
			c.noise += uint64(n)
		case emit != nil:
			emit(frame)
		}
	}
	return off
}

func (c *Cutter) reportOversize(oversize func(int), n int) {
	if oversize != nil {
		oversize(n)
	}
}

// Flush ends the frame in progress where the stream stands, as a boundary
// would: the read loop calls it when the line has been silent for the gap
// of an IdleFlusher framer. A pending partial frame goes to emit (payload
// valid only during the call; a delimiter framer may trim it, as Lines
// trims a trailing '\r') and Flush returns true. An oversize frame being
// skipped ends there instead: oversize gets its total dropped, as at a
// boundary, and cutting resynchronises. With nothing held Flush does
// nothing. Either callback may be nil.
func (c *Cutter) Flush(emit func(payload []byte), oversize func(dropped int)) bool {
	if c.skipping {
		n := c.dropped + len(c.buf)
		c.Reset()
		c.reportOversize(oversize, n)
		return false
	}
	if len(c.buf) == 0 {
		return false
	}
	p := c.buf
	held := len(p)
	c.buf = c.buf[:0]
	c.scanned = 0
	if fin, ok := c.f.(finisher); ok {
		p = fin.finish(p)
	}
	if len(p) == 0 {
		c.noise += uint64(held)
		return false // noise, such as a lone '\r'
	}
	if emit != nil {
		emit(p)
	}
	return true
}

// Busy reports whether a frame is in progress: a partial frame is held
// (Pending) or an oversize one is being skipped (Dropping). The read loop
// arms its idle timeout only while it is.
func (c *Cutter) Busy() bool { return len(c.buf) > 0 || c.skipping }

// Pending returns the partial frame held, for a flush or a log line at stop;
// it is nil while an oversize frame is being skipped (see Dropping). The
// slice is valid until the next Feed or Reset.
func (c *Cutter) Pending() []byte {
	if c.skipping || len(c.buf) == 0 {
		return nil
	}
	return c.buf
}

// Dropping returns how many bytes of an oversize frame have been skipped
// while its end (the next boundary) has not arrived yet; 0 when not skipping.
// It lets a caller that stops mid-frame account for them.
func (c *Cutter) Dropping() int {
	if !c.skipping {
		return 0
	}
	return c.dropped + len(c.buf)
}

// Noise returns how many bytes were dropped between frames since the
// Cutter was made: bytes that started no frame (garbage, a GNSS packet
// failing its checksum), empty lines, malformed escaped frames. Oversize
// frames are not noise: they are reported to Feed's oversize callback.
func (c *Cutter) Noise() uint64 { return c.noise }

// Reset discards the partial frame and any skip in progress, keeping the
// buffer: a reader calls it when the port is reopened, so bytes from before
// a disconnect are never glued to bytes after it.
func (c *Cutter) Reset() {
	c.gateSeen, c.gateAt = false, 0
	c.buf = c.buf[:0]
	c.scanned = 0
	c.skipping = false
	c.dropped = 0
}

// completer is an optional Framer capability: complete returns the frame
// at the start of buf (a prefix of it) when Split held it back only because
// more bytes might still extend it (a regex match), or nil.
type completer interface {
	complete(buf []byte) []byte
}

// FlushComplete emits the frame the pending bytes begin with when it is
// whole and only waited for bytes that might extend it (see Regex), and
// reports whether it did; the bytes after it stay pending. A true partial
// frame stays pending. The read loop calls it at stop, so such a frame is
// delivered, never dropped.
func (c *Cutter) FlushComplete(emit func(payload []byte)) bool {
	if c.skipping || len(c.buf) == 0 {
		return false
	}
	cf, ok := c.f.(completer)
	if !ok {
		return false
	}
	p := cf.complete(c.buf)
	if len(p) == 0 {
		return false
	}
	if emit != nil {
		emit(p)
	}
	c.buf = c.buf[:copy(c.buf, c.buf[len(p):])]
	c.scanned = 0
	return true
}
