package serialcb

import (
	"sync"
	"sync/atomic"
	"time"

	"go.bug.st/serial"
)

// lockedPort is an open port with its advisory lock, released on Close,
// and on Linux a second descriptor for untimed reads (pollread_linux.go).
type lockedPort struct {
	serial.Port
	lock  *portLock
	poll  *pollReader // nil: every read goes through Port
	timed atomic.Bool // a read timeout is set: reads go through Port
	once  sync.Once
}

// Read reads through the poller while no read timeout is set (a Read that
// waits costs no thread of its own, and its read(2) does not wake Go's
// sysmon), else through Port, which implements the timeout. A Read waiting
// in the poller returns an error matching os.ErrClosed when the port is
// closed.
func (p *lockedPort) Read(b []byte) (int, error) {
	if p.poll != nil && !p.timed.Load() {
		return p.poll.Read(b)
	}
	return p.Port.Read(b)
}

// ReadEach reads through the poller while no read timeout is set, calling
// each for every read (pollReader.ReadEach), and reports ok; otherwise it
// reads nothing and reports !ok: the caller then uses Read.
func (p *lockedPort) ReadEach(b []byte, each func(n int) bool) (ok, stopped bool, err error) {
	if p.poll == nil || p.timed.Load() {
		return false, false, nil
	}
	stopped, err = p.poll.ReadEach(b, each)
	return true, stopped, err
}

// SetReadTimeout sets Port's read timeout and routes Read accordingly.
func (p *lockedPort) SetReadTimeout(t time.Duration) error {
	if err := p.Port.SetReadTimeout(t); err != nil {
		return err
	}
	p.timed.Store(t != serial.NoTimeout)
	return nil
}

// Close closes the port, then releases its lock. It is idempotent.
func (p *lockedPort) Close() error {
	p.poll.Close() // wakes a polled Read; later calls return ErrClosed
	err := p.Port.Close()
	p.once.Do(p.lock.release)
	return err
}
