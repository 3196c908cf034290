package serialcb

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// The sync-hunting and delimiter options, each on a small stream fed whole
// and one byte at a time.
func TestFramingOptions(t *testing.T) {
	tests := []struct {
		spec    string
		in      string
		frames  []string
		pending string
	}{
		// len: start= hunts for the sync, the length follows it.
		{spec: "len:u8:start=AA55", in: "xx\xaa\x55\x02hi\xaa\xaa\x55\x01z", frames: []string{"\xaa\x55\x02hi", "\xaa\x55\x01z"}},
		// An impossible length (over max=) resumes the hunt one byte after the sync.
		{spec: "len:u8:start=AA:max=4", in: "\xaa\x09\xaa\x02ok\xaa\x01", frames: []string{"\xaa\x02ok"}, pending: "\xaa\x01"},
		{spec: "len:u8:start=AA:max=8", in: "\xaa\x05\xaa\x01z\x00\x00\x00", frames: []string{"\xaa\x05\xaa\x01z\x00\x00"}},
		// offset counts from the frame start, sync included.
		{spec: "len:u8:start=7E:offset=2", in: "\x7e\x01\x02ab", frames: []string{"\x7e\x01\x02ab"}},
		// ccTalk: dest, len, src, header, data, checksum: 3 bytes after the field beyond len.
		{spec: "len:u8:offset=1:adjust=3", in: "\x02\x00\x01\xfe\xff\x01\x02\x02\x00\x41\x42\x7a", frames: []string{"\x02\x00\x01\xfe\xff", "\x01\x02\x02\x00\x41\x42\x7a"}},
		// CCSDS: the packet data length is one less than the data field.
		{spec: "len:u16be:offset=4:adjust=1", in: "\x08\x01\xc0\x00\x00\x02abc\x08\x01\xc0\x01\x00\x00z", frames: []string{"\x08\x01\xc0\x00\x00\x02abc", "\x08\x01\xc0\x01\x00\x00z"}},
		// between: multi-byte delimiters; a new start restarts the frame.
		{spec: "between:3C3C:3E3E", in: "n<<a>b>><<x<<yz>><<>>", frames: []string{"a>b", "yz"}},
		{spec: "between:3C3C:3E3E:include", in: "n<<a>b>><<>>", frames: []string{"<<a>b>>", "<<>>"}},
		{spec: "between:0x7E:7E", in: "\x7eab\x7e\x7ecd\x7e", frames: []string{"ab", "cd"}},
		{spec: "between:0D0A:0D0A", in: "\r\nA\r\n\r\nB\r\nC", frames: []string{"A", "B"}, pending: "C"},
		// lines with include keeps the delimiter.
		{spec: `lines:\r\n:include`, in: "a\r\nb\nc\r\n\r\n", frames: []string{"a\r\n", "b\nc\r\n"}},
		{spec: `lines:include`, in: "a\r\nb\n\n", frames: []string{"a\r\n", "b\n"}},
		{spec: `lines:;:include:flush=1s`, in: "a;b", frames: []string{"a;"}, pending: "b"},
		// ready= discards everything up to and including the sequence.
		{spec: "lines:ready=52454144590A", in: "boot 1\nboot 2\nREADY\nv=1\nv=2\n", frames: []string{"v=1", "v=2"}},
		{spec: "slip:ready=C0C0", in: "\xc0x\xc0\xc0\xc0ab\xc0", frames: []string{"ab"}},
		{spec: "fixed:2:ready=0A0B", in: "\x0a\x0a\x0bxyzw", frames: []string{"xy", "zw"}},
		{spec: "lines:ready=414142", in: "AAAAB\n1\n", frames: []string{"1"}}, // overlapping partial matches
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			for _, bytewise := range []bool{false, true} {
				f, err := ParseFraming(tc.spec)
				if err != nil {
					t.Fatal(err)
				}
				var chunks [][]byte
				if bytewise {
					for i := range len(tc.in) {
						chunks = append(chunks, []byte(tc.in[i:i+1]))
					}
				} else {
					chunks = [][]byte{[]byte(tc.in)}
				}
				frames, oversize, c := cutAll(f, 64, chunks...)
				if !slices.Equal(frames, tc.frames) || len(oversize) > 0 || string(c.Pending()) != tc.pending {
					t.Fatalf("bytewise=%v: frames %q oversize %v pending %q, want %q pending %q",
						bytewise, frames, oversize, c.Pending(), tc.frames, tc.pending)
				}
			}
		})
	}
}

func TestFramingOptionErrors(t *testing.T) {
	for spec, want := range map[string]string{
		"len:u8:start=":              "start=",
		"len:u8:start=XYZ":           "start=",
		"len:u8:start=AA55:offset=1": "start bytes must come before",
		"len:u8:adjust=x":            "adjust=",
		"len:u8:max=0":               "max=",
		"len:u8:bogus":               "start=HEX, adjust=±N or max=N",
		"between":                    "want between:STARTHEX:ENDHEX",
		"between:AA":                 "want between:STARTHEX:ENDHEX",
		"between:AA:BB:x":            "want between:STARTHEX:ENDHEX",
		"between:AZ:BB":              "start",
		"between:AA:":                "end",
		"idle:5ms:on_full=drop2":     "on_full",
		"idle:5ms:bogus":             "on_full",
		"slip:ready=":                "ready=",
		"slip:ready=0G":              "ready=",
	} {
		_, err := ParseFraming(spec)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want it to contain %q", spec, err, want)
		}
	}
}

// idle on_full=emit: a frame reaching the max is emitted, not dropped.
func TestIdleOnFullEmit(t *testing.T) {
	for _, spec := range []string{"idle:5ms:on_full=emit", "idle:3.5c:on_full=emit"} {
		f, err := ParseFraming(spec)
		if err != nil {
			t.Fatal(err)
		}
		for _, chunk := range []int{1, 3, 10, 100} {
			c := NewCutter(f, 8)
			var frames []string
			in := []byte("0123456789abcdefXYZ")
			for p := in; len(p) > 0; {
				n := min(chunk, len(p))
				c.Feed(p[:n], func(b []byte) { frames = append(frames, string(b)) }, func(n int) { t.Fatalf("oversize %d", n) })
				p = p[n:]
			}
			c.Flush(func(b []byte) { frames = append(frames, string(b)) }, nil)
			if want := []string{"01234567", "89abcdef", "XYZ"}; !slices.Equal(frames, want) {
				t.Fatalf("%s in %d-byte reads: %q, want %q", spec, chunk, frames, want)
			}
		}
	}
	// Without on_full=emit the frame is dropped as oversize.
	f, _ := ParseFraming("idle:5ms")
	frames, oversize, _ := cutAll(f, 8, []byte("0123456789"))
	if len(frames) != 0 || len(oversize) != 0 {
		t.Fatalf("frames %q oversize %v before the gap", frames, oversize)
	}
}

var lenSyncSpecs = []string{"len:u8:start=AA", "len:u16le:start=B562:offset=4:max=600", "len:u8:start=AA55:adjust=2",
	"len:u8:offset=1:adjust=3", "len:u16be:offset=4:adjust=1", "len:u8:adjust=-2:inclusive:max=40", "len:u8:start=7E:max=3"}

// FuzzLenSync: the len options keep the framing invariants and the same
// frames however reads cut the stream.
func FuzzLenSync(f *testing.F) {
	f.Add([]byte("xx\xaa\x55\x02hi\xaa\xaa\x55\x01z"), uint8(2), uint16(8), []byte{1})
	f.Add([]byte("\x02\x00\x01\xfe\xff\x01\x40\x02\x00"), uint8(3), uint16(4), []byte{3})
	f.Add([]byte("\x08\x01\xc0\x00\x00\x02abc\x08\x01\xc0\x01\xff\xff"), uint8(4), uint16(6), []byte{2, 5})
	f.Fuzz(func(t *testing.T, in []byte, which uint8, maxRaw uint16, pattern []byte) {
		fuzzFramer(t, lenSyncSpecs[int(which)%len(lenSyncSpecs)], in, maxRaw, pattern, true)
	})
}

var betweenSpecs = []string{"between:3C3C:3E3E", "between:3C3C:3E3E:include", "between:7E:7E", "between:0D0A:0D0A:include",
	"between:02:0304", "between:AA55AA:55"}

func FuzzBetween(f *testing.F) {
	f.Add([]byte("n<<a>b>><<x<<yz>><<>>"), uint8(0), uint16(8), []byte{1})
	f.Add([]byte("\x7eab\x7e\x7ecd\x7e\x7e"), uint8(2), uint16(3), []byte{2})
	f.Add([]byte("\x02a\x03\x04\x02\x03\x02\x03\x03\x04"), uint8(4), uint16(4), []byte{1, 3})
	f.Fuzz(func(t *testing.T, in []byte, which uint8, maxRaw uint16, pattern []byte) {
		fuzzFramer(t, betweenSpecs[int(which)%len(betweenSpecs)], in, maxRaw, pattern, true)
	})
}

func FuzzLinesInclude(f *testing.F) {
	f.Add([]byte("a\r\nb\nc\r\n\r\n"), false, uint16(8), []byte{1})
	f.Add([]byte("a;;b;c"), true, uint16(3), []byte{2})
	f.Fuzz(func(t *testing.T, in []byte, semi bool, maxRaw uint16, pattern []byte) {
		spec := "lines:include"
		if semi {
			spec = `lines:;\r:include`
		}
		fuzzFramer(t, spec, in, maxRaw, pattern, true)
	})
}

// FuzzReady: behind a ready gate, the frames are those of the bare framer
// fed the bytes after the first occurrence of the sequence, however reads
// cut the stream; every byte before it is noise.
func FuzzReady(f *testing.F) {
	f.Add([]byte("boot\nREADY\nv=1\n"), []byte("READY\n"), []byte{1})
	f.Add([]byte("AAAABAAB\n1\n"), []byte("AAB"), []byte{2, 1})
	f.Add([]byte("xyz"), []byte("q"), []byte{})
	f.Fuzz(func(t *testing.T, in, seq, pattern []byte) {
		if len(seq) == 0 || len(seq) > 8 {
			return
		}
		var want []string
		var wantNoise uint64
		if i := bytes.Index(in, seq); i >= 0 {
			rest := in[i+len(seq):]
			want, _, _ = cutAll(Lines(nil), 64, bytes.Clone(rest))
			wantNoise = uint64(i + len(seq))
		} else {
			wantNoise = uint64(len(in))
		}
		c := NewCutter(Ready(Lines(nil), seq), 64)
		var got []string
		for p, i := in, 0; len(p) > 0; i++ {
			n := len(p)
			if len(pattern) > 0 && pattern[i%len(pattern)] > 0 {
				n = min(int(pattern[i%len(pattern)]), len(p))
			}
			c.Feed(bytes.Clone(p[:n]), func(b []byte) { got = append(got, string(b)) }, nil)
			p = p[n:]
		}
		if !slices.Equal(got, want) {
			t.Fatalf("frames %q, want %q", got, want)
		}
		if c.Noise() < wantNoise {
			t.Fatalf("noise %d, want at least %d", c.Noise(), wantNoise)
		}
		c.Reset() // a reopen closes the gate again
		got = nil
		c.Feed(bytes.Clone(in), func(b []byte) { got = append(got, string(b)) }, nil)
		if !slices.Equal(got, want) {
			t.Fatalf("after Reset: frames %q, want %q", got, want)
		}
	})
}

// FuzzIdleOnFull: with on_full=emit nothing is ever oversize: the frames
// and what is held add up to the input, and every frame but the flushed
// last is exactly the max.
func FuzzIdleOnFull(f *testing.F) {
	f.Add([]byte("0123456789abcdefXYZ"), uint16(8), []byte{3})
	f.Fuzz(func(t *testing.T, in []byte, maxRaw uint16, pattern []byte) {
		maxFrame := int(maxRaw%512) + 1
		c := NewCutter(EmitWhenFull(Idle(minGap)), maxFrame)
		var frames []string
		emit := func(b []byte) { frames = append(frames, string(b)) }
		for p, i := in, 0; len(p) > 0; i++ {
			n := len(p)
			if len(pattern) > 0 && pattern[i%len(pattern)] > 0 {
				n = min(int(pattern[i%len(pattern)]), len(p))
			}
			c.Feed(p[:n], emit, func(n int) { t.Fatalf("oversize %d", n) })
			p = p[n:]
		}
		for _, fr := range frames {
			if len(fr) != maxFrame {
				t.Fatalf("frame of %d bytes, max %d", len(fr), maxFrame)
			}
		}
		c.Flush(emit, nil)
		if got := strings.Join(frames, ""); got != string(in) {
			t.Fatalf("frames %q do not add up to the input", frames)
		}
	})
}

// The new framers cut without allocating once the Cutter's buffer exists,
// and the gnss fields are appended in place.
func TestNewFramersNoAllocs(t *testing.T) {
	ubx := ubxPacket(1, 7, benchPayload(40))
	gnssChunk := append(append([]byte(nmeaSentence("GPGGA,1,2")+"\r\n"), ubx...), rtcmPacket([]byte{0x3E, 0xD0, 1})...)
	gnssChunk = append(gnssChunk, "$GPRMC,par"...)
	for _, tc := range []struct {
		spec  string
		chunk []byte
	}{
		{"gnss", gnssChunk},
		{"between:3C3C:3E3E", []byte("x<<abc>><<def>><<gh")},
		{"len:u8:start=AA55:max=64:adjust=1", []byte("z\xaa\x55\x02abc\xaa\x55\x01")},
		{"lines:\\r\\n:include:ready=0A", []byte("\nab\r\ncd\r\nef")},
	} {
		f, err := ParseFraming(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		c := NewCutter(f, 1024)
		count := 0
		emit := func([]byte) { count++ }
		c.Feed(bytes.Clone(tc.chunk), emit, nil) // the first Feed allocates the buffer
		in := bytes.Clone(tc.chunk)
		if allocs := testing.AllocsPerRun(100, func() {
			c.Reset()
			copy(in, tc.chunk)
			c.Feed(in, emit, nil)
		}); allocs != 0 {
			t.Errorf("%s: Feed allocates %v times per call", tc.spec, allocs)
		}
		if count == 0 {
			t.Errorf("%s: no frames", tc.spec)
		}
	}
	dst := make([]byte, 0, 64)
	pk, g := ubxPacket(1, 7, nil), GNSS()
	if allocs := testing.AllocsPerRun(100, func() { dst = AppendFields(g, dst[:0], pk) }); allocs != 0 {
		t.Errorf("AppendFields allocates %v times", allocs)
	}
}
