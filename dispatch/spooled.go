package dispatch

import (
	"context"
	"errors"
	"io"
	"math"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/dispatch/spool"
	"github.com/serialcbd/serialcbd/dispatch/tick"
	"github.com/serialcbd/serialcbd/serialcb"
)

// A spooled lane runs two pipelines on the loop, each doing its I/O on a
// worker with one task in flight:
//
//	accepted frames ─Append─▶ spool ─Read─▶ Write to the sink ─▶ Ack
//
// Appends are group commits of every frame accepted while the previous
// one ran. A frame that comes alone (the first of its read, with the queue
// empty) skips the first pipeline when the spool does not fsync each
// append: Submit appends it itself (appendDirect), and the loop hears of
// it only when it waits for frames (awaitAppends). Reads hand out chunks
// in spool order; a chunk's cursor is acknowledged once it and every chunk
// before it are settled (delivered or dead-lettered), so a crash
// redelivers at most the unsettled chunks, and ids make that harmless.
// Failed batches are retried from memory; the spool is never rewound
// while running.

// maxAppend caps the frames of one Append, so that one group commit stays
// short and the next can gather behind it.
const maxAppend = 4096

// spoolRetry is the wait before retrying a failed spool operation.
const spoolRetry = 250 * time.Millisecond

// spoolLane is a lane's store-and-forward state; loop-owned except for the
// atomics.
type spoolLane struct {
	spooled  bool // Options.OpenSpool is set
	sp       *spool.Spool
	dl       DeadLetterStore
	spoolRef atomic.Pointer[spool.Spool] // sp, for Stats from any goroutine
	// What Start opened, for Close (which runs after the loop stopped,
	// whether or not the hand-off to the loop ran).
	openedSp *spool.Spool
	openedDl DeadLetterStore

	appending   bool        // an Append is in flight
	reading     bool        // a Read is in flight
	appendRetry func() bool // timer of a failed Append's retry
	readRetry   func() bool // timer of a failed Read's retry
	spoolEmpty  bool        // the last Read found nothing new
	chunks      []*chunk    // read, in spool order, not yet acknowledged
	ackBusy     bool        // an Ack is in flight
	ackNext     *chunk      // newest settled prefix end not yet acknowledged
	deadBusy    int         // dead-letter writes in flight or waiting to retry
	spoolLog    limiter

	// The Append in flight's items and frames, reused by the next one: at
	// the rates devices send every frame is an Append of its own, and new
	// slices and closures for it were four allocations per frame.
	// appended empties them before anything can start the next Append.
	appendItems  []*item
	appendFrames []*serialcb.Frame
	appendFn     func(context.Context) (struct{}, error)
	appendDone   func(*asyncloop.Future[struct{}])

	// direct is sp when Submit may append to it on the caller's goroutine
	// (its appends do not wait for an fsync; see Dispatcher.spoolDirect).
	direct atomic.Pointer[spool.Spool]
	// wakeAt is the spool's Appended count at which the loop, waiting
	// for frames (an empty spool, or a Read held back by Linger), wants to
	// hear of them: the direct append that reaches it swaps in noWake and
	// calls spoolFilled. See awaitAppends.
	wakeAt atomic.Uint64
	// lastDirect is the ReceivedAt (UnixNano) of the last frame appendDirect
	// tried to append: the time of the read it was cut from.
	lastDirect atomic.Int64

	spoolDown      atomic.Bool  // the last Append failed for a reason other than a full spool
	inflightAppend atomic.Bool  // appending, for any goroutine
	appendProgress atomic.Int64 // UnixNano of the last Append started or finished
	nSpooled       atomic.Uint64
	nDead          atomic.Uint64
}

// chunk is one Read's frames: left counts those not yet settled.
type chunk struct {
	cur  spool.Cursor
	left int
}

// spoolHealthy tells admission whether to wait for room: appends work and
// are not stuck. A full spool under the Block policy counts as healthy, so
// that admission waits and the read loop pauses, as that policy promises.
func (l *lane) spoolHealthy() bool {
	if l.spoolDown.Load() {
		return false
	}
	return !l.appendBusy() || time.Since(time.Unix(0, l.appendProgress.Load())) < stallAfter
}

func (l *lane) appendBusy() bool { return l.inflightAppend.Load() }

// attachSpool gives the lane its opened spool; on the loop.
func (l *lane) attachSpool(sp *spool.Spool, dl DeadLetterStore) {
	if l.d.aborted {
		return // stopped before Start's hand-off ran; Close closes it
	}
	l.sp, l.dl = sp, dl
	l.spoolRef.Store(sp)
	l.wakeAt.Store(noWake)
	if !sp.SyncsEachAppend() {
		l.direct.Store(sp)
	}
	l.pump()
}

// appendDirect appends f to the lane's spool on the caller's
// goroutine, if the lane takes direct appends now, and reports whether it
// did. It does when the spool does not fsync each append, appends work,
// and no frame admitted earlier waits for the loop to spool it (queued is
// 0): so a port's frames reach the spool in the order they were read,
// even after some had to go the loop's way. Any goroutine.
//
// A frame cut from the same read as the last one it tried (the
// same ReceivedAt) goes the loop's way too: several frames per read mean
// they come faster than one per wake-up, and the loop then spools them in
// group commits, one append for many, while the read loop goes on reading
// (at max rate one append each cost a fifth of the frames per second).
func (l *lane) appendDirect(f *serialcb.Frame) bool {
	sp := l.direct.Load()
	if sp == nil || l.queued.Load() != 0 || l.spoolDown.Load() {
		return false
	}
	read := f.ReceivedAt.UnixNano()
	if l.lastDirect.Load() == read {
		return false
	}
	l.lastDirect.Store(read)
	if sp.Append([]*serialcb.Frame{f}) != nil {
		return false // the loop's way retries it, counts and logs
	}
	l.nSpooled.Add(1)
	if w := l.wakeAt.Load(); w != noWake && sp.Appended() >= w && l.wakeAt.CompareAndSwap(w, noWake) {
		// Once per wait of the loop's. CallLater is not refused for a
		// full queue; after Shutdown the frames wait in the spool for the
		// next start.
		if l.d.loop.CallSoonWith(l.d.spoolFilledAny, l) != nil {
			l.d.loop.CallLater(0, l.spoolFilled)
		}
	}
	return true
}

// noWake is wakeAt when the loop waits for no append.
const noWake = math.MaxUint64

// awaitAppends asks appendDirect to call spoolFilled once the spool's
// Appended count reaches mark+n, where mark is a count read before the
// caller looked at the spool; it reports false, asking for nothing, when
// the count is there already. Setting the mark before looking again
// closes the race with an append in between: either the append sees the
// mark, or this sees the append. On the loop.
func (l *lane) awaitAppends(mark, n uint64) bool {
	w := mark + n
	l.wakeAt.Store(w)
	if l.sp.Appended() >= w && l.wakeAt.CompareAndSwap(w, noWake) {
		return false
	}
	return true // if the swap failed, an append took the mark and calls spoolFilled
}

// spoolFilled is the news, from a direct append, that the frames the loop
// waited for (see awaitAppends) are in the spool; on the loop.
func (l *lane) spoolFilled() {
	l.spoolEmpty = false
	l.pump()
}

// pumpSpooled starts an Append of accepted frames and Writes of spooled
// frames while the lane has room; on the loop.
func (l *lane) pumpSpooled() {
	if l.sp == nil {
		return // Start has not opened it yet
	}
	defer l.d.checkDrained()
	if !l.appending && l.appendRetry == nil && len(l.pending) > l.head && !l.d.aborted {
		l.startAppend()
	}
	for {
		limit := l.opt.MaxInflight
		if l.failing > 0 {
			limit = 1 // the sink is failing: probe it with one batch, do not hammer it
		}
		if l.inflight >= limit {
			return
		}
		if len(l.ready) > 0 && !l.d.handover {
			b := l.ready[0]
			l.ready[0] = nil
			l.ready = l.ready[1:]
			l.start(b)
			continue
		}
		if l.reading || l.spoolEmpty || l.readRetry != nil || l.d.aborted || l.d.handover || l.holdRead() {
			return
		}
		l.startRead()
		return
	}
}

type spoolRead struct {
	frames []*serialcb.Frame
	cur    spool.Cursor
}

// holdRead reports whether the next Read waits for more frames to gather
// in the spool: Linger is set, fewer than MaxBatch frames are unread, and
// the next multiple of Linger (dispatch/tick: at most Linger after the
// first Read held back, and in the same wake-up as the spool's fsync and
// the other lanes' batches) has not come yet. Frames that trickle
// in then go to the sink as one batch per Linger (one transaction, one
// POST of NDJSON, one acknowledgement) instead of one each; they are on
// disk meanwhile. A drain does not wait. On the loop.
func (l *lane) holdRead() bool {
	if l.opt.Linger <= 0 || l.lingerDue || l.d.draining {
		return false
	}
	mark := l.sp.Appended()
	unread := l.sp.Stats().Unread
	if unread >= uint64(l.opt.MaxBatch) || !l.awaitAppends(mark, uint64(l.opt.MaxBatch)-unread) {
		return false // a full batch waits, or came meanwhile
	}
	if l.lingerStop == nil {
		l.lingerStop = l.d.loop.CallLater(tick.Until(time.Now(), l.opt.Linger), l.lingerFired)
	}
	return true
}

// startRead reads the next chunk of the spool on a worker (the loop does
// no file I/O), one read at a time, so chunks come in spool order.
func (l *lane) startRead() {
	l.reading = true
	l.wakeAt.Store(noWake) // this Read's outcome pumps again
	l.lingerDue = false
	if l.lingerStop != nil {
		l.lingerStop()
		l.lingerStop = nil
	}
	fut := asyncloop.Submit(l.d.loop, func(context.Context) (spoolRead, error) {
		frames, cur, err := l.sp.Read(l.opt.MaxBatch)
		if len(frames) > 0 {
			err = nil // a damaged region was skipped: deliver what was read
		}
		return spoolRead{frames, cur}, err
	})
	fut.AddDoneCallback(func(f *asyncloop.Future[spoolRead]) {
		l.reading = false
		r, err := f.Result(context.Background()) // done: does not wait
		switch {
		case err != nil:
			if errors.Is(err, spool.ErrClosed) || errors.Is(err, asyncloop.ErrClosed) || l.d.aborted {
				return
			}
			l.logSpool("spool read failed; will retry", err)
			l.readRetry = l.d.loop.CallLater(spoolRetry, func() {
				l.readRetry = nil
				l.pump()
			})
			return
		case len(r.frames) == 0:
			// Empty unless direct appends came since that Read: with none
			// unread now, the count read before is the spool's end.
			mark := l.sp.Appended()
			if l.sp.Stats().Unread == 0 {
				l.spoolEmpty = l.awaitAppends(mark, 1)
			}
		default:
			ch := &chunk{cur: r.cur, left: len(r.frames)}
			l.chunks = append(l.chunks, ch)
			// Through ready, so that it waits for a free slot like a retry.
			l.ready = append(l.ready, &batch{frames: r.frames, chunk: ch})
		}
		l.pump()
	})
}

// startAppend writes the accepted frames to the spool as one group commit.
func (l *lane) startAppend() {
	take := min(len(l.pending)-l.head, maxAppend)
	// Cap the group by bytes too, so that it always fits the spool.
	budget, size := l.sp.MaxAppendBytes(), int64(0)
	for i := 0; i < take; i++ {
		size += spool.RecordSize(&l.pending[l.head+i].frame)
		if i > 0 && budget > 0 && size > budget {
			take = i
			break
		}
	}
	items := append(l.appendItems[:0], l.pending[l.head:l.head+take]...)
	clear(l.pending[l.head : l.head+take])
	l.head += take
	if l.head == len(l.pending) {
		l.pending, l.head = l.pending[:0], 0
	} else if l.head > len(l.pending)/2 {
		l.pending = l.pending[:copy(l.pending, l.pending[l.head:])]
		l.head = 0
	}
	frames := l.appendFrames[:0]
	for _, it := range items {
		frames = append(frames, &it.frame)
	}
	l.appendItems, l.appendFrames = items, frames
	if l.appendFn == nil {
		// The worker reads appendFrames, which the loop does not touch
		// until the Append is done.
		l.appendFn = func(context.Context) (struct{}, error) { return struct{}{}, l.sp.Append(l.appendFrames) }
		l.appendDone = func(f *asyncloop.Future[struct{}]) { l.appended(f.Err()) }
	}
	l.appending = true
	l.inflightAppend.Store(true)
	l.appendProgress.Store(time.Now().UnixNano())
	asyncloop.Submit(l.d.loop, l.appendFn).AddDoneCallback(l.appendDone)
}

// appended acts on the outcome of the Append of l.appendItems; on the loop.
func (l *lane) appended(err error) {
	// items is the buffer the next Append refills: each branch below is
	// done with it (and clears it, not to pin the frames) before it pumps.
	items := l.appendItems
	l.appendItems = items[:0]
	clear(l.appendFrames) // the worker is done with them
	l.appendFrames = l.appendFrames[:0]
	l.appending = false
	l.inflightAppend.Store(false)
	l.appendProgress.Store(time.Now().UnixNano())
	if err == nil {
		l.spoolDown.Store(false)
		l.queued.Add(-int64(len(items)))
		l.d.room.broadcast()
		l.nSpooled.Add(uint64(len(items)))
		l.spoolEmpty = false
		l.wakeAt.Store(noWake) // pump looks again
		for _, it := range items {
			l.d.sinkDone(it, nil)
		}
		clear(items)
		l.pump()
		return
	}
	if l.d.aborted || errors.Is(err, spool.ErrClosed) || errors.Is(err, asyncloop.ErrClosed) {
		l.queued.Add(-int64(len(items)))
		l.fail(items, 0, errors.Join(ErrStopped, err))
		clear(items)
		return
	}
	if errors.Is(err, spool.ErrTooLarge) {
		// One frame bigger than the spool's cap (startAppend's byte budget
		// makes a group of more than one fit): it cannot be stored.
		l.queued.Add(-int64(len(items)))
		l.fail(items, 0, err)
		clear(items)
		return
	}
	// Put the frames back in front and retry: with the Block policy the
	// queue fills and admission pauses the read loop; any other failure
	// (a broken disk) marks the spool down, so admission stops waiting and
	// frames past the queue fail, counted and logged.
	l.spoolDown.Store(!errors.Is(err, spool.ErrFull))
	rest := l.pending[l.head:]
	l.pending = append(append(make([]*item, 0, len(items)+len(rest)), items...), rest...)
	l.head = 0
	clear(items)
	l.logSpool("spool append failed; frames kept in memory, will retry", err)
	l.appendRetry = l.d.loop.CallLater(spoolRetry, func() {
		l.appendRetry = nil
		l.pump()
	})
}

// settled records n more frames of ch as delivered or dead-lettered and
// acknowledges the spool up to the end of the settled prefix.
func (l *lane) settled(ch *chunk, n int) {
	ch.left -= n
	if ch.left > 0 {
		return
	}
	i := 0
	for i < len(l.chunks) && l.chunks[i].left == 0 {
		i++
	}
	if i == 0 {
		return
	}
	l.ackNext = l.chunks[i-1]
	clear(l.chunks[:i])
	l.chunks = l.chunks[i:]
	l.startAck()
}

func (l *lane) startAck() {
	if l.ackBusy || l.ackNext == nil {
		l.d.checkDrained()
		return
	}
	ch := l.ackNext
	l.ackNext = nil
	l.ackBusy = true
	fut := asyncloop.Submit(l.d.loop, func(context.Context) (struct{}, error) {
		return struct{}{}, l.sp.Ack(ch.cur)
	})
	fut.AddDoneCallback(func(f *asyncloop.Future[struct{}]) {
		l.ackBusy = false
		err := f.Err()
		if err == nil || errors.Is(err, spool.ErrClosed) || errors.Is(err, asyncloop.ErrClosed) || l.d.aborted {
			l.startAck()
			return
		}
		// Not fatal (after a crash the frames since the last good Ack are
		// delivered again), but retried, unless a newer Ack covers it.
		l.logSpool("spool ack failed; will retry", err)
		if l.ackNext == nil {
			l.ackNext = ch
		}
		l.ackBusy = true // no other Ack until the retry
		l.d.loop.CallLater(spoolRetry, func() {
			l.ackBusy = false
			l.startAck()
		})
	})
}

// deadLetter hands the frames at idx of b to the dead-letter store and
// settles them once it has them.
func (l *lane) deadLetter(b *batch, idx []int, err error) {
	frames := make([]*serialcb.Frame, len(idx))
	letters := make([]DeadLetter, len(idx))
	now := time.Now().UTC()
	for j, i := range idx {
		frames[j] = b.frames[i]
		letters[j] = DeadLetter{Sink: l.name, Frame: b.frames[i], Err: err.Error(), Attempts: b.attempts, FailedAt: now}
	}
	l.nFailed.Add(uint64(len(idx)))
	if l.dl == nil {
		l.nDead.Add(uint64(len(idx)))
		l.logGiveUp("dropped: not delivered to sink and no dead-letter store", frames, b.attempts, err)
		l.settled(b.chunk, len(idx))
		return
	}
	l.logGiveUp("dead-lettered: not delivered to sink", frames, b.attempts, err)
	l.deadBusy++
	l.writeDead(b.chunk, letters)
}

func (l *lane) writeDead(ch *chunk, letters []DeadLetter) {
	fut := asyncloop.Submit(l.d.loop, func(context.Context) (struct{}, error) {
		return struct{}{}, l.dl.Append(letters)
	})
	fut.AddDoneCallback(func(f *asyncloop.Future[struct{}]) {
		err := f.Err()
		if err != nil && !l.d.aborted && !errors.Is(err, asyncloop.ErrClosed) {
			// The frames stay in the spool until the store has them.
			l.logSpool("dead-letter write failed; will retry", err)
			l.d.loop.CallLater(spoolRetry, func() { l.writeDead(ch, letters) })
			return
		}
		l.deadBusy--
		if err != nil {
			return // stopping: the frames stay in the spool
		}
		l.nDead.Add(uint64(len(letters)))
		l.settled(ch, len(letters))
		l.d.checkDrained()
	})
}

// spoolSettled reports whether a Drain may end as far as this lane goes:
// nothing accepted waits for the spool, and the spool is delivered unless
// the sink has been failing for stallAfter (its frames then wait on disk
// for the next start).
func (l *lane) spoolSettled() bool {
	if !l.spooled {
		return true
	}
	if l.sp == nil {
		return len(l.pending) == l.head // not started: nothing to wait for unless frames wait
	}
	if l.appending || l.reading || len(l.pending) > l.head || l.ackBusy || l.ackNext != nil || l.deadBusy > 0 {
		return false
	}
	if l.d.handover {
		return l.inflight == len(l.waiting) // no write running
	}
	if l.failing > 0 && time.Since(l.failingSince) >= stallAfter {
		return true // down, not just flaky: its frames wait on disk
	}
	return l.spoolEmpty && len(l.chunks) == 0
}

func (l *lane) closeSpool() error {
	if l.openedSp == nil {
		return nil
	}
	var errs []error
	if c, ok := l.openedDl.(io.Closer); ok {
		errs = append(errs, c.Close())
	}
	errs = append(errs, l.openedSp.Close())
	l.openedSp, l.openedDl = nil, nil
	return errors.Join(errs...)
}

func (l *lane) logSpool(msg string, err error) {
	if ok, more := l.spoolLog.allow(time.Now()); ok {
		l.d.log.Error(msg, zap.String("sink", l.name), zap.Int("more_since_last_report", more), zap.Error(err))
	}
}
