package serialcb

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// cutAll feeds chunks to a fresh Cutter and collects what comes out.
func cutAll(f Framer, maxFrame int, chunks ...[]byte) (frames []string, oversize []int, c *Cutter) {
	c = NewCutter(f, maxFrame)
	for _, p := range chunks {
		c.Feed(p,
			func(b []byte) { frames = append(frames, string(b)) },
			func(n int) { oversize = append(oversize, n) })
	}
	return frames, oversize, c
}

func TestCutterLines(t *testing.T) {
	tests := []struct {
		name     string
		delim    string
		max      int
		in       []string // chunks, fed in order
		frames   []string
		oversize []int
		pending  string
		dropping int
	}{
		{name: "one line", in: []string{"abc\n"}, frames: []string{"abc"}},
		{name: "no delimiter yet", in: []string{"abc"}, pending: "abc"},
		{name: "split across feeds", in: []string{"ab", "c\nde", "f\n"}, frames: []string{"abc", "def"}},
		{name: "crlf stripped with default", in: []string{"a\r\nb\r", "\nc\n"}, frames: []string{"a", "b", "c"}},
		{name: "lone cr kept", in: []string{"a\rb\n"}, frames: []string{"a\rb"}},
		{name: "only last cr stripped", in: []string{"a\r\r\n"}, frames: []string{"a\r"}},
		{name: "empty lines skipped", in: []string{"\n\r\n\na\n\n"}, frames: []string{"a"}},
		{name: "explicit crlf", delim: "\r\n", in: []string{"a\nb\r", "\nc\r\n"}, frames: []string{"a\nb", "c"}},
		{name: "multi-byte delimiter split across feeds", delim: "<END>", in: []string{"x<E", "N", "D>y<END>"}, frames: []string{"x", "y"}},
		{name: "etx", delim: "\x03", in: []string{"\x02a\x03\x02b\x03"}, frames: []string{"\x02a", "\x02b"}},
		{name: "nul and invalid utf-8 are payload", in: []string{"\x00\xff\xfe\n"}, frames: []string{"\x00\xff\xfe"}},
		{name: "frame exactly max", max: 4, in: []string{"abc\n"}, frames: []string{"abc"}},
		{name: "frame exactly max bytewise", max: 4, in: []string{"a", "b", "c", "\n"}, frames: []string{"abc"}},
		{name: "oversize in one feed", max: 4, in: []string{"abcd\nok\n"}, frames: []string{"ok"}, oversize: []int{5}},
		{name: "oversize across feeds", max: 4, in: []string{"abcdefg", "hij\nok\n"}, frames: []string{"ok"}, oversize: []int{11}},
		{name: "oversize bytewise", max: 4, in: strings.Split("abcdefg\nok\n", ""), frames: []string{"ok"}, oversize: []int{8}},
		{name: "oversize crlf delimiter straddles skip", delim: "\r\n", max: 4, in: []string{"abc\r", "\nok\r\n"}, frames: []string{"ok"}, oversize: []int{5}},
		{name: "two oversize in a row", max: 3, in: []string{"aaaa\nbbbb\nc\n"}, frames: []string{"c"}, oversize: []int{5, 5}},
		{name: "oversize still skipping", max: 4, in: []string{"ok\nabcdefgh"}, frames: []string{"ok"}, dropping: 8},
		{name: "partial after frames", in: []string{"a\nb\nc"}, frames: []string{"a", "b"}, pending: "c"},
		{name: "max 1 drops everything but empty lines", max: 1, in: []string{"a\n\nb\n"}, oversize: []int{2, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chunks := make([][]byte, len(tt.in))
			for i, s := range tt.in {
				chunks[i] = []byte(s)
			}
			maxFrame := tt.max
			if maxFrame == 0 {
				maxFrame = 1024
			}
			frames, oversize, c := cutAll(Lines([]byte(tt.delim)), maxFrame, chunks...)
			if !slices.Equal(frames, tt.frames) {
				t.Errorf("frames = %q, want %q", frames, tt.frames)
			}
			if !slices.Equal(oversize, tt.oversize) {
				t.Errorf("oversize = %v, want %v", oversize, tt.oversize)
			}
			if got := string(c.Pending()); got != tt.pending {
				t.Errorf("Pending() = %q, want %q", got, tt.pending)
			}
			if got := c.Dropping(); got != tt.dropping {
				t.Errorf("Dropping() = %d, want %d", got, tt.dropping)
			}
		})
	}
}

// TestCutterHugeLine: 1 MB without a delimiter, in read-sized chunks and in
// one Feed, costs no more than maxFrame of buffer, and the next frame comes
// out.
func TestCutterHugeLine(t *testing.T) {
	huge := bytes.Repeat([]byte{'x', 0, 0xff}, 1<<20/3)
	in := append(append([]byte("before\n"), huge...), "\nafter\n"...)
	for _, chunk := range []int{1 << 30, 16384, 4093} {
		c := NewCutter(Lines(nil), 65536)
		var frames []string
		var oversize []int
		for p := in; len(p) > 0; {
			n := min(chunk, len(p))
			c.Feed(p[:n], func(b []byte) { frames = append(frames, string(b)) }, func(n int) { oversize = append(oversize, n) })
			p = p[n:]
		}
		if !slices.Equal(frames, []string{"before", "after"}) {
			t.Errorf("chunk %d: frames %q", chunk, frames)
		}
		if !slices.Equal(oversize, []int{len(huge) + 1}) {
			t.Errorf("chunk %d: oversize %v, want [%d]", chunk, oversize, len(huge)+1)
		}
		if cap(c.buf) > 65536 {
			t.Errorf("chunk %d: buffer grew to %d", chunk, cap(c.buf))
		}
	}
}

func TestCutterReset(t *testing.T) {
	c := NewCutter(Lines(nil), 4)
	c.Feed([]byte("abcdef"), nil, nil)
	if c.Dropping() == 0 {
		t.Fatal("not skipping")
	}
	c.Reset()
	var frames []string
	c.Feed([]byte("ok\n"), func(b []byte) { frames = append(frames, string(b)) }, nil)
	if !slices.Equal(frames, []string{"ok"}) || c.Dropping() != 0 || c.Pending() != nil {
		t.Fatalf("after Reset: frames %q dropping %d pending %q", frames, c.Dropping(), c.Pending())
	}
}

// TestCutterNoAllocs: steady-state Feeds allocate nothing, including ones
// that leave a partial frame in the buffer.
func TestCutterNoAllocs(t *testing.T) {
	c := NewCutter(Lines(nil), 256)
	chunk := []byte(strings.Repeat("0123456789abcdef\n", 20) + "partial")
	count := 0
	emit := func([]byte) { count++ }
	c.Feed(chunk, emit, nil) // first Feed allocates the buffer
	if allocs := testing.AllocsPerRun(100, func() { c.Feed(chunk, emit, nil) }); allocs != 0 {
		t.Fatalf("Feed allocates %v times per call", allocs)
	}
}

// badFramer never finds anything and never skips: the Cutter must still keep
// its bounds and terminate.
type badFramer struct{}

func (badFramer) Split([]byte) (int, []byte) { return 0, nil }
func (badFramer) Skip([]byte) (int, bool)    { return 0, false }

func TestCutterFaultyFramer(t *testing.T) {
	c := NewCutter(badFramer{}, 8)
	c.Feed(make([]byte, 100), nil, nil)
	if len(c.buf) >= 8 || c.Dropping() != 100 {
		t.Fatalf("buf %d, dropping %d", len(c.buf), c.Dropping())
	}
}

func TestParseFraming(t *testing.T) {
	tests := []struct {
		spec    string
		in      string
		frames  []string
		wantErr string
	}{
		{spec: "", in: "a\r\nb\n", frames: []string{"a", "b"}},
		{spec: "lines", in: "a\r\nb\n", frames: []string{"a", "b"}},
		{spec: `lines:\r\n`, in: "a\nb\r\n", frames: []string{"a\nb"}},
		{spec: `lines:\x03`, in: "a\x03b\x03", frames: []string{"a", "b"}},
		{spec: `lines:\xff`, in: "a\xffb\xff", frames: []string{"a", "b"}},
		{spec: "lines:;", in: "a;b;", frames: []string{"a", "b"}},
		{spec: `lines:"`, in: `a"b"`, frames: []string{"a", "b"}},
		{spec: `lines:\\`, in: `a\b\`, frames: []string{"a", "b"}},
		{spec: "lines:", wantErr: "empty delimiter"},
		{spec: `lines:\q`, wantErr: "bad escape"},
		{spec: "cobz", wantErr: `unknown framing "cobz": valid specs are`},
		{spec: ":;", wantErr: "unknown framing"},
		{spec: "Lines", wantErr: "unknown framing"},
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
