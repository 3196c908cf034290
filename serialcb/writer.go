package serialcb

import (
	"errors"
	"fmt"
	"time"

	"go.bug.st/serial"
)

// Errors of Reader.Write, given to WriteRequest.Done or returned.
var (
	// ErrPortDown: the port is not open (missing, unplugged, reopening, or
	// the Reader is not running); the bytes were not written.
	ErrPortDown = errors.New("serial port is not open")
	// ErrWriteQueueFull: the port's write queue holds PortConfig.WriteQueue
	// requests already; the bytes were not written.
	ErrWriteQueueFull = errors.New("serial port write queue is full")
	// ErrWriteExpired: the request's Deadline passed before its turn; the
	// bytes were not written.
	ErrWriteExpired = errors.New("write deadline passed before the port was free")
)

// DefaultWriteQueue is PortConfig.WriteQueue when it is 0.
const DefaultWriteQueue = 16

// maxWriteQueue bounds PortConfig.WriteQueue: each entry may hold a buffer.
const maxWriteQueue = 4096

// quietWaitMax bounds how long a write waits, beyond the idle gap, for the
// frame being received to end: a device that never stops talking must not
// keep writes out for ever.
const quietWaitMax = 100 * time.Millisecond

// WriteRequest is bytes to write to a port the Reader has open. The Reader
// writes them between frames, never while a frame is being received, one
// request at a time and in the order they were queued.
type WriteRequest struct {
	// Data is written as is, in one write call; the Reader does not keep
	// it after Done.
	Data []byte
	// Deadline, when set, fails the request with ErrWriteExpired if its
	// turn comes later.
	Deadline time.Time
	// BeforeWrite, when set, is called on the Reader's write goroutine right
	// before the bytes go out: a caller that expects a reply arms its
	// matching there, so a fast device cannot answer before it is armed.
	BeforeWrite func()
	// Done is called exactly once, on the Reader's write goroutine or (for
	// a request still queued when the port is lost) its read goroutine,
	// with the bytes written and the error. It must not block.
	Done func(n int, err error)
}

// WriteStats counts a Reader's writes.
type WriteStats struct {
	// Writes and WriteBytes count the requests written and their bytes.
	Writes, WriteBytes uint64
	// WriteErrors counts requests that failed (port down or lost, write
	// error, deadline passed).
	WriteErrors uint64
	// WritesMidFrame counts writes that waited the longest allowed for the
	// frame being received to end and went out while it had not.
	WritesMidFrame uint64
}

// Write queues req to be written to the open port, between frames. It never
// blocks: when the port is down it returns ErrPortDown, when the queue is
// full ErrWriteQueueFull, and Done is not called. Otherwise Done reports the
// outcome later; a request still queued when the port is lost gets
// ErrPortDown. Safe from any goroutine.
//
// "Between frames" means the Reader's framer holds no partial frame and the
// line has been silent for 3.5 character times (the Modbus RTU inter-frame
// gap, which suits any half-duplex line). A write waits at most the idle
// gap plus 100 ms for that, and then goes out anyway (counted in
// WriteStats.WritesMidFrame).
//
// A write blocked by the line (hardware flow control held off) cannot be
// cancelled: it ends when the port is closed.
func (r *Reader) Write(req *WriteRequest) error {
	if req == nil || req.Done == nil {
		return errors.New("serialcb: Write needs a request with Done")
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.wq == nil {
		return ErrPortDown
	}
	select {
	case r.wq <- req:
		return nil
	default:
		return ErrWriteQueueFull
	}
}

// WriteStats returns the Reader's write counters.
func (r *Reader) WriteStats() WriteStats {
	return WriteStats{
		Writes:         r.writes.Load(),
		WriteBytes:     r.writeBytes.Load(),
		WriteErrors:    r.writeErrors.Load(),
		WritesMidFrame: r.writesMid.Load(),
	}
}

// openWrites makes the write queue for a connection that just opened.
func (r *Reader) openWrites() chan *WriteRequest {
	q := make(chan *WriteRequest, r.cfg.WriteQueue)
	r.wmu.Lock()
	r.wq = q
	r.wmu.Unlock()
	return q
}

// closeWrites refuses new writes and fails the queued ones. The write
// goroutine must have stopped.
func (r *Reader) closeWrites(q chan *WriteRequest) {
	r.wmu.Lock()
	r.wq = nil
	r.wmu.Unlock()
	for {
		select {
		case req := <-q:
			r.writeErrors.Add(1)
			req.Done(0, ErrPortDown)
		default:
			return
		}
	}
}

// noteRead records, on the read goroutine, that bytes arrived and whether a
// frame is now in progress. It allocates nothing: writers read the two
// atomics and are woken through quiet only on the busy-to-idle edge.
func (r *Reader) noteRead(t time.Time) {
	r.lastRead.Store(t.UnixNano())
	r.noteBusy()
}

func (r *Reader) noteBusy() {
	b := r.cutter.Busy()
	if b == r.busy.Load() {
		return
	}
	r.busy.Store(b)
	if !b {
		select {
		case r.quiet <- struct{}{}:
		default:
		}
	}
}

// writeLoop writes the requests of one connection until stop is closed.
func (r *Reader) writeLoop(port serial.Port, q chan *WriteRequest, stop <-chan struct{}) {
	gap := r.cfg.charTimes(3.5)
	for {
		select {
		case <-stop:
			return
		case req := <-q:
			if !r.waitQuiet(gap, req.Deadline, stop) {
				r.writeErrors.Add(1)
				if !req.Deadline.IsZero() && !time.Now().Before(req.Deadline) {
					req.Done(0, ErrWriteExpired)
				} else {
					req.Done(0, ErrPortDown)
				}
				continue
			}
			if req.BeforeWrite != nil {
				req.BeforeWrite()
			}
			n, err := port.Write(req.Data)
			if err == nil && n < len(req.Data) {
				err = fmt.Errorf("short write: %d of %d bytes", n, len(req.Data))
			}
			if err != nil {
				r.writeErrors.Add(1)
				select {
				case <-stop:
					err = fmt.Errorf("%w: %w", ErrPortDown, err)
				default:
					err = fmt.Errorf("write to serial port: %w", err)
				}
			} else {
				r.writes.Add(1)
				r.writeBytes.Add(uint64(n))
			}
			req.Done(n, err)
		}
	}
}

// waitQuiet waits until no frame is in progress and the line has been
// silent for gap, or until the bound; it returns false when stop closes or
// the deadline passes first.
func (r *Reader) waitQuiet(gap time.Duration, deadline time.Time, stop <-chan struct{}) bool {
	limit := time.Now().Add(r.idleGap + quietWaitMax)
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		now := time.Now()
		if !deadline.IsZero() && !now.Before(deadline) {
			return false
		}
		wait := time.Duration(0)
		if r.busy.Load() {
			wait = limit.Sub(now)
		} else if since := now.Sub(time.Unix(0, r.lastRead.Load())); since < gap {
			wait = gap - since
		}
		if wait <= 0 || !now.Before(limit) {
			if r.busy.Load() {
				r.writesMid.Add(1)
			}
			return true
		}
		if !deadline.IsZero() {
			wait = min(wait, deadline.Sub(now))
		}
		if t == nil {
			t = time.NewTimer(wait)
		} else {
			t.Reset(wait)
		}
		select {
		case <-stop:
			return false
		case <-r.quiet:
		case <-t.C:
		}
	}
}
