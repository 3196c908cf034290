package asyncloop

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// Future states.
const (
	futurePending uint32 = iota // queued (Submit) or awaiting Resolve (NewFuture)
	futureRunning               // its handler is running on a worker
	futureDone
)

// Future is the eventual result of a handler (from Submit) or of a Resolve
// call (from NewFuture); it is asyncio's Future. All methods are safe from
// any goroutine. The zero value is not usable until Init; a Future must not
// be copied once in use.
type Future[T any] struct {
	loop *Loop
	fn   func(context.Context) (T, error) // nil for NewFuture

	mu    sync.Mutex
	state atomic.Uint32 // written under mu; read without it on fast paths

	// Written once under mu before state becomes futureDone, read-only
	// after: a reader that saw futureDone may read them without mu.
	val T
	err error
	obs *failure // non-nil for tracked failures

	done            chan struct{} // lazily made by Done
	cb              func(*Future[T])
	cbs             []func(*Future[T]) // callbacks after the first
	scheduled       bool               // in the loop's completion list
	cancelRequested bool               // Cancel was called: its failure is expected

	ctx taskCtx // the handler's context, materialised lazily
}

// Submit runs fn on one of l's workers and returns its future; it is
// asyncio's run_coroutine_threadsafe. It is safe from any goroutine and
// never waits longer than the Block policy allows. If the loop is not
// running, is closed, or the queue stays full, it returns an already-failed
// future (ErrNotRunning, ErrClosed, ErrQueueFull) rather than an error, so
// every outcome flows through the same done-callback.
//
// fn must honour ctx: it is cancelled by Cancel, when the future is
// resolved by someone else, at a hard stop of Shutdown (cause ErrClosed),
// and when fn returns. A panic in fn fails the future with *PanicError; a
// call to runtime.Goexit fails it with ErrGoexit (and the worker goroutine,
// which Goexit ends, is replaced). A
// handler that itself calls Submit with the Block policy on a full queue
// waits for room like any producer; if every worker does so, they wait out
// BlockTimeout and get ErrQueueFull.
func Submit[T any](l *Loop, fn func(ctx context.Context) (T, error)) *Future[T] {
	f := &Future[T]{loop: l, fn: fn}
	f.ctx.init(&f.mu, l)
	// Counted before the task can run, so that no Stats snapshot shows it
	// completed but not submitted; taken back if the queue refuses it.
	l.submitted.Add(1)
	if err := l.enqueue(f); err != nil {
		l.submitted.Add(^uint64(0))
		l.rejected.Add(1)
		var zero T
		f.Resolve(zero, err)
		return f
	}
	return f
}

// NewFuture returns a pending future that is completed by Resolve (or
// Cancel); it is asyncio's loop.create_future, a bridge for results that
// arrive by other means than a handler. Its callbacks run on l's goroutine.
func NewFuture[T any](l *Loop) *Future[T] {
	f := &Future[T]{}
	f.Init(l)
	return f
}

// Init makes a zero Future embedded in a larger struct a pending future of
// l, exactly like the one NewFuture returns, without allocating it
// separately: the struct and its future are one allocation. Call it once,
// before the future is used or shared; the Future must not be copied after
// (it holds a mutex and a pointer to it). The future then lives as long as
// the struct that holds it, and the struct as long as anyone holds the
// future, so it should not keep big things alive once the future is done.
func (f *Future[T]) Init(l *Loop) {
	f.loop = l
	f.ctx.init(&f.mu, l)
}

// run is the worker's handler trampoline.
func (f *Future[T]) run() {
	l := f.loop
	f.mu.Lock()
	// The handler (and whatever frame it captured) must not live as long as
	// the future, which callers may keep.
	fn := f.fn
	f.fn = nil
	if f.state.Load() != futurePending { // cancelled or resolved while queued
		failed := f.err != nil
		f.mu.Unlock()
		l.count(failed)
		return
	}
	if l.hard.Load() {
		var zero T
		l.count(true)
		schedule := f.completeLocked(zero, ErrClosed)
		f.mu.Unlock()
		f.afterComplete(schedule)
		return
	}
	f.state.Store(futureRunning)
	f.mu.Unlock()

	l.running.Add(1)
	v, err := f.call(fn)
	f.finish(v, err)
}

// finish records the handler's outcome once it has returned (or exited).
func (f *Future[T]) finish(v T, err error) {
	l := f.loop
	l.running.Add(-1)
	f.mu.Lock()
	if f.state.Load() == futureDone { // resolved or cancelled meanwhile
		failed := f.err != nil
		f.mu.Unlock()
		l.count(failed)
		return
	}
	// Counted before the future is seen done, so that Stats read by
	// whoever waited for it already include it.
	l.count(err != nil)
	schedule := f.completeLocked(v, err)
	f.mu.Unlock()
	f.afterComplete(schedule)
}

// call runs the handler. A panicking handler must not take the worker (and
// the daemon) down, and its value and stack must reach whoever observes the
// future. A handler that calls runtime.Goexit cannot be stopped from taking
// its goroutine: its future fails with ErrGoexit here, on the way out, and
// the worker is replaced (see work).
func (f *Future[T]) call(fn func(context.Context) (T, error)) (v T, err error) {
	returned := false
	defer func() {
		if r := recover(); r != nil {
			var zero T
			v, err = zero, &PanicError{Value: r, Stack: debug.Stack()}
		} else if !returned {
			var zero T
			f.finish(zero, ErrGoexit)
		}
	}()
	v, err = fn(&f.ctx)
	returned = true
	return v, err
}

func (l *Loop) count(failed bool) {
	if failed {
		l.failed.Add(1)
	} else {
		l.succeeded.Add(1)
	}
}

// Resolve completes the future with v and err; the first call wins (as with
// asyncio's set_result/set_exception) and later ones report false. On a
// future whose handler is running, it also cancels the handler's context,
// whose result would be discarded. Safe from any goroutine.
func (f *Future[T]) Resolve(v T, err error) bool {
	f.mu.Lock()
	if f.state.Load() == futureDone {
		f.mu.Unlock()
		return false
	}
	schedule := f.completeLocked(v, err)
	f.mu.Unlock()
	f.afterComplete(schedule)
	return true
}

// completeLocked records the outcome; f.mu must be held and the future not
// done. It reports whether the callbacks must be scheduled, which
// afterComplete does without the lock.
func (f *Future[T]) completeLocked(v T, err error) (schedule bool) {
	f.val, f.err = v, err
	if err != nil && !f.cancelRequested {
		f.obs = &failure{loop: f.loop, err: err}
	}
	// Cancelled before anyone can see the future done, so that a waiter may
	// rely on the handler's context being over.
	f.ctx.cancelLocked()
	f.state.Store(futureDone)
	if f.done != nil {
		close(f.done)
	}
	if f.cb != nil && !f.scheduled {
		f.scheduled = true
		schedule = true
	}
	return schedule
}

func (f *Future[T]) afterComplete(schedule bool) {
	if f.obs != nil {
		// The cleanup's argument must not reach f, or f would never be
		// collected: it gets only the small failure record.
		runtime.AddCleanup(f, (*failure).collected, f.obs)
	}
	if schedule {
		f.loop.dispatch(f)
	}
}

// Done returns a channel that is closed when the future is done. The
// channel is made only when first asked for, which keeps futures that are
// only observed through callbacks to one allocation.
func (f *Future[T]) Done() <-chan struct{} {
	if f.state.Load() == futureDone {
		return f.loop.closedCh
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state.Load() == futureDone {
		return f.loop.closedCh
	}
	if f.done == nil {
		f.done = make(chan struct{})
	}
	return f.done
}

// Result waits until the future is done and returns its outcome, marking a
// failure observed. If ctx is done first it returns ctx.Err() and leaves the
// future alone: giving up waiting is not cancelling (call Cancel for that).
func (f *Future[T]) Result(ctx context.Context) (T, error) {
	if f.state.Load() != futureDone {
		select {
		case <-f.Done():
		case <-ctx.Done():
			var zero T
			return zero, ctx.Err()
		}
	}
	f.observe()
	return f.val, f.err
}

// Err returns the future's error without waiting: ErrNotDone while pending,
// else the error it failed with, or nil on success. Reading the error of a
// done future marks it observed.
func (f *Future[T]) Err() error {
	if f.state.Load() != futureDone {
		return ErrNotDone
	}
	f.observe()
	return f.err
}

func (f *Future[T]) observe() {
	if f.obs != nil {
		f.obs.observed.Store(true)
	}
}

// Cancel cancels the future, as asyncio's Future.cancel: it is done at
// once, failed with ErrCancelled (which also matches context.Canceled), and
// its callbacks are scheduled. A handler not yet started never runs; a
// running handler gets its context cancelled and whatever it returns later
// is discarded (its worker stays busy until it returns, so a handler must
// still honour its context). It reports false if the future was already
// done. A failure caused by Cancel is never reported as unobserved.
func (f *Future[T]) Cancel() bool {
	f.mu.Lock()
	if f.state.Load() == futureDone {
		f.mu.Unlock()
		return false
	}
	f.cancelRequested = true
	var zero T
	schedule := f.completeLocked(zero, ErrCancelled)
	f.mu.Unlock()
	f.afterComplete(schedule)
	return true
}

// AddDoneCallback arranges for fn to run once on the loop goroutine after
// the future is done, also if it is done already; callbacks run in the
// order they were added, one at a time, so state they share needs no lock.
// fn should not block: it holds up every other callback. A panic in fn is
// recovered, counted (Stats.CallbackPanics) and reported to
// Options.OnCallbackPanic; the other callbacks still run. fn must not call
// runtime.Goexit.
//
// If the loop goroutine has already stopped (Shutdown finished), fn runs
// synchronously in the goroutine that adds it or that resolves the future,
// so no callback is ever dropped. Before Start, callbacks wait for Start.
func (f *Future[T]) AddDoneCallback(fn func(*Future[T])) {
	if fn == nil {
		return
	}
	f.mu.Lock()
	if f.cb == nil {
		f.cb = fn
	} else {
		f.cbs = append(f.cbs, fn)
	}
	schedule := f.state.Load() == futureDone && !f.scheduled
	if schedule {
		f.scheduled = true
	}
	f.mu.Unlock()
	if schedule {
		f.loop.dispatch(f)
	}
}

// complete runs the callbacks on the loop goroutine (or in the caller once
// the loop has stopped). Callbacks added meanwhile are scheduled again by
// AddDoneCallback.
func (f *Future[T]) complete() {
	f.mu.Lock()
	cb, cbs := f.cb, f.cbs
	f.cb, f.cbs = nil, nil
	f.scheduled = false
	f.mu.Unlock()
	if cb != nil {
		callback(f.loop, cb, f)
	}
	for _, fn := range cbs {
		callback(f.loop, fn, f)
	}
}

// callback runs a done-callback, recovering a panic (see
// Loop.recoverCallback).
func callback[T any](l *Loop, fn func(*Future[T]), f *Future[T]) {
	defer l.recoverCallback()
	fn(f)
}

// failure tracks whether a failed future's error was read. It is separate
// from the future and does not point back to it, so that the runtime
// cleanup can run once the future is unreachable.
type failure struct {
	loop     *Loop
	err      error
	observed atomic.Bool
}

// collected runs on the runtime's cleanup goroutine when the failed future
// has become unreachable.
func (s *failure) collected() {
	if !s.observed.Load() {
		s.loop.dispatch(s)
	}
}

// complete reports the unobserved failure, on the loop goroutine.
func (s *failure) complete() {
	s.loop.unobserved.Add(1)
	if fn := s.loop.opts.OnUnobserved; fn != nil {
		fn(s.err)
	}
}
