package asyncloop

import (
	"context"
	"log"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// FullPolicy says what Submit and CallSoon do when their queue is full. The
// queues are bounded so that memory stays bounded under any input rate; the
// caller chooses whether the producer waits or drops.
type FullPolicy int

const (
	// Block waits for room for up to Options.BlockTimeout, then reports
	// ErrQueueFull.
	Block FullPolicy = iota
	// FailFast reports ErrQueueFull at once, for producers that must never
	// wait.
	FailFast
)

// Defaults applied by New to zero (or negative) Options fields.
const (
	DefaultQueueSize    = 1024
	DefaultWorkers      = 64
	DefaultBlockTimeout = time.Second
)

// Options configure a Loop. The zero value is usable: every zero field takes
// its default.
type Options struct {
	// QueueSize is the capacity of the Submit queue and, separately, of the
	// CallSoon queue (shared by CallSoon and CallSoonWith). Default 1024.
	QueueSize int
	// Workers is the maximum number of handlers running at once; it is also
	// the number of worker goroutines. Default 64.
	Workers int
	// OnFull is the policy for a full queue. Default Block.
	OnFull FullPolicy
	// BlockTimeout bounds the wait of the Block policy. Default 1s.
	BlockTimeout time.Duration
	// OnUnobserved is called on the loop goroutine with the error of a
	// failed future that was garbage-collected without its error ever being
	// read (Err or Result), like asyncio's "exception was never retrieved".
	// Futures failed by their own Cancel are not reported. Nil: only counted
	// in Stats. If the loop has already stopped, it is called on the
	// runtime's cleanup goroutine instead, so it must not block.
	OnUnobserved func(err error)
	// OnCallbackPanic is called with the value and stack of a
	// done-callback, CallSoon, CallLater or OnUnobserved function that
	// panicked; the loop recovers, counts it (Stats.CallbackPanics) and
	// goes on with the next callback. It runs on the goroutine that ran
	// the callback (normally the loop goroutine) and must not block; a
	// panic in it is dropped. Nil: the panic and its stack are written to
	// the standard logger (package log), so it is never silent.
	OnCallbackPanic func(err *PanicError)
}

// Stats is a snapshot of a Loop's counters, for metrics.
type Stats struct {
	// Queued is the number of tasks waiting in the Submit queue.
	Queued int
	// Running is the number of handlers running now.
	Running int
	// Submitted counts tasks accepted into the Submit queue.
	Submitted uint64
	// Completed counts accepted tasks that finished with a nil error.
	Completed uint64
	// Failed counts accepted tasks that finished with an error, including
	// panics, cancellations and tasks failed by a hard stop. Once the loop
	// is idle, Completed+Failed == Submitted.
	Failed uint64
	// Rejected counts Submit calls that returned an already-failed future
	// (ErrNotRunning, ErrClosed, ErrQueueFull).
	Rejected uint64
	// Unobserved counts failed futures collected with their error unread.
	Unobserved uint64
	// CallbackPanics counts done-callbacks, CallSoon and CallLater
	// functions that panicked (and were recovered).
	CallbackPanics uint64
}

// Lifecycle states of a Loop.
const (
	stateNew int32 = iota
	stateRunning
	stateClosing
	stateStopped
)

// task is what the Submit queue carries: the *Future[T] itself, so that
// enqueuing costs no allocation beyond the future.
type task interface {
	run()
}

// soonCall is what the CallSoon queue carries: either fn, or fnArg with its
// argument. One element type serves CallSoon and CallSoonWith, so that both
// share one queue and one order; a pointer in arg costs no allocation,
// unlike a closure capturing it.
type soonCall struct {
	fn    func()
	fnArg func(any)
	arg   any
}

func (c soonCall) call() {
	if c.fn != nil {
		c.fn()
		return
	}
	c.fnArg(c.arg)
}

// completer is what visits the loop goroutine through the completion list:
// futures with callbacks to run, CallLater timers and unobserved-failure
// reports. Each item is pushed a bounded number of times, so the list is
// bounded by the number of live futures and timers.
type completer interface {
	complete()
}

// Loop is a central event loop: handlers submitted from any goroutine run on
// a bounded pool of workers; done-callbacks, CallSoon and CallLater
// functions run on a single loop goroutine. Create it with New, then Start
// it; stop it with Shutdown. A Loop must not be copied.
type Loop struct {
	opts Options

	// mu serialises Start and Shutdown.
	mu    sync.Mutex
	state atomic.Int32

	// gate lets Shutdown wait out every Submit and CallSoon that saw the
	// loop running, after which no one sends on tasks or soon again and
	// tasks can be closed. Producers only take the read side.
	gate    sync.RWMutex
	closing chan struct{} // closed when Shutdown begins; wakes blocked producers
	tasks   chan task
	soon    chan soonCall

	// runCtx is the parent of every handler context; cancelling it is the
	// hard stop.
	runCtx    context.Context
	runCancel context.CancelCauseFunc
	hard      atomic.Bool // set at a hard stop: queued tasks fail with ErrClosed

	liveWorkers atomic.Int32
	workersDone chan struct{} // closed by the last worker to exit

	// Completion list: workers, Resolve and cleanups append; the loop
	// goroutine swaps it out. Appending never blocks on the loop, so a
	// callback that itself blocks on Submit cannot deadlock the workers.
	cmu         sync.Mutex
	completed   []completer
	loopStopped bool          // after this, completions run in the caller
	wake        chan struct{} // 1-buffered: "the list became non-empty"

	stopLoop chan struct{} // tells the loop goroutine to drain and exit
	loopDone chan struct{} // closed when the loop goroutine has exited
	stopped  chan struct{} // closed when Shutdown has finished

	timersMu     sync.Mutex
	timers       map[*laterCall]struct{}
	timersClosed bool

	// blockTimers recycles the timers of the Block policy, so that even a
	// producer that has to wait for room does not allocate.
	blockTimers sync.Pool

	// closedCh is handed out by Future.Done for futures that are already
	// done, saving an allocation.
	closedCh chan struct{}

	running    atomic.Int64
	submitted  atomic.Uint64
	succeeded  atomic.Uint64
	failed     atomic.Uint64
	rejected   atomic.Uint64
	unobserved atomic.Uint64
	cbPanics   atomic.Uint64
}

// New returns a Loop that is not yet running. It starts no goroutines, so it
// is free to construct in wiring code that may never Start it.
func New(opts Options) *Loop {
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.BlockTimeout <= 0 {
		opts.BlockTimeout = DefaultBlockTimeout
	}
	l := &Loop{
		opts:        opts,
		closing:     make(chan struct{}),
		tasks:       make(chan task, opts.QueueSize),
		soon:        make(chan soonCall, opts.QueueSize),
		workersDone: make(chan struct{}),
		wake:        make(chan struct{}, 1),
		stopLoop:    make(chan struct{}),
		loopDone:    make(chan struct{}),
		stopped:     make(chan struct{}),
		timers:      make(map[*laterCall]struct{}),
		closedCh:    make(chan struct{}),
	}
	close(l.closedCh)
	// The loop is the root of its handlers' lifetime: the hard stop of
	// Shutdown is the only thing that cancels it.
	l.runCtx, l.runCancel = context.WithCancelCause(context.Background())
	l.blockTimers.New = func() any {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return t
	}
	return l
}

// Start starts the loop goroutine and the workers. It is idempotent, and a
// no-op once Shutdown has been called. Callbacks and CallLater functions
// that became due before Start run as soon as it is called.
func (l *Loop) Start() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state.Load() != stateNew {
		return
	}
	l.liveWorkers.Store(int32(l.opts.Workers))
	for range l.opts.Workers {
		go l.work()
	}
	go l.runLoop()
	l.state.Store(stateRunning)
}

// Shutdown stops the loop in two phases, like a soft then a hard stop:
//
//  1. At once, new Submit and CallSoon calls fail with ErrClosed (and
//     producers blocked on a full queue are released with ErrClosed). Queued
//     and running handlers go on to completion and their callbacks run.
//  2. If ctx is done first, the contexts of running handlers are cancelled
//     (with cause ErrClosed) and tasks that never started fail with
//     ErrClosed. Shutdown then waits for the workers without a deadline:
//     handlers must honour their context.
//
// Finally the remaining callbacks and CallSoon functions run, pending
// CallLater timers are stopped and the loop goroutine exits. Shutdown
// returns ctx.Err() if it had to hard-stop, else nil.
//
// It is idempotent: a second call waits for the first to finish (or for its
// own ctx, whose error it then returns). Shutdown of a loop that was never
// started runs pending callbacks in the calling goroutine. It must not be
// called from a handler or a callback of this loop, which it would wait for.
func (l *Loop) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	switch l.state.Load() {
	case stateNew:
		l.state.Store(stateStopped)
		close(l.closing)
		l.mu.Unlock()
		l.stopTimers()
		l.drainAndStop()
		l.runCancel(ErrClosed)
		close(l.stopped)
		return nil
	case stateRunning:
		l.state.Store(stateClosing)
		close(l.closing)
		l.mu.Unlock()
	default:
		l.mu.Unlock()
		select {
		case <-l.stopped:
			return nil
		case <-ctx.Done():
			select {
			case <-l.stopped:
				return nil
			default:
				return ctx.Err()
			}
		}
	}

	// Wait out producers that saw the loop running; after this nobody sends
	// on tasks or soon, so tasks can be closed and the workers drain it.
	l.gate.Lock()
	close(l.tasks)
	l.gate.Unlock()

	var err error
	select {
	case <-l.workersDone:
	case <-ctx.Done():
		select {
		case <-l.workersDone: // finished in time after all
		default:
			err = ctx.Err()
			l.hard.Store(true)
			l.runCancel(ErrClosed)
			<-l.workersDone
		}
	}

	l.stopTimers()
	close(l.stopLoop)
	<-l.loopDone
	l.runCancel(ErrClosed) // release the context's resources
	l.state.Store(stateStopped)
	close(l.stopped)
	return err
}

// Stopped returns a channel closed once Shutdown has finished.
func (l *Loop) Stopped() <-chan struct{} { return l.stopped }

// Stats returns a snapshot of the counters. The fields are read one by one,
// so under load they may be mutually inconsistent by a few operations.
func (l *Loop) Stats() Stats {
	return Stats{
		Queued:     len(l.tasks),
		Running:    int(l.running.Load()),
		Submitted:  l.submitted.Load(),
		Completed:  l.succeeded.Load(),
		Failed:     l.failed.Load(),
		Rejected:   l.rejected.Load(),
		Unobserved: l.unobserved.Load(),

		CallbackPanics: l.cbPanics.Load(),
	}
}

// recoverCallback is deferred around every function the loop runs on
// behalf of its users other than handlers (those recover in Future.call):
// a callback that panics must not take the loop goroutine, and with it
// every later callback, down.
func (l *Loop) recoverCallback() {
	r := recover()
	if r == nil {
		return
	}
	l.cbPanics.Add(1)
	pe := &PanicError{Value: r, Stack: debug.Stack()}
	fn := l.opts.OnCallbackPanic
	if fn == nil {
		log.Printf("asyncloop: a callback panicked (recovered, the loop goes on): %v\n%s", r, pe.Stack)
		return
	}
	defer func() { _ = recover() }() // a panicking reporter is dropped
	fn(pe)
}

// runSoon runs one CallSoon / CallSoonWith function.
func (l *Loop) runSoon(c soonCall) {
	defer l.recoverCallback()
	c.call()
}

// runCompleter runs one item of the completion list.
func (l *Loop) runCompleter(c completer) {
	defer l.recoverCallback()
	c.complete()
}

// CallSoon schedules fn to run on the loop goroutine, after the functions
// already queued; it is asyncio's call_soon_threadsafe. It is safe from any
// goroutine. It reports ErrNotRunning before Start, ErrClosed once Shutdown
// has begun, and ErrQueueFull per Options.OnFull. Calling it from the loop
// goroutine itself while its queue is full cannot make room, so with Block
// it waits the whole BlockTimeout: use CallLater(0, fn) there instead.
func (l *Loop) CallSoon(fn func()) error {
	return l.callSoon(soonCall{fn: fn})
}

// CallSoonWith is CallSoon for fn(arg): it schedules fn(arg) to run on the
// loop goroutine, in the same queue and the same order as CallSoon (calls
// of either from one goroutine run in the order they were made), with the
// same errors and the same full-queue policy. It exists for hot paths: a
// closure capturing its argument is one allocation per call, whereas fn
// built once and a pointer passed as arg cost none. (A non-pointer arg is
// boxed into the interface as usual.)
func (l *Loop) CallSoonWith(fn func(any), arg any) error {
	return l.callSoon(soonCall{fnArg: fn, arg: arg})
}

// callSoon puts c on the CallSoon queue according to the full policy.
func (l *Loop) callSoon(c soonCall) error {
	l.gate.RLock()
	defer l.gate.RUnlock()
	if err := l.acceptErr(); err != nil {
		return err
	}
	select {
	case l.soon <- c:
		return nil
	default:
	}
	return l.waitRoom(func(t *time.Timer) error {
		select {
		case l.soon <- c:
			return nil
		case <-t.C:
			return ErrQueueFull
		case <-l.closing:
			return ErrClosed
		}
	})
}

// acceptErr tells whether producers may enqueue now. It must be called
// under the read side of gate.
func (l *Loop) acceptErr() error {
	switch l.state.Load() {
	case stateRunning:
		return nil
	case stateNew:
		return ErrNotRunning
	default:
		return ErrClosed
	}
}

// enqueue puts t on the Submit queue according to the full policy.
func (l *Loop) enqueue(t task) error {
	l.gate.RLock()
	defer l.gate.RUnlock()
	if err := l.acceptErr(); err != nil {
		return err
	}
	select {
	case l.tasks <- t:
		return nil
	default:
	}
	return l.waitRoom(func(tm *time.Timer) error {
		select {
		case l.tasks <- t:
			return nil
		case <-tm.C:
			return ErrQueueFull
		case <-l.closing:
			return ErrClosed
		}
	})
}

// waitRoom applies the full policy once a non-blocking send has failed;
// send performs the blocking attempt with a timer armed for BlockTimeout.
func (l *Loop) waitRoom(send func(*time.Timer) error) error {
	if l.opts.OnFull == FailFast {
		return ErrQueueFull
	}
	t := l.blockTimers.Get().(*time.Timer)
	t.Reset(l.opts.BlockTimeout)
	err := send(t)
	t.Stop() // since Go 1.23 this also discards a pending tick, so t is reusable
	l.blockTimers.Put(t)
	return err
}

// work is a worker goroutine: it runs tasks until Shutdown closes the queue.
//
// A handler that calls runtime.Goexit ends the worker's goroutine too (its
// future has been failed with ErrGoexit on the way out); the deferred
// function then starts a replacement, so the pool keeps its size.
func (l *Loop) work() {
	exited := true
	defer func() {
		if exited {
			go l.work()
			return
		}
		if l.liveWorkers.Add(-1) == 0 {
			close(l.workersDone)
		}
	}()
	for t := range l.tasks {
		t.run()
	}
	exited = false
}

// dispatch hands c to the loop goroutine. It never blocks on the loop. Once
// the loop goroutine has stopped, c runs in the calling goroutine, so that
// nothing is dropped.
func (l *Loop) dispatch(c completer) {
	l.cmu.Lock()
	if l.loopStopped {
		l.cmu.Unlock()
		l.runCompleter(c)
		return
	}
	first := len(l.completed) == 0
	l.completed = append(l.completed, c)
	l.cmu.Unlock()
	if first {
		select {
		case l.wake <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

// runLoop is the loop goroutine. It sleeps in select when idle.
func (l *Loop) runLoop() {
	defer close(l.loopDone)
	var batch []completer
	for {
		select {
		case c := <-l.soon:
			l.runSoon(c)
		case <-l.wake:
			batch = l.runBatch(batch)
		case <-l.stopLoop:
			l.drainAndStop()
			return
		}
	}
}

// runBatch swaps the completion list with spare (an empty slice whose
// capacity is reused) and runs what it took. It returns the slice to reuse
// next time; it is nil-safe and reports an empty batch by returning it
// unchanged.
func (l *Loop) runBatch(spare []completer) []completer {
	l.cmu.Lock()
	batch := l.completed
	l.completed = spare[:0]
	l.cmu.Unlock()
	for _, c := range batch {
		l.runCompleter(c)
	}
	clear(batch) // drop references so finished futures can be collected
	return batch[:0]
}

// drainAndStop runs everything still queued for the loop, then marks the
// loop stopped so later completions run in their caller. It runs on the
// loop goroutine, or in Shutdown for a loop that never started. No producer
// can add to soon any more (the loop is no longer running).
func (l *Loop) drainAndStop() {
	var batch []completer
	for {
		for drained := false; !drained; {
			select {
			case c := <-l.soon:
				l.runSoon(c)
			default:
				drained = true
			}
		}
		l.cmu.Lock()
		if len(l.completed) == 0 {
			l.loopStopped = true
			l.cmu.Unlock()
			return
		}
		l.cmu.Unlock()
		batch = l.runBatch(batch)
	}
}

// Timer states of a laterCall.
const (
	laterPending int32 = iota
	laterRan
	laterStopped
)

// laterCall is a CallLater timer. When it fires it goes through the
// completion list rather than the CallSoon queue, so a full queue cannot
// drop it.
type laterCall struct {
	l     *Loop
	fn    func()
	t     *time.Timer
	state atomic.Int32
}

// complete runs on the loop goroutine; the state decides between it and
// stop, whichever comes first.
func (c *laterCall) complete() {
	if !c.state.CompareAndSwap(laterPending, laterRan) {
		return
	}
	c.l.forgetTimer(c)
	c.fn()
}

func (c *laterCall) stop() bool {
	if !c.state.CompareAndSwap(laterPending, laterStopped) {
		return false
	}
	c.t.Stop()
	c.l.forgetTimer(c)
	return true
}

func (l *Loop) forgetTimer(c *laterCall) {
	l.timersMu.Lock()
	delete(l.timers, c)
	l.timersMu.Unlock()
}

// CallLater schedules fn to run on the loop goroutine after d; it is
// asyncio's call_later. It is safe from any goroutine. A timer that fires
// before Start runs once the loop starts. Timers still pending when Shutdown
// finishes are stopped and their functions never run; after Shutdown,
// CallLater does nothing.
//
// stop reports whether it prevented the call: true if fn had not run and
// now never will.
func (l *Loop) CallLater(d time.Duration, fn func()) (stop func() bool) {
	c := &laterCall{l: l, fn: fn}
	l.timersMu.Lock()
	defer l.timersMu.Unlock()
	if l.timersClosed {
		return func() bool { return false }
	}
	l.timers[c] = struct{}{}
	// Holding timersMu while arming keeps stopTimers from missing c.t.
	c.t = time.AfterFunc(d, func() { l.dispatch(c) })
	return c.stop
}

// stopTimers stops every pending CallLater timer and refuses new ones. A
// timer that already fired but whose function has not run yet is stopped
// too, by its state.
func (l *Loop) stopTimers() {
	l.timersMu.Lock()
	l.timersClosed = true
	pending := l.timers
	l.timers = nil
	l.timersMu.Unlock()
	for c := range pending {
		if c.state.CompareAndSwap(laterPending, laterStopped) {
			c.t.Stop()
		}
	}
}
