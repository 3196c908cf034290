//go:build linux

package serialcb

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

type writeResult struct {
	n   int
	err error
}

func writeReq(data []byte) (*WriteRequest, chan writeResult) {
	ch := make(chan writeResult, 1)
	return &WriteRequest{Data: data, Done: func(n int, err error) { ch <- writeResult{n, err} }}, ch
}

func waitResult(t *testing.T, ch chan writeResult) writeResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-t.Context().Done():
		t.Fatal("gave up waiting for a write's outcome")
	}
	return writeResult{}
}

// waitStats polls the Reader's counters until cond holds: the read loop
// offers no event for "these bytes have been read", so this is the one
// place a short poll stands in for one.
func waitStats(t *testing.T, r *Reader, cond func(ReaderStats) bool) {
	t.Helper()
	for !cond(r.Stats()) {
		select {
		case <-time.After(time.Millisecond):
		case <-t.Context().Done():
			t.Fatalf("gave up waiting; stats %+v", r.Stats())
		}
	}
}

func TestWriteReachesDeviceByteExact(t *testing.T) {
	pair := newPair(t)
	r := newReader(t, PortConfig{Path: pair.Path()}, nil)
	// Not running: the port is down.
	req, _ := writeReq([]byte("x"))
	if err := r.Write(req); !errors.Is(err, ErrPortDown) {
		t.Fatalf("Write before Run: %v, want ErrPortDown", err)
	}
	col := newCollector()
	startReader(t, r, col.onFrame)
	<-r.Opened()

	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	armed := false
	req, ch := writeReq(all)
	req.BeforeWrite = func() { armed = true }
	if err := r.Write(req); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(all))
	if _, err := io.ReadFull(pair, got); err != nil {
		t.Fatal(err)
	}
	res := waitResult(t, ch)
	if res.err != nil || res.n != len(all) || !armed {
		t.Fatalf("outcome n=%d err=%v armed=%v", res.n, res.err, armed)
	}
	if !bytes.Equal(got, all) {
		t.Fatalf("device got %x", got)
	}
	if s := r.WriteStats(); s.Writes != 1 || s.WriteBytes != 256 {
		t.Fatalf("write stats %+v", s)
	}
}

// A write queued while a frame is being received goes out after that
// frame ends, not in its middle.
func TestWriteWaitsForFrameInProgress(t *testing.T) {
	pair := newPair(t)
	r := newReader(t, PortConfig{Path: pair.Path()}, nil)
	framed := make(chan struct{})
	startReader(t, r, func(f Frame) {
		if string(f.Payload) == "abc" {
			close(framed)
		}
	})
	<-r.Opened()
	pair.Write([]byte("ab"))
	// Bytes is counted before the framer has seen them: wait until the
	// read loop has published the frame in progress too.
	waitStats(t, r, func(s ReaderStats) bool { return s.Bytes == 2 && r.busy.Load() })

	req, ch := writeReq([]byte("Q"))
	var framedFirst bool
	req.BeforeWrite = func() {
		select {
		case <-framed:
			framedFirst = true
		default:
		}
	}
	if err := r.Write(req); err != nil {
		t.Fatal(err)
	}
	pair.Write([]byte("c\n"))
	got := make([]byte, 1)
	if _, err := io.ReadFull(pair, got); err != nil {
		t.Fatal(err)
	}
	res := waitResult(t, ch)
	if res.err != nil || string(got) != "Q" {
		t.Fatalf("outcome %+v, device got %q", res, got)
	}
	// Only a machine so slow that "c\n" took longer than the bound to
	// arrive may write mid-frame, and then it says so.
	if !framedFirst && r.WriteStats().WritesMidFrame != 1 {
		t.Fatalf("written in the middle of a frame without counting it: %+v", r.WriteStats())
	}
}

func TestWriteQueueFullAndPortLost(t *testing.T) {
	pair := newPair(t)
	r := newReader(t, PortConfig{Path: pair.Path(), WriteQueue: 1}, nil)
	stop := startReader(t, r, func(Frame) {})
	<-r.Opened()
	// Keep the write goroutine waiting: a frame in progress without end.
	pair.Write([]byte("partial"))
	waitStats(t, r, func(s ReaderStats) bool { return s.Bytes == 7 && r.busy.Load() })
	var chans []chan writeResult
	full := false
	for range 50 { // the writer takes one every 100 ms at most: the queue of 1 fills
		req, ch := writeReq([]byte("w"))
		err := r.Write(req)
		if errors.Is(err, ErrWriteQueueFull) {
			full = true
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		chans = append(chans, ch)
	}
	if !full {
		t.Fatal("a queue of 1 never filled")
	}
	stop()
	for _, ch := range chans {
		if res := waitResult(t, ch); res.err != nil && !errors.Is(res.err, ErrPortDown) {
			t.Fatalf("queued write at stop: %v", res.err)
		}
	}
	req, _ := writeReq([]byte("x"))
	if err := r.Write(req); !errors.Is(err, ErrPortDown) {
		t.Fatalf("Write after stop: %v", err)
	}
}

func TestWriteExpired(t *testing.T) {
	pair := newPair(t)
	r := newReader(t, PortConfig{Path: pair.Path()}, nil)
	startReader(t, r, func(Frame) {})
	<-r.Opened()
	req, ch := writeReq([]byte("late"))
	req.Deadline = time.Now().Add(-time.Second)
	if err := r.Write(req); err != nil {
		t.Fatal(err)
	}
	if res := waitResult(t, ch); !errors.Is(res.err, ErrWriteExpired) || res.n != 0 {
		t.Fatalf("outcome %+v, want ErrWriteExpired", res)
	}
}

func TestWriteQueueValidate(t *testing.T) {
	if err := (PortConfig{Path: "x", Baud: 9600, WriteQueue: -1}).Validate(); err == nil {
		t.Fatal("negative write queue accepted")
	}
}
