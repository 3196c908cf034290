//go:build linux

package serialcb

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/serialcb/vport"
)

// writePieces writes frame to the device side in pieces of at most piece
// bytes, pausing pause between them: a device (or a USB adapter) that
// hands a frame over in several small bursts. It returns the longest time
// between two of its writes: the line timing these tests send holds only
// while that stays well inside the idle gap, and a scheduler that stretches
// it (qemu-user on a busy machine does) splits a frame as a real line would.
func writePieces(t *testing.T, p *vport.Pair, frame []byte, piece int, pause time.Duration) (longest time.Duration) {
	t.Helper()
	var last time.Time
	for len(frame) > 0 {
		n := min(piece, len(frame))
		if _, err := p.Write(frame[:n]); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		if !last.IsZero() {
			longest = max(longest, now.Sub(last))
		}
		last = now
		frame = frame[n:]
		if len(frame) > 0 && pause > 0 {
			time.Sleep(pause) // line timing within a frame, not synchronisation
		}
	}
	return longest
}

// skipIfStretched skips a test whose output is wrong when some frame's
// writes were stretched past half the idle gap: the line timing it sent
// did not hold, so its frames could split. Said, not silent.
func skipIfStretched(t *testing.T, stretched []string, gap time.Duration) {
	t.Helper()
	if len(stretched) > 0 {
		t.Skipf("the scheduler stretched the writes of %s past half the %v idle gap: the line timing this test needs did not hold", stretched, gap)
	}
}

// Modbus RTU with idle:3.5c: a master and its slaves send frames separated
// by more than 3.5 character times, each frame in 3-byte writes less than
// 1.5 characters apart: every frame comes out whole and its CRC checks.
// The next frame is sent only once the previous one came out, which happens
// only after the gap, so the gaps are real without the test timing
// anything.
//
// Then the port idles with nothing pending until the silence watchdog
// reopens it: no read returned (0, nil) meanwhile, so the idle timeout is
// armed only while a frame is in progress, and each timeout ended a frame.
func TestIntegrationReaderIdleModbus(t *testing.T) {
	bursts, err := readBursts("../testdata/framing/idle/modbus-rtu.hex")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		baud   int
		gap    time.Duration // 3.5 characters of 8E1
		pause  time.Duration // between the writes of one frame, < 1.5 characters
		rounds int
	}{
		// Writes back to back: microseconds apart, far below 1.5
		// characters (1.72 ms), and scheduling on a loaded machine cannot
		// stretch them to the 4 ms gap.
		{"9600 baud", 9600, 4010416 * time.Nanosecond, 0, 3},
		// Real pauses within frames: 2 ms, below 1.5 characters (13.75
		// ms), with a gap (32 ms) wide enough that a loaded machine does
		// not turn a pause into a gap.
		{"1200 baud, paused writes", 1200, 32083333 * time.Nanosecond, 2 * time.Millisecond, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t)
			log, logs := newLogWatch()
			r := newReader(t, PortConfig{
				Name: "rtu", Path: p.Path(), Baud: tt.baud, Parity: ParityEven,
				Framer: IdleChars(3.5), MaxFrame: 256,
				SilenceTimeout: 300 * time.Millisecond, ReconnectMin: time.Millisecond,
			}, log)
			if got := r.IdleGap(); got != tt.gap {
				t.Fatalf("gap %v, want %v", got, tt.gap)
			}
			c := newCollector()
			stop := startReader(t, r, c.onFrame)
			<-r.Opened()
			var want [][]byte
			var stretched []string
			for range tt.rounds {
				for _, b := range bursts {
					if d := writePieces(t, p, b, 3, tt.pause); d > tt.gap/2 {
						stretched = append(stretched, fmt.Sprintf("frame %d (%v)", len(want)+1, d))
					}
					want = append(want, b)
					c.waitN(t, len(want))
				}
			}
			got := c.waitN(t, len(want))
			for i, f := range got {
				if !bytes.Equal(f.Payload, want[i]) {
					skipIfStretched(t, stretched, tt.gap)
					t.Fatalf("frame %d: % x, want % x", i+1, f.Payload, want[i])
				}
				if err := (CRC16Modbus{}).Valid(f.Payload); err != nil {
					t.Errorf("frame %d: %v", i+1, err)
				}
				if f.Seq != uint64(i+1) {
					t.Errorf("frame %d: seq %d", i+1, f.Seq)
				}
			}

			// Idle with nothing pending until the watchdog fires (300 ms
			// after the last byte) and the port is back.
			logs.waitFor(t, "serial port back", 1)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			st := r.Stats()
			n := uint64(len(want))
			if st.Frames != n || st.Flushed != n || st.ReadTimeouts != n || st.Oversize != 0 {
				t.Errorf("stats %+v: want %d frames, all flushed, one read timeout each, no oversize", st, n)
			}
			if st.SilenceReopens != 1 {
				t.Errorf("stats %+v: want one silence reopen", st)
			}
			if got := len(c.payloads()); got != len(want) {
				t.Errorf("%d frames after the idle time, want %d", got, len(want))
			}
		})
	}
}

// A burst longer than the max is dropped whole at its gap and counted as
// oversize; the gap resynchronises, so the next frame is intact. A burst
// of exactly the max is a frame.
func TestIntegrationReaderIdleOversize(t *testing.T) {
	const gap = 2 * time.Millisecond
	p := newPair(t)
	log, logs := newLogWatch()
	r := newReader(t, PortConfig{Path: p.Path(), Framer: Idle(gap), MaxFrame: 8}, log)
	c := newCollector()
	stop := startReader(t, r, c.onFrame)
	<-r.Opened()
	var stretched []string
	write := func(s string, piece int) {
		t.Helper()
		if d := writePieces(t, p, []byte(s), piece, 0); d > gap/2 {
			stretched = append(stretched, fmt.Sprintf("%q (%v)", s, d))
		}
	}
	send := func(s string, frames int) {
		t.Helper()
		write(s, 4)
		c.waitN(t, frames)
	}
	send("12345678", 1)
	write("garbage: far too long for the max", 5)
	logs.waitFor(t, "oversize frames dropped", 1) // at the gap
	send("ok", 2)
	if got := c.payloads(); !slices.Equal(got, []string{"12345678", "ok"}) {
		skipIfStretched(t, stretched, gap)
		t.Errorf("frames %q", got)
	}
	if err := stop(); err != nil { // the counters are final once Run returned
		t.Fatal(err)
	}
	st := r.Stats()
	if st.Oversize != 1 || st.OversizeBytes != 33 || st.Flushed != 2 || st.ReadTimeouts != 3 {
		t.Errorf("stats %+v: want 1 oversize of 33 bytes, 2 flushed, 3 read timeouts", st)
	}
}

// lines:flush= emits a partial line after the silence and leaves complete
// lines alone; plain lines never flush.
func TestIntegrationReaderLinesFlush(t *testing.T) {
	p := newPair(t)
	f, err := ParseFraming("lines:flush=20ms")
	if err != nil {
		t.Fatal(err)
	}
	r := newReader(t, PortConfig{Path: p.Path(), Framer: f}, nil)
	c := newCollector()
	stop := startReader(t, r, c.onFrame)
	<-r.Opened()
	if _, err := p.Write([]byte("prompt> ")); err != nil {
		t.Fatal(err)
	}
	c.waitN(t, 1)
	if _, err := p.Write([]byte("a\r\nb\r")); err != nil {
		t.Fatal(err)
	}
	c.waitN(t, 3)
	if _, err := p.Write([]byte("\nc\n")); err != nil {
		t.Fatal(err)
	}
	c.waitN(t, 4)
	if got, want := c.payloads(), []string{"prompt> ", "a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("frames %q, want %q", got, want)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if st.Flushed != 2 || st.ReadTimeouts != 2 {
		t.Errorf("stats %+v: want 2 flushed, 2 read timeouts", st)
	}
}

// BenchmarkReaderIdleVport measures idle framing end to end through a pty:
// the device writes a 64-byte frame, the Reader cuts it when the 1 ms gap
// has passed, the device writes the next. ns/op is the round trip, so
// ns/op minus the gap is what the timeout costs beyond it (reported as
// overshoot-µs: select(2) timer slack plus scheduling).
func BenchmarkReaderIdleVport(b *testing.B) {
	pair, err := vport.Open()
	if err != nil {
		b.Fatal(err)
	}
	defer pair.Close()
	const gap = time.Millisecond
	r, err := NewReader(PortConfig{Path: pair.Path(), Baud: 115200, Framer: Idle(gap)}, nil)
	if err != nil {
		b.Fatal(err)
	}
	got := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, func(Frame) { got <- struct{}{} }) }()
	defer func() {
		cancel()
		<-done
	}()
	<-r.Opened()
	frame := benchPayload(64)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		if _, err := pair.Write(frame); err != nil {
			b.Fatal(err)
		}
		<-got
	}
	per := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(float64(per-gap)/float64(time.Microsecond), "overshoot-µs")
	if st := r.Stats(); st.ReadTimeouts != st.Flushed || st.Flushed != uint64(b.N) {
		b.Fatalf("stats %+v, want %d frames flushed by as many timeouts", st, b.N)
	}
}
