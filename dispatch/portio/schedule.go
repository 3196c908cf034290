package portio

import (
	"sync/atomic"
	"time"

	"github.com/serialcbd/serialcbd/asyncloop"
)

// Poll is one request sent on a schedule.
type Poll struct {
	Name string
	// Every is the period. Ticks are start + k*Every, so the schedule does
	// not drift; a tick whose previous request is still queued or
	// outstanding is skipped and counted, as are ticks missed by a late
	// loop.
	Every time.Duration
	// Send is the request's bytes.
	Send []byte
	// ReplyTimeout bounds the wait for the reply of one attempt; default
	// DefaultReplyTimeout.
	ReplyTimeout time.Duration
	// Retries is how many more attempts a timeout or an invalid reply gets.
	Retries int
	// ReplyPrefix, when set, is what a reply starts with; other frames
	// meanwhile are unsolicited.
	ReplyPrefix []byte
}

// PollStats counts one poll's requests.
type PollStats struct {
	Name string
	// Sent counts attempts written, Replies valid replies, Timeouts and
	// Invalid failed attempts, Failed polls that failed after their
	// retries (or unwritten), Skipped ticks not sent because the previous
	// request was still out or the loop was late.
	Sent, Replies, Timeouts, Invalid, Failed, Skipped uint64
}

type pollState struct {
	cfg   Poll
	start time.Time
	k     int64 // index of the next tick
	stop  func() bool
	// pending: a request of this poll is queued or outstanding (loop).
	pending bool

	sent, replies, timeouts, invalid, failed, skipped atomic.Uint64
}

// tick runs on the loop at tick ps.k: it queues a request unless the last
// one is still out, and arms the next tick.
func (p *Port) tick(ps *pollState) {
	if p.stopped {
		return
	}
	now := time.Now()
	if ps.pending {
		ps.skipped.Add(1)
	} else {
		ps.pending = true
		t := &tx{id: p.gen.New(now), poll: ps, source: "poll", data: ps.cfg.Send, expect: true,
			timeout: ps.cfg.ReplyTimeout, prefix: ps.cfg.ReplyPrefix, max: 1 + ps.cfg.Retries,
			deadline: ps.start.Add(time.Duration(ps.k+1) * ps.cfg.Every)}
		t.fut = asyncloop.NewFuture[Outcome](p.loop)
		t.fut.AddDoneCallback(func(f *asyncloop.Future[Outcome]) {
			err := f.Err()
			if p.cfg.OnPoll != nil {
				p.cfg.OnPoll(t.out, err)
			}
		})
		p.queue = append(p.queue, t)
	}
	// The next tick after now; ticks the loop was too late for are skipped.
	k := int64(now.Sub(ps.start)/ps.cfg.Every) + 1
	if missed := k - (ps.k + 1); missed > 0 {
		ps.skipped.Add(uint64(missed))
	}
	ps.k = k
	ps.stop = p.loop.CallLater(ps.start.Add(time.Duration(k)*ps.cfg.Every).Sub(now), func() { p.tick(ps) })
	p.next()
}

func (ps *pollState) nameOr(s string) string {
	if ps == nil {
		return s
	}
	return ps.cfg.Name
}

// Polls returns the Port's polls, as configured (defaults applied).
func (p *Port) Polls() []Poll {
	out := make([]Poll, len(p.polls))
	for i, ps := range p.polls {
		out[i] = ps.cfg
	}
	return out
}
