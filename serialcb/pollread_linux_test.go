package serialcb

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"go.bug.st/serial"
)

// The untimed reads of an opened port go through the runtime poller
// (pollread_linux.go): were openPollReader to fail quietly, every frame
// would cost several thread wake-ups again and nothing else would notice.
func TestOpenPortReadsThroughPoller(t *testing.T) {
	p := newPair(t)
	port, err := openPort(PortConfig{Name: "p", Path: p.Path(), Baud: 9600}, false)
	if err != nil {
		t.Fatal(err)
	}
	lp, ok := port.(*lockedPort)
	if !ok || lp.poll == nil {
		t.Fatalf("opened port %T has no poll reader", port)
	}
	want := []byte("$GPGGA,1*00\r\n")
	if _, err := p.Write(want); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	var got []byte
	for len(got) < len(want) {
		n, err := lp.poll.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %q, want %q", got, want)
	}

	// A Read waiting in the poller returns when the port is closed.
	done := make(chan error, 1)
	go func() {
		_, err := lp.poll.Read(buf)
		done <- err
	}()
	if err := port.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("read after close: %v, want os.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a polled read did not return after Close")
	}
}

// A file the poller cannot wait on gets no poll reader: its reads would
// never block and so spin.
func TestOpenPollReaderRefusesRegularFile(t *testing.T) {
	path := t.TempDir() + "/plain"
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pr := openPollReader(path); pr != nil {
		pr.Close()
		t.Fatal("openPollReader accepted a regular file")
	}
}

// An opened port's Read goes through the poller while no read timeout is
// set, and through go.bug.st/serial, which keeps the timeout, once one is.
func TestLockedPortReadRoutes(t *testing.T) {
	p := newPair(t)
	port, err := Open(PortConfig{Path: p.Path(), Baud: 9600})
	if err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	if lp, ok := port.(*lockedPort); !ok || lp.poll == nil {
		t.Fatalf("opened port %T has no poll reader", port)
	}
	buf := make([]byte, 64)
	// Timed: an idle line gives (0, nil) when the timeout passes, which a
	// read waiting in the poller never would.
	if err := port.SetReadTimeout(20 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if n, err := port.Read(buf); n != 0 || err != nil {
		t.Fatalf("timed read of an idle line: %d bytes, %v", n, err)
	}
	// Untimed again: the read waits in the poller, and Close wakes it
	// with os.ErrClosed (go.bug.st/serial says PortClosed instead).
	if err := port.SetReadTimeout(serial.NoTimeout); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write([]byte("ok\n")); err != nil {
		t.Fatal(err)
	}
	if n, err := port.Read(buf); err != nil || string(buf[:n]) != "ok\n" {
		t.Fatalf("untimed read: %q, %v", buf[:n], err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := port.Read(buf)
		done <- err
	}()
	if err := port.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("untimed read at close: %v, want os.ErrClosed (the poller's)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an untimed read did not return after Close")
	}
}

// A polled read allocates nothing: at the rates devices send there is one
// read per frame, and the closure RawConn.Read takes used to cost two
// allocations each time.
func TestPollReaderReadAllocs(t *testing.T) {
	p := newPair(t)
	r := openPollReader(p.Path())
	if r == nil {
		t.Fatal("no poll reader for a pty")
	}
	defer r.Close()
	line := []byte("x\n")
	buf := make([]byte, 64)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := p.Write(line); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < len(line); {
			n, err := r.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per write and read, want 0", allocs)
	}
}

// ReadEach hands every read to each from inside one wait in the poller,
// and makes one read(2) per burst of input where Read makes two (the
// second finds the queue empty before Read may wait).
func TestPollReaderReadEach(t *testing.T) {
	p := newPair(t)
	r := openPollReader(p.Path())
	if r == nil {
		t.Fatal("no poll reader for a pty")
	}
	defer r.Close()

	const lines = 20
	got := make(chan string, lines)
	buf := make([]byte, 64)
	type result struct {
		stopped bool
		err     error
	}
	done := make(chan result, 1)
	var calls int
	go func() {
		stopped, err := r.ReadEach(buf, func(n int) bool {
			calls++
			got <- string(buf[:n])
			return calls < lines
		})
		done <- result{stopped, err}
	}()
	for i := range lines {
		want := fmt.Sprintf("line %d\n", i)
		if _, err := p.Write([]byte(want)); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-got:
			if s != want {
				t.Fatalf("read %q, want %q", s, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("line %d not read", i)
		}
	}
	res := <-done
	if !res.stopped || res.err != nil {
		t.Fatalf("ReadEach = %v, %v; want stopped by each", res.stopped, res.err)
	}
	// One read per line, give or take a readiness the poller reported for
	// input already read; Read's way is two per line.
	if r.reads >= lines*3/2 {
		t.Errorf("%d read(2) calls for %d lines, want about one each", r.reads, lines)
	}
}

// Input that comes while each runs is read without waiting for more: the
// poller saw it arrive, although the read before emptied the queue.
func TestPollReaderReadEachInputDuringEach(t *testing.T) {
	p := newPair(t)
	r := openPollReader(p.Path())
	if r == nil {
		t.Fatal("no poll reader for a pty")
	}
	var got []byte
	buf := make([]byte, 64)
	done := make(chan error, 1)
	go func() {
		_, err := r.ReadEach(buf, func(n int) bool {
			got = append(got, buf[:n]...)
			if string(got) == "first\n" {
				// The queue is empty now; the next line comes before each
				// returns, and nothing comes after it.
				if _, err := p.Write([]byte("second\n")); err != nil {
					t.Error(err)
				}
				time.Sleep(20 * time.Millisecond) // let the pty deliver it
			}
			return string(got) != "first\nsecond\n"
		})
		done <- err
	}()
	if _, err := p.Write([]byte("first\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		r.Close()
		<-done
		t.Fatalf("ReadEach read %q and then waited: the second line, written while each ran, was left in the queue", got)
	}
	r.Close()
}

// Close waits for an each that is running, and the ReadEach then ends
// with os.ErrClosed; a buffer the count fills is followed by another read
// at once.
func TestPollReaderReadEachClose(t *testing.T) {
	p := newPair(t)
	r := openPollReader(p.Path())
	if r == nil {
		t.Fatal("no poll reader for a pty")
	}
	buf := make([]byte, 4) // "abcdefgh\n" takes three reads
	inEach := make(chan struct{})
	release := make(chan struct{})
	var got []byte
	done := make(chan error, 1)
	go func() {
		_, err := r.ReadEach(buf, func(n int) bool {
			got = append(got, buf[:n]...)
			if string(got) == "abcdefgh\n" {
				close(inEach)
				<-release
			}
			return true
		})
		done <- err
	}()
	if _, err := p.Write([]byte("abcdefgh\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inEach:
	case <-time.After(10 * time.Second):
		t.Fatalf("read %q of %q", got, "abcdefgh\n")
	}
	closed := make(chan error, 1)
	go func() { closed <- r.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while each was running")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, os.ErrClosed) {
		t.Fatalf("ReadEach after Close: %v, want os.ErrClosed", err)
	}
}
