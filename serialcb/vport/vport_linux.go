//go:build linux

package vport

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// Pair is one pseudo-terminal: the master end (this value) acts as the
// device, the slave end (Path) is the port a reader opens, for example with
// go.bug.st/serial.Open. Its methods are safe for concurrent use.
//
// Back-pressure: the kernel buffers a few tens of KiB between the ends.
// When the reader falls behind, or no reader has the port open, Write blocks
// until the reader drains the slave's input buffer or Close is called, just
// as a real device is held back by a full UART FIFO. Bytes written while no
// reader has the port open are kept for the next reader, up to that buffer.
type Pair struct {
	master *os.File
	// slave is held open for the Pair's life so that the pty outlives the
	// readers that come and go: without it the master reads EIO and the
	// kernel discards buffered input each time the last reader closes.
	slave     *os.File
	slavePath string
	link      string

	closeOnce sync.Once
	closeErr  error
}

// Open creates a pseudo-terminal pair in raw mode. Path returns the slave's
// /dev/pts/N name.
func Open() (*Pair, error) { return open("") }

// OpenLink is Open plus a symbolic link at path pointing to the slave, like
// socat's link= option, so a reader can be configured with a stable name.
// A symlink already at path (left by a crashed run, say) is replaced; any
// other kind of file there is an error, since it is not ours to remove.
// Close removes the link.
func OpenLink(path string) (*Pair, error) {
	if path == "" {
		return nil, errors.New("vport: empty link path")
	}
	return open(path)
}

func open(link string) (p *Pair, err error) {
	// os.OpenFile registers the master with the runtime poller, so a blocked
	// Read or Write parks a goroutine (not a thread) and Close wakes it.
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("vport: open pty master: %w", err)
	}
	defer func() {
		if err != nil {
			master.Close()
		}
	}()

	var n int
	var ioErr error
	rc, err := master.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("vport: %w", err)
	}
	// Control rather than Fd: Fd would switch the file to blocking mode.
	if err := rc.Control(func(fd uintptr) {
		if ioErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioErr != nil {
			ioErr = fmt.Errorf("unlock pty: %w", ioErr)
			return
		}
		if n, ioErr = unix.IoctlGetInt(int(fd), unix.TIOCGPTN); ioErr != nil {
			ioErr = fmt.Errorf("get pty number: %w", ioErr)
			return
		}
		// Termios set on the master applies to the slave (they share one
		// line discipline). Raw from the start, so nothing written before a
		// reader opens the slave is echoed, translated or held for a line.
		if ioErr = makeRaw(int(fd)); ioErr != nil {
			ioErr = fmt.Errorf("set raw mode: %w", ioErr)
		}
	}); err != nil {
		return nil, fmt.Errorf("vport: %w", err)
	}
	if ioErr != nil {
		return nil, fmt.Errorf("vport: %w", ioErr)
	}

	slavePath := "/dev/pts/" + strconv.Itoa(n)
	slave, err := os.OpenFile(slavePath, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("vport: open pty slave: %w", err)
	}
	p = &Pair{master: master, slave: slave, slavePath: slavePath}
	if link != "" {
		if err := makeLink(slavePath, link); err != nil {
			slave.Close()
			return nil, fmt.Errorf("vport: %w", err)
		}
		p.link = link
	}
	return p, nil
}

// makeRaw is cfmakeraw(3): no echo, no line editing, no signals, no CR/NL
// translation, 8 data bits, reads return as soon as one byte is there.
func makeRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR |
		unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF | unix.IXANY | unix.IUCLC | unix.INPCK
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8 | unix.CREAD | unix.CLOCAL
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}

// makeLink points link at target, replacing an existing symlink atomically
// (a new link under a temporary name, then rename over the old one).
func makeLink(target, link string) error {
	fi, err := os.Lstat(link)
	switch {
	case err == nil && fi.Mode()&fs.ModeSymlink == 0:
		return fmt.Errorf("link %s: exists and is not a symlink; refusing to replace it", link)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("link %s: %w", link, err)
	}
	tmp := filepath.Join(filepath.Dir(link), "."+filepath.Base(link)+".vport-"+strconv.Itoa(os.Getpid()))
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("link %s: %w", link, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("link %s: %w", link, err)
	}
	return nil
}

// Path is the name a reader opens: the link given to OpenLink, else the
// slave's /dev/pts/N.
func (p *Pair) Path() string {
	if p.link != "" {
		return p.link
	}
	return p.slavePath
}

// SlavePath is the slave's /dev/pts/N name, whether or not there is a link.
func (p *Pair) SlavePath() string { return p.slavePath }

// Write sends p to the reader as the device would. It blocks while the
// slave's input buffer is full (see Pair); after Close it fails with an
// error wrapping os.ErrClosed.
func (p *Pair) Write(b []byte) (int, error) { return p.master.Write(b) }

// Read returns bytes the reader wrote to the port (what the device would
// receive). It blocks until there are some or Close is called.
func (p *Pair) Read(b []byte) (int, error) { return p.master.Read(b) }

// Close makes the device vanish, like a USB unplug: the link is removed
// first (so a reconnecting reader finds nothing rather than a dead pts), then
// the master is closed, which makes the reader's blocked Read fail with EIO.
// Close is idempotent and wakes a blocked Write or Read on the Pair.
func (p *Pair) Close() error {
	p.closeOnce.Do(func() {
		var errs []error
		if p.link != "" {
			// Remove the link only while it is still ours: a later Pair may
			// have taken over the name.
			if dst, err := os.Readlink(p.link); err == nil && dst == p.slavePath {
				if err := os.Remove(p.link); err != nil && !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, err)
				}
			}
		}
		if err := p.master.Close(); err != nil {
			errs = append(errs, err)
		}
		if err := p.slave.Close(); err != nil {
			errs = append(errs, err)
		}
		if err := errors.Join(errs...); err != nil {
			p.closeErr = fmt.Errorf("vport: close: %w", err)
		}
	})
	return p.closeErr
}
