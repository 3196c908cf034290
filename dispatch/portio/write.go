package portio

import (
	"bytes"
	"fmt"
	"time"

	"github.com/serialcbd/serialcbd/asyncloop"
)

// WriteOptions describe one write.
type WriteOptions struct {
	// Source names where the write came from, for the outcome and logs.
	Source string
	// ExpectReply makes the write a request: the outcome carries the reply
	// frame, or the write fails with ErrReplyTimeout. It is not retried.
	ExpectReply bool
}

// Write queues data to be written to the port and returns its future. The
// outcome is filled in whether it succeeded or not; the future fails with
// ErrNotWritable, ErrEmpty, ErrTooLarge, ErrRateLimited, ErrQueueFull,
// serialcb.ErrPortDown, serialcb.ErrWriteExpired (it waited too long for
// its turn), ErrReplyTimeout or ErrInvalidReply (with ExpectReply),
// ErrStopped, or a write error. data is copied. Safe from any goroutine.
func (p *Port) Write(data []byte, opts WriteOptions) *asyncloop.Future[Outcome] {
	now := time.Now()
	t := &tx{id: p.gen.New(now), source: opts.Source, expect: opts.ExpectReply, max: 1,
		timeout: p.cfg.ReplyTimeout, prefix: p.cfg.ReplyPrefix, deadline: now.Add(p.cfg.WriteTimeout)}
	t.fut = asyncloop.NewFuture[Outcome](p.loop)
	var err error
	switch {
	case !p.cfg.Writable:
		err = ErrNotWritable
	case len(data) == 0:
		err = ErrEmpty
	case len(data) > p.cfg.MaxBytes:
		p.rejTooLarge.Add(1)
		err = fmt.Errorf("%w: %d bytes, max %d", ErrTooLarge, len(data), p.cfg.MaxBytes)
	}
	if err == nil {
		t.data = bytes.Clone(data)
		err = p.loop.CallSoon(func() { p.enqueueWrite(t) })
	}
	if err != nil {
		t.fut.Resolve(p.outcome(t, err), err)
	}
	return t.fut
}

func (p *Port) enqueueWrite(t *tx) {
	var err error
	now := time.Now()
	p.tokens = min(burst(p.cfg.PerSecond), p.tokens+now.Sub(p.refill).Seconds()*p.cfg.PerSecond)
	p.refill = now
	switch {
	case p.stopped:
		err = ErrStopped
	case p.writesQ >= p.cfg.Queue:
		p.rejQueue.Add(1)
		err = fmt.Errorf("%w (%d writes waiting)", ErrQueueFull, p.writesQ)
	case p.tokens < 1:
		p.rejRate.Add(1)
		err = fmt.Errorf("%w (%v per second)", ErrRateLimited, p.cfg.PerSecond)
	}
	if err != nil {
		t.fut.Resolve(p.outcome(t, err), err)
		return
	}
	p.tokens--
	p.writesQ++
	p.queue = append(p.queue, t)
	p.next()
}
