// Package meter simulates a device that only answers: a Modbus RTU meter on
// the device end of a virtual port (a vport.Pair). It answers read-register
// requests (functions 3 and 4) with CRC-valid replies after a delay, and
// can be told to answer late, garbled or not at all, so that polling can be
// tested, benchmarked and demonstrated without hardware. Every byte it
// receives is kept, so a test can check that writes arrived byte-exact.
package meter

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is what the meter does with one request.
type Fault int

// The faults.
const (
	OK     Fault = iota // answer after Delay
	Late                // answer after Delay + LateBy
	Garble              // answer after Delay with one byte flipped (CRC mismatch)
	Drop                // do not answer
)

// Meter is the simulated device. Set its fields before Serve.
type Meter struct {
	// Addr is the Modbus slave address it answers to; 0 means 1.
	Addr byte
	// Delay is the time from a request to its reply.
	Delay time.Duration
	// LateBy is added to Delay for a Late reply.
	LateBy time.Duration
	// Fault, when set, picks the fault for request n (1, 2, …).
	Fault func(n uint64) Fault

	wmu      sync.Mutex // one write to the line at a time
	rw       io.ReadWriter
	mu       sync.Mutex
	received []byte
	more     chan struct{} // closed and replaced when bytes arrive

	requests, replies atomic.Uint64
}

// Requests returns how many requests it has received.
func (m *Meter) Requests() uint64 { return m.requests.Load() }

// Replies returns how many replies it has sent (garbled ones included).
func (m *Meter) Replies() uint64 { return m.replies.Load() }

// Received returns a copy of every byte received so far, requests
// included.
func (m *Meter) Received() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Clone(m.received)
}

// WaitReceived waits until the bytes received so far satisfy ok, or ctx
// ends; it reports whether ok held.
func (m *Meter) WaitReceived(ctx context.Context, ok func(received []byte) bool) bool {
	for {
		m.mu.Lock()
		if ok(m.received) {
			m.mu.Unlock()
			return true
		}
		if m.more == nil {
			m.more = make(chan struct{})
		}
		more := m.more
		m.mu.Unlock()
		select {
		case <-more:
		case <-ctx.Done():
			return false
		}
	}
}

// Send writes b to the line as the device, between its replies: an
// unsolicited frame.
func (m *Meter) Send(b []byte) error {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	_, err := m.rw.Write(b)
	return err
}

// Serve answers requests read from rw (the device end of a port) until a
// read fails (close the pair to stop it) or ctx ends; replies are written
// to rw. It returns nil when ctx ended, else the read error.
func (m *Meter) Serve(ctx context.Context, rw io.ReadWriter) error {
	m.wmu.Lock()
	m.rw = rw
	m.wmu.Unlock()
	addr := m.Addr
	if addr == 0 {
		addr = 1
	}
	buf := make([]byte, 4096)
	for {
		n, err := rw.Read(buf)
		if err != nil || ctx.Err() != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		chunk := buf[:n]
		m.mu.Lock()
		m.received = append(m.received, chunk...)
		if m.more != nil {
			close(m.more)
			m.more = nil
		}
		m.mu.Unlock()
		for len(chunk) >= 8 {
			req := chunk[:8]
			if req[0] != addr || (req[1] != 3 && req[1] != 4) || CRC(req[:6]) != binary.LittleEndian.Uint16(req[6:]) {
				chunk = chunk[1:] // not a request of ours: a byte written to the device
				continue
			}
			chunk = chunk[8:]
			if err := m.answer(ctx, addr, req); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
	}
}

// answer handles one request; it returns an error when the line fails or
// ctx ends.
func (m *Meter) answer(ctx context.Context, addr byte, req []byte) error {
	k := m.requests.Add(1)
	fault := OK
	if m.Fault != nil {
		fault = m.Fault(k)
	}
	if fault == Drop {
		return nil
	}
	reply := Reply(addr, req[1], binary.BigEndian.Uint16(req[2:]), binary.BigEndian.Uint16(req[4:]), uint16(k))
	if fault == Garble {
		reply[3] ^= 0xff
	}
	d := m.Delay
	if fault == Late {
		d += m.LateBy
	}
	if !sleep(ctx, d) {
		return ctx.Err()
	}
	if err := m.Send(reply); err != nil {
		return err
	}
	m.replies.Add(1)
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Request returns the Modbus RTU request "read count registers from
// start" (function 3 or 4) to addr, CRC included.
func Request(addr, function byte, start, count uint16) []byte {
	b := []byte{addr, function, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], start)
	binary.BigEndian.PutUint16(b[4:], count)
	return binary.LittleEndian.AppendUint16(b, CRC(b))
}

// Reply returns the meter's reply to a read of count registers from start:
// register i holds seq + i, so consecutive replies differ.
func Reply(addr, function byte, start, count, seq uint16) []byte {
	count = min(count, 125)
	b := []byte{addr, function, byte(2 * count)}
	for i := range count {
		b = binary.BigEndian.AppendUint16(b, seq+start+i)
	}
	return binary.LittleEndian.AppendUint16(b, CRC(b))
}

// CRC returns the CRC-16/MODBUS of p (sent little-endian after the frame).
func CRC(p []byte) uint16 {
	crc := uint16(0xffff)
	for _, c := range p {
		crc ^= uint16(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xa001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}
