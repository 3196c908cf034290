package serialcb

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestCharTime(t *testing.T) {
	tests := []struct {
		cfg  PortConfig
		want time.Duration
	}{
		{PortConfig{Baud: 9600}, 1041666 * time.Nanosecond},                             // 8N1: 10 bits
		{PortConfig{Baud: 9600, Parity: ParityEven}, 1145833 * time.Nanosecond},         // 8E1: 11 bits
		{PortConfig{Baud: 9600, StopBits: 2}, 1145833 * time.Nanosecond},                // 8N2: 11 bits
		{PortConfig{Baud: 1200, DataBits: 7, Parity: ParityOdd, StopBits: 2}, 9166666},  // 7O2: 11 bits
		{PortConfig{Baud: 115200, Parity: ParityNone}, 86805 * time.Nanosecond},         // 8N1
		{PortConfig{Baud: 19200, DataBits: 5, StopBits: 1.5}, 390625 * time.Nanosecond}, // 5N1.5: 7.5 bits
		{PortConfig{Baud: 0}, 0},
	}
	for _, tt := range tests {
		if got := tt.cfg.CharTime(); got != tt.want {
			t.Errorf("%+v: CharTime %v, want %v", tt.cfg, got, tt.want)
		}
	}
}

// The gap a Reader arms comes from the framing spec and the line settings;
// above 19200 baud a gap in characters follows Modbus RTU's fixed timing.
func TestIdleGap(t *testing.T) {
	tests := []struct {
		spec string
		cfg  PortConfig
		want time.Duration
	}{
		{"idle:3.5c", PortConfig{Baud: 9600, Parity: ParityEven}, 4010416 * time.Nanosecond},
		{"idle:3.5c", PortConfig{Baud: 9600}, 3645833 * time.Nanosecond},
		{"idle:3.5c", PortConfig{Baud: 19200, Parity: ParityEven}, 2005208 * time.Nanosecond},
		{"idle:3.5c", PortConfig{Baud: 38400, Parity: ParityEven}, 1750 * time.Microsecond},
		{"idle:3.5c", PortConfig{Baud: 115200}, 1750 * time.Microsecond},
		{"idle:1.5c", PortConfig{Baud: 115200}, 750 * time.Microsecond},
		{"idle:0.1c", PortConfig{Baud: 115200}, 100 * time.Microsecond}, // floor
		{"idle:5ms", PortConfig{Baud: 300}, 5 * time.Millisecond},
		{"idle:1.5ms", PortConfig{Baud: 115200}, 1500 * time.Microsecond},
		{"lines:flush=200ms", PortConfig{Baud: 9600}, 200 * time.Millisecond},
		{`lines:\r\n:flush=1s`, PortConfig{Baud: 9600}, time.Second},
		{"lines", PortConfig{Baud: 9600}, 0},
		{`lines:\r\n`, PortConfig{Baud: 9600}, 0},
	}
	for _, tt := range tests {
		f, err := ParseFraming(tt.spec)
		if err != nil {
			t.Fatalf("%s: %v", tt.spec, err)
		}
		tt.cfg.Path, tt.cfg.Framer = "/dev/null", f
		r, err := NewReader(tt.cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.IdleGap(); got != tt.want {
			t.Errorf("%s at %+v: gap %v, want %v", tt.spec, tt.cfg, got, tt.want)
		}
	}
	if _, ok := Fixed(8).(IdleFlusher); ok {
		t.Error("fixed framing wants an idle flush")
	}
}

func TestParseFramingIdle(t *testing.T) {
	tests := []struct {
		spec    string
		in      []string // bursts, each followed by a gap (Flush)
		frames  []string
		wantErr string
	}{
		{spec: "idle:3.5c", in: []string{"ab", "c:d\n"}, frames: []string{"ab", "c:d\n"}},
		{spec: "idle:5ms", in: []string{"x", "", "y"}, frames: []string{"x", "y"}},
		{spec: "idle: 2 c", in: []string{"x"}, frames: []string{"x"}},
		{spec: "lines:flush=200ms", in: []string{"a\r\nb", "c\n"}, frames: []string{"a", "b", "c"}},
		{spec: `lines:\r\n:flush=200ms`, in: []string{"a\nb\r\nc\r"}, frames: []string{"a\nb", "c\r"}},
		{spec: "lines:;:flush=1ms", in: []string{"a;b"}, frames: []string{"a", "b"}},
		{spec: "lines:::flush=1ms", in: []string{"a:b"}, frames: []string{"a", "b"}},          // delimiter ":"
		{spec: "lines:flush=2s", in: []string{"\r"}, frames: nil},                             // a lone '\r' is an empty line
		{spec: "lines:a:flush", in: []string{"1a:flush2a:flush"}, frames: []string{"1", "2"}}, // delimiter "a:flush"
		{spec: "lines:flush=", wantErr: "flush: want a duration"},
		{spec: "lines:flush=0s", wantErr: "flush: want a duration"},
		{spec: "lines:flush=2h", wantErr: "flush: want a duration"},
		{spec: "lines:flush=200", wantErr: "flush: want a duration"},
		{spec: `lines:\r\n:flush=soon`, wantErr: "flush: want a duration"},
		{spec: "lines::flush=1s", wantErr: "empty delimiter"},
		{spec: `lines:\q:flush=1s`, wantErr: "bad escape"},
		{spec: "idle", wantErr: "want idle:Nc"},
		{spec: "idle:", wantErr: "want idle:Nc"},
		{spec: "idle:0c", wantErr: "0 < N <= 10000"},
		{spec: "idle:-1c", wantErr: "0 < N <= 10000"},
		{spec: "idle:NaNc", wantErr: "0 < N <= 10000"},
		{spec: "idle:xc", wantErr: "0 < N <= 10000"},
		{spec: "idle:5", wantErr: "idle:DUR"},
		{spec: "idle:-1ms", wantErr: "idle:DUR"},
		{spec: "idle:50us", wantErr: "from 100µs to 1h0m0s"},
		{spec: "nope", wantErr: `"idle:Nc" or "idle:DUR"`},
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
			c := NewCutter(f, 1024)
			var frames []string
			emit := func(b []byte) { frames = append(frames, string(b)) }
			for _, b := range tt.in {
				c.Feed([]byte(b), emit, nil)
				c.Flush(emit, nil)
			}
			if !slices.Equal(frames, tt.frames) {
				t.Fatalf("frames = %q, want %q", frames, tt.frames)
			}
		})
	}
}

// TestCutterFlush pins down Flush: what a gap emits, reports and resets,
// for the idle framer and for lines with a flush.
func TestCutterFlush(t *testing.T) {
	type step struct {
		feed  string // fed when flush is false
		flush bool
	}
	feed := func(s string) step { return step{feed: s} }
	gap := step{flush: true}
	tests := []struct {
		name     string
		f        Framer
		max      int
		steps    []step
		want     []string // "f:payload" from Feed, "F:payload" from Flush, "O:n" oversize
		flushed  int      // Flush calls that returned true
		pending  string
		dropping int
	}{
		{"idle: nothing held", Idle(time.Millisecond), 8, []step{gap, gap}, nil, 0, "", 0},
		{"idle: one frame in pieces", Idle(time.Millisecond), 8,
			[]step{feed("ab"), feed("c"), feed("de"), gap}, []string{"F:abcde"}, 1, "", 0},
		{"idle: exactly the max", Idle(time.Millisecond), 4,
			[]step{feed("ab"), feed("cd"), gap, feed("x"), gap}, []string{"F:abcd", "F:x"}, 2, "", 0},
		{"idle: one over the max, resync at the gap", Idle(time.Millisecond), 4,
			[]step{feed("abc"), feed("de"), feed("fghij"), gap, feed("ok"), gap}, []string{"O:10", "F:ok"}, 1, "", 0},
		{"idle: oversize in one feed", Idle(time.Millisecond), 4,
			[]step{feed("abcdefgh"), gap}, []string{"O:8"}, 0, "", 0},
		{"idle: no gap yet", Idle(time.Millisecond), 4, []step{feed("ab")}, nil, 0, "ab", 0},
		{"idle: oversize, no gap yet", Idle(time.Millisecond), 4, []step{feed("abcdef")}, nil, 0, "", 6},
		{"lines: flush a partial line", LinesFlush(nil, time.Second), 16,
			[]step{feed("a\nbc"), gap, feed("d\n")}, []string{"f:a", "F:bc", "f:d"}, 1, "", 0},
		{"lines: trailing CR trimmed, lone CR is noise", LinesFlush(nil, time.Second), 16,
			[]step{feed("ab\r"), gap, feed("\r"), gap, feed("\n")}, []string{"F:ab"}, 1, "", 0},
		{"lines: explicit CRLF keeps the CR", LinesFlush([]byte("\r\n"), time.Second), 16,
			[]step{feed("ab\r"), gap, feed("\n")}, []string{"F:ab\r"}, 1, "\n", 0},
		{"lines: oversize partial line ends at the gap", LinesFlush(nil, time.Second), 4,
			[]step{feed("abcdefg"), gap, feed("ok\n")}, []string{"O:7", "f:ok"}, 0, "", 0},
		{"lines: nothing after a complete line", LinesFlush(nil, time.Second), 16,
			[]step{feed("a\n"), gap}, []string{"f:a"}, 0, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCutter(tt.f, tt.max)
			var got []string
			flushed := 0
			for _, s := range tt.steps {
				if !s.flush {
					c.Feed([]byte(s.feed),
						func(b []byte) { got = append(got, "f:"+string(b)) },
						func(n int) { got = append(got, fmt.Sprintf("O:%d", n)) })
					continue
				}
				if c.Flush(
					func(b []byte) { got = append(got, "F:"+string(b)) },
					func(n int) { got = append(got, fmt.Sprintf("O:%d", n)) }) {
					flushed++
				}
				if c.Busy() || c.Pending() != nil || c.Dropping() != 0 {
					t.Fatalf("after Flush: busy %v, pending %q, dropping %d", c.Busy(), c.Pending(), c.Dropping())
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("events %q, want %q", got, tt.want)
			}
			if flushed != tt.flushed {
				t.Errorf("Flush returned true %d times, want %d", flushed, tt.flushed)
			}
			if string(c.Pending()) != tt.pending || c.Dropping() != tt.dropping {
				t.Errorf("pending %q dropping %d, want %q %d", c.Pending(), c.Dropping(), tt.pending, tt.dropping)
			}
			if busy := tt.pending != "" || tt.dropping > 0; c.Busy() != busy {
				t.Errorf("Busy %v, want %v", c.Busy(), busy)
			}
		})
	}
}

// A frame fed and flushed allocates nothing in steady state.
func TestCutterFlushNoAllocs(t *testing.T) {
	c := NewCutter(IdleChars(3.5), 256)
	frame := bytes.Repeat([]byte{0x5a}, 64)
	emit := func([]byte) {}
	allocs := testing.AllocsPerRun(100, func() {
		c.Feed(frame[:20], emit, nil)
		c.Feed(frame[20:], emit, nil)
		if !c.Flush(emit, nil) {
			t.Fatal("nothing flushed")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per frame, want 0", allocs)
	}
}

// idleGoldenCases says how each burst script under ../testdata/framing/
// idle*/ is framed; every .hex file there must be listed.
var idleGoldenCases = map[string]struct {
	spec string
	max  int
}{
	"idle/modbus-rtu.hex":   {"idle:3.5c", 256},
	"idle/noise.hex":        {"idle:3.5c", 16},
	"idle/on-full.hex":      {"idle:3.5c:on_full=emit", 16},
	"idle-lines/prompt.hex": {"lines:flush=200ms", 24},
}

// readBursts parses a burst script: one burst per line, in hex bytes or as
// a Go-quoted string, each followed by silence on the line; "." is silence
// with nothing new; '#' starts a comment line; blank lines are ignored.
func readBursts(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var bursts [][]byte
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		switch {
		case s == "" || s[0] == '#':
			continue
		case s == ".":
			bursts = append(bursts, nil)
		case s[0] == '"':
			u, err := strconv.Unquote(s)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %v", path, line, err)
			}
			bursts = append(bursts, []byte(u))
		default:
			b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %v", path, line, err)
			}
			bursts = append(bursts, b)
		}
	}
	return bursts, sc.Err()
}

// showPayload renders a payload for a transcript: Go-quoted when it is
// printable text, else "hex" and the bytes.
func showPayload(p []byte) string {
	printable := utf8.Valid(p) && !bytes.ContainsFunc(p, func(r rune) bool {
		return r < 0x20 && r != '\r' && r != '\n' && r != '\t' || r == 0x7f
	})
	if printable {
		return strconv.Quote(string(p))
	}
	return "hex " + strings.TrimSpace(fmt.Sprintf("% x", p))
}

// idleTranscript cuts bursts (each cut into reads by split) with a fresh
// Cutter, calling Flush after each burst as the read loop does at a gap,
// and renders the events: "frame P" (cut by Feed), "flush P" (ended by the
// gap), "oversize N", "gap" for silence that ended nothing, and what is
// held at the end.
func idleTranscript(f Framer, maxFrame int, bursts [][]byte, split func([]byte) [][]byte) string {
	var b strings.Builder
	c := NewCutter(f, maxFrame)
	emit := func(p []byte) { b.WriteString("frame " + showPayload(p) + "\n") }
	oversize := func(n int) { fmt.Fprintf(&b, "oversize %d\n", n) }
	for _, burst := range bursts {
		for _, p := range split(bytes.Clone(burst)) {
			c.Feed(p, emit, oversize)
		}
		busy := c.Busy()
		if !c.Flush(func(p []byte) { b.WriteString("flush " + showPayload(p) + "\n") }, oversize) && !busy {
			b.WriteString("gap\n")
		}
	}
	if p := c.Pending(); p != nil {
		fmt.Fprintf(&b, "pending %s\n", showPayload(p))
	}
	return b.String()
}

// TestGoldenIdle replays every burst script under ../testdata/framing/idle*/
// and compares the transcript with its .golden file (-update rewrites it).
// Each burst is fed whole, split in two at every byte, and one byte at a
// time: within a burst the read boundaries must not matter, only the gaps.
func TestGoldenIdle(t *testing.T) {
	inputs, err := filepath.Glob("../testdata/framing/idle*/*.hex")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no burst scripts under ../testdata/framing/idle*/: %v", err)
	}
	for name := range idleGoldenCases {
		if !slices.Contains(inputs, filepath.Join("../testdata/framing", name)) {
			t.Errorf("%s is listed but missing", name)
		}
	}
	for _, path := range inputs {
		name := filepath.ToSlash(strings.TrimPrefix(path, filepath.Clean("../testdata/framing")+string(filepath.Separator)))
		t.Run(name, func(t *testing.T) {
			tc, ok := idleGoldenCases[name]
			if !ok {
				t.Fatalf("%s is not listed in idleGoldenCases", name)
			}
			f, err := ParseFraming(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			bursts, err := readBursts(path)
			if err != nil {
				t.Fatal(err)
			}
			whole := func(p []byte) [][]byte { return [][]byte{p} }
			got := idleTranscript(f, tc.max, bursts, whole)
			goldenPath := strings.TrimSuffix(path, ".hex") + ".golden"
			if *update {
				if err := os.WriteFile(goldenPath, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(goldenPath)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Fatalf("whole bursts:\ngot:\n%s\nwant:\n%s", got, want)
			}
			longest := 0
			for _, b := range bursts {
				longest = max(longest, len(b))
			}
			for i := range longest + 1 {
				at := func(p []byte) [][]byte { k := min(i, len(p)); return [][]byte{p[:k], p[k:]} }
				if got := idleTranscript(f, tc.max, bursts, at); got != string(want) {
					t.Fatalf("bursts split at %d:\ngot:\n%s\nwant:\n%s", i, got, want)
				}
			}
			bytewise := func(p []byte) [][]byte {
				out := make([][]byte, len(p))
				for i := range p {
					out[i] = p[i : i+1]
				}
				return out
			}
			if got := idleTranscript(f, tc.max, bursts, bytewise); got != string(want) {
				t.Fatalf("one byte at a time:\ngot:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// The Modbus RTU capture is what its comments say: every frame's CRC
// checks, so the monitor test can expect "ok" on each.
func TestModbusCaptureCRC(t *testing.T) {
	bursts, err := readBursts("../testdata/framing/idle/modbus-rtu.hex")
	if err != nil {
		t.Fatal(err)
	}
	if len(bursts) < 10 {
		t.Fatalf("%d frames", len(bursts))
	}
	for i, b := range bursts {
		if err := (CRC16Modbus{}).Valid(b); err != nil {
			t.Errorf("frame %d (% x): %v", i+1, b, err)
		}
	}
}

// FuzzIdle checks idle framing for any input cut into bursts (each ended by
// a gap) and reads: frames + dropped (oversize) + pending == input; no
// frame over the max; each burst of at most max bytes comes out as one
// frame, byte for byte, and each longer one as one oversize report of its
// length, whatever the reads.
func FuzzIdle(f *testing.F) {
	f.Add([]byte("\x01\x03\x00\x6b\x00\x03\x74\x17\x01\x03\x06"), uint16(8), []byte{8, 3}, []byte{2, 1})
	f.Add([]byte("abcdefghijklmnop"), uint16(3), []byte{5, 0, 1}, []byte{})
	f.Add([]byte(""), uint16(1), []byte{}, []byte{1})
	f.Fuzz(func(t *testing.T, in []byte, maxRaw uint16, bursts, reads []byte) {
		maxFrame := int(maxRaw%512) + 1
		c := NewCutter(IdleChars(3.5), maxFrame)
		var frames [][]byte
		var oversize []int
		emit := func(b []byte) {
			if len(b) > maxFrame {
				t.Fatalf("frame of %d bytes > max %d", len(b), maxFrame)
			}
			frames = append(frames, bytes.Clone(b))
		}
		over := func(n int) { oversize = append(oversize, n) }
		var wantFrames [][]byte
		var wantOversize []int
		// bursts gives the burst lengths, cycled (0: a gap with nothing
		// new); the last burst may end without a gap. reads gives the read
		// sizes within a burst, cycled (0 or none: the rest at once).
		r := 0
		for p, i := in, 0; len(p) > 0; i++ {
			n := len(p)
			if len(bursts) > 0 && (bursts[i%len(bursts)] > 0 || i < len(bursts)) {
				n = min(int(bursts[i%len(bursts)]), len(p)) // 0 only on the first pass
			}
			burst := p[:n]
			p = p[n:]
			for q := burst; len(q) > 0; r++ {
				k := len(q)
				if len(reads) > 0 && reads[r%len(reads)] > 0 {
					k = min(int(reads[r%len(reads)]), len(q))
				}
				c.Feed(bytes.Clone(q[:k]), emit, over)
				q = q[k:]
				if len(c.buf) > maxFrame || cap(c.buf) > maxFrame+1 {
					t.Fatalf("buffer len %d cap %d, max %d", len(c.buf), cap(c.buf), maxFrame)
				}
			}
			if len(p) == 0 && i%2 == 1 {
				// No gap after the last burst: it stays held.
				if len(burst) > maxFrame {
					if c.Dropping() != len(burst) || c.Pending() != nil {
						t.Fatalf("last burst of %d: dropping %d, pending %d", len(burst), c.Dropping(), len(c.Pending()))
					}
				} else if !bytes.Equal(c.Pending(), burst) || c.Dropping() != 0 {
					t.Fatalf("last burst %q: pending %q, dropping %d", burst, c.Pending(), c.Dropping())
				}
				break
			}
			flushed := c.Flush(emit, over)
			switch {
			case n == 0:
				if flushed {
					t.Fatal("a gap after nothing flushed a frame")
				}
			case n > maxFrame:
				wantOversize = append(wantOversize, n)
			default:
				wantFrames = append(wantFrames, burst)
				if !flushed {
					t.Fatalf("burst %q not flushed", burst)
				}
			}
			if c.Busy() {
				t.Fatal("busy after Flush")
			}
		}
		total := len(c.Pending()) + c.Dropping()
		for _, fr := range frames {
			total += len(fr)
		}
		for _, n := range oversize {
			total += n
		}
		if total != len(in) {
			t.Fatalf("frames + oversize + held = %d bytes, input %d", total, len(in))
		}
		if !slices.EqualFunc(frames, wantFrames, bytes.Equal) {
			t.Fatalf("frames %q, want %q", frames, wantFrames)
		}
		if !slices.Equal(oversize, wantOversize) {
			t.Fatalf("oversize %v, want %v", oversize, wantOversize)
		}
	})
}

// BenchmarkFramerIdle measures idle framing at the Cutter: 64-byte frames
// each arriving in three reads (as a UART FIFO or USB packet delivers
// them), then ended by Flush as the read loop does at the gap.
func BenchmarkFramerIdle(b *testing.B) {
	frame := benchPayload(64)
	const frames = 1024
	c := NewCutter(IdleChars(3.5), DefaultMaxFrame)
	n := 0
	emit := func([]byte) { n++ }
	readBuf := make([]byte, 64)
	b.SetBytes(frames * int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		for range frames {
			copy(readBuf, frame)
			c.Feed(readBuf[:21], emit, nil)
			c.Feed(readBuf[21:43], emit, nil)
			c.Feed(readBuf[43:], emit, nil)
			c.Flush(emit, nil)
		}
	}
	if n != frames*b.N {
		b.Fatalf("%d frames, want %d", n, frames*b.N)
	}
}

// BenchmarkFramerLinesFlush is BenchmarkFramerIdle for lines with a flush:
// each 64-byte line is complete, so the gap finds nothing to flush.
func BenchmarkFramerLinesFlush(b *testing.B) {
	benchFramer(b, "lines:flush=200ms", append(benchPayload(63), '\n'))
}
