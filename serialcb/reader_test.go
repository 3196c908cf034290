//go:build linux

package serialcb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/serialcbd/serialcbd/serialcb/vport"
	"github.com/serialcbd/serialcbd/testdata/realdata"
)

// logWatch records a Reader's logs and lets a test wait for an entry
// without sleeping.
type logWatch struct {
	logs   *observer.ObservedLogs
	notify chan struct{}
}

func newLogWatch() (*zap.Logger, *logWatch) {
	core, logs := observer.New(zapcore.DebugLevel)
	w := &logWatch{logs: logs, notify: make(chan struct{}, 1)}
	log := zap.New(core, zap.Hooks(func(zapcore.Entry) error {
		select {
		case w.notify <- struct{}{}:
		default: // a wake-up is already pending
		}
		return nil
	}))
	return log, w
}

// waitFor blocks until count entries with msg have been logged.
func (w *logWatch) waitFor(t *testing.T, msg string, count int) {
	t.Helper()
	for w.logs.FilterMessage(msg).Len() < count {
		select {
		case <-w.notify:
		case <-t.Context().Done():
			t.Fatalf("gave up waiting for log %q", msg)
		}
	}
}

// collector gathers frames and lets a test wait for a number of them.
type collector struct {
	mu     sync.Mutex
	frames []Frame
	notify chan struct{}
}

func newCollector() *collector { return &collector{notify: make(chan struct{}, 1)} }

func (c *collector) onFrame(f Frame) {
	c.mu.Lock()
	c.frames = append(c.frames, f)
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (c *collector) waitN(t *testing.T, n int) []Frame {
	t.Helper()
	for {
		c.mu.Lock()
		if len(c.frames) >= n {
			out := append([]Frame(nil), c.frames...)
			c.mu.Unlock()
			return out
		}
		c.mu.Unlock()
		select {
		case <-c.notify:
		case <-t.Context().Done():
			t.Fatalf("gave up waiting for %d frames", n)
		}
	}
}

func (c *collector) payloads() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.frames))
	for i, f := range c.frames {
		out[i] = string(f.Payload)
	}
	return out
}

// startReader runs r in the background; the returned stop cancels it and
// waits for Run to return.
func startReader(t *testing.T, r *Reader, onFrame func(Frame)) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, onFrame) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func newPair(t *testing.T) *vport.Pair {
	t.Helper()
	p, err := vport.Open()
	if err != nil {
		t.Fatalf("vport.Open: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func newReader(t *testing.T, cfg PortConfig, log *zap.Logger) *Reader {
	t.Helper()
	if cfg.Baud == 0 {
		cfg.Baud = 115200
	}
	r, err := NewReader(cfg, log)
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	return r
}

// writeAsync writes data to the device side in the background: the writes
// block until the reader drains the pty.
func writeAsync(t *testing.T, p *vport.Pair, data ...[]byte) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		for _, d := range data {
			if _, err := p.Write(d); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	t.Cleanup(func() {
		p.Close() // unblocks the writer if the test failed early
		if err := <-done; err != nil && !errors.Is(err, os.ErrClosed) {
			t.Errorf("device write: %v", err)
		}
	})
}

func TestIntegrationReaderInOrder(t *testing.T) {
	const n = 5000
	pair := newPair(t)
	var stream bytes.Buffer
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&stream, "line %05d\n", i)
	}
	writeAsync(t, pair, stream.Bytes())

	r := newReader(t, PortConfig{Name: "gps", Path: pair.Path()}, nil)
	c := newCollector()
	before := time.Now()
	stop := startReader(t, r, c.onFrame)
	frames := c.waitN(t, n)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	if len(frames) != n {
		t.Fatalf("got %d frames, want %d", len(frames), n)
	}
	for i, f := range frames {
		if want := fmt.Sprintf("line %05d", i+1); string(f.Payload) != want {
			t.Fatalf("frame %d: payload %q, want %q", i, f.Payload, want)
		}
		if f.Seq != uint64(i+1) {
			t.Fatalf("frame %d: seq %d", i, f.Seq)
		}
		if f.Port != "gps" {
			t.Fatalf("frame %d: port %q", i, f.Port)
		}
		if f.ReceivedAt.Location() != time.UTC || f.ReceivedAt.Before(before.Add(-time.Millisecond)) {
			t.Fatalf("frame %d: received_at %v", i, f.ReceivedAt)
		}
		if i > 0 {
			if bytes.Compare(frames[i-1].ID[:], f.ID[:]) >= 0 {
				t.Fatalf("frame %d: id %s not after %s", i, f.ID, frames[i-1].ID)
			}
			if f.ReceivedAt.Before(frames[i-1].ReceivedAt) {
				t.Fatalf("frame %d: received_at went back", i)
			}
		}
	}
	st := r.Stats()
	if st.Frames != n || st.Bytes != uint64(stream.Len()) || st.Up || st.Reconnects != 0 {
		t.Fatalf("stats %+v, want %d frames, %d bytes, down, no reconnects", st, n, stream.Len())
	}
}

// TestIntegrationReaderPayloadOwned: a frame's payload must survive later
// reads (the read buffer is reused) and appending to it must not clobber
// the next frame's payload.
func TestIntegrationReaderPayloadOwned(t *testing.T) {
	pair := newPair(t)
	writeAsync(t, pair, []byte("aaaa\nbbbb\n"), bytes.Repeat([]byte("cccc\n"), 5000))
	r := newReader(t, PortConfig{Path: pair.Path()}, nil)
	c := newCollector()
	startReader(t, r, c.onFrame)
	frames := c.waitN(t, 5002)
	_ = append(frames[0].Payload, 'X')
	if string(frames[0].Payload) != "aaaa" || string(frames[1].Payload) != "bbbb" {
		t.Fatalf("payloads changed: %q %q", frames[0].Payload, frames[1].Payload)
	}
	if frames[0].Port != pair.Path() {
		t.Fatalf("default name %q, want the path", frames[0].Port)
	}
}

func TestIntegrationReaderGarbage(t *testing.T) {
	pair := newPair(t)
	huge := bytes.Repeat([]byte("\x00\xffgarbage"), 1<<20/9+1) // > 1 MB, no '\n'
	writeAsync(t, pair,
		[]byte("first\n\x00\x00\x00\n\xc3\x28\xff\xfe\r\n"),
		huge,
		[]byte("\nafter\r\n\n\nlast\n"))
	log, logs := newLogWatch()
	r := newReader(t, PortConfig{Path: pair.Path()}, log)
	c := newCollector()
	stop := startReader(t, r, c.onFrame)
	c.waitN(t, 5)
	stop()

	want := []string{"first", "\x00\x00\x00", "\xc3\x28\xff\xfe", "after", "last"}
	if got := c.payloads(); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Fatalf("frames %q, want %q", got, want)
	}
	st := r.Stats()
	if st.Oversize != 1 || st.OversizeBytes != uint64(len(huge)+1) {
		t.Fatalf("oversize %d frames %d bytes, want 1 frame %d bytes", st.Oversize, st.OversizeBytes, len(huge)+1)
	}
	if n := logs.logs.FilterMessage("oversize frames dropped").FilterLevelExact(zapcore.WarnLevel).Len(); n != 1 {
		t.Fatalf("%d oversize warnings, want 1", n)
	}
}

// TestReaderOversizeLogRateLimited: many oversize frames in a burst give one
// warning now and one summary at stop, and every frame is counted.
func TestIntegrationReaderOversizeLogRateLimited(t *testing.T) {
	pair := newPair(t)
	long := append(bytes.Repeat([]byte("x"), 100), '\n')
	writeAsync(t, pair, bytes.Repeat(long, 50), []byte("ok\n"))
	log, logs := newLogWatch()
	r := newReader(t, PortConfig{Path: pair.Path(), MaxFrame: 64}, log)
	c := newCollector()
	stop := startReader(t, r, c.onFrame)
	c.waitN(t, 1)
	stop()
	if st := r.Stats(); st.Oversize != 50 || st.OversizeBytes != 50*101 {
		t.Fatalf("stats %+v", st)
	}
	warns := logs.logs.FilterMessage("oversize frames dropped").All()
	if len(warns) != 2 {
		t.Fatalf("%d oversize warnings, want 2 (first, then the summary at stop)", len(warns))
	}
	total := warns[0].ContextMap()["frames"].(int64) + warns[1].ContextMap()["frames"].(int64)
	if total != 50 {
		t.Fatalf("warnings report %d frames, want 50", total)
	}
}

// TestIntegrationReaderCancelWhileBlocked: Run, blocked in a read on an idle
// port, returns when ctx is cancelled. No timing: the test's own deadline is
// the only bound.
func TestIntegrationReaderCancelWhileBlocked(t *testing.T) {
	pair := newPair(t)
	writeAsync(t, pair, []byte("one\npartial"))
	log, logs := newLogWatch()
	r := newReader(t, PortConfig{Path: pair.Path()}, log)
	c := newCollector()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, c.onFrame) }()
	c.waitN(t, 1) // the reader is up and idle, blocked in Read
	if !r.Stats().Up {
		t.Fatal("not up while reading")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-t.Context().Done():
		t.Fatal("Run did not return after cancel")
	}
	if r.Stats().Up {
		t.Fatal("still up after Run returned")
	}
	e := logs.logs.FilterMessage("partial frame dropped at stop").All()
	if len(e) != 1 || e[0].ContextMap()["bytes"] != int64(len("partial")) {
		t.Fatalf("partial frame log: %+v", e)
	}
}

func TestIntegrationReaderReconnect(t *testing.T) {
	link := filepath.Join(t.TempDir(), "ttyV0")
	pair1, err := vport.OpenLink(link)
	if err != nil {
		t.Fatal(err)
	}
	defer pair1.Close()
	log, logs := newLogWatch()
	r := newReader(t, PortConfig{Name: "dev", Path: link, ReconnectMin: time.Millisecond, ReconnectMax: 20 * time.Millisecond}, log)
	c := newCollector()
	stop := startReader(t, r, c.onFrame)

	if _, err := pair1.Write([]byte("before\nhalf a fr")); err != nil {
		t.Fatal(err)
	}
	c.waitN(t, 1)
	pair1.Close() // unplug
	logs.waitFor(t, "serial port lost; reconnecting", 1)
	if r.Stats().Up {
		t.Error("still up after the device vanished")
	}
	logs.waitFor(t, "cannot open serial port; retrying", 1) // the link is gone

	pair2, err := vport.OpenLink(link) // plug back in
	if err != nil {
		t.Fatal(err)
	}
	defer pair2.Close()
	if _, err := pair2.Write([]byte("ame\nafter\n")); err != nil {
		t.Fatal(err)
	}
	c.waitN(t, 3)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// The half frame from before the unplug is dropped, not glued to "ame".
	if got, want := fmt.Sprintf("%q", c.payloads()), `["before" "ame" "after"]`; got != want {
		t.Fatalf("frames %s, want %s", got, want)
	}
	if st := r.Stats(); st.Reconnects != 1 {
		t.Fatalf("reconnects %d, want 1", st.Reconnects)
	}
	lost := logs.logs.FilterMessage("serial port lost; reconnecting").All()
	if len(lost) != 1 || lost[0].Level != zapcore.WarnLevel || lost[0].ContextMap()["port"] != "dev" ||
		lost[0].ContextMap()["path"] != link || lost[0].ContextMap()["error"] == nil ||
		lost[0].ContextMap()["partial_frame_bytes"] != int64(len("half a fr")) {
		t.Fatalf("lost log: %+v", lost)
	}
	if n := logs.logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 1 {
		t.Fatalf("%d warnings, want 1 per outage (the loss; failed reopens are Debug)", n)
	}
	if n := logs.logs.FilterMessage("serial port back").FilterLevelExact(zapcore.InfoLevel).Len(); n != 1 {
		t.Fatalf("%d 'back' logs, want 1", n)
	}
	// Seq carries on across the reconnect.
	frames := c.waitN(t, 3)
	for i, f := range frames {
		if f.Seq != uint64(i+1) {
			t.Fatalf("frame %d seq %d", i, f.Seq)
		}
	}
}

const missingPath = "/dev/serialcbd-test-no-such-port"

func TestOpenMissing(t *testing.T) {
	_, err := Open(PortConfig{Path: missingPath, Baud: 9600})
	if !errors.Is(err, ErrPortNotFound) {
		t.Fatalf("err = %v, want ErrPortNotFound", err)
	}
	if errors.Is(err, ErrPermission) || errors.Is(err, ErrPortBusy) {
		t.Fatal("matches the wrong sentinels")
	}
	var oe *OpenError
	if !errors.As(err, &oe) || oe.Path != missingPath || oe.Kind != OpenNotFound {
		t.Fatalf("err = %#v", err)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Error("does not unwrap to os.ErrNotExist")
	}
	// The hint lists the ports that exist, or says there are none.
	ports, lerr := ListPorts()
	if lerr != nil {
		t.Fatalf("ListPorts: %v", lerr)
	}
	msg := err.Error()
	if len(ports) == 0 && !strings.Contains(msg, "no serial ports found") {
		t.Fatalf("message %q does not say there are no ports", msg)
	}
	for _, p := range ports {
		if !strings.Contains(msg, p.Name) {
			t.Fatalf("message %q does not list %s", msg, p.Name)
		}
	}
	t.Log(msg)
}

func TestOpenNotATTY(t *testing.T) {
	_, err := Open(PortConfig{Path: "/dev/null", Baud: 9600})
	var oe *OpenError
	if !errors.As(err, &oe) || oe.Kind != OpenInvalid {
		t.Fatalf("err = %v, want an OpenError of kind OpenInvalid", err)
	}
}

func TestRunOpenFailsFast(t *testing.T) {
	r := newReader(t, PortConfig{Path: missingPath}, nil)
	err := r.RunOpen(context.Background(), func(Frame) {})
	if !errors.Is(err, ErrPortNotFound) {
		t.Fatalf("RunOpen: %v, want ErrPortNotFound", err)
	}
}

// TestRunRetriesMissing: Run on a missing port keeps trying, warns once,
// and returns nil on cancel.
func TestRunRetriesMissing(t *testing.T) {
	log, logs := newLogWatch()
	r := newReader(t, PortConfig{Path: missingPath, ReconnectMin: time.Millisecond, ReconnectMax: 2 * time.Millisecond}, log)
	stop := startReader(t, r, func(Frame) {})
	logs.waitFor(t, "cannot open serial port; retrying", 4)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := logs.logs.FilterMessage("cannot open serial port; retrying").FilterLevelExact(zapcore.WarnLevel).Len(); n != 1 {
		t.Fatalf("%d warnings, want 1", n)
	}
	if st := r.Stats(); st.Up || st.Reconnects != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRunTwiceConcurrently(t *testing.T) {
	pair := newPair(t)
	r := newReader(t, PortConfig{Path: pair.Path()}, nil)
	c := newCollector()
	startReader(t, r, c.onFrame)
	writeAsync(t, pair, []byte("x\n"))
	c.waitN(t, 1)
	if err := r.Run(context.Background(), c.onFrame); err == nil {
		t.Fatal("second concurrent Run succeeded")
	}
}

// TestIntegrationReplayNMEA replays a real GPS capture (CRLF NMEA; the '#'
// header lines are frames too) through a virtual port.
func TestIntegrationReplayNMEA(t *testing.T) {
	data, err := os.ReadFile(realdata.Path(t, "neo-m8n.log"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSuffix(line, "\r"); line != "" {
			want = append(want, line)
		}
	}
	pair := newPair(t)
	writeAsync(t, pair, data)
	r := newReader(t, PortConfig{Name: "gps", Path: pair.Path(), Baud: 9600}, nil)
	c := newCollector()
	stop := startReader(t, r, c.onFrame)
	c.waitN(t, len(want))
	stop()
	got := c.payloads()
	if len(got) != len(want) {
		t.Fatalf("%d frames, want %d non-empty lines", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("frame %d: %q, want %q", i, got[i], want[i])
		}
	}
	if st := r.Stats(); st.Bytes != uint64(len(data)) || st.Oversize != 0 {
		t.Fatalf("stats %+v, want %d bytes and no oversize", st, len(data))
	}
}
