package serialcb

import (
	"errors"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// pollReader reads a tty through Go's runtime poller, for the reads that
// wait without a timeout (all of them with line, length and gnss framing).
//
// Why: a frame at 10–200 frames/s is one wake-up, and what it costs is how
// many threads that wake-up involves. go.bug.st/serial waits in select(2)
// on a thread of its own, and every syscall made through the syscall
// package (entersyscall) wakes the runtime's sysmon thread when it sleeps;
// each frame then woke three to six threads (4–6 context switches, 80–100
// µs of CPU on a 2-vCPU VM where `cat` spends 20). Here the goroutine parks
// in the poller, the thread that wakes in epoll_wait runs it, and the read
// itself is a raw syscall on a non-blocking descriptor, which cannot block
// and so need not tell the scheduler: one context switch per frame, as for
// `cat`.
//
// It is a second open of the same tty, made before go.bug.st/serial's (which
// sets TIOCEXCL and would refuse it to non-root users); both descriptors read
// the same input queue. Timed reads, writes and line settings stay with
// go.bug.st/serial.
//
// Read is not safe for concurrent use (one read loop owns it); Close is.
type pollReader struct {
	f  *os.File
	rc syscall.RawConn
	// The read(2) the poller runs, with its arguments and result in the
	// struct: rc.Read takes a func, and a closure made per call escapes,
	// two allocations per read (per frame at the rates devices send).
	read  func(fd uintptr) bool
	buf   []byte
	n     int
	errno syscall.Errno

	// ReadEach's read(2) loop and its state, made once for the same reason.
	readEach func(fd uintptr) bool
	each     func(n int) bool
	stopped  bool   // each returned false
	reads    uint64 // read(2) calls ReadEach made, for its test
}

// openPollReader opens path for polled reads, or returns nil: the reads then
// go through go.bug.st/serial, as on other systems.
func openPollReader(path string) *pollReader {
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil
	}
	// A file the poller refused (not a tty, or a kernel without epoll
	// support for it) would make every read a busy EAGAIN loop.
	// SetReadDeadline fails with ErrNoDeadline for such a file.
	if f.SetReadDeadline(time.Time{}) != nil {
		f.Close()
		return nil
	}
	p := &pollReader{f: f, rc: rc}
	p.read = p.readFD
	p.readEach = p.readEachFD
	return p
}

// Read waits until the tty has input and reads it. It returns (0, nil) at
// end of file (a hung-up line) and an error matching os.ErrClosed once
// Close was called.
func (p *pollReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	// Every Read tries the read(2) first, although the last one may have
	// emptied the queue: RawConn.Read forgets an edge that came between
	// two calls (prepareRead resets the poller's ready flag), so waiting
	// first could sleep on input that is already there.
	p.buf, p.n, p.errno = b, 0, 0
	err := p.rc.Read(p.read)
	n, errno := p.n, p.errno
	p.buf = nil // do not keep the caller's buffer
	if err != nil {
		// The poller's only error without a deadline: the file was closed
		// (internal/poll's ErrFileClosing, which os.File.Read would wrap).
		return 0, &os.PathError{Op: "read", Path: p.f.Name(), Err: os.ErrClosed}
	}
	if errno != 0 {
		return 0, &os.PathError{Op: "read", Path: p.f.Name(), Err: errno}
	}
	return n, nil
}

// readFD reads into p.buf; it tells the poller to wait when there is
// nothing to read.
func (p *pollReader) readFD(fd uintptr) bool {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p.buf[0])), uintptr(len(p.buf)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait in the poller
		}
		p.n, p.errno = int(r), e
		return true
	}
}

// ReadEach reads into b and calls each with the count of every read, all
// inside one RawConn.Read, until each returns false (stopped), a read fails
// (err) or the tty reports end of file (neither). It returns an error
// matching os.ErrClosed once Close was called. each runs on the caller's
// goroutine while the descriptor's read lock is held: Close waits for it.
//
// Why: Read, called once per frame at the rates devices send, makes two
// read(2)s per frame, the second to find the queue empty before it may
// wait (see Read). Inside one RawConn.Read the poller keeps the edge it
// saw, so a read that returned less than len(b) (the tty's input queue
// is emptied up to the count asked for) can be followed by the wait
// itself: input that comes later is a new edge, and input that came
// while each ran has marked the descriptor ready already.
func (p *pollReader) ReadEach(b []byte, each func(n int) bool) (stopped bool, err error) {
	if len(b) == 0 {
		return false, errors.New("serialcb: ReadEach with an empty buffer")
	}
	p.buf, p.each, p.stopped, p.errno = b, each, false, 0
	err = p.rc.Read(p.readEach)
	stopped, errno := p.stopped, p.errno
	p.buf, p.each = nil, nil // do not keep the caller's buffer and func
	if err != nil {
		return false, &os.PathError{Op: "read", Path: p.f.Name(), Err: os.ErrClosed}
	}
	if errno != 0 {
		return false, &os.PathError{Op: "read", Path: p.f.Name(), Err: errno}
	}
	return stopped, nil
}

// readEachFD is ReadEach's loop inside the poller: true ends it.
func (p *pollReader) readEachFD(fd uintptr) bool {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p.buf[0])), uintptr(len(p.buf)))
		p.reads++
		switch {
		case e == syscall.EINTR:
			continue
		case e == syscall.EAGAIN:
			return false // wait in the poller
		case e != 0:
			p.errno = e
			return true
		case r == 0:
			return true // end of file: a hung-up line
		}
		if !p.each(int(r)) {
			p.stopped = true
			return true
		}
		if int(r) < len(p.buf) {
			return false // the queue is empty: wait, without a read to prove it
		}
	}
}

// Close closes the descriptor and wakes a Read waiting on it. A nil
// pollReader (none was opened) has nothing to close.
func (p *pollReader) Close() error {
	if p == nil {
		return nil
	}
	return p.f.Close()
}
