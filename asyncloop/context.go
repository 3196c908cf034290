package asyncloop

import (
	"context"
	"sync"
	"time"
)

// taskCtx is the context a handler receives. A context.WithCancel per task
// would cost allocations and contention on the loop's context for every
// frame, while most handlers never look at their context. So taskCtx
// delegates to the loop's run context and records cancellation itself,
// until someone calls Done or Value. Then it materialises a real child of
// the run context (under the future's mutex) and delegates to it. Value
// returning that child's internals is what lets the standard library's
// parentCancelCtx recognise it, so contexts derived from a handler context
// are plain children without a propagation goroutine.
//
// It is embedded in the Future, so it costs no allocation of its own.
type taskCtx struct {
	mu   *sync.Mutex // the future's mutex; guards the fields below
	loop *Loop

	real     context.Context // nil until materialised
	cancel   context.CancelFunc
	canceled bool // Cancel was called or the task finished
}

var _ context.Context = (*taskCtx)(nil)

func (c *taskCtx) init(mu *sync.Mutex, l *Loop) {
	c.mu = mu
	c.loop = l
}

// materialise returns the real context, creating it if needed. c.mu must
// not be held.
func (c *taskCtx) materialise() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.real == nil {
		c.real, c.cancel = context.WithCancel(c.loop.runCtx)
		if c.canceled {
			c.cancel()
		}
	}
	return c.real
}

// cancelLocked records a cancellation and cancels a materialised context;
// c.mu must be held. That is safe because cancelling a standard context
// never calls back into its parent's methods. It is also called when the
// task finishes: cancelling then detaches a materialised context from the
// loop's, so it can be freed.
func (c *taskCtx) cancelLocked() {
	c.canceled = true
	if c.cancel != nil {
		c.cancel()
	}
}

// Deadline reports none: the loop's run context has no deadline and the
// hard stop of Shutdown is a cancellation, not a deadline.
func (c *taskCtx) Deadline() (time.Time, bool) {
	return time.Time{}, false
}

// Done materialises the context, since it must return a channel that is
// closed on cancellation.
func (c *taskCtx) Done() <-chan struct{} {
	return c.materialise().Done()
}

// Err needs no materialisation: a recorded cancellation or the loop's
// state answers it.
func (c *taskCtx) Err() error {
	c.mu.Lock()
	real, canceled := c.real, c.canceled
	c.mu.Unlock()
	switch {
	case real != nil:
		return real.Err()
	case canceled:
		return context.Canceled
	default:
		return c.loop.runCtx.Err()
	}
}

// Value materialises the context so that context.WithCancel and friends,
// which look up the parent's internals through Value, find a real
// cancellable parent.
func (c *taskCtx) Value(key any) any {
	return c.materialise().Value(key)
}

// String names the context in fmt output and in the names of contexts
// derived from it.
func (c *taskCtx) String() string {
	return "asyncloop.handlerContext"
}
