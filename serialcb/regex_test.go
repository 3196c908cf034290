package serialcb

import (
	"bytes"
	"regexp"
	"slices"
	"testing"
)

// A match that cannot grow is final as soon as it is buffered: one complete
// sentence fed alone is one frame, not a frame held until the next byte.
// A match that could still grow waits, and is emitted at stop.
func TestRegexFinalAtOnce(t *testing.T) {
	for _, tc := range []struct {
		expr, in string
		frames   []string // after Feed
		complete string   // what FlushComplete emits at stop, if anything
	}{
		{`\$GP[^\r\n]*\r\n`, "$GPGSV,1*7F\r\n", []string{"$GPGSV,1*7F\r\n"}, ""},
		{`\$GP[A-Z]{3},[^\r\n]*\r\n`, "$GPGGA,1*00\r\n$GPRMC,2*11\r\n", []string{"$GPGGA,1*00\r\n", "$GPRMC,2*11\r\n"}, ""},
		{`\d+;`, "x12;y3;", []string{"12;", "3;"}, ""},
		{`a:b`, "a:b", []string{"a:b"}, ""},
		{`[0-9]+`, "x12", nil, "12"},          // "123" may follow
		{`a.*b`, "axb", nil, "axb"},           // greedy: "axbxb" may follow
		{`a.*?b`, "axb", []string{"axb"}, ""}, // lazy: the shortest is final
		{`(?:ab)+`, "abab", nil, "abab"},
		{`ab|abc`, "ab", []string{"ab"}, ""}, // leftmost-first prefers ab
		{`abc|ab`, "ab", nil, "ab"},          // abc may still come, and wins
		{`x\b`, "x", nil, "x"},               // the next byte decides \b
		{`x$`, "x", nil, "x"},
		{`(?:ab)+`, "aba", nil, "ab"}, // "abab" may come: it waits, and the held "ab" is a frame at stop
		{`a.*b`, "axbx", nil, "axb"},  // "axbxb" may come; at stop "axb" is the match
		// A pattern too large to simulate: final once a byte follows.
		{`\$X?[A-Z]{0,300},[0-9]+\r\n`, "$X,1\r\n$X,2\r\n", []string{"$X,1\r\n"}, "$X,2\r\n"},
	} {
		t.Run(tc.expr+"/"+tc.in, func(t *testing.T) {
			c := NewCutter(Regex(regexp.MustCompile(tc.expr)), 64)
			var got []string
			emit := func(b []byte) { got = append(got, string(b)) }
			c.Feed([]byte(tc.in), emit, nil)
			if !slices.Equal(got, tc.frames) {
				t.Fatalf("frames %q, want %q (pending %q)", got, tc.frames, c.Pending())
			}
			got = nil
			ok := c.FlushComplete(emit)
			if want := tc.complete != ""; ok != want || (want && !slices.Equal(got, []string{tc.complete})) {
				t.Fatalf("at stop: %v %q, want %q", ok, got, tc.complete)
			}
		})
	}
}

// A held partial that is not a complete match is not emitted by
// FlushComplete: drop mode stays drop mode for partial frames.
func TestRegexFlushCompleteKeepsPartial(t *testing.T) {
	c := NewCutter(Regex(regexp.MustCompile(`\$GP[^\r\n]*\r\n`)), 64)
	c.Feed([]byte("$GPGGA,1,2"), func(b []byte) { t.Fatalf("frame %q", b) }, nil)
	if c.FlushComplete(func(b []byte) { t.Fatalf("frame %q", b) }) {
		t.Fatal("a partial sentence was emitted")
	}
	if string(c.Pending()) != "$GPGGA,1,2" {
		t.Fatalf("pending %q", c.Pending())
	}
}

var growPatterns = []string{`a.*b`, `[0-9]+;?`, `(?:ab)+c?`, `x\b`, `ab|abc`, `abc|ab`, `\d+;`, `a.*?b`,
	`\$GP[^\r\n]*\r\n`, `(?i)ok\r?\n?`, `[a-c]{2,4}`, `x$`, `(?:a|ab)(?:c|bcd)`, `é+`}

// FuzzRegexGrow: whether a match is final at once or waits must not change
// the frames: fed whole or one byte at a time (with a max no input
// reaches), the frames are the same, and at stop FlushComplete delivers
// only a whole match.
func FuzzRegexGrow(f *testing.F) {
	f.Add([]byte("axbxb;12;3"), uint8(0))
	f.Add([]byte("ababcab"), uint8(2))
	f.Add([]byte("abcdab"), uint8(12))
	f.Add([]byte("xx x"), uint8(3))
	f.Fuzz(func(t *testing.T, in []byte, which uint8) {
		if len(in) > 200 {
			in = in[:200]
		}
		re := regexp.MustCompile(growPatterns[int(which)%len(growPatterns)])
		run := func(step int) []string {
			c := NewCutter(Regex(re), 1024)
			var frames []string
			emit := func(b []byte) { frames = append(frames, string(b)) }
			for p := in; len(p) > 0; {
				n := min(step, len(p))
				c.Feed(bytes.Clone(p[:n]), emit, func(n int) { t.Fatalf("oversize %d", n) })
				p = p[n:]
			}
			if c.FlushComplete(emit) {
				last := frames[len(frames)-1]
				if loc := re.FindStringIndex(last); loc == nil || loc[0] != 0 || loc[1] != len(last) {
					t.Fatalf("FlushComplete gave %q, not a whole match", last)
				}
			}
			return frames
		}
		whole, bytewise := run(len(in)+1), run(1)
		if !slices.Equal(whole, bytewise) {
			t.Fatalf("%s on %q: whole %q, one byte at a time %q", re, in, whole, bytewise)
		}
	})
}
