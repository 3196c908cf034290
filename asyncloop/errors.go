package asyncloop

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors. They are returned (or stored in an already-failed future)
// instead of blocking, so a synchronous producer such as a serial read loop
// always learns at once that its work was not accepted. Match with errors.Is.
var (
	// ErrNotRunning is reported by Submit and CallSoon before Start.
	ErrNotRunning = errors.New("asyncloop: loop is not running")
	// ErrClosed is reported once Shutdown has begun, and fails tasks that
	// never started before a hard stop.
	ErrClosed = errors.New("asyncloop: loop is closed")
	// ErrQueueFull is reported when a queue stays full: at once with
	// FailFast, after Options.BlockTimeout with Block.
	ErrQueueFull = errors.New("asyncloop: queue is full")
	// ErrNotDone is returned by Future.Err while the future is pending, so a
	// non-blocking check cannot be mistaken for success.
	ErrNotDone = errors.New("asyncloop: future is not done")
	// ErrCancelled fails a future stopped by its Cancel, as asyncio's
	// CancelledError. errors.Is(err, ErrCancelled) tells a cancellation
	// from a handler that returned context.Canceled of its own accord;
	// errors.Is(err, context.Canceled) is true for both.
	ErrCancelled error = cancelledError{}
	// ErrGoexit fails the future of a handler that called runtime.Goexit
	// (t.FailNow in a test, for instance) instead of returning. Its worker
	// goroutine ends with it and the loop starts a replacement.
	ErrGoexit = errors.New("asyncloop: handler called runtime.Goexit instead of returning")
)

// cancelledError is the type of ErrCancelled: it also matches
// context.Canceled, so callers that only ask "was this cancelled?" need not
// know the difference.
type cancelledError struct{}

func (cancelledError) Error() string { return "asyncloop: future cancelled" }

// Is reports that a cancellation is also a context.Canceled.
func (cancelledError) Is(target error) bool { return target == context.Canceled }

// PanicError fails the future of a handler that panicked, and describes a
// done-callback (or CallSoon / CallLater function) that panicked to
// Options.OnCallbackPanic. The worker
// recovers so that one bad frame cannot take the daemon down; the value and
// the stack are kept so the failure can still be diagnosed from the
// done-callback that logs it.
type PanicError struct {
	// Value is what the handler passed to panic.
	Value any
	// Stack is the panicking goroutine's stack as captured by
	// runtime/debug.Stack inside the recovery, so it includes the frames
	// that panicked.
	Stack []byte
}

// Error includes the panic value but not the stack, which is too long for a
// log line; read Stack when it is needed.
func (e *PanicError) Error() string {
	return fmt.Sprintf("asyncloop: handler panicked: %v", e.Value)
}

// Unwrap exposes a panic value that is itself an error (such as a runtime
// error), so errors.Is and errors.As can see through the panic.
func (e *PanicError) Unwrap() error {
	if err, ok := e.Value.(error); ok {
		return err
	}
	return nil
}
