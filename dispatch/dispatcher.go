package dispatch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/serialcb"
)

// Errors a frame's future can carry (inside *DeliveryError for per-sink ones).
var (
	ErrBacklogFull = errors.New("sink backlog full: frames arrive faster than the sink takes them")
	ErrUnrouted    = errors.New("no route matches the frame's port")
	ErrStopped     = errors.New("stopped before delivery: the drain deadline passed")
)

// Options are one sink's delivery settings. Zero values take the defaults.
type Options struct {
	// MaxBatch is the most frames one Write carries (default 500).
	MaxBatch int
	// Linger is how long a partial batch may wait to fill. Zero writes as
	// soon as the sink is free, so batches grow only under load (group
	// commit): low latency at low rates, big batches at high rates.
	Linger time.Duration
	// MaxInflight is how many Writes may run at once (default 1).
	MaxInflight int
	// MaxPending caps the frames waiting for this sink (default 10,000).
	// When it is reached while the sink is healthy (just behind), Submit
	// waits for room: the read loop pauses and the kernel's and device's
	// buffers absorb the burst. While the sink is failing, a frame past the
	// cap fails for this sink with ErrBacklogFull, counted and logged, so a
	// dead sink never stalls a port or the other sinks.
	MaxPending int
	Retry      RetryPolicy
}

// RetryPolicy says how retryable failures are retried: exponential backoff
// from Initial to Max with jitter (a wait in [d/2, d]), at least as long as
// a RetryAfter error asks.
type RetryPolicy struct {
	Initial     time.Duration // default 100ms
	Max         time.Duration // default 30s
	MaxAttempts int           // 0: no limit
	MaxAge      time.Duration // 0: no limit; older frames (by received_at) give up
}

func (o Options) withDefaults() Options {
	if o.MaxBatch <= 0 {
		o.MaxBatch = 500
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = 1
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 10_000
	}
	if o.Retry.Initial <= 0 {
		o.Retry.Initial = 100 * time.Millisecond
	}
	if o.Retry.Max <= 0 {
		o.Retry.Max = 30 * time.Second
	}
	o.Retry.Max = max(o.Retry.Max, o.Retry.Initial)
	return o
}

// Target is a named sink with its delivery settings.
type Target struct {
	Name    string
	Sink    Sink
	Options Options
}

// Route sends the frames of Ports (all ports when empty) to Sinks.
type Route struct {
	Ports []string
	Sinks []string
}

// Config is what New needs.
type Config struct {
	Targets []Target
	// Routes: a frame goes to the union of the sinks of every route that
	// matches its port. No routes: every frame goes to every sink.
	Routes []Route
}

// Receipt is the value of a frame's future.
type Receipt struct {
	ID    serialcb.ID
	Port  string
	Seq   uint64
	Sinks int // sinks that acknowledged the frame
}

// SinkError is one sink's final failure for a frame.
type SinkError struct {
	Sink     string
	Attempts int
	Err      error
}

func (e *SinkError) Error() string {
	return fmt.Sprintf("sink %s: %v (attempts: %d)", e.Sink, e.Err, e.Attempts)
}

// Unwrap returns the sink's error.
func (e *SinkError) Unwrap() error { return e.Err }

// DeliveryError is the error of a frame that some sink did not take.
type DeliveryError struct {
	Delivered int // sinks that acknowledged it
	Failed    []*SinkError
}

func (e *DeliveryError) Error() string {
	parts := make([]string, len(e.Failed))
	for i, f := range e.Failed {
		parts[i] = f.Error()
	}
	return fmt.Sprintf("not delivered to %d of %d sinks: %s", len(e.Failed), len(e.Failed)+e.Delivered, strings.Join(parts, "; "))
}

// Unwrap returns the per-sink errors, for errors.Is and errors.As.
func (e *DeliveryError) Unwrap() []error {
	errs := make([]error, len(e.Failed))
	for i, f := range e.Failed {
		errs[i] = f
	}
	return errs
}

// Stats are counters safe to read from any goroutine.
type Stats struct {
	Submitted, Delivered, Failed uint64
	// Throttled counts the times Submit waited for a healthy sink's queue
	// to have room (back-pressure on a read loop).
	Throttled uint64
	Sinks     []SinkStats
}

// SinkStats are one sink's counters.
type SinkStats struct {
	Name                       string
	Delivered, Failed, Retried uint64
	Pending, Inflight          int64
	// Down is true while the sink fails (retrying with backoff) or hangs
	// (a write has not completed for a second).
	Down bool
}

// Dispatcher routes frames to sinks. Submit is safe from any goroutine;
// everything else it owns lives on the event loop's goroutine, so it needs
// no locks.
type Dispatcher struct {
	loop   *asyncloop.Loop
	log    *zap.Logger
	lanes  []*lane
	byName map[string]*lane
	routes []Route
	onDone func(*asyncloop.Future[Receipt])

	submitted, delivered, failed atomic.Uint64
	throttled                    atomic.Uint64
	handoffLog, throttleLog      limiter
	lanesByPort                  sync.Map // port → []*lane; routes are immutable, so any goroutine may fill it
	room                         roomSignal
	closing                      atomic.Bool // Drain began: admission no longer waits

	// Loop-owned.
	outstanding int
	draining    bool
	drained     chan struct{}
	aborted     bool
}

// item is one frame on its way to its sinks; loop-owned.
type item struct {
	frame     serialcb.Frame
	fut       *asyncloop.Future[Receipt]
	remaining int
	delivered int
	errs      []*SinkError
}

// New checks cfg and builds a Dispatcher; it does no I/O.
func New(loop *asyncloop.Loop, cfg Config, log *zap.Logger) (*Dispatcher, error) {
	if len(cfg.Targets) == 0 {
		return nil, errors.New("dispatch: no sinks")
	}
	d := &Dispatcher{
		loop:   loop,
		log:    log,
		byName: map[string]*lane{},
		routes: cfg.Routes,
	}
	for _, t := range cfg.Targets {
		if t.Sink == nil || t.Name == "" {
			return nil, fmt.Errorf("dispatch: sink %q: name and sink are required", t.Name)
		}
		if d.byName[t.Name] != nil {
			return nil, fmt.Errorf("dispatch: duplicate sink name %q", t.Name)
		}
		l := &lane{d: d, name: t.Name, sink: t.Sink, opt: t.Options.withDefaults(), waiting: map[*batch]func() bool{}}
		d.lanes = append(d.lanes, l)
		d.byName[t.Name] = l
	}
	for i, r := range cfg.Routes {
		for _, s := range r.Sinks {
			if d.byName[s] == nil {
				return nil, fmt.Errorf("dispatch: route %d: no sink named %q", i, s)
			}
		}
	}
	d.onDone = d.frameDone
	return d, nil
}

// Start runs the Start(ctx) method of every sink that has one (opening a
// database, creating its table), in order; the first failure is returned.
func (d *Dispatcher) Start(ctx context.Context) error {
	for _, l := range d.lanes {
		if s, ok := l.sink.(interface{ Start(context.Context) error }); ok {
			if err := s.Start(ctx); err != nil {
				return fmt.Errorf("start sink %s: %w", l.name, err)
			}
		}
	}
	return nil
}

// Submit hands a frame to the event loop and returns its future, which
// resolves once every routed sink acknowledged the frame (value) or gave up
// on it (a *DeliveryError), or at once when the hand-off itself fails (the
// loop's queue stayed full, or the loop is stopped). It never waits on I/O;
// with the loop's Block policy it may wait for room in the queue.
// Every failure is logged and counted here; callers may ignore the future.
func (d *Dispatcher) Submit(f serialcb.Frame) *asyncloop.Future[Receipt] {
	d.submitted.Add(1)
	lanes := d.route(f.Port)
	d.admit(lanes)
	it := &item{frame: f, fut: asyncloop.NewFuture[Receipt](d.loop)}
	if err := d.loop.CallSoon(func() { d.accept(it) }); err != nil {
		for _, l := range lanes {
			l.queued.Add(-1)
		}
		// Settled here, not through the loop: under overload the loop is the
		// bottleneck, and queueing a callback per rejected frame would grow
		// its unbounded completion list with the input rate.
		d.resolve(it, fmt.Errorf("hand-off to the event loop: %w", err))
		_ = it.fut.Err() // counted here; logged at a limited rate
		if ok, more := d.handoffLog.allow(time.Now()); ok {
			d.log.Error("frame not delivered: the event loop did not take it", zap.Stringer("id", f.ID),
				zap.String("port", f.Port), zap.Uint64("seq", f.Seq), zap.Int("more_since_last_report", more), zap.Error(err))
		}
		return it.fut
	}
	it.fut.AddDoneCallback(d.onDone)
	return it.fut
}

// resolve settles a frame's future and counts it before anyone can see it done.
func (d *Dispatcher) resolve(it *item, err error) {
	if err == nil {
		d.delivered.Add(1)
	} else {
		d.failed.Add(1)
	}
	it.fut.Resolve(it.receipt(), err)
}

// admit reserves a place for a frame in each routed lane's queue. It waits
// while a healthy sink's queue is full; see Options.MaxPending.
func (d *Dispatcher) admit(lanes []*lane) {
	for _, l := range lanes {
		for {
			q := l.queued.Load()
			if q >= int64(l.opt.MaxPending) && l.healthy() && !d.closing.Load() {
				d.waitForRoom(l)
				continue
			}
			if l.queued.CompareAndSwap(q, q+1) {
				break
			}
		}
	}
}

func (d *Dispatcher) waitForRoom(l *lane) {
	d.room.waiters.Add(1)
	defer d.room.waiters.Add(-1)
	ch := d.room.wait()
	// Checked after taking the channel, so a broadcast cannot slip between.
	if l.queued.Load() < int64(l.opt.MaxPending) || !l.healthy() || d.closing.Load() {
		return
	}
	d.throttled.Add(1)
	if ok, more := d.throttleLog.allow(time.Now()); ok {
		d.log.Warn("sink is behind: pausing the read loop until it catches up (back-pressure)",
			zap.String("sink", l.name), zap.Int("queue", l.opt.MaxPending), zap.Int("more_since_last_report", more))
	}
	t := time.NewTimer(250 * time.Millisecond) // a safety net; broadcasts are the signal
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}

// roomSignal wakes every goroutine waiting in admit.
type roomSignal struct {
	mu      sync.Mutex
	ch      chan struct{}
	waiters atomic.Int32
}

func (r *roomSignal) wait() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ch == nil {
		r.ch = make(chan struct{})
	}
	return r.ch
}

func (r *roomSignal) broadcast() {
	if r.waiters.Load() == 0 {
		return // the common case costs one atomic load
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ch != nil {
		close(r.ch)
		r.ch = nil
	}
}

func (it *item) receipt() Receipt {
	return Receipt{ID: it.frame.ID, Port: it.frame.Port, Seq: it.frame.Seq, Sinks: it.delivered}
}

// frameDone is every frame future's done-callback.
func (d *Dispatcher) frameDone(f *asyncloop.Future[Receipt]) {
	err := f.Err()
	if err == nil {
		return
	}
	var de *DeliveryError
	if !errors.As(err, &de) { // per-sink failures were logged by their lane
		r, _ := f.Result(context.Background())
		d.log.Error("frame not delivered", zap.Stringer("id", r.ID), zap.String("port", r.Port), zap.Uint64("seq", r.Seq), zap.Error(err))
	}
}

// accept runs on the loop.
func (d *Dispatcher) accept(it *item) {
	lanes := d.route(it.frame.Port)
	if d.aborted {
		for _, l := range lanes {
			l.queued.Add(-1)
		}
		d.resolve(it, ErrStopped)
		return
	}
	if len(lanes) == 0 {
		d.resolve(it, fmt.Errorf("port %q: %w", it.frame.Port, ErrUnrouted))
		return
	}
	d.outstanding++
	it.remaining = len(lanes)
	for _, l := range lanes {
		l.enqueue(it)
	}
}

func (d *Dispatcher) route(port string) []*lane {
	if lanes, ok := d.lanesByPort.Load(port); ok {
		return lanes.([]*lane)
	}
	var lanes []*lane
	if len(d.routes) == 0 {
		lanes = d.lanes
	} else {
		seen := map[*lane]bool{}
		for _, r := range d.routes {
			if len(r.Ports) > 0 && !contains(r.Ports, port) {
				continue
			}
			for _, s := range r.Sinks {
				if l := d.byName[s]; !seen[l] {
					seen[l] = true
					lanes = append(lanes, l)
				}
			}
		}
	}
	d.lanesByPort.Store(port, lanes)
	return lanes
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}

// sinkDone records one sink's final outcome for a frame; on the loop.
func (d *Dispatcher) sinkDone(it *item, serr *SinkError) {
	it.remaining--
	if serr != nil {
		it.errs = append(it.errs, serr)
	} else {
		it.delivered++
	}
	if it.remaining > 0 {
		return
	}
	d.outstanding--
	if len(it.errs) > 0 {
		d.resolve(it, &DeliveryError{Delivered: it.delivered, Failed: it.errs})
	} else {
		d.resolve(it, nil)
	}
	if d.draining && d.outstanding == 0 && d.drained != nil {
		close(d.drained)
		d.drained = nil
	}
}

// Drain waits until every submitted frame has its outcome. Call it after
// the read loops stopped. If ctx ends first, the frames still queued or
// waiting to retry fail with ErrStopped (logged and counted), and writes in
// flight fail when the loop's Shutdown cancels them; Drain then returns
// ctx.Err().
func (d *Dispatcher) Drain(ctx context.Context) error {
	done := make(chan struct{})
	d.closing.Store(true)
	d.room.broadcast()
	start := func() {
		d.draining = true
		if d.outstanding == 0 {
			close(done)
			return
		}
		d.drained = done
		for _, l := range d.lanes {
			l.pump() // flush batches held back by Linger
		}
	}
	// CallSoon keeps Drain behind every frame already handed over (FIFO);
	// a full queue is retried until ctx ends instead of skipping the drain.
	for {
		err := d.loop.CallSoon(start)
		if err == nil {
			break
		}
		if !errors.Is(err, asyncloop.ErrQueueFull) {
			return fmt.Errorf("drain: %w", err) // loop closed: Close sweeps
		}
		select {
		case <-ctx.Done():
			done = nil // never handed over: abort below
		case <-time.After(time.Millisecond):
			continue
		}
		break
	}
	select {
	case <-done: // nil channel blocks
		return nil
	case <-ctx.Done():
	case <-d.loop.Stopped():
		return fmt.Errorf("drain: %w", asyncloop.ErrClosed)
	}
	aborted := make(chan struct{})
	abort := func() { d.abort(false); close(aborted) }
	// CallSoon keeps the abort behind the drain's start (FIFO); CallLater
	// cannot be refused while the loop runs, for when the queue is full.
	if d.loop.CallSoon(abort) != nil {
		d.loop.CallLater(0, abort)
	}
	select {
	case <-aborted:
	case <-d.loop.Stopped(): // Close sweeps what abort could not reach
	}
	if done != nil {
		select {
		case <-done:
			return nil
		default:
		}
	}
	return ctx.Err()
}

// abort gives up on everything not yet being written; on the loop.
func (d *Dispatcher) abort(final bool) {
	d.aborted = true
	for _, l := range d.lanes {
		for b, stop := range l.waiting {
			if stop() || final { // after Shutdown no timer can run any more
				delete(l.waiting, b)
				l.setInflight(-1)
				l.fail(b.items, b.attempts, ErrStopped)
			}
		}
		for _, b := range l.ready {
			l.fail(b.items, b.attempts, ErrStopped)
		}
		l.ready = nil
		if n := len(l.pending) - l.head; n > 0 {
			items := l.pending[l.head:]
			l.pending, l.head = nil, 0
			l.queued.Add(-int64(n))
			l.fail(items, 0, ErrStopped)
		}
	}
}

// Close closes every sink. Call it after the loop has shut down.
func (d *Dispatcher) Close() error {
	d.abort(true) // the loop has stopped: fail what its stopped timers held
	var errs []error
	for _, l := range d.lanes {
		if err := l.sink.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close sink %s: %w", l.name, err))
		}
	}
	return errors.Join(errs...)
}

// Stats returns a snapshot of the counters.
func (d *Dispatcher) Stats() Stats {
	s := Stats{Submitted: d.submitted.Load(), Delivered: d.delivered.Load(), Failed: d.failed.Load(), Throttled: d.throttled.Load()}
	for _, l := range d.lanes {
		s.Sinks = append(s.Sinks, SinkStats{
			Name:      l.name,
			Delivered: l.nDelivered.Load(),
			Failed:    l.nFailed.Load(),
			Retried:   l.nRetried.Load(),
			Pending:   l.queued.Load(),
			Inflight:  l.inflightN.Load(),
			Down:      !l.healthy(),
		})
	}
	return s
}

// limiter lets one log line through per interval and counts the others,
// for failures that happen at the input rate under overload.
type limiter struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

const logInterval = 10 * time.Second

func (r *limiter) allow(now time.Time) (ok bool, suppressed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.last.IsZero() && now.Sub(r.last) < logInterval {
		r.suppressed++
		return false, 0
	}
	suppressed, r.suppressed, r.last = r.suppressed, 0, now
	return true, suppressed
}

// lane carries frames to one sink; all its fields but the counters are
// owned by the loop goroutine.
type lane struct {
	d    *Dispatcher
	name string
	sink Sink
	opt  Options

	pending    []*item
	head       int
	inflight   int // batches being written or waiting to retry
	failing    int // consecutive failed attempts; >0 means probe with one batch
	lingerStop func() bool
	lingerDue  bool
	waiting    map[*batch]func() bool // batches in backoff → stop their timer
	ready      []*batch               // retries whose backoff is over, started before new batches
	backlogLog limiter

	nDelivered, nFailed, nRetried atomic.Uint64
	// queued counts frames admitted for this sink and not yet in a batch
	// (Submit reserves, pump releases); down mirrors failing > 0.
	queued, inflightN atomic.Int64
	down              atomic.Bool
	progress          atomic.Int64 // UnixNano of the last write completed (or started from idle)
}

// stallAfter is how long a busy sink may go without completing a write
// before admission stops waiting for it: a sink that hangs is treated like
// one that fails, so it cannot stall the read loop or the other sinks.
const stallAfter = time.Second

// healthy reports whether waiting for this sink's queue to drain is
// worthwhile: it is not failing and it is making progress. Any goroutine.
func (l *lane) healthy() bool {
	if l.down.Load() {
		return false
	}
	return l.inflightN.Load() == 0 || time.Since(time.Unix(0, l.progress.Load())) < stallAfter
}

func (l *lane) setFailing(n int) {
	l.failing = n
	if down := n > 0; down != l.down.Load() {
		l.down.Store(down)
		l.d.room.broadcast() // waiters stop waiting for a sink that is down
	}
}

type batch struct {
	items    []*item
	frames   []*serialcb.Frame
	attempts int
}

func (l *lane) setInflight(delta int) {
	l.inflight += delta
	l.inflightN.Store(int64(l.inflight))
}

func (l *lane) enqueue(it *item) {
	if len(l.pending)-l.head >= l.opt.MaxPending {
		// Only while the sink is down (admission waits otherwise): frames
		// fail at the input rate, so count each and log a few.
		l.queued.Add(-1)
		l.nFailed.Add(1)
		if ok, more := l.backlogLog.allow(time.Now()); ok {
			l.d.log.Error("frame not delivered to sink: sink backlog full", zap.String("sink", l.name),
				zap.Stringer("id", it.frame.ID), zap.String("port", it.frame.Port), zap.Uint64("seq", it.frame.Seq),
				zap.Int("queue", l.opt.MaxPending), zap.Int("more_since_last_report", more))
		}
		l.d.sinkDone(it, &SinkError{Sink: l.name, Err: ErrBacklogFull})
		return
	}
	l.pending = append(l.pending, it)
	l.pump()
}

// pump starts batches while the lane has room; on the loop.
func (l *lane) pump() {
	for {
		n := len(l.pending) - l.head
		if n == 0 && len(l.ready) == 0 {
			return
		}
		limit := l.opt.MaxInflight
		if l.failing > 0 {
			limit = 1 // the sink is failing: probe it with one batch, do not hammer it
		}
		if l.inflight >= limit {
			return
		}
		if len(l.ready) > 0 {
			b := l.ready[0]
			l.ready[0] = nil
			l.ready = l.ready[1:]
			l.start(b)
			continue
		}
		if n < l.opt.MaxBatch && l.opt.Linger > 0 && !l.lingerDue && !l.d.draining {
			if l.lingerStop == nil {
				l.lingerStop = l.d.loop.CallLater(l.opt.Linger, l.lingerFired)
			}
			return
		}
		take := min(n, l.opt.MaxBatch)
		b := &batch{items: make([]*item, take), frames: make([]*serialcb.Frame, take)}
		copy(b.items, l.pending[l.head:l.head+take])
		clear(l.pending[l.head : l.head+take])
		l.head += take
		if l.head == len(l.pending) {
			l.pending, l.head = l.pending[:0], 0
		} else if l.head > len(l.pending)/2 && l.head > 1024 {
			l.pending = l.pending[:copy(l.pending, l.pending[l.head:])]
			l.head = 0
		}
		l.queued.Add(-int64(take))
		l.d.room.broadcast()
		for i, it := range b.items {
			b.frames[i] = &it.frame
		}
		l.lingerDue = false
		if l.lingerStop != nil {
			l.lingerStop()
			l.lingerStop = nil
		}
		l.start(b)
	}
}

func (l *lane) lingerFired() {
	l.lingerStop = nil
	l.lingerDue = true
	l.pump()
}

// start submits one Write of b to the loop's workers.
func (l *lane) start(b *batch) {
	if l.inflight == 0 {
		l.progress.Store(time.Now().UnixNano())
	}
	b.attempts++
	l.setInflight(1)
	fut := asyncloop.Submit(l.d.loop, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, l.sink.Write(ctx, b.frames)
	})
	fut.AddDoneCallback(func(f *asyncloop.Future[struct{}]) { l.finish(b, f.Err()) })
}

// finish acts on a Write's outcome: acknowledge, give up, or retry; on the loop.
func (l *lane) finish(b *batch, err error) {
	l.progress.Store(time.Now().UnixNano())
	l.setInflight(-1)
	if err == nil {
		l.setFailing(0)
		l.ack(b.items)
		l.pump()
		return
	}
	var retry []*item
	var lastErr error
	var be *BatchError
	switch {
	case errors.As(err, &be) && len(be.Errs) == len(b.items):
		var ok []*item
		for i, e := range be.Errs {
			switch {
			case e == nil:
				ok = append(ok, b.items[i])
			case IsPermanent(e):
				l.fail(b.items[i:i+1], b.attempts, e)
			default:
				retry = append(retry, b.items[i])
				lastErr = e
			}
		}
		l.ack(ok)
	case IsPermanent(err):
		l.fail(b.items, b.attempts, err)
	default:
		retry, lastErr = b.items, err
	}
	if len(retry) == 0 {
		l.setFailing(0) // the sink answered; it rejected frames, it is not down
		l.pump()
		return
	}
	if l.d.aborted || errors.Is(err, asyncloop.ErrClosed) {
		l.fail(retry, b.attempts, ErrStopped)
		l.pump()
		return
	}
	if p := l.opt.Retry; p.MaxAttempts > 0 && b.attempts >= p.MaxAttempts {
		l.fail(retry, b.attempts, fmt.Errorf("gave up after %d attempts: %w", b.attempts, lastErr))
		l.pump()
		return
	}
	if maxAge := l.opt.Retry.MaxAge; maxAge > 0 {
		now := time.Now()
		fresh := retry[:0:0]
		for _, it := range retry {
			if now.Sub(it.frame.ReceivedAt) > maxAge {
				l.fail([]*item{it}, b.attempts, fmt.Errorf("gave up: older than max age %s: %w", maxAge, lastErr))
			} else {
				fresh = append(fresh, it)
			}
		}
		if retry = fresh; len(retry) == 0 {
			l.pump()
			return
		}
	}
	rb := b
	if len(retry) != len(b.items) {
		rb = &batch{items: retry, frames: make([]*serialcb.Frame, len(retry)), attempts: b.attempts}
		for i, it := range retry {
			rb.frames[i] = &it.frame
		}
	}
	l.setFailing(l.failing + 1)
	delay := l.backoff(rb.attempts, lastErr)
	l.nRetried.Add(uint64(len(rb.items)))
	l.d.log.Warn("sink write failed; will retry",
		zap.String("sink", l.name), zap.Int("frames", len(rb.items)), zap.Int("attempt", rb.attempts),
		zap.Duration("retry_in", delay), zap.Error(lastErr))
	l.setInflight(1) // the waiting batch keeps its slot
	l.waiting[rb] = l.d.loop.CallLater(delay, func() {
		delete(l.waiting, rb)
		l.setInflight(-1)
		if l.d.aborted {
			l.fail(rb.items, rb.attempts, ErrStopped)
			return
		}
		// Through pump, so that retries too respect the probe limit.
		l.ready = append(l.ready, rb)
		l.pump()
	})
	l.pump()
}

func (l *lane) backoff(attempts int, err error) time.Duration {
	p := l.opt.Retry
	d := p.Initial
	for i := 1; i < attempts && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	d = d/2 + rand.N(d/2+1) // jitter in [d/2, d] so that many ports do not retry in step
	if ra, ok := retryAfter(err); ok && ra > d {
		d = min(ra, time.Hour)
	}
	return d
}

func (l *lane) ack(items []*item) {
	l.nDelivered.Add(uint64(len(items)))
	for _, it := range items {
		l.d.sinkDone(it, nil)
	}
}

// fail gives up on items for this sink and logs it: one line per frame for
// small groups, one summary line (first and last frame) for large ones.
func (l *lane) fail(items []*item, attempts int, err error) {
	if len(items) == 0 {
		return
	}
	l.nFailed.Add(uint64(len(items)))
	log := l.d.log
	if len(items) <= 10 {
		for _, it := range items {
			log.Error("frame not delivered to sink", zap.String("sink", l.name), zap.Stringer("id", it.frame.ID),
				zap.String("port", it.frame.Port), zap.Uint64("seq", it.frame.Seq), zap.Int("attempts", attempts), zap.Error(err))
		}
	} else {
		first, last := &items[0].frame, &items[len(items)-1].frame
		log.Error("frames not delivered to sink", zap.String("sink", l.name), zap.Int("frames", len(items)),
			zap.Stringer("first_id", first.ID), zap.String("first_port", first.Port), zap.Uint64("first_seq", first.Seq),
			zap.Stringer("last_id", last.ID), zap.String("last_port", last.Port), zap.Uint64("last_seq", last.Seq),
			zap.Int("attempts", attempts), zap.Error(err))
	}
	for _, it := range items {
		l.d.sinkDone(it, &SinkError{Sink: l.name, Attempts: attempts, Err: err})
	}
}
