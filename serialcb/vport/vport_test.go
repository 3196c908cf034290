//go:build linux

package vport_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"go.bug.st/serial"
	"go.uber.org/goleak"

	"github.com/serialcbd/serialcbd/serialcb/vport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func openSerial(t *testing.T, path string) serial.Port {
	t.Helper()
	port, err := serial.Open(path, &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatalf("serial.Open(%s): %v", path, err)
	}
	t.Cleanup(func() { port.Close() })
	return port
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

// allBytes returns every byte value, rep times over, so NUL, 0xff, '\r',
// '\n', XON/XOFF, ^C and ^D are all on the way.
func allBytes(rep int) []byte {
	b := make([]byte, 0, 256*rep)
	for range rep {
		for v := range 256 {
			b = append(b, byte(v))
		}
	}
	return b
}

func TestBytesPassUnchanged(t *testing.T) {
	p := newPair(t)
	port := openSerial(t, p.Path())
	want := allBytes(64) // 16 KiB: more than one read, less than the pty buffer
	errc := make(chan error, 1)
	go func() {
		_, err := p.Write(want)
		errc <- err
	}()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(port, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && got[i] == want[i] {
			i++
		}
		t.Fatalf("bytes differ from offset %d: got %q want %q", i, got[i:min(i+8, len(got))], want[i:i+8])
	}
}

func TestReaderToDevice(t *testing.T) {
	p := newPair(t)
	port := openSerial(t, p.Path())
	want := allBytes(4)
	if _, err := port.Write(want); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(p, got); err != nil {
		t.Fatalf("master read: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestWrittenBeforeOpenIsKept(t *testing.T) {
	p := newPair(t)
	if _, err := p.Write([]byte("early\n")); err != nil {
		t.Fatal(err)
	}
	port := openSerial(t, p.Path())
	got := make([]byte, 6)
	if _, err := io.ReadFull(port, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != "early\n" {
		t.Fatalf("got %q", got)
	}
}

func TestLink(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "ttyV0")

	// A stale link from an earlier run is replaced.
	if err := os.Symlink("/dev/pts/does-not-exist", link); err != nil {
		t.Fatal(err)
	}
	p, err := vport.OpenLink(link)
	if err != nil {
		t.Fatalf("OpenLink over a stale link: %v", err)
	}
	if p.Path() != link {
		t.Errorf("Path() = %q, want %q", p.Path(), link)
	}
	if dst, err := os.Readlink(link); err != nil || dst != p.SlavePath() {
		t.Errorf("link -> %q (%v), want %q", dst, err, p.SlavePath())
	}
	port := openSerial(t, p.Path())
	if _, err := p.Write([]byte{0, 0xff, '\r'}); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 3)
	if _, err := io.ReadFull(port, got); err != nil || !bytes.Equal(got, []byte{0, 0xff, '\r'}) {
		t.Fatalf("through link: %q, %v", got, err)
	}

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Lstat(link); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("link still there after Close: %v", err)
	}
	if _, err := p.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: %v, want os.ErrClosed", err)
	}
	// The reader sees the device vanish.
	if _, err := port.Read(got); err == nil {
		t.Errorf("reader Read after device Close: no error")
	}

	// A regular file is never overwritten.
	if err := os.WriteFile(link, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if p, err := vport.OpenLink(link); err == nil {
		p.Close()
		t.Fatal("OpenLink over a regular file succeeded")
	}
	if b, _ := os.ReadFile(link); string(b) != "mine" {
		t.Errorf("regular file changed: %q", b)
	}
}

// TestCloseWakesBlockedWrite fills the pty with no reader draining it (the
// back-pressure case) and checks Close releases the writer.
func TestCloseWakesBlockedWrite(t *testing.T) {
	p, err := vport.Open()
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		chunk := make([]byte, 1024)
		for i := 0; ; i++ { // far more than the kernel buffers: this blocks
			if _, err := p.Write(chunk); err != nil {
				errc <- err
				return
			}
			if i == 0 {
				close(started)
			}
		}
	}()
	<-started
	p.Close()
	if err := <-errc; err == nil {
		t.Fatal("blocked Write returned no error after Close")
	}
}
