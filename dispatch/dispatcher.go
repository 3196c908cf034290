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
	"github.com/serialcbd/serialcbd/dispatch/spool"
	"github.com/serialcbd/serialcbd/serialcb"
)

// Errors a frame's future can carry (inside *DeliveryError for per-sink ones).
var (
	ErrBacklogFull = errors.New("sink backlog full: frames arrive faster than the sink takes them")
	ErrUnrouted    = errors.New("no route matches the frame")
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
	// OpenSpool, when set, makes the lane store-and-forward: every frame
	// is appended to the spool (group commits, one Append in flight)
	// before it counts as taken, and the sink is fed from the spool, which
	// is acknowledged as deliveries complete. A frame's future then
	// resolves once the frame is on disk; its delivery is the lane's
	// business (retries, dead letters, metrics). Linger does not apply:
	// frames gather on disk while the sink is busy.
	//
	// Start calls it (it does I/O); until then accepted frames wait in
	// memory, within MaxPending. The dead-letter store receives the frames
	// the sink will never take (permanent errors, MaxAttempts, MaxAge);
	// when nil they are logged, counted and dropped. The Dispatcher closes
	// both (the store when it is an io.Closer).
	OpenSpool func() (*spool.Spool, DeadLetterStore, error)
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

// Config is what New needs.
type Config struct {
	Targets []Target
	// Routes are rules tried in order (see Route). No routes and no
	// DefaultSinks: every frame goes to every sink.
	Routes []Route
	// DefaultSinks get the frames that no route matches.
	DefaultSinks []string
	// UnroutedSink, when there are no DefaultSinks, gets the frames that
	// no route matches. Such frames count in Stats.Unrouted; without an
	// unrouted sink they are dropped (their futures fail with ErrUnrouted)
	// and logged at a limited rate.
	UnroutedSink string
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
	// Unrouted counts frames that no route matched and no default route
	// took. Those sent to the unrouted sink count in Delivered or Failed
	// too; dropped ones count here only (dropping them is what the routes
	// say, not a failure).
	Unrouted uint64
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
	// Spooled counts frames appended to the sink's spool; DeadLettered
	// those given up and handed to the dead-letter store (or dropped when
	// there is none). Spool is the spool's own snapshot; nil without one.
	Spooled, DeadLettered uint64
	Spool                 *spool.Stats
	// SpoolFailing is true while appends to the spool fail (a broken or
	// full disk under drop-oldest with nothing left to drop).
	SpoolFailing bool
	// Latency counts delivered frames by read → acknowledged time.
	Latency LatencyHistogram
}

// LatencyBounds are the upper bounds, in seconds, of the delivery latency
// buckets: from 1 ms (a healthy local sink) to 1 h (a long outage).
var LatencyBounds = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}

// LatencyHistogram is a snapshot of a latency histogram: Counts[i] frames
// took at most LatencyBounds[i] (not cumulative), Counts[len] the rest.
type LatencyHistogram struct {
	Counts [len(LatencyBounds) + 1]uint64
	Sum    float64 // seconds
}

// latencyHist is a lane's histogram, written on the loop, read anywhere.
type latencyHist struct {
	counts [len(LatencyBounds) + 1]atomic.Uint64
	sumNs  atomic.Int64
}

func (h *latencyHist) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(LatencyBounds) && s > LatencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(int64(d))
}

func (h *latencyHist) snapshot() LatencyHistogram {
	var out LatencyHistogram
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
	}
	out.Sum = time.Duration(h.sumNs.Load()).Seconds()
	return out
}

// Dispatcher routes frames to sinks. Submit is safe from any goroutine;
// everything else it owns lives on the event loop's goroutine, so it needs
// no locks.
type Dispatcher struct {
	loop   *asyncloop.Loop
	log    *zap.Logger
	lanes  []*lane
	byName map[string]*lane
	routes *router
	onDone func(*asyncloop.Future[Receipt])
	// acceptAny is accept for CallSoonWith, built once in New: the per-frame
	// hand-off then costs no closure.
	acceptAny func(any)

	submitted, delivered, failed atomic.Uint64
	throttled                    atomic.Uint64
	handoffLog, throttleLog      limiter
	room                         roomSignal
	closing                      atomic.Bool // Drain began: admission no longer waits

	// Loop-owned.
	outstanding int
	draining    bool
	handover    bool // draining for a successor: spooled lanes stop reading
	drained     chan struct{}
	aborted     bool
}

// item is one frame on its way to its sinks; loop-owned. Its future is
// embedded (one allocation per frame instead of two; Submit returns &fut),
// so an item must not be copied: it is only ever handled as *item.
//
// Retention: whoever holds the returned future now holds the whole item.
// In the daemon nobody does (the read loop ignores the future, bench only
// adds a callback), but a caller keeping futures (tests, an embedding
// program waiting for results) would otherwise pin each frame's payload,
// which shares a slab of the reader's with its neighbours, for as long as
// it keeps the future. So resolve drops the item's references once the
// future is settled: by then every lane has reported on the frame and no
// longer uses it (sinkDone resolves when remaining reaches 0; the other
// paths resolve frames no lane ever saw), and the Receipt the future holds
// was copied out before. What stays is the item itself (376 bytes, of which
// 200 are the future; the separate future used to take 208).
type item struct {
	frame     serialcb.Frame
	lanes     []*lane // where the frame goes, from route
	remaining int
	delivered int
	errs      []*SinkError
	fut       asyncloop.Future[Receipt]
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
	}
	for _, t := range cfg.Targets {
		if t.Sink == nil || t.Name == "" {
			return nil, fmt.Errorf("dispatch: sink %q: name and sink are required", t.Name)
		}
		if d.byName[t.Name] != nil {
			return nil, fmt.Errorf("dispatch: duplicate sink name %q", t.Name)
		}
		l := &lane{d: d, name: t.Name, sink: t.Sink, opt: t.Options.withDefaults(), waiting: map[*batch]func() bool{}}
		l.spooled = l.opt.OpenSpool != nil
		d.lanes = append(d.lanes, l)
		d.byName[t.Name] = l
	}
	rt, err := newRouter(cfg, d.lanes, d.byName)
	if err != nil {
		return nil, err
	}
	d.routes = rt
	d.onDone = d.frameDone
	d.acceptAny = func(v any) { d.accept(v.(*item)) }
	return d, nil
}

// Start starts the sinks (StartSinks) and then the spools (StartSpools).
func (d *Dispatcher) Start(ctx context.Context) error {
	if err := d.StartSinks(ctx); err != nil {
		return err
	}
	return d.StartSpools()
}

// StartSinks runs the Start(ctx) method of every sink that has one (opening
// a database, creating its table), in order; the first failure is returned.
func (d *Dispatcher) StartSinks(ctx context.Context) error {
	for _, l := range d.lanes {
		if s, ok := l.sink.(interface{ Start(context.Context) error }); ok {
			if err := s.Start(ctx); err != nil {
				return fmt.Errorf("start sink %s: %w", l.name, err)
			}
		}
	}
	return nil
}

// StartSpools opens the spools of the lanes that have one (OpenSpool) and
// hands them to the loop; until then those lanes hold accepted frames in
// memory. A reload calls it once the previous dispatcher's Handover has
// released the spools.
func (d *Dispatcher) StartSpools() error {
	type opened struct {
		l  *lane
		sp *spool.Spool
		dl DeadLetterStore
	}
	var spools []opened
	var errs []error
	for _, l := range d.lanes {
		if !l.spooled {
			continue
		}
		sp, dl, err := l.opt.OpenSpool()
		if err != nil {
			// No spool: admission must not wait for this lane's queue, or
			// every read loop routed here pauses for good.
			l.spoolDown.Store(true)
			errs = append(errs, fmt.Errorf("open the spool of sink %s: %w", l.name, err))
			continue
		}
		spools = append(spools, opened{l, sp, dl})
		l.openedSp, l.openedDl = sp, dl
	}
	if len(spools) > 0 {
		// Handed to the loop, which owns the lanes: frames a previous run
		// left in the spools go first, then those accepted meanwhile.
		err := d.loop.CallSoon(func() {
			for _, o := range spools {
				o.l.attachSpool(o.sp, o.dl)
			}
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("start spools: %w", err)) // Close closes them
		}
	}
	return errors.Join(errs...)
}

// Submit hands a frame to the event loop and returns its future, which
// resolves once every routed sink acknowledged the frame (value) or gave up
// on it (a *DeliveryError), or at once when the hand-off itself fails (the
// loop's queue stayed full, or the loop is stopped). It never waits on I/O;
// with the loop's Block policy it may wait for room in the queue.
// Every failure is logged and counted here; callers may ignore the future.
func (d *Dispatcher) Submit(f serialcb.Frame) *asyncloop.Future[Receipt] {
	d.submitted.Add(1)
	lanes := d.route(&f)
	if lanes == nil {
		return d.drop(&f)
	}
	d.admit(lanes)
	it := &item{frame: f, lanes: lanes}
	it.fut.Init(d.loop)
	// CallSoonWith, not CallSoon with a closure: no allocation per frame,
	// and the same queue, so Drain's CallSoon still runs after this frame.
	if err := d.loop.CallSoonWith(d.acceptAny, it); err != nil {
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
		return &it.fut
	}
	it.fut.AddDoneCallback(d.onDone)
	return &it.fut
}

// resolve settles a frame's future and counts it before anyone can see it done.
func (d *Dispatcher) resolve(it *item, err error) {
	if err == nil {
		d.delivered.Add(1)
	} else {
		d.failed.Add(1)
	}
	it.fut.Resolve(it.receipt(), err)
	// Settled: no lane uses the item any more, and the receipt is in the
	// future. Drop what a caller keeping the future would otherwise pin
	// (see item).
	it.frame.Payload, it.frame.Fields, it.lanes, it.errs = nil, nil, nil, nil
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
	lanes := it.lanes
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
	d.checkDrained()
}

// checkDrained ends a Drain once every frame has its outcome and every
// spooled lane that is not failing has delivered what its spool holds.
func (d *Dispatcher) checkDrained() {
	if !d.draining || d.drained == nil || d.outstanding > 0 {
		return
	}
	for _, l := range d.lanes {
		if !l.spoolSettled() {
			return
		}
	}
	close(d.drained)
	d.drained = nil
}

// Drain waits until every submitted frame has its outcome and every
// spooled sink that is not failing has emptied its spool. Call it after
// the read loops stopped. If ctx ends first, the frames still queued or
// waiting to retry fail with ErrStopped (logged and counted), and writes in
// flight fail when the loop's Shutdown cancels them; Drain then returns
// ctx.Err(). Frames already in a spool are not lost: they stay there for
// the next start.
func (d *Dispatcher) Drain(ctx context.Context) error { return d.drain(ctx, false) }

// Handover is Drain for a dispatcher whose spools another one takes over
// (a reload that changes the sinks): it waits until every frame is in its
// spool and no write runs, but leaves the spools' contents, and batches
// waiting to retry, to the successor. Close, then the successor's Start.
func (d *Dispatcher) Handover(ctx context.Context) error { return d.drain(ctx, true) }

func (d *Dispatcher) drain(ctx context.Context, handover bool) error {
	done := make(chan struct{})
	d.closing.Store(true)
	d.room.broadcast()
	start := func() {
		d.handover = handover
		d.draining = true
		d.drained = done
		for _, l := range d.lanes {
			l.pump() // flush batches held back by Linger
		}
		d.checkDrained()
		// A spooled sink failing now counts as down once it has failed for
		// stallAfter; nothing else would wake the check then.
		d.loop.CallLater(stallAfter, d.checkDrained)
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
	abandoned := false
	abort := func() { abandoned = d.abort(false); close(aborted) }
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
			if !abandoned { // drained just as the deadline passed
				return nil
			}
		default:
		}
	}
	return ctx.Err()
}

// abort gives up on everything not yet being written; on the loop. It
// reports whether it left anything undelivered.
func (d *Dispatcher) abort(final bool) (abandoned bool) {
	d.aborted = true
	for _, l := range d.lanes {
		for b, stop := range l.waiting {
			if stop() || final { // after Shutdown no timer can run any more
				delete(l.waiting, b)
				l.setInflight(-1)
				l.stopped(b)
				abandoned = true
			}
		}
		for _, b := range l.ready {
			l.stopped(b)
			abandoned = true
		}
		l.ready = nil
		if n := len(l.pending) - l.head; n > 0 {
			abandoned = true
			items := l.pending[l.head:]
			l.pending, l.head = nil, 0
			l.queued.Add(-int64(n))
			l.fail(items, 0, ErrStopped)
		}
	}
	return abandoned
}

// Close closes every sink. Call it after the loop has shut down.
func (d *Dispatcher) Close() error {
	_ = d.abort(true) // the loop has stopped: fail what its stopped timers held
	var errs []error
	for _, l := range d.lanes {
		if err := l.sink.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close sink %s: %w", l.name, err))
		}
		if err := l.closeSpool(); err != nil {
			errs = append(errs, fmt.Errorf("close spool of sink %s: %w", l.name, err))
		}
	}
	return errors.Join(errs...)
}

// Stats returns a snapshot of the counters.
func (d *Dispatcher) Stats() Stats {
	s := Stats{Submitted: d.submitted.Load(), Delivered: d.delivered.Load(), Failed: d.failed.Load(), Unrouted: d.routes.unrouted.Load(), Throttled: d.throttled.Load()}
	for _, l := range d.lanes {
		ss := SinkStats{
			Name:         l.name,
			Delivered:    l.nDelivered.Load(),
			Failed:       l.nFailed.Load(),
			Retried:      l.nRetried.Load(),
			Pending:      l.queued.Load(),
			Inflight:     l.inflightN.Load(),
			Down:         l.down.Load() || !l.healthy(),
			Spooled:      l.nSpooled.Load(),
			DeadLettered: l.nDead.Load(),
			Latency:      l.latency.snapshot(),
			SpoolFailing: l.spoolDown.Load(),
		}
		if sp := l.spoolRef.Load(); sp != nil {
			st := sp.Stats()
			ss.Spool = &st
		}
		s.Sinks = append(s.Sinks, ss)
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

	pending      []*item
	head         int
	inflight     int // batches being written or waiting to retry
	failing      int // consecutive failed attempts; >0 means probe with one batch
	failingSince time.Time
	lingerStop   func() bool
	lingerDue    bool
	waiting      map[*batch]func() bool // batches in backoff → stop their timer
	ready        []*batch               // retries whose backoff is over, started before new batches
	backlogLog   limiter

	spoolLane // store-and-forward state; unused when sp is nil

	nDelivered, nFailed, nRetried atomic.Uint64
	latency                       latencyHist
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
	if l.spooled {
		return l.spoolHealthy()
	}
	if l.down.Load() {
		return false
	}
	return l.inflightN.Load() == 0 || time.Since(time.Unix(0, l.progress.Load())) < stallAfter
}

func (l *lane) setFailing(n int) {
	if n > 0 && l.failing == 0 {
		l.failingSince = time.Now()
		if l.spooled && l.d.draining {
			// Drain ends for a sink down for stallAfter: check again then.
			l.d.loop.CallLater(stallAfter, l.d.checkDrained)
		}
	}
	l.failing = n
	if down := n > 0; down != l.down.Load() {
		l.down.Store(down)
		l.d.room.broadcast() // waiters stop waiting for a sink that is down
	}
}

// batch is one Write's frames. A memory lane's batch carries the items
// whose futures wait on it; a spooled lane's carries the spool chunk its
// frames were read from.
type batch struct {
	items    []*item
	frames   []*serialcb.Frame
	chunk    *chunk
	attempts int
}

// subset returns a batch of the frames at idx, keeping the attempt count.
func (b *batch) subset(idx []int) *batch {
	if len(idx) == len(b.frames) {
		return b
	}
	sb := &batch{frames: make([]*serialcb.Frame, len(idx)), chunk: b.chunk, attempts: b.attempts}
	if b.items != nil {
		sb.items = make([]*item, len(idx))
	}
	for j, i := range idx {
		sb.frames[j] = b.frames[i]
		if b.items != nil {
			sb.items[j] = b.items[i]
		}
	}
	return sb
}

func seq(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
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
	if l.spooled {
		l.pumpSpooled()
		return
	}
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
		l.delivered(b, seq(len(b.frames)))
		l.pump()
		return
	}
	var retry []int
	var lastErr error
	var be *BatchError
	switch {
	case errors.As(err, &be) && len(be.Errs) == len(b.frames):
		var ok []int
		for i, e := range be.Errs {
			switch {
			case e == nil:
				ok = append(ok, i)
			case IsPermanent(e):
				l.giveUp(b, []int{i}, e)
			default:
				retry = append(retry, i)
				lastErr = e
			}
		}
		l.delivered(b, ok)
	case IsPermanent(err):
		l.giveUp(b, seq(len(b.frames)), err)
	default:
		retry, lastErr = seq(len(b.frames)), err
	}
	if len(retry) == 0 {
		l.setFailing(0) // the sink answered; it rejected frames, it is not down
		l.pump()
		return
	}
	if l.d.aborted || errors.Is(err, asyncloop.ErrClosed) {
		l.stopped(b.subset(retry))
		l.pump()
		return
	}
	if p := l.opt.Retry; p.MaxAttempts > 0 && b.attempts >= p.MaxAttempts {
		l.giveUp(b, retry, fmt.Errorf("gave up after %d attempts: %w", b.attempts, lastErr))
		l.pump()
		return
	}
	if maxAge := l.opt.Retry.MaxAge; maxAge > 0 {
		now := time.Now()
		fresh := retry[:0:0]
		var old []int
		for _, i := range retry {
			if now.Sub(b.frames[i].ReceivedAt) > maxAge {
				old = append(old, i)
			} else {
				fresh = append(fresh, i)
			}
		}
		if len(old) > 0 {
			l.giveUp(b, old, fmt.Errorf("gave up: older than max age %s: %w", maxAge, lastErr))
		}
		if retry = fresh; len(retry) == 0 {
			l.pump()
			return
		}
	}
	rb := b.subset(retry)
	l.setFailing(l.failing + 1)
	delay := l.backoff(rb.attempts, lastErr)
	l.nRetried.Add(uint64(len(rb.frames)))
	l.d.log.Warn("sink write failed; will retry",
		zap.String("sink", l.name), zap.Int("frames", len(rb.frames)), zap.Int("attempt", rb.attempts),
		zap.Duration("retry_in", delay), zap.Error(lastErr))
	l.setInflight(1) // the waiting batch keeps its slot
	l.waiting[rb] = l.d.loop.CallLater(delay, func() {
		delete(l.waiting, rb)
		l.setInflight(-1)
		if l.d.aborted {
			l.stopped(rb)
			return
		}
		// Through pump, so that retries too respect the probe limit.
		l.ready = append(l.ready, rb)
		l.pump()
	})
	l.pump()
}

// delivered settles the frames at idx of b as taken by the sink.
func (l *lane) delivered(b *batch, idx []int) {
	if len(idx) == 0 {
		return
	}
	l.nDelivered.Add(uint64(len(idx)))
	now := time.Now()
	for _, i := range idx {
		l.latency.observe(now.Sub(b.frames[i].ReceivedAt))
	}
	if b.chunk != nil {
		l.settled(b.chunk, len(idx))
		return
	}
	for _, i := range idx {
		l.d.sinkDone(b.items[i], nil)
	}
}

// giveUp settles the frames at idx of b as never to be taken: a memory
// lane fails their futures, a spooled lane dead-letters them.
func (l *lane) giveUp(b *batch, idx []int, err error) {
	if len(idx) == 0 {
		return
	}
	if b.chunk != nil {
		l.deadLetter(b, idx, err)
		return
	}
	items := make([]*item, len(idx))
	for j, i := range idx {
		items[j] = b.items[i]
	}
	l.fail(items, b.attempts, err)
}

// stopped settles a batch the lane will not write because the dispatcher
// is stopping: a memory lane's frames fail with ErrStopped; a spooled
// lane's stay unacknowledged in the spool for the next start.
func (l *lane) stopped(b *batch) {
	if b.chunk == nil {
		l.fail(b.items, b.attempts, ErrStopped)
	}
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

// fail gives up on items for this sink and logs it.
func (l *lane) fail(items []*item, attempts int, err error) {
	if len(items) == 0 {
		return
	}
	l.nFailed.Add(uint64(len(items)))
	frames := make([]*serialcb.Frame, len(items))
	for i, it := range items {
		frames[i] = &it.frame
	}
	l.logGiveUp("not delivered to sink", frames, attempts, err)
	for _, it := range items {
		l.d.sinkDone(it, &SinkError{Sink: l.name, Attempts: attempts, Err: err})
	}
}

// logGiveUp logs frames a sink did not take: one line per frame for small
// groups, one summary line (first and last frame) for large ones.
func (l *lane) logGiveUp(what string, frames []*serialcb.Frame, attempts int, err error) {
	log := l.d.log
	if len(frames) <= 10 {
		for _, f := range frames {
			log.Error("frame "+what, zap.String("sink", l.name), zap.Stringer("id", f.ID),
				zap.String("port", f.Port), zap.Uint64("seq", f.Seq), zap.Int("attempts", attempts), zap.Error(err))
		}
		return
	}
	first, last := frames[0], frames[len(frames)-1]
	log.Error("frames "+what, zap.String("sink", l.name), zap.Int("frames", len(frames)),
		zap.Stringer("first_id", first.ID), zap.String("first_port", first.Port), zap.Uint64("first_seq", first.Seq),
		zap.Stringer("last_id", last.ID), zap.String("last_port", last.Port), zap.Uint64("last_seq", last.Seq),
		zap.Int("attempts", attempts), zap.Error(err))
}
