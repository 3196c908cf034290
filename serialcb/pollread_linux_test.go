package serialcb

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"
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
