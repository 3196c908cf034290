// Package serialcb reads serial ports and cuts their byte streams into
// frames.
//
// A Reader owns one port: it opens it with go.bug.st/serial, reads with
// blocking reads (no timeouts, so an idle port costs no CPU), cuts the bytes
// into frames with a Cutter driven by a Framer, and hands each Frame to a
// plain callback. The callback runs on the read goroutine and must not block
// on I/O: serialcbd's callback submits the frame to its event loop and
// returns. When the device vanishes (a USB unplug) the Reader logs it, marks
// the port down and reopens it with capped exponential backoff.
//
// The port is shared, not fought over: Reader.Write queues bytes for the
// open port (a bounded queue; full or port down is an error at once) and
// a goroutine of the connection writes them between frames, when no frame
// is being received and the line has been quiet for 3.5 character times.
// A WriteRequest's BeforeWrite hook lets a caller arm reply matching just
// before its bytes go out. The read loop only publishes two atomics for it.
//
// Framing is pure and bounded: a Framer only finds boundaries; the Cutter
// holds the partial frame in a buffer that never grows past the configured
// maximum frame size, so no input (a megabyte without a delimiter, NUL
// bytes, invalid UTF-8) can exhaust memory. Oversize frames are dropped up to
// the next boundary, counted and logged, and the frames after them are
// delivered.
//
// The package imports nothing else from serialcbd, so it can be used on its
// own. Its subpackage vport makes in-process virtual serial ports for tests;
// vport/meter simulates a Modbus RTU meter on one.
package serialcb
