package serialcb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.bug.st/serial"
	"go.uber.org/zap"
)

// oversizeLogEvery rate-limits the oversize warning: a device spewing
// garbage must not flood the log (every frame is still counted).
const oversizeLogEvery = 10 * time.Second

// slabSize is the block payload copies are carved from: one allocation per
// slabSize bytes of frames instead of one per frame (1/64 alloc per 64-byte
// frame). BenchmarkReaderVport shows the same frames/s either way, so the
// gain is GC pressure only; the block is kept small because a frame held
// for long pins its whole block. Payloads larger than slabSize/4 get their
// own allocation so a big frame does not waste a block.
const slabSize = 4 << 10

// errNoData stands for a read that returned neither bytes nor an error,
// which a blocking read should never do; treating it as a lost port (with
// backoff) keeps such a driver from making the loop spin.
var errNoData = errors.New("read returned no data")

// ErrSilent ends a connection on which no byte arrived for the configured
// SilenceTimeout; the Reader then reopens the port.
var ErrSilent = errors.New("no data within the silence timeout")

// Reader reads one serial port and turns its stream into Frames. Create it
// with NewReader and call Run (or RunOpen); Stats may be called from any
// goroutine at any time.
type Reader struct {
	cfg PortConfig // defaults applied
	log *zap.Logger
	gen IDGen
	// idleGap is the silence that ends a frame in progress (the framer's
	// IdleFlusher gap for this line), or 0.
	idleGap time.Duration

	running    atomic.Bool
	opened     chan struct{} // closed at the first successful open
	openedOnce sync.Once

	bytes, frames, oversize, oversizeBytes, reconnects, silences atomic.Uint64
	timeouts, flushed, noise                                     atomic.Uint64
	up                                                           atomic.Bool

	// fielder is the framer's fields capability, or nil.
	fielder fielder

	// Writes (see Write): wq is the open connection's queue, nil while the
	// port is down; busy and lastRead (Unix ns) are published by the read
	// goroutine for the write goroutine, which quiet wakes when a frame
	// ends.
	wmu                                        sync.Mutex
	wq                                         chan *WriteRequest // guarded by wmu
	busy                                       atomic.Bool
	lastRead                                   atomic.Int64
	quiet                                      chan struct{}
	writes, writeBytes, writeErrors, writesMid atomic.Uint64

	// Owned by the goroutine in Run.
	fieldBuf [64]byte // the framer's fields for one frame, before carve
	seq      uint64
	cutter   *Cutter
	buf      []byte // read buffer
	slab     []byte // unused rest of the current payload block
	// Oversize log rate limit: frames and bytes not yet reported.
	ovLastLog                 time.Time
	ovPendFrames, ovPendBytes int
}

// ReaderStats is a snapshot of a Reader's counters.
type ReaderStats struct {
	// Bytes read from the port.
	Bytes uint64
	// Frames delivered to the callback.
	Frames uint64
	// Oversize frames dropped, and their bytes.
	Oversize, OversizeBytes uint64
	// Reconnects counts successful opens after the first one.
	Reconnects uint64
	// SilenceReopens counts reopens forced by the silence watchdog.
	SilenceReopens uint64
	// ReadTimeouts counts reads that returned no byte because the idle gap
	// passed. The timeout is armed only while a frame is in progress, so
	// each one ends a frame (Flushed, or Oversize when it was too long):
	// an idle port adds nothing here.
	ReadTimeouts uint64
	// Flushed counts frames ended by the idle gap rather than by a boundary
	// in the bytes (all frames with idle framing, partial lines with a
	// lines flush); they are counted in Frames too.
	Flushed uint64
	// Noise counts bytes dropped between frames (see Cutter.Noise): with
	// gnss framing, bytes that are no valid NMEA, UBX or RTCM 3 packet.
	Noise uint64
	// Up is true while the port is open.
	Up bool
}

// NewReader validates cfg and returns a Reader for it; it does no I/O. A nil
// log discards the Reader's logs.
func NewReader(cfg PortConfig, log *zap.Logger) (*Reader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	cfg = cfg.withDefaults()
	r := &Reader{
		cfg:    cfg,
		log:    log.With(zap.String("port", cfg.Name), zap.String("path", cfg.Path)),
		cutter: NewCutter(cfg.Framer, cfg.MaxFrame),
		opened: make(chan struct{}),
		quiet:  make(chan struct{}, 1),
	}
	if f, ok := cfg.Framer.(IdleFlusher); ok {
		r.idleGap = max(f.IdleGap(cfg), 0)
	}
	r.fielder, _ = innerFramer(cfg.Framer).(fielder)
	return r, nil
}

// IdleGap returns the silence after which the Reader ends a frame in
// progress (see IdleFlusher), computed from the framer and the line
// settings; 0 when the framer needs none.
func (r *Reader) IdleGap() time.Duration { return r.idleGap }

// Opened is closed once the port has been opened for the first time, so a
// caller can tell "running" from "still waiting for the device".
func (r *Reader) Opened() <-chan struct{} { return r.opened }

// Stats returns the Reader's counters, read atomically one by one.
func (r *Reader) Stats() ReaderStats {
	return ReaderStats{
		Bytes:          r.bytes.Load(),
		Frames:         r.frames.Load(),
		Oversize:       r.oversize.Load(),
		OversizeBytes:  r.oversizeBytes.Load(),
		Reconnects:     r.reconnects.Load(),
		SilenceReopens: r.silences.Load(),
		ReadTimeouts:   r.timeouts.Load(),
		Flushed:        r.flushed.Load(),
		Noise:          r.noise.Load(),
		Up:             r.up.Load(),
	}
}

// Run opens the port and reads until ctx is done, then returns nil. It
// calls onFrame synchronously, on its own goroutine, for each frame in
// order; onFrame must not block on I/O (serialcbd's hands the frame to its
// event loop and returns) and may keep the Frame.
//
// When the port cannot be opened or a read fails (the device vanished),
// Run logs it once at Warn, marks the port down, drops the partial frame
// (bytes from before a disconnect are never glued to bytes after it) and
// reopens with capped exponential backoff, logging the return at Info.
// Reads block without a timeout, so an idle port costs no CPU; when ctx is
// done Run closes the port to wake the blocked read and returns promptly.
// On Linux those reads wait in Go's runtime poller (pollread_linux.go): a
// frame then wakes one thread, as it would `cat`.
//
// With a framer that ends frames on silence (IdleFlusher: idle framing, or
// lines with a flush), a read is given a timeout of the idle gap only while
// a frame is in progress; when it times out the frame is ended (Cutter.Flush)
// and reads block without a timeout again. A flushed frame's ReceivedAt is
// when its last bytes were read, not when the gap ran out.
// go.bug.st/serial times reads with select(2) (its termios has VMIN=1,
// VTIME=0, so VTIME's 0.1 s steps play no part): the timeout has microsecond
// resolution and ends gap plus the kernel's timer slack (50 µs by default)
// and scheduling delay after the read began.
//
// Run returns an error only if the Reader is already running or onFrame is
// nil. A Reader may run again after Run returns; Seq carries on.
func (r *Reader) Run(ctx context.Context, onFrame func(Frame)) error {
	return r.run(ctx, onFrame, false)
}

// RunOpen is Run, except that it returns the *OpenError at once if the first
// open fails: `serialcbd run` uses it to exit with a usage error on a
// missing or forbidden port. Losses after a successful open reconnect as in
// Run.
func (r *Reader) RunOpen(ctx context.Context, onFrame func(Frame)) error {
	return r.run(ctx, onFrame, true)
}

func (r *Reader) run(ctx context.Context, onFrame func(Frame), failFirst bool) error {
	if onFrame == nil {
		return errors.New("serialcb: nil onFrame callback")
	}
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("serialcb: Reader is already running")
	}
	defer r.running.Store(false)
	if r.buf == nil {
		r.buf = make([]byte, r.cfg.ReadBuffer)
	}

	// now is when the current read returned; every frame cut from it gets
	// that time. The closures are made once per Run, not per read.
	var now time.Time
	emit := func(p []byte) {
		r.seq++
		f := Frame{
			ID:         r.gen.New(now),
			Port:       r.cfg.Name,
			Seq:        r.seq,
			ReceivedAt: now,
			Payload:    r.carve(p),
		}
		if r.fielder != nil {
			if fl := r.fielder.appendFields(r.fieldBuf[:0], p); len(fl) > 0 {
				f.Fields = r.carve(fl)
			}
		}
		onFrame(f)
		r.frames.Add(1)
	}
	oversize := func(n int) { r.noteOversize(n, now) }

	delay := r.cfg.ReconnectMin
	opened := false    // during this Run
	var failKey string // the last open failure logged at Warn
	var downSince time.Time
	for ctx.Err() == nil {
		// The port list in a not-found hint costs an enumeration, so only
		// a failure to be logged at Warn gets it.
		port, err := openPort(r.cfg, failKey == "")
		if err != nil {
			if failFirst && !opened {
				return err
			}
			if key := openFailKey(err); key != failKey {
				failKey = key
				r.log.Warn("cannot open serial port; retrying", zap.Error(err), zap.Duration("retry_in", delay))
			} else {
				r.log.Debug("cannot open serial port; retrying", zap.Error(err), zap.Duration("retry_in", delay))
			}
			if !r.waitReopen(ctx, delay, errors.Is(err, ErrPortNotFound)) {
				break
			}
			delay = min(delay*2, r.cfg.ReconnectMax)
			continue
		}

		if opened {
			r.reconnects.Add(1)
			r.log.Info("serial port back", zap.Duration("down_for", time.Since(downSince)))
		} else {
			r.log.Info("serial port open", zap.Int("baud", r.cfg.Baud))
		}
		opened, failKey, delay = true, "", r.cfg.ReconnectMin
		r.cutter.Reset()
		r.busy.Store(false)
		q := r.openWrites() // before Up and Opened: a writer who saw them may write
		r.up.Store(true)
		// After Up: whoever waits on Opened must see the port up.
		r.openedOnce.Do(func() { close(r.opened) })
		err = r.readPort(ctx, port, q, &now, emit, oversize)
		r.up.Store(false)
		if ctx.Err() != nil {
			// A whole frame held only because more bytes might have
			// extended it (a regex match) is a frame, not a partial one.
			r.cutter.FlushComplete(emit)
			if r.emitPartialAtStop() && r.cutter.Flush(emit, oversize) {
				r.flushed.Add(1)
			}
			break
		}
		downSince = time.Now()
		// That Warn is the outage's one: a vanished device is expected to
		// be missing while it is away, so only other open failures (say,
		// permission denied after a replug) are worth another Warn.
		failKey = OpenNotFound.String()
		if errors.Is(err, ErrSilent) {
			r.silences.Add(1)
			r.log.Warn("no data from the serial port: reopening it", zap.Duration("silence", r.cfg.SilenceTimeout),
				zap.Int("partial_frame_bytes", len(r.cutter.Pending())+r.cutter.Dropping()))
		} else {
			r.log.Warn("serial port lost; reconnecting", zap.Error(err),
				zap.Int("partial_frame_bytes", len(r.cutter.Pending())+r.cutter.Dropping()),
				zap.Duration("retry_in", delay))
		}
		if !r.waitReopen(ctx, delay, true) {
			break
		}
		delay = min(delay*2, r.cfg.ReconnectMax)
	}
	r.logStop()
	return nil
}

// eachReader is a port that can stay in the runtime poller from read to
// read (lockedPort on Linux; see pollReader.ReadEach).
type eachReader interface {
	ReadEach(b []byte, each func(n int) bool) (ok, stopped bool, err error)
}

// readPort reads port until a read fails or ctx is done, and closes it.
func (r *Reader) readPort(ctx context.Context, port serial.Port, q chan *WriteRequest, now *time.Time, emit func([]byte), oversize func(int)) error {
	// A blocked Read cannot see ctx; closing the port wakes it.
	stop := make(chan struct{})
	watcherDone := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		r.writeLoop(port, q, stop)
	}()
	go func() {
		defer close(watcherDone)
		select {
		case <-ctx.Done():
			port.Close()
		case <-stop:
		}
	}()
	// The silence watchdog closes the port too; a timer reset per read
	// (not per frame) costs nothing when data flows and nothing when idle.
	var silent atomic.Bool
	var watchdog *time.Timer
	if to := r.cfg.SilenceTimeout; to > 0 {
		watchdog = time.AfterFunc(to, func() {
			silent.Store(true)
			port.Close()
		})
	}
	defer func() {
		if watchdog != nil {
			watchdog.Stop()
		}
		close(stop)
		port.Close() // idempotent; wakes a write blocked by the line
		<-watcherDone
		<-writerDone
		r.closeWrites(q)
	}()

	got := func(n int) {
		if watchdog != nil {
			watchdog.Reset(r.cfg.SilenceTimeout)
		}
		*now = time.Now().UTC()
		r.bytes.Add(uint64(n))
		r.cutter.Feed(r.buf[:n], emit, oversize)
		r.noise.Store(r.cutter.Noise())
		r.noteRead(*now)
	}
	// Untimed reads go through the poller where there is one (Linux):
	// lockedPort.ReadEach stays in it from read to read, handing each to
	// polled, until a frame in progress needs the idle read timeout armed
	// or the run is stopping (a read per ReadEach then, as with Read, which
	// a closed port refuses). Otherwise Read reads, and picks the poller
	// while no timeout is set.
	each, _ := port.(eachReader)
	polled := func(n int) bool {
		got(n)
		return ctx.Err() == nil && (r.idleGap <= 0 || !r.cutter.Busy())
	}
	armed := false // the idle read timeout is set
	for {
		if r.idleGap > 0 && r.cutter.Busy() != armed {
			armed = !armed
			to := time.Duration(serial.NoTimeout)
			if armed {
				to = r.idleGap
			}
			if err := port.SetReadTimeout(to); err != nil {
				return fmt.Errorf("set read timeout: %w", err)
			}
		}
		if each != nil && !armed {
			if ok, stopped, err := each.ReadEach(r.buf, polled); ok {
				switch {
				case err != nil && silent.Load() && ctx.Err() == nil:
					return ErrSilent
				case err != nil:
					return err
				case !stopped:
					return errNoData // end of file
				}
				continue
			}
		}
		n, err := port.Read(r.buf)
		if n > 0 {
			got(n)
		}
		switch {
		case err != nil && silent.Load() && ctx.Err() == nil:
			return ErrSilent
		case err != nil:
			return err
		case n == 0 && armed:
			// The line was silent for the gap: the frame in progress ends.
			// *now stays the time its last bytes were read.
			r.timeouts.Add(1)
			if r.cutter.Flush(emit, oversize) {
				r.flushed.Add(1)
			}
			r.noteBusy()
		case n == 0:
			return errNoData
		}
	}
}

// carve copies p into memory the frame owns. Small payloads share a block:
// a frame keeps its block alive, which is at most slabSize bytes.
func (r *Reader) carve(p []byte) []byte {
	n := len(p)
	if n > slabSize/4 {
		return append([]byte(nil), p...)
	}
	if len(r.slab) < n {
		r.slab = make([]byte, slabSize)
	}
	out := r.slab[:n:n] // cap = len: an append by the owner cannot touch a neighbour
	copy(out, p)
	r.slab = r.slab[n:]
	return out
}

func (r *Reader) noteOversize(n int, now time.Time) {
	r.oversize.Add(1)
	r.oversizeBytes.Add(uint64(n))
	r.ovPendFrames++
	r.ovPendBytes += n
	if r.ovLastLog.IsZero() || now.Sub(r.ovLastLog) >= oversizeLogEvery {
		r.logOversize(now)
	}
}

func (r *Reader) logOversize(now time.Time) {
	r.log.Warn("oversize frames dropped",
		zap.Int("frames", r.ovPendFrames),
		zap.Int("bytes", r.ovPendBytes),
		zap.Int("max_frame", r.cfg.MaxFrame),
		zap.Uint64("total_frames", r.oversize.Load()),
		zap.Duration("log_every", oversizeLogEvery))
	r.ovLastLog = now
	r.ovPendFrames, r.ovPendBytes = 0, 0
}

// emitPartialAtStop applies PortConfig.PartialAtStop.
func (r *Reader) emitPartialAtStop() bool {
	switch r.cfg.PartialAtStop {
	case PartialEmit:
		return true
	case PartialDrop:
		return false
	}
	_, idle := innerFramer(r.cfg.Framer).(gapBounded)
	return idle
}

// logStop reports what stopping leaves behind: oversize frames not yet
// logged, and the partial frame, which is dropped.
func (r *Reader) logStop() {
	if r.ovPendFrames > 0 {
		r.logOversize(time.Now())
	}
	if n := len(r.cutter.Pending()); n > 0 {
		r.log.Debug("partial frame dropped at stop", zap.Int("bytes", n))
	}
	if n := r.cutter.Dropping(); n > 0 {
		r.log.Debug("oversize partial frame dropped at stop", zap.Int("bytes", n))
	}
}

// openFailKey identifies an open failure for log de-duplication: a kind
// of failure is logged at Warn once per outage, however often it repeats
// and whatever its hint says.
func openFailKey(err error) string {
	var oe *OpenError
	if errors.As(err, &oe) && oe.Kind != OpenFailed {
		return oe.Kind.String()
	}
	return err.Error()
}

// sleep waits d or until ctx is done; it reports whether d elapsed.
// waitReopen waits d before the next open attempt, or less when the
// port's path changes (Linux: an inotify watch on its directory, so a
// replugged device is back at once). missing says the path was absent at
// the last attempt. It returns false when ctx ends.
func (r *Reader) waitReopen(ctx context.Context, d time.Duration, missing bool) bool {
	w := watchPath(r.cfg.Path)
	defer w.Close()
	// Before an open, udev needs a moment to finish (permissions, links).
	settle := min(r.cfg.ReconnectMin, 50*time.Millisecond)
	// The path may have appeared between the failed open and the watch.
	if _, err := os.Stat(r.cfg.Path); missing && err == nil {
		return sleep(ctx, settle)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	case <-w.C():
		return sleep(ctx, settle)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
