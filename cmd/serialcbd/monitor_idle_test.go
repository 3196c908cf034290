//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/serialcb"
	"github.com/serialcbd/serialcbd/serialcb/vport"
)

// watchedBuffer is an io.Writer a command writes to from its own
// goroutines while the test waits for text to appear in it.
type watchedBuffer struct {
	mu     sync.Mutex
	b      strings.Builder
	notify chan struct{}
}

func newWatchedBuffer() *watchedBuffer { return &watchedBuffer{notify: make(chan struct{}, 1)} }

func (w *watchedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.b.Write(p)
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *watchedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// waitFor blocks until the output holds s count times, or the command ends.
func (w *watchedBuffer) waitFor(t *testing.T, s string, count int, done <-chan error) {
	t.Helper()
	for strings.Count(w.String(), s) < count {
		select {
		case <-w.notify:
		case err := <-done:
			t.Fatalf("command ended (%v) before %q appeared:\n%s", err, s, w.String())
		case <-t.Context().Done():
			t.Fatalf("gave up waiting for %q in:\n%s", s, w.String())
		}
	}
}

// readHexFrames reads a burst script of hex frames (one per line, '#'
// comments), as under testdata/framing/idle/.
func readHexFrames(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var frames [][]byte
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
		if err != nil {
			t.Fatalf("%s: %q: %v", path, s, err)
		}
		frames = append(frames, b)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return frames
}

// The Modbus RTU capture, played into a virtual port frame by frame (each
// frame in 3-byte writes, frames apart by more than 3.5 characters: the
// next is written only once monitor has shown the previous one, which it
// does only after the gap), through the real
// `serialcbd monitor --port … --framing idle:3.5c --validate crc16-modbus`:
// every frame is cut exactly and passes the CRC check. A wrong output is
// skipped, not failed, when the scheduler stretched a frame's writes past
// half the gap (as serialcb's idle tests do): the line timing the test
// sends did not hold, so the frame could split on a real line too.
func TestIntegrationMonitorIdleModbus(t *testing.T) {
	frames := readHexFrames(t, "../../testdata/framing/idle/modbus-rtu.hex")
	dev, err := vport.Open()
	if err != nil {
		t.Skipf("no virtual ports here: %v", err)
	}
	t.Cleanup(func() { _ = dev.Close() })

	stdout, stderr := newWatchedBuffer(), newWatchedBuffer()
	cmd := newRootCmd(stdout, stderr)
	cmd.SetArgs([]string{"monitor", "--port", dev.Path(), "--baud", "9600",
		"--framing", "idle:3.5c", "--validate", "crc16-modbus"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	stderr.waitFor(t, "serial port open", 1, done)

	gap := serialcb.IdleChars(3.5).(serialcb.IdleFlusher).IdleGap(serialcb.PortConfig{Baud: 9600})
	var stretched []string
	total := 0
	for i, f := range frames {
		var last time.Time
		for p := f; len(p) > 0; p = p[min(3, len(p)):] {
			if _, err := dev.Write(p[:min(3, len(p))]); err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			if d := now.Sub(last); !last.IsZero() && d > gap/2 {
				stretched = append(stretched, fmt.Sprintf("#%d (%v between writes)", i+1, d.Round(time.Microsecond)))
			}
			last = now
		}
		total += len(f)
		stdout.waitFor(t, fmt.Sprintf("#%d len=", i+1), 1, done)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("monitor: %v\n%s", err, stderr.String())
	}

	skipIfStretched := func() {
		if len(stretched) > 0 {
			t.Skipf("the scheduler stretched the writes of %s past half the %v idle gap: the line timing this test needs did not hold", stretched, gap)
		}
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) != len(frames)+1 {
		skipIfStretched()
		t.Fatalf("%d lines, want %d frames and a summary:\n%s", len(lines), len(frames), stdout.String())
	}
	for i, f := range frames {
		// "15:04:05.000000 #N len=L ok 01 03 ..."
		_, got, _ := strings.Cut(lines[i], " ")
		want := fmt.Sprintf("#%d len=%d ok % x", i+1, len(f), f)
		if got != want {
			skipIfStretched()
			t.Errorf("frame %d:\ngot  %s\nwant %s", i+1, got, want)
		}
	}
	wantSummary := fmt.Sprintf("# %d frames, 0 invalid, 0 oversize (0 bytes), %d bytes read", len(frames), total)
	if got := lines[len(lines)-1]; got != wantSummary {
		t.Errorf("summary %q, want %q", got, wantSummary)
	}
}
