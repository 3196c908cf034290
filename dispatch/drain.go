package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/serialcbd/serialcbd/asyncloop"
)

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
