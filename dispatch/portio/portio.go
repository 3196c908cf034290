package portio

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/serialcb"
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
