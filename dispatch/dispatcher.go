package dispatch

import (
	"context"
	"errors"
	"fmt"
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
	// hand-off then costs no closure. spoolFilledAny is the same for
	// (*lane).spoolFilled.
	acceptAny, spoolFilledAny func(any)

	submitted, delivered, failed atomic.Uint64
	throttled                    atomic.Uint64
	handoffLog, throttleLog      limiter
	room                         roomSignal
	closing                      atomic.Bool // Drain began: admission no longer waits

	// direct: some lane is spooled, so Submit tries spoolDirect. Set in New.
	direct bool

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
		d.direct = d.direct || l.spooled
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
	d.spoolFilledAny = func(v any) { v.(*lane).spoolFilled() }
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
// loop's queue stayed full, or the loop is stopped). It never waits on the
// network: with the loop's Block policy it may wait for room in the queue,
// and it may wait for a copy into a spool (below).
// Every failure is logged and counted here; callers may ignore the future.
//
// A frame bound for a spooled sink whose spool does not fsync each append
// (sync interval or none) is appended to that spool here, on the caller's
// goroutine, whenever no frame admitted before it still waits for the
// loop to spool it; see spoolDirect. If every sink it goes to took it so,
// the future is already resolved when Submit returns.
func (d *Dispatcher) Submit(f serialcb.Frame) *asyncloop.Future[Receipt] {
	d.submitted.Add(1)
	lanes := d.route(&f)
	if lanes == nil {
		return d.drop(&f)
	}
	rest, n := d.spoolDirect(&f, lanes)
	return d.handOff(f, rest, n)
}

// Send is Submit for a caller that ignores the frame's future, as the
// daemon's read loops do: every failure is logged and counted all the
// same. A frame that every sink it goes to took directly (see
// spoolDirect) then costs no allocation and no future: at the rates
// devices send, that is most frames, and building the item and its future
// only to resolve them at once was the read loop's one allocation and
// ~5 % of a frame's CPU at 180 frames/s (docs/PERFORMANCE.md, round 6).
func (d *Dispatcher) Send(f serialcb.Frame) {
	d.submitted.Add(1)
	lanes := d.route(&f)
	if lanes == nil {
		d.drop(&f)
		return
	}
	rest, n := d.spoolDirect(&f, lanes)
	if len(rest) == 0 {
		d.delivered.Add(1)
		return
	}
	d.handOff(f, rest, n)
}

// handOff is the rest of Submit once f is routed: lanes are the sinks f
// still goes to, through the loop, after delivered sinks took it directly.
func (d *Dispatcher) handOff(f serialcb.Frame, lanes []*lane, delivered int) *asyncloop.Future[Receipt] {
	it := &item{frame: f, lanes: lanes, delivered: delivered}
	it.fut.Init(d.loop)
	if len(lanes) == 0 {
		d.resolve(it, nil)
		return &it.fut
	}
	d.admit(lanes)
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

// spoolDirect appends f to the spool of each lane in lanes that takes
// direct appends now (see appendDirect) and returns the lanes left for the
// loop (lanes itself if none took f, nil if all did) and how many took it.
//
// Why on the caller's goroutine: at the rates devices send, every frame
// was an Append of its own, and handing it to the loop, from the loop to a
// worker for the Append and back to the loop cost three goroutine wake-ups
// per frame, a fifth of a frame's CPU at 180 frames/s. The append
// is a copy into the spool's mapped segment (a write where the platform
// has no mapping); the caller is a read loop, which may wait on its own
// device and disk, never on the network. The loop still does everything
// that can wait: reading the spool, writing to the sink, retries, acks.
// Frames whose direct append fails go the loop's way, which retries,
// applies the spool's overflow policy and logs.
func (d *Dispatcher) spoolDirect(f *serialcb.Frame, lanes []*lane) (rest []*lane, n int) {
	if !d.direct || d.closing.Load() {
		return lanes, 0
	}
	var took uint64 // bit i: lanes[i] took f
	for i, l := range lanes {
		if i < 64 && l.appendDirect(f) {
			took |= 1 << i
			n++
		}
	}
	switch n {
	case 0:
		return lanes, 0
	case len(lanes):
		return nil, n
	}
	rest = make([]*lane, 0, len(lanes)-n)
	for i, l := range lanes {
		if i >= 64 || took&(1<<i) == 0 {
			rest = append(rest, l)
		}
	}
	return rest, n
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
		if sc, ok := l.sink.(SyncCounter); ok {
			ss.Syncs = sc.Syncs()
		}
		s.Sinks = append(s.Sinks, ss)
	}
	return s
}
