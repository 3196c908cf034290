package serialcb

import (
	"bytes"
	"slices"
	"testing"
)

// refLines is the obvious, non-streaming model of Lines + Cutter: cut the
// whole input at each delimiter; a frame whose bytes (delimiter included)
// exceed maxFrame is oversize; a trailing part of maxFrame bytes or more is
// being dropped, a shorter one is pending.
func refLines(in, delim []byte, maxFrame int) (frames []string, oversize []int, pending []byte, dropping int) {
	if len(delim) == 0 {
		delim = []byte{'\n'}
	}
	stripCR := string(delim) == "\n"
	maxFrame = max(maxFrame, len(delim)) // as NewCutter does
	for {
		i := bytes.Index(in, delim)
		if i < 0 {
			break
		}
		n := i + len(delim)
		payload := in[:i]
		if stripCR {
			payload = bytes.TrimSuffix(payload, []byte{'\r'})
		}
		switch {
		case n > maxFrame:
			oversize = append(oversize, n)
		case len(payload) > 0:
			frames = append(frames, string(payload))
		}
		in = in[n:]
	}
	if len(in) >= maxFrame {
		return frames, oversize, nil, len(in)
	}
	if len(in) == 0 {
		in = nil
	}
	return frames, oversize, in, 0
}

// countingFramer measures the bytes the Cutter consumed as frames or noise
// (Split results within the max), to check the accounting independently of
// the model.
type countingFramer struct {
	lines
	max      int
	consumed *int
}

func (f countingFramer) count(n int) {
	if n <= f.max {
		*f.consumed += n
	}
}

func (f countingFramer) Split(buf []byte) (int, []byte) {
	n, frame := f.lines.Split(buf)
	f.count(n)
	return n, frame
}

func (f countingFramer) SplitFrom(buf []byte, from int) (int, []byte) {
	n, frame := f.lines.SplitFrom(buf, from)
	f.count(n)
	return n, frame
}

// FuzzLines checks, for any input, delimiter, max size and read pattern:
// the frames equal the model's; frames + dropped + pending bytes account
// for the whole input; no frame is longer than the max or holds the
// delimiter; the buffer never grows past the max.
func FuzzLines(f *testing.F) {
	f.Add([]byte("a\nb\r\n\nc"), []byte("\n"), uint16(8), []byte{3})
	f.Add([]byte("abcdefghij\nok\n"), []byte("\r\n"), uint16(4), []byte{1, 2})
	f.Add([]byte("\x00\xff\x03\x03x\x03"), []byte("\x03"), uint16(2), []byte{})
	f.Fuzz(func(t *testing.T, in, delim []byte, maxRaw uint16, pattern []byte) {
		if len(delim) > 8 {
			delim = delim[:8]
		}
		framer := Lines(delim).(lines)
		maxFrame := max(int(maxRaw%512)+1, len(framer.delim))
		consumed := 0
		c := NewCutter(countingFramer{lines: framer, max: maxFrame, consumed: &consumed}, maxFrame)

		var frames []string
		var oversize []int
		emit := func(b []byte) {
			if len(b) > maxFrame {
				t.Fatalf("frame of %d bytes > max %d", len(b), maxFrame)
			}
			if bytes.Contains(b, framer.delim) {
				t.Fatalf("frame %q contains the delimiter %q", b, framer.delim)
			}
			if len(b) == 0 {
				t.Fatal("empty frame emitted")
			}
			frames = append(frames, string(b))
		}
		// pattern gives the read sizes, cycled; 0 or empty means whole.
		for p, i := in, 0; len(p) > 0; i++ {
			n := len(p)
			if len(pattern) > 0 && pattern[i%len(pattern)] > 0 {
				n = min(int(pattern[i%len(pattern)]), len(p))
			}
			c.Feed(p[:n], emit, func(n int) { oversize = append(oversize, n) })
			p = p[n:]
			if len(c.buf) >= maxFrame || cap(c.buf) > maxFrame {
				t.Fatalf("buffer len %d cap %d, max %d", len(c.buf), cap(c.buf), maxFrame)
			}
		}

		dropped := 0
		for _, n := range oversize {
			if n <= maxFrame {
				t.Fatalf("oversize reported for %d bytes <= max %d", n, maxFrame)
			}
			dropped += n
		}
		pending := len(c.Pending())
		if c.Dropping() > 0 && pending > 0 {
			t.Fatal("both pending and dropping")
		}
		if total := consumed + dropped + c.Dropping() + pending; total != len(in) {
			t.Fatalf("accounting: consumed %d + dropped %d + dropping %d + pending %d = %d, input %d",
				consumed, dropped, c.Dropping(), pending, total, len(in))
		}

		wantFrames, wantOversize, wantPending, wantDropping := refLines(in, delim, maxFrame)
		if !slices.Equal(frames, wantFrames) {
			t.Fatalf("frames %q, model %q", frames, wantFrames)
		}
		if !slices.Equal(oversize, wantOversize) {
			t.Fatalf("oversize %v, model %v", oversize, wantOversize)
		}
		if !bytes.Equal(c.Pending(), wantPending) || c.Dropping() != wantDropping {
			t.Fatalf("pending %q dropping %d, model %q %d", c.Pending(), c.Dropping(), wantPending, wantDropping)
		}
	})
}
