// Package asyncloop is a central event loop for Go, the counterpart of
// Python asyncio's run_coroutine_threadsafe and call_soon_threadsafe.
// Synchronous code (a serial read loop, a signal handler) hands work to the
// loop from any goroutine and gets a Future back; it never waits on the
// work itself.
//
// # Who runs what where
//
//   - Submit, CallSoon, CallSoonWith, CallLater, NewFuture and every Future
//     method are safe from any goroutine. Submit and CallSoon(With) never
//     wait longer than the Block policy (Options.BlockTimeout) allows.
//   - Handlers given to Submit run on a fixed pool of Options.Workers worker
//     goroutines, so at most that many run at once. A panicking handler
//     fails its future with *PanicError; the worker carries on. A handler
//     that calls runtime.Goexit fails its future with ErrGoexit and its
//     worker is replaced.
//   - Cancel ends a future at once with ErrCancelled, as asyncio's cancel
//     does, even if its handler ignores its context (the handler's late
//     result is discarded). errors.Is(err, ErrCancelled) tells a
//     cancellation from a handler that returned context.Canceled itself.
//   - Done-callbacks (Future.AddDoneCallback) and CallSoon / CallSoonWith /
//     CallLater functions run on the single loop goroutine, one at a time, so state
//     that only they touch needs no lock. They should be short. A panicking
//     callback is recovered, counted (Stats.CallbackPanics) and reported
//     (Options.OnCallbackPanic); the loop goes on. Once Shutdown has
//     finished, callbacks run synchronously in the goroutine that adds them
//     or completes their future, so none is lost.
//   - Workers never wait for the loop goroutine: a completed future is
//     appended to an unbounded-by-design list (each future completes once),
//     so a callback may itself call Submit with the Block policy.
//
// # asyncio mapping
//
//	asyncio                                 asyncloop
//	asyncio.run_coroutine_threadsafe(c, l)  Submit(l, fn)
//	loop.call_soon_threadsafe(fn)           l.CallSoon(fn)
//	loop.call_soon_threadsafe(fn, arg)      l.CallSoonWith(fn, arg)
//	loop.call_later(d, fn)                  l.CallLater(d, fn)
//	loop.create_future()                    NewFuture[T](l), or f.Init(l) in place
//	fut.set_result / set_exception          f.Resolve(v, err)
//	fut.result() / await fut                f.Result(ctx)
//	fut.exception()                         f.Err()
//	fut.done()                              <-f.Done() / f.Err() != ErrNotDone
//	fut.cancel()                            f.Cancel()
//	asyncio.CancelledError                  ErrCancelled
//	fut.add_done_callback(fn)               f.AddDoneCallback(fn)
//	"exception was never retrieved"         Options.OnUnobserved, Stats.Unobserved
//	loop.stop(), then loop.close()         l.Shutdown(ctx)
//
// Unlike a coroutine, a handler is a plain function on its own goroutine;
// it is cancelled through its context, which it must honour.
//
// # Lifecycle
//
// New builds a loop without starting goroutines; Start starts the loop
// goroutine and the workers; Shutdown stops accepting work, lets queued and
// running handlers finish until its context is done, then cancels them, and
// stops every goroutine it started.
package asyncloop
