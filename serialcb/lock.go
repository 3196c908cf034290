package serialcb

import (
	"sync"

	"go.bug.st/serial"
)

// lockedPort is an open port with its advisory lock, released on Close.
type lockedPort struct {
	serial.Port
	lock *portLock
	once sync.Once
}

// Close closes the port, then releases its lock. It is idempotent.
func (p *lockedPort) Close() error {
	err := p.Port.Close()
	p.once.Do(p.lock.release)
	return err
}
