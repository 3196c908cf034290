// Package portio makes a serial port two-way: it polls devices that only
// answer (a request on a schedule, its reply matched to it) and carries
// writes from outside (brokers, HTTP) to the port, all on the central event
// loop. Every request is a future resolved with an Outcome.
//
// One request is outstanding per port at a time: the next waits for the
// reply or the timeout, as an RS-485 half-duplex bus needs. The port's
// Reader owns the device and writes between frames (serialcb.Reader.Write);
// its frame callback hands each frame to Port.OnFrame, which claims the
// reply of the outstanding request and lets every other frame flow on as
// unsolicited.
//
// Writes are at most once: a write is never retried, since writing twice
// could move a valve twice. Polls, which only read, are retried after a
// timeout or an invalid reply.
package portio

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/serialcb"
	"github.com/serialcbd/serialcbd/serialcb/jsontext"
)

// Errors an Outcome's future fails with, besides the serialcb write errors
// (serialcb.ErrPortDown, serialcb.ErrWriteQueueFull, serialcb.ErrWriteExpired)
// and asyncloop's.
var (
	ErrNotWritable  = errors.New("port does not take writes")
	ErrTooLarge     = errors.New("write is larger than the port's max_bytes")
	ErrEmpty        = errors.New("write is empty")
	ErrRateLimited  = errors.New("port's writes per second exceeded")
	ErrQueueFull    = errors.New("port's write queue is full")
	ErrReplyTimeout = errors.New("no reply within the reply timeout")
	ErrInvalidReply = errors.New("invalid reply")
	ErrStopped      = errors.New("port's polling and writes are stopped")
)

// Defaults of the zero Config fields.
const (
	DefaultReplyTimeout = time.Second
	DefaultMaxBytes     = 256
	DefaultPerSecond    = 10
	DefaultQueue        = 16
	// DefaultWriteTimeout bounds how long a write may wait for its turn
	// (behind polls and other writes) before it fails unwritten.
	DefaultWriteTimeout = 5 * time.Second
)

// logEvery rate-limits the timeout and invalid-reply warnings per port.
const logEvery = 10 * time.Second

// Writer is the port end a Port writes through: *serialcb.Reader.
type Writer interface {
	Write(req *serialcb.WriteRequest) error
}

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

// Config is one port's polling and write settings.
type Config struct {
	// Port is the port's name, for outcomes and logs.
	Port  string
	Polls []Poll
	// Writable lets Write through; false fails every Write with
	// ErrNotWritable.
	Writable bool
	// MaxBytes caps one write (default DefaultMaxBytes), PerSecond the
	// writes per second with a burst of as many (default DefaultPerSecond),
	// Queue the writes waiting (default DefaultQueue).
	MaxBytes  int
	PerSecond float64
	Queue     int
	// WriteTimeout bounds a write's wait for its turn; default
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
	// ReplyTimeout and ReplyPrefix apply to writes that expect a reply.
	ReplyTimeout time.Duration
	ReplyPrefix  []byte
	// OnPoll, when set, is called on the loop goroutine with the outcome of
	// every poll: err is nil for a reply, else why the poll failed after
	// its retries (or ErrStopped).
	OnPoll func(o Outcome, err error)
}

// Outcome is what became of one request: a poll or a write.
type Outcome struct {
	// RequestID identifies the request; a reply record carries it too.
	RequestID serialcb.ID `json:"request_id"`
	Port      string      `json:"port"`
	// Poll names the poll; "" for a write.
	Poll string `json:"poll,omitempty"`
	// Source is where a write came from (http, mqtt, nats, cli); "poll"
	// for polls.
	Source string `json:"source"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	// Bytes is how many bytes were written.
	Bytes int `json:"bytes"`
	// Attempts counts the times the request was sent.
	Attempts int `json:"attempts"`
	// RTTMicros is from the write to the reply's last byte, in µs.
	RTTMicros int64 `json:"rtt_us,omitempty"`
	// Reply is the reply frame, for polls and writes that expect one.
	Reply *Reply `json:"reply,omitempty"`
}

// Reply is the frame that answered a request. Its payload is text when it
// is valid UTF-8, else base64 with Encoding "base64", as in HTTP records.
type Reply struct {
	ID         serialcb.ID `json:"id"`
	Seq        uint64      `json:"seq"`
	ReceivedAt time.Time   `json:"received_at"`
	Payload    []byte      `json:"-"`
	// Fields are the decoded fields with poll, request_id and rtt_us.
	Fields []byte `json:"-"`
}

// MarshalJSON writes the payload as text or base64, and the fields as an
// object.
func (r *Reply) MarshalJSON() ([]byte, error) {
	b := []byte(`{"id":"`)
	b, _ = r.ID.AppendText(b)
	b = append(b, `","seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"received_at":"`...)
	b = r.ReceivedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","payload":`...)
	if utf8.Valid(r.Payload) {
		b = jsontext.AppendString(b, r.Payload)
	} else {
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, r.Payload)
		b = append(b, `","encoding":"base64"`...)
	}
	if len(r.Fields) > 0 {
		b = append(b, `,"fields":`...)
		b = append(b, r.Fields...)
	}
	return append(b, '}'), nil
}

// WriteOptions describe one write.
type WriteOptions struct {
	// Source names where the write came from, for the outcome and logs.
	Source string
	// ExpectReply makes the write a request: the outcome carries the reply
	// frame, or the write fails with ErrReplyTimeout. It is not retried.
	ExpectReply bool
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

// Stats counts a Port's requests.
type Stats struct {
	Polls []PollStats
	// Writes by outcome: written (with a reply when expected), failed
	// after being accepted, and rejected at once by a limit.
	WritesOK, WritesFailed                                          uint64
	RejectedTooLarge, RejectedRate, RejectedQueue, RejectedPortDown uint64
	// Unsolicited counts frames that arrived while a reply was awaited
	// and were not it (a reply_prefix mismatch or a frame that ended
	// before the request was written).
	Unsolicited uint64
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

// Port polls one serial port and carries writes to it. Make it with New,
// then Start; hand it every frame with OnFrame.
type Port struct {
	loop *asyncloop.Loop
	w    Writer
	cfg  Config
	log  *zap.Logger
	gen  serialcb.IDGen

	// Loop-owned.
	polls   []*pollState
	queue   []*tx
	writesQ int // writes in queue
	cur     *tx // outstanding request
	started bool
	stopped bool
	tokens  float64
	refill  time.Time
	logLast time.Time
	logPend [2]uint64 // timeouts, invalid replies not yet logged

	// Shared with the read goroutine.
	mu         sync.Mutex
	await      *tx       // the request whose reply is awaited
	awaitAtt   int       // its attempt
	awaitSince time.Time // when its bytes were written

	stopOnce sync.Once
	stopCh   chan struct{} // closed by Stop
	idle     chan struct{} // closed once stopped with nothing outstanding
	startWG  sync.WaitGroup

	writesOK, writesFailed                               atomic.Uint64
	rejTooLarge, rejRate, rejQueue, rejDown, unsolicited atomic.Uint64
}

// New returns a Port of loop writing through w. It does no I/O and starts
// nothing. A nil log discards.
func New(loop *asyncloop.Loop, w Writer, cfg Config, log *zap.Logger) (*Port, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.PerSecond == 0 {
		cfg.PerSecond = DefaultPerSecond
	}
	if cfg.Queue == 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.ReplyTimeout == 0 {
		cfg.ReplyTimeout = DefaultReplyTimeout
	}
	if cfg.MaxBytes < 0 || cfg.PerSecond < 0 || cfg.Queue < 0 || cfg.WriteTimeout < 0 || cfg.ReplyTimeout < 0 {
		return nil, errors.New("portio: limits must not be negative")
	}
	p := &Port{loop: loop, w: w, cfg: cfg, log: log.With(zap.String("port", cfg.Port)),
		stopCh: make(chan struct{}), idle: make(chan struct{}), tokens: burst(cfg.PerSecond)}
	for _, q := range cfg.Polls {
		if q.Every <= 0 || len(q.Send) == 0 || q.Retries < 0 {
			return nil, fmt.Errorf("portio: poll %q: needs every > 0, bytes to send and retries >= 0", q.Name)
		}
		if q.ReplyTimeout == 0 {
			q.ReplyTimeout = DefaultReplyTimeout
		}
		p.polls = append(p.polls, &pollState{cfg: q})
	}
	return p, nil
}

func burst(perSecond float64) float64 { return max(1, perSecond) }

// Start starts the schedules on the loop once after is closed (nil: now),
// so that a Port replacing another (a reload) sends nothing before the
// other's outstanding request is answered or timed out: pass its Idle.
// Safe from any goroutine; call it once.
func (p *Port) Start(after <-chan struct{}) {
	if after == nil {
		p.loop.CallLater(0, p.start)
		return
	}
	p.startWG.Add(1)
	go func() {
		defer p.startWG.Done()
		select {
		case <-after:
			p.loop.CallLater(0, p.start)
		case <-p.stopCh:
		}
	}()
}

func (p *Port) start() {
	if p.started || p.stopped {
		return
	}
	p.started = true
	now := time.Now()
	p.refill = now
	for _, ps := range p.polls {
		ps.start = now
		ps.k = 0
		p.tick(ps)
	}
	p.next() // writes queued before the start
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

func (ps *pollState) nameOr(s string) string {
	if ps == nil {
		return s
	}
	return ps.cfg.Name
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

func (p *Port) outcome(t *tx, err error) Outcome {
	o := Outcome{RequestID: t.id, Port: p.cfg.Port, Source: t.source, OK: err == nil, Bytes: t.bytes, Attempts: t.attempts}
	if t.poll != nil {
		o.Poll = t.poll.cfg.Name
	}
	if err != nil {
		o.Error = err.Error()
	}
	return o
}

// OnFrame is called by the port's frame callback, on the read goroutine,
// for every frame; invalid is the frame's validation error (nil: valid).
// When the frame is the awaited reply it claims it: a valid reply gets
// the fields poll (for a poll), request_id and rtt_us added to f.Fields,
// and OnFrame returns true; an invalid one fails the attempt. The frame
// flows on either way. Unsolicited frames cost a lock and a compare.
func (p *Port) OnFrame(f *serialcb.Frame, invalid error) bool {
	p.mu.Lock()
	t := p.await
	if t == nil {
		p.mu.Unlock()
		return false
	}
	if f.ReceivedAt.Before(p.awaitSince) || len(t.prefix) > 0 && !bytes.HasPrefix(f.Payload, t.prefix) {
		p.mu.Unlock()
		p.unsolicited.Add(1)
		return false
	}
	att, rtt := p.awaitAtt, f.ReceivedAt.Sub(p.awaitSince)
	p.await = nil
	p.mu.Unlock()
	if invalid != nil {
		err := fmt.Errorf("%w: %w", ErrInvalidReply, invalid)
		p.loop.CallLater(0, func() { p.failAttempt(t, att, err) })
		return false
	}
	f.Fields = addFields(f.Fields, t, rtt)
	r := &Reply{ID: f.ID, Seq: f.Seq, ReceivedAt: f.ReceivedAt, Payload: f.Payload, Fields: f.Fields}
	p.loop.CallLater(0, func() { p.replied(t, att, r, rtt) })
	return true
}

// addFields returns fields (a JSON object or nil) with poll, request_id
// and rtt_us added.
func addFields(fields []byte, t *tx, rtt time.Duration) []byte {
	b := make([]byte, 0, len(fields)+96)
	b = append(b, '{')
	if t.poll != nil {
		b = append(b, `"poll":`...)
		b = jsontext.AppendString(b, []byte(t.poll.cfg.Name))
		b = append(b, ',')
	}
	b = append(b, `"request_id":"`...)
	b, _ = t.id.AppendText(b)
	b = append(b, `","rtt_us":`...)
	b = strconv.AppendInt(b, rtt.Microseconds(), 10)
	if inner := bytes.TrimSpace(fields); len(inner) > 2 && inner[0] == '{' {
		b = append(b, ',')
		b = append(b, inner[1:]...)
		return b
	}
	return append(b, '}')
}

// Stop stops the schedules and fails the queued requests with ErrStopped;
// the outstanding one, if any, finishes (reply or timeout, without
// retries) and then Idle is closed. Safe from any goroutine, idempotent.
// It must be called before the loop shuts down.
func (p *Port) Stop() {
	p.stopOnce.Do(func() {
		close(p.stopCh)
		p.loop.CallLater(0, p.stopOnLoop)
	})
}

func (p *Port) stopOnLoop() {
	p.stopped = true
	if p.logPend != [2]uint64{} {
		p.log.Warn("requests without a valid reply", zap.Uint64("timeouts", p.logPend[0]), zap.Uint64("invalid_replies", p.logPend[1]))
		p.logPend = [2]uint64{}
	}
	for _, ps := range p.polls {
		if ps.stop != nil {
			ps.stop()
		}
	}
	q := p.queue
	p.queue = nil
	p.writesQ = 0
	for _, t := range q {
		p.resolve(t, p.outcome(t, ErrStopped), ErrStopped)
	}
	if p.cur == nil {
		p.closeIdle()
	}
}

func (p *Port) closeIdle() {
	select {
	case <-p.idle:
	default:
		close(p.idle)
	}
}

// Idle is closed once Stop has taken effect and no request is outstanding.
func (p *Port) Idle() <-chan struct{} { return p.idle }

// Wait waits for the goroutine Start may have started; call it after Stop.
func (p *Port) Wait() { p.startWG.Wait() }

// Polls returns the Port's polls, as configured (defaults applied).
func (p *Port) Polls() []Poll {
	out := make([]Poll, len(p.polls))
	for i, ps := range p.polls {
		out[i] = ps.cfg
	}
	return out
}

// Stats returns the Port's counters. Safe from any goroutine.
func (p *Port) Stats() Stats {
	s := Stats{
		WritesOK: p.writesOK.Load(), WritesFailed: p.writesFailed.Load(),
		RejectedTooLarge: p.rejTooLarge.Load(), RejectedRate: p.rejRate.Load(),
		RejectedQueue: p.rejQueue.Load(), RejectedPortDown: p.rejDown.Load(),
		Unsolicited: p.unsolicited.Load(),
	}
	for _, ps := range p.polls {
		s.Polls = append(s.Polls, PollStats{Name: ps.cfg.Name, Sent: ps.sent.Load(), Replies: ps.replies.Load(),
			Timeouts: ps.timeouts.Load(), Invalid: ps.invalid.Load(), Failed: ps.failed.Load(), Skipped: ps.skipped.Load()})
	}
	return s
}
