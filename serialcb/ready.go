package serialcb

import (
	"bytes"
	"time"
)

// readyGate is the Framer returned by Ready. It is a Framer only so that it
// can travel where a Framer goes (PortConfig.Framer, ParseFraming): the
// Cutter takes the gate apart and frames with the inner Framer.
type readyGate struct {
	Framer
	seq  []byte
	next []int // KMP prefix function of seq
}

var _ IdleFlusher = readyGate{}

// Ready returns f behind a gate: a Cutter made for it discards every byte
// (counted as noise) until seq has been seen once since the Cutter was made
// or Reset, which the read loop does at every open of the port; framing
// with f starts right after seq. It is for devices that print a banner or
// boot log before their data. An empty seq returns f.
func Ready(f Framer, seq []byte) Framer {
	if len(seq) == 0 {
		return f
	}
	if g, ok := f.(readyGate); ok {
		f = g.Framer
	}
	seq = bytes.Clone(seq)
	// next[i] is the length of the longest proper prefix of seq[:i+1]
	// that is also its suffix (the KMP prefix function).
	next := make([]int, len(seq))
	for i, k := 1, 0; i < len(seq); i++ {
		for k > 0 && seq[i] != seq[k] {
			k = next[k-1]
		}
		if seq[i] == seq[k] {
			k++
		}
		next[i] = k
	}
	return readyGate{Framer: f, seq: seq, next: next}
}

// IdleGap implements IdleFlusher for callers outside the package that ask
// the Framer: the inner framer's gap, or 0.
func (g readyGate) IdleGap(cfg PortConfig) time.Duration {
	if fl, ok := g.Framer.(IdleFlusher); ok {
		return fl.IdleGap(cfg)
	}
	return 0
}

// innerFramer returns the framer behind a ready gate, or f itself.
func innerFramer(f Framer) Framer {
	if g, ok := f.(readyGate); ok {
		return g.Framer
	}
	return f
}

// passGate looks for the ready sequence in p, carrying a partial match over
// from the previous Feed, and returns how many bytes of p precede the
// framed data: all of p while the sequence is still unseen.
func (c *Cutter) passGate(p []byte) int {
	seq, next := c.gate.seq, c.gate.next
	k := c.gateAt
	for i, b := range p {
		for k > 0 && seq[k] != b {
			k = next[k-1]
		}
		if seq[k] == b {
			k++
		}
		if k == len(seq) {
			c.gateSeen, c.gateAt = true, 0
			return i + 1
		}
	}
	c.gateAt = k
	return len(p)
}
