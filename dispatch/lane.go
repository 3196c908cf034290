package dispatch

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/serialcb"
)

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

func (l *lane) backoff(attempts int, err error) time.Duration {
	d := Backoff(attempts, l.opt.Retry.Initial, l.opt.Retry.Max)
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
