package portio

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/serialcb"
)

// tx is one request: a poll's or a write. Its fields are the loop's, but
// for the ones the read goroutine sees through Port.await.
type tx struct {
	id       serialcb.ID
	poll     *pollState // nil for a write
	source   string
	data     []byte
	expect   bool
	timeout  time.Duration
	prefix   []byte
	deadline time.Time
	attempts int // sent so far, including the current one
	max      int // attempts allowed
	bytes    int
	stopT    func() bool // the reply timer
	fut      *asyncloop.Future[Outcome]
	out      Outcome // as resolved, for the poll's done-callback
}

// next sends the first queued request if none is outstanding. Before
// Start took effect nothing is sent: a Port replacing another waits for
// the other's outstanding request.
func (p *Port) next() {
	if !p.started {
		return
	}
	for p.cur == nil && len(p.queue) > 0 {
		t := p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		if t.poll == nil && t.attempts == 0 {
			p.writesQ--
		}
		p.send(t)
	}
}

// send writes attempt t.attempts+1 of t.
func (p *Port) send(t *tx) {
	p.cur = t
	t.attempts++
	att := t.attempts
	req := &serialcb.WriteRequest{Data: t.data, Deadline: t.deadline}
	if att > 1 && t.poll != nil {
		// A retry is due now; it must not wait longer than a period.
		req.Deadline = time.Now().Add(t.poll.cfg.Every)
	}
	if t.expect {
		req.BeforeWrite = func() {
			p.mu.Lock()
			p.await, p.awaitAtt, p.awaitSince = t, att, time.Now()
			p.mu.Unlock()
		}
	}
	req.Done = func(n int, err error) {
		p.loop.CallLater(0, func() { p.written(t, att, n, err) })
	}
	if err := p.w.Write(req); err != nil {
		p.finish(t, err)
	}
}

func (p *Port) live(t *tx, att int) bool { return p.cur == t && t.attempts == att }

// written runs on the loop when the Reader has written (or failed to write)
// attempt att of t.
func (p *Port) written(t *tx, att int, n int, err error) {
	if !p.live(t, att) {
		return // answered already, or stopped
	}
	t.bytes = n
	if err != nil {
		p.disarm(t)
		p.finish(t, err)
		return
	}
	if t.poll != nil {
		t.poll.sent.Add(1)
	}
	if !t.expect {
		p.finish(t, nil)
		return
	}
	t.stopT = p.loop.CallLater(t.timeout, func() { p.timedOut(t, att) })
}

// timedOut runs on the loop when attempt att of t waited its reply timeout.
// A reply the read goroutine claimed just before is on its way to the loop
// and wins: the claim, under mu, is what decides.
func (p *Port) timedOut(t *tx, att int) {
	if !p.live(t, att) {
		return
	}
	p.mu.Lock()
	claimed := p.await != t || p.awaitAtt != att
	if !claimed {
		p.await = nil
	}
	p.mu.Unlock()
	if claimed {
		return
	}
	p.failAttempt(t, att, ErrReplyTimeout)
}

// disarm stops awaiting t's reply.
func (p *Port) disarm(t *tx) {
	p.mu.Lock()
	if p.await == t {
		p.await = nil
	}
	p.mu.Unlock()
}

// failAttempt runs on the loop when attempt att of t timed out or got an
// invalid reply: t is retried if it may be, else it fails.
func (p *Port) failAttempt(t *tx, att int, err error) {
	if !p.live(t, att) {
		return
	}
	p.disarm(t)
	if t.stopT != nil {
		t.stopT()
		t.stopT = nil
	}
	if t.poll != nil {
		if errors.Is(err, ErrReplyTimeout) {
			t.poll.timeouts.Add(1)
		} else {
			t.poll.invalid.Add(1)
		}
	}
	p.noteMiss(t, err)
	if t.attempts < t.max && !p.stopped {
		p.cur = nil
		p.queue = append([]*tx{t}, p.queue...) // its turn again, first
		p.next()
		return
	}
	if t.attempts > 1 {
		err = fmt.Errorf("%w (after %d attempts)", err, t.attempts)
	}
	p.finish(t, err)
}

// noteMiss logs timeouts and invalid replies, the first at once, then at
// most once per logEvery with the counts.
func (p *Port) noteMiss(t *tx, err error) {
	if errors.Is(err, ErrReplyTimeout) {
		p.logPend[0]++
	} else {
		p.logPend[1]++
	}
	now := time.Now()
	if !p.logLast.IsZero() && now.Sub(p.logLast) < logEvery {
		return
	}
	name := t.poll.nameOr("")
	p.log.Warn("requests without a valid reply", zap.String("poll", name), zap.Uint64("timeouts", p.logPend[0]),
		zap.Uint64("invalid_replies", p.logPend[1]), zap.NamedError("last", err), zap.Duration("log_every", logEvery))
	p.logLast, p.logPend = now, [2]uint64{}
}

// replied runs on the loop when the read goroutine claimed a reply for
// attempt att of t.
func (p *Port) replied(t *tx, att int, r *Reply, rtt time.Duration) {
	if !p.live(t, att) {
		return
	}
	if t.stopT != nil {
		t.stopT()
		t.stopT = nil
	}
	if t.poll != nil {
		t.poll.replies.Add(1)
	}
	t.bytes = len(t.data) // a reply means the request went out
	o := p.outcome(t, nil)
	o.RTTMicros = rtt.Microseconds()
	o.Reply = r
	p.resolve(t, o, nil)
}

// finish ends t with err (nil: done without a reply awaited).
func (p *Port) finish(t *tx, err error) {
	if t.stopT != nil {
		t.stopT()
		t.stopT = nil
	}
	p.resolve(t, p.outcome(t, err), err)
}

func (p *Port) resolve(t *tx, o Outcome, err error) {
	if p.cur == t {
		p.cur = nil
	}
	if t.poll != nil {
		t.poll.pending = false
		if err != nil {
			t.poll.failed.Add(1)
		}
	} else if err != nil {
		p.writesFailed.Add(1)
		if errors.Is(err, serialcb.ErrPortDown) {
			p.rejDown.Add(1)
		}
	} else {
		p.writesOK.Add(1)
	}
	t.out = o
	t.fut.Resolve(o, err)
	if p.stopped && p.cur == nil {
		p.closeIdle()
		return
	}
	p.next()
}
