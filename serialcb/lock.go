package serialcb

import (
	"sync"

	"go.bug.st/serial"
)

// lockedPort is an open port with its advisory lock, released on Close,
// and on Linux a second descriptor for untimed reads (pollread_linux.go).
type lockedPort struct {
	serial.Port
	lock *portLock
	poll *pollReader // nil: every read goes through Port
	once sync.Once
}

// Close closes the port, then releases its lock. It is idempotent.
func (p *lockedPort) Close() error {
	p.poll.Close() // wakes a polled Read; later calls return ErrClosed
	err := p.Port.Close()
	p.once.Do(p.lock.release)
	return err
}
