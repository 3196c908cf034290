package serialcb

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// slipEncode and cobsEncode are reference encoders for round-trip tests.
func slipEncode(dst, p []byte) []byte {
	dst = append(dst, slipEnd)
	for _, c := range p {
		switch c {
		case slipEnd:
			dst = append(dst, slipEsc, slipEscEnd)
		case slipEsc:
			dst = append(dst, slipEsc, slipEscEsc)
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, slipEnd)
}

func cobsEncode(dst, p []byte) []byte {
	code := len(dst)
	dst = append(dst, 0)
	for _, c := range p {
		if c == 0 {
			dst[code] = byte(len(dst) - code)
			code = len(dst)
			dst = append(dst, 0)
			continue
		}
		dst = append(dst, c)
		if len(dst)-code == 0xFF {
			dst[code] = 0xFF
			code = len(dst)
			dst = append(dst, 0)
		}
	}
	dst[code] = byte(len(dst) - code)
	return append(dst, 0)
}

func stxEncode(dst, p []byte, esc byte) []byte {
	dst = append(dst, stxByte)
	for _, c := range p {
		if c == stxByte || c == etxByte || c == esc {
			dst = append(dst, esc)
		}
		dst = append(dst, c)
	}
	return append(dst, etxByte)
}

// TestFramerRoundTrip encodes random payloads, feeds the stream in random
// read sizes and expects the payloads back.
func TestFramerRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	encoders := map[string]func(dst, p []byte) []byte{
		"slip":             slipEncode,
		"cobs":             cobsEncode,
		"stx-etx:esc=0x10": func(dst, p []byte) []byte { return stxEncode(dst, p, 0x10) },
		"len:u16le": func(dst, p []byte) []byte {
			return append(binary.LittleEndian.AppendUint16(dst, uint16(len(p))), p...)
		},
	}
	for spec, enc := range encoders {
		t.Run(spec, func(t *testing.T) {
			f, err := ParseFraming(spec)
			if err != nil {
				t.Fatal(err)
			}
			var stream []byte
			var want []string
			for range 500 {
				p := make([]byte, 1+rng.IntN(600))
				for i := range p {
					p[i] = byte(rng.IntN(8)) // plenty of 0x00, 0x02, 0x03
					if rng.IntN(4) == 0 {
						p[i] = []byte{0xC0, 0xDB, 0x10, 0xFF}[rng.IntN(4)]
					}
				}
				stream = enc(stream, p)
				if spec == "len:u16le" {
					p = stream[len(stream)-len(p)-2:]
				}
				want = append(want, string(p))
			}
			var got []string
			c := NewCutter(f, 2048)
			for p := stream; len(p) > 0; {
				n := min(1+rng.IntN(300), len(p))
				c.Feed(bytes.Clone(p[:n]), func(b []byte) { got = append(got, string(b)) },
					func(n int) { t.Fatalf("oversize %d", n) })
				p = p[n:]
			}
			if !slices.Equal(got, want) {
				t.Fatalf("got %d frames, want %d; first difference at %d", len(got), len(want),
					slices.IndexFunc(got, func(s string) bool { return !slices.Contains(want, s) }))
			}
			if c.Pending() != nil {
				t.Fatalf("pending %q", c.Pending())
			}
		})
	}
}

func TestParseFramingSpecs(t *testing.T) {
	tests := []struct {
		spec    string
		in      string
		frames  []string
		wantErr string
	}{
		{spec: "fixed:3", in: "abcdefg", frames: []string{"abc", "def"}},
		{spec: "len:u8", in: "\x02ab\x00\x01c", frames: []string{"\x02ab", "\x00", "\x01c"}},
		{spec: "len:u16le", in: "\x01\x00a", frames: []string{"\x01\x00a"}},
		{spec: "len:u32le:inclusive", in: "\x05\x00\x00\x00a", frames: []string{"\x05\x00\x00\x00a"}},
		{spec: "len:u8:offset=2", in: "AB\x01cAB\x00", frames: []string{"AB\x01c", "AB\x00"}},
		{spec: "stx-etx", in: "n\x02a\x03\x02b\x03", frames: []string{"a", "b"}},
		{spec: "stx-etx:esc=16", in: "\x02\x10\x03\x03", frames: []string{"\x03"}},
		{spec: "slip", in: "\xc0a\xdb\xdc\xc0", frames: []string{"a\xc0"}},
		{spec: "cobs", in: "\x03ab\x00", frames: []string{"ab"}},
		{spec: `regex:\d+;`, in: "x12;y3;", frames: []string{"12;", "3;"}}, // "3;" cannot grow: final at once
		{spec: `regex:\d+`, in: "x12;y3", frames: []string{"12"}},          // "3" may grow
		{spec: `regex:\d+;`, in: "x12;y3;.", frames: []string{"12;", "3;"}},
		{spec: `regex:a:b`, in: "a:b.", frames: []string{"a:b"}},
		{spec: "fixed", wantErr: "want fixed:N"},
		{spec: "fixed:0", wantErr: "want fixed:N"},
		{spec: "len", wantErr: "want len:"},
		{spec: "len:u24", wantErr: `length type "u24"`},
		{spec: "len:u8:offset=-1", wantErr: "offset"},
		{spec: "len:u8:foo", wantErr: `unknown option "foo"`},
		{spec: "stx-etx:esc=0x100", wantErr: "esc="},
		{spec: "stx-etx:esc=0x02", wantErr: "cannot be STX"},
		{spec: "stx-etx:x", wantErr: "unknown option"},
		{spec: "slip:1", wantErr: "no arguments"},
		{spec: "regex:", wantErr: "want regex:EXPR"},
		{spec: "regex:(", wantErr: "missing closing"},
		{spec: "regex:a*", wantErr: "empty string"},
		{spec: "nope", wantErr: `"slip", "cobs", "gnss"`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			f, err := ParseFraming(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			frames, _, _ := cutAll(f, 1024, []byte(tt.in))
			if !slices.Equal(frames, tt.frames) {
				t.Fatalf("frames = %q, want %q", frames, tt.frames)
			}
		})
	}
}

// accounting wraps a Framer to count the bytes its Split calls consumed as
// frames or noise within the max (the Cutter drops longer ones as oversize
// and reports them). It forwards boundaryLen so the Cutter's max is the
// same as for the bare Framer, and hides resumer (an optimisation only).
type accounting struct {
	f        Framer
	max      int
	consumed *int
}

func (a accounting) Split(buf []byte) (int, []byte) {
	n, frame := a.f.Split(buf)
	if n > 0 && n <= a.max && n <= len(buf) {
		*a.consumed += n
	}
	return n, frame
}

func (a accounting) Skip(buf []byte) (int, bool) { return a.f.Skip(buf) }

func (a accounting) boundaryLen() int {
	if b, ok := a.f.(boundaryLen); ok {
		return b.boundaryLen()
	}
	return 0
}

// fuzzFramer checks the framing invariants for one input: consumed (frames
// and noise) + dropped (oversize) + dropping + pending bytes == input; no
// frame over the max; the buffer within the max; and, when
// boundaryIndependent, the same transcript however the reads cut the input.
func fuzzFramer(t *testing.T, spec string, in []byte, maxRaw uint16, pattern []byte, boundaryIndependent bool) {
	t.Helper()
	f, err := ParseFraming(spec)
	if err != nil {
		t.Fatal(err)
	}
	maxFrame := int(maxRaw%512) + 1
	if b, ok := f.(boundaryLen); ok {
		maxFrame = max(maxFrame, b.boundaryLen())
	}
	consumed := 0
	c := NewCutter(accounting{f: f, max: maxFrame, consumed: &consumed}, maxFrame)
	var chunks [][]byte
	for p, i := in, 0; len(p) > 0; i++ {
		n := len(p)
		if len(pattern) > 0 && pattern[i%len(pattern)] > 0 {
			n = min(int(pattern[i%len(pattern)]), len(p))
		}
		chunks = append(chunks, p[:n])
		p = p[n:]
	}
	dropped := 0
	for _, p := range cloneChunks(chunks) {
		c.Feed(p, func(b []byte) {
			if len(b) > maxFrame {
				t.Fatalf("frame of %d bytes > max %d", len(b), maxFrame)
			}
		}, func(n int) {
			// A frame skipped up to the next frame start may have been
			// abandoned at exactly the max, or (regex) cut short earlier.
			if n <= 0 {
				t.Fatalf("oversize reported for %d bytes", n)
			}
			dropped += n
		})
		if len(c.buf) >= maxFrame || cap(c.buf) > maxFrame {
			t.Fatalf("buffer len %d cap %d, max %d", len(c.buf), cap(c.buf), maxFrame)
		}
	}
	pending := len(c.Pending())
	if total := consumed + dropped + c.Dropping() + pending; total != len(in) {
		t.Fatalf("accounting: consumed %d + dropped %d + dropping %d + pending %d = %d, input %d",
			consumed, dropped, c.Dropping(), pending, total, len(in))
	}
	if boundaryIndependent {
		whole := transcript(f, maxFrame, [][]byte{bytes.Clone(in)})
		if got := transcript(f, maxFrame, cloneChunks(chunks)); got != whole {
			t.Fatalf("reads %v:\n%s\nwhole input:\n%s", pattern, got, whole)
		}
	}
}

func FuzzFixed(f *testing.F) {
	f.Add([]byte("0123456789"), uint8(3), uint16(8), []byte{2})
	f.Fuzz(func(t *testing.T, in []byte, n uint8, maxRaw uint16, pattern []byte) {
		fuzzFramer(t, fmt.Sprintf("fixed:%d", int(n)%64+1), in, maxRaw, pattern, true)
	})
}

var lenSpecs = []string{"len:u8", "len:u16be", "len:u16le:inclusive", "len:u32be", "len:u32le:offset=2",
	"len:u8:offset=1:inclusive", "len:u16be:offset=3:inclusive"}

func FuzzLen(f *testing.F) {
	f.Add([]byte("\x00\x03abc\x00\x28aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\x00\x01z"), uint8(1), uint16(16), []byte{3})
	f.Add([]byte("\xff\xff\xff\xff\x00\x00\x00\x02hi"), uint8(3), uint16(8), []byte{1})
	f.Add([]byte("AB\x01\x05xyzAB\x00\x00"), uint8(6), uint16(4), []byte{})
	f.Fuzz(func(t *testing.T, in []byte, which uint8, maxRaw uint16, pattern []byte) {
		fuzzFramer(t, lenSpecs[int(which)%len(lenSpecs)], in, maxRaw, pattern, true)
	})
}

func FuzzStxEtx(f *testing.F) {
	f.Add([]byte("x\x02hello\x03\x02a\x02b\x03\x02\x03"), false, uint16(4), []byte{1})
	f.Add([]byte("\x02a\x10\x02\x10\x10\x03\x02\x10\x03\x03"), true, uint16(3), []byte{2, 1})
	f.Fuzz(func(t *testing.T, in []byte, esc bool, maxRaw uint16, pattern []byte) {
		spec := "stx-etx"
		if esc {
			spec = "stx-etx:esc=0x10"
		}
		fuzzFramer(t, spec, in, maxRaw, pattern, true)
	})
}

func FuzzSLIP(f *testing.F) {
	f.Add([]byte("\xc0hello\xc0a\xdb\xdcb\xdb\xdd\xc0\xc0x\xdb"), uint16(4), []byte{1})
	f.Fuzz(func(t *testing.T, in []byte, maxRaw uint16, pattern []byte) {
		fuzzFramer(t, "slip", in, maxRaw, pattern, true)
	})
}

func FuzzCOBS(f *testing.F) {
	f.Add([]byte("\x06hello\x00\x01\x01\x00\x05\x11\x00\x03ab"), uint16(4), []byte{1})
	f.Fuzz(func(t *testing.T, in []byte, maxRaw uint16, pattern []byte) {
		fuzzFramer(t, "cobs", in, maxRaw, pattern, true)
	})
}

// FuzzRegex checks a pattern with a literal prefix, whose framing does not
// depend on read boundaries, and one without, which only has to keep the
// accounting and the bounds.
func FuzzRegex(f *testing.F) {
	f.Add([]byte("$GPGGA,1*00\r\nxx$GP$GPRMC,2*11\r\n$GPZ"), false, uint16(16), []byte{1})
	f.Add([]byte("a12;b;345;6"), true, uint16(3), []byte{2})
	f.Fuzz(func(t *testing.T, in []byte, noPrefix bool, maxRaw uint16, pattern []byte) {
		if noPrefix {
			fuzzFramer(t, `regex:[0-9]+;`, in, maxRaw, pattern, false)
			return
		}
		fuzzFramer(t, `regex:\$GP[A-Z]{3},[^\r\n]*\r\n`, in, maxRaw, pattern, true)
	})
}
