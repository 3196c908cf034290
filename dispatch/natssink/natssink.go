// Package natssink publishes frames to NATS, by default through JetStream.
//
// The spec is nats://HOST[:PORT]/SUBJECT (tls://… for TLS; the port
// defaults to 4222). SUBJECT is a template: {port} is replaced by the
// frame's port name and {field.NAME} by the decoder field NAME (see
// Config.MissingField); substituted values are sanitised so each stays one
// subject token.
//
// With JetStream (the default) each frame is published with the header
// Nats-Msg-Id set to the frame's id, asynchronously, and Write waits for the
// stream's acknowledgement of every frame: nil means every frame is stored,
// a *dispatch.BatchError gives each frame its outcome. A retried frame
// carries the same Nats-Msg-Id, so the stream drops the duplicate within its
// duplicate window: delivery is at-least-once, the stream's content
// exactly-once (within the window).
//
// With jetstream: false frames are published with core NATS: Write returns
// once the server has received the batch (a flush round trip), but the
// server keeps nothing, so a frame published while no subscriber listens is
// lost. Delivery is at-most-once beyond the server.
//
// The connection reconnects forever with backoff and buffers nothing while
// disconnected: a Write then fails at once, retryably, and the frames wait
// in dispatch's queue and spool rather than in the client library's memory.
package natssink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/serialcb"
)

// Spec schemes and the default port.
const (
	SchemeNATS  = "nats"
	SchemeTLS   = "tls"
	DefaultPort = "4222"
)

// Defaults applied by ParseSpec.
const (
	DefaultConnectTimeout  = 5 * time.Second
	DefaultAckTimeout      = 5 * time.Second
	DefaultDuplicateWindow = 2 * time.Minute
	DefaultMissingField    = "unknown"
)

// Message formats (Config.Format).
const (
	// FormatJSON: the message is the frame's JSON record (dispatch.AppendJSON).
	FormatJSON = dispatch.FormatJSON
	// FormatRaw: the message is the frame's payload, unchanged.
	FormatRaw = dispatch.FormatRaw
	// FormatFields: the message is the decoder's fields object
	// (Frame.Fields); a frame without fields fails permanently.
	FormatFields = dispatch.FormatFields
)

const (
	// maxPendingAcks bounds the acknowledgements awaited at once across all
	// Writes; a publish past it waits up to AckTimeout for room.
	maxPendingAcks = 16384
	// reconnect backoff: from minReconnect doubling to maxReconnect, with
	// jitter.
	minReconnect = 100 * time.Millisecond
	maxReconnect = 5 * time.Second
	// asyncErrEvery rate-limits the log of the connection's asynchronous
	// errors (a permission violation repeats on every publish).
	asyncErrEvery = 10 * time.Second
)

// Errors of Write.
var (
	// ErrNotConnected: the sink has no connection to the server now; the
	// batch is retried once it reconnects.
	ErrNotConnected = errors.New("not connected to the NATS server")
	// ErrNoStream: no JetStream stream takes the subject.
	ErrNoStream = errors.New("no JetStream stream takes the subject")
	// ErrNoFields: format "fields" and the frame has none.
	ErrNoFields = dispatch.ErrNoFields
)

// Sink publishes frames to NATS. Write is safe for concurrent use.
type Sink struct {
	cfg     Config
	log     *zap.Logger
	tmpl    *template
	pattern string

	mu     sync.Mutex // guards nc, js, closed
	nc     *nats.Conn
	js     jetstream.JetStream
	closed bool

	// streamMu serialises stream creation; streamReady is set once the
	// configured stream is known to exist.
	streamMu    sync.Mutex
	streamReady atomic.Bool

	// outage is when the current outage began (zero while connected); it
	// makes the connection's logs one line per outage.
	outageMu sync.Mutex
	outage   time.Time

	lastAsyncErr atomic.Int64 // unix ns of the last logged async error

	// coverage is the last stream check's answer (see coverage.go);
	// coverNone and coverSuspect make the next Write check again before
	// publishing.
	coverage atomic.Int32
}

var _ dispatch.Sink = (*Sink)(nil)

// New returns a sink for cfg. It does no I/O; Start connects.
func New(cfg Config, log *zap.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Format == "" {
		cfg.Format = FormatJSON
	}
	t, _ := parseTemplate(cfg.Subject) // validated above
	return &Sink{cfg: cfg, log: log, tmpl: t, pattern: t.pattern}, nil
}

// Start reads the credentials and TLS files and connects. A server that
// cannot be reached is not an error: Start logs one warning and returns
// nil, the connection keeps trying in the background, and writes fail
// retryably until it succeeds. Errors are for settings that cannot work
// (a missing file or environment variable).
func (s *Sink) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("nats sink: start after close")
	}
	if s.nc != nil {
		return nil
	}
	opts, err := s.options()
	if err != nil {
		return err
	}
	s.outageMu.Lock()
	s.outage = time.Now() // not connected yet: the first connect ends it
	s.outageMu.Unlock()
	nc, err := nats.Connect(s.cfg.Server, opts...)
	if err != nil {
		return fmt.Errorf("nats sink: connect to %s: %w", s.cfg.Server, err)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(maxPendingAcks),
		jetstream.WithPublishAsyncTimeout(s.cfg.AckTimeout))
	if err != nil {
		nc.Close()
		return fmt.Errorf("nats sink: %w", err)
	}
	s.nc, s.js = nc, js
	if !nc.IsConnected() {
		s.log.Warn("cannot connect to the NATS server at start; starting anyway: the sink keeps connecting in the background, and frames wait in the sink's queue and spool and are retried until it answers",
			zap.String("server", s.cfg.Server), zap.Error(nc.LastError()))
		return nil
	}
	if s.cfg.JetStream && s.cfg.Stream != "" {
		if err := s.ensureStream(ctx, js); err != nil {
			// Not fatal: a Write tries again.
			s.log.Warn("nats sink: cannot create the stream at start; writes will try again", zap.String("stream", s.cfg.Stream), zap.Error(err))
		}
	}
	if s.cfg.JetStream && s.cfg.Stream == "" {
		s.checkStreams(ctx, js)
	}
	return nil
}

// Write publishes the batch. With JetStream it returns nil once every frame
// is acknowledged by the stream, otherwise a *dispatch.BatchError with each
// frame's classified error. With core NATS the outcome (nil or one error)
// applies to the whole batch.
func (s *Sink) Write(ctx context.Context, batch []*serialcb.Frame) error {
	if len(batch) == 0 {
		return nil
	}
	nc, js, err := s.conn()
	if err != nil {
		return err
	}
	if !nc.IsConnected() {
		return fmt.Errorf("nats sink: %s (%s): %w", s.cfg.Server, strings.ToLower(nc.Status().String()), ErrNotConnected)
	}
	if !s.cfg.JetStream {
		return s.writeCore(ctx, nc, batch)
	}
	if s.cfg.Stream != "" && !s.streamReady.Load() {
		if err := s.ensureStream(ctx, js); err != nil {
			return err
		}
	}
	if c := coverage(s.coverage.Load()); (c == coverNone || c == coverSuspect) && s.checkStreams(ctx, js) == coverNone {
		// Publishing would wait ack_timeout per batch if a plain
		// subscriber listens on the subject: fail now.
		return fmt.Errorf("nats sink: %w %q: %s", ErrNoStream, s.pattern, s.noStreamHelp())
	}
	return s.writeJetStream(ctx, js, batch)
}

// message builds the message for f; data is appended to buf, which is
// returned (the message keeps a slice of it, so buf must not be reused
// while the message is in flight).
func (s *Sink) message(buf []byte, f *serialcb.Frame) (*nats.Msg, []byte, error) {
	start := len(buf)
	buf, err := dispatch.AppendBody(buf, f, s.cfg.Format)
	if err != nil {
		return nil, buf, dispatch.Permanent(fmt.Errorf("nats sink: frame %s: %w", f.ID, err))
	}
	m := &nats.Msg{
		Subject: s.tmpl.render(f, s.cfg.MissingField),
		Data:    buf[start:len(buf):len(buf)],
		Header:  nats.Header{jetstream.MsgIDHeader: []string{f.ID.String()}},
	}
	return m, buf, nil
}

// bufSize estimates the bytes a batch's messages need.
func (s *Sink) bufSize(batch []*serialcb.Frame) int {
	n := 0
	for _, f := range batch {
		n += dispatch.BodySize(f, s.cfg.Format)
	}
	return n
}

func (s *Sink) writeJetStream(ctx context.Context, js jetstream.JetStream, batch []*serialcb.Frame) error {
	errs := make([]error, len(batch))
	futs := make([]jetstream.PubAckFuture, len(batch))
	buf := make([]byte, 0, s.bufSize(batch))
	opts := []jetstream.PublishOpt{
		// No stream: fail now, dispatch retries (with backoff).
		jetstream.WithRetryAttempts(0),
		jetstream.WithStallWait(s.cfg.AckTimeout),
	}
	failed := false
	var stop error // set when publishing cannot go on (connection lost)
	for i, f := range batch {
		if stop != nil {
			errs[i] = stop
			continue
		}
		m, b, err := s.message(buf, f)
		buf = b
		if err != nil {
			errs[i], failed = err, true
			continue
		}
		fut, err := js.PublishMsgAsync(m, opts...)
		if err != nil {
			errs[i], failed = s.publishError(m.Subject, err), true
			if !dispatch.IsPermanent(errs[i]) {
				stop = errs[i]
			}
			continue
		}
		futs[i] = fut
	}
	for i, fut := range futs {
		if fut == nil {
			continue
		}
		select {
		case <-fut.Ok():
		case err := <-fut.Err():
			errs[i], failed = s.ackError(fut.Msg().Subject, err), true
		case <-ctx.Done():
			// The library times out what is still awaited (AckTimeout).
			err := fmt.Errorf("nats sink: waiting for the ack: %w", ctx.Err())
			for j := i; j < len(futs); j++ {
				if futs[j] != nil {
					errs[j] = err
				}
			}
			return &dispatch.BatchError{Errs: errs}
		}
	}
	if failed {
		return &dispatch.BatchError{Errs: errs}
	}
	return nil
}

// publishError classifies an error of PublishMsgAsync.
func (s *Sink) publishError(subject string, err error) error {
	if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject) {
		return dispatch.Permanent(fmt.Errorf("nats sink: publish to %q: %w", subject, err))
	}
	return fmt.Errorf("nats sink: publish to %q: %w", subject, err)
}

// ackError classifies the failure of one frame's acknowledgement.
func (s *Sink) ackError(subject string, err error) error {
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		if s.cfg.Stream != "" {
			// Deleted behind our back? Check (and create) again next time.
			s.streamReady.Store(false)
			return fmt.Errorf("nats sink: %w %q (stream %q does not list it, or was just deleted)", ErrNoStream, subject, s.cfg.Stream)
		}
		s.coverage.Store(int32(coverNone)) // check before the next Write
		return fmt.Errorf("nats sink: %w %q: %s", ErrNoStream, subject, s.noStreamHelp())
	}
	if errors.Is(err, jetstream.ErrAsyncPublishTimeout) && s.cfg.Stream == "" {
		// No ack in time: a busy stream, or no stream and a plain
		// subscriber on the subject. The next Write checks which.
		s.coverage.CompareAndSwap(int32(coverFull), int32(coverSuspect))
		return fmt.Errorf("nats sink: publish to %q: %w (within ack_timeout %s; if no stream takes the subject: %s)", subject, err, s.cfg.AckTimeout, s.noStreamHelp())
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 && apiErr.Code != 408 && apiErr.Code != 429 {
		// The stream refuses this message (too large, …): retrying cannot
		// help.
		return dispatch.Permanent(fmt.Errorf("nats sink: stream refused the message on %q: %w", subject, err))
	}
	return fmt.Errorf("nats sink: publish to %q: %w", subject, err)
}

func (s *Sink) writeCore(ctx context.Context, nc *nats.Conn, batch []*serialcb.Frame) error {
	buf := make([]byte, 0, s.bufSize(batch))
	var errs []error
	for i, f := range batch {
		m, b, err := s.message(buf, f)
		buf = b
		if err != nil {
			if errs == nil {
				errs = make([]error, len(batch))
			}
			errs[i] = err
			continue
		}
		if err := nc.PublishMsg(m); err != nil {
			return s.publishError(m.Subject, err)
		}
	}
	// The flush round trip tells that the server has read every message:
	// what core NATS can acknowledge.
	fctx, cancel := context.WithTimeout(ctx, s.cfg.AckTimeout)
	defer cancel()
	if err := nc.FlushWithContext(fctx); err != nil {
		return fmt.Errorf("nats sink: flush: %w", err)
	}
	if errs != nil {
		return &dispatch.BatchError{Errs: errs}
	}
	return nil
}

// Close drains the connection (pending publishes are flushed) and closes
// it, stopping its reconnect loop and goroutines. It is idempotent.
func (s *Sink) Close() error {
	s.mu.Lock()
	nc := s.nc
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if nc == nil || already {
		return nil
	}
	if nc.IsConnected() {
		done := make(chan struct{})
		nc.SetClosedHandler(func(*nats.Conn) { close(done) })
		if err := nc.Drain(); err == nil {
			select {
			case <-done:
			case <-time.After(s.cfg.AckTimeout + time.Second):
			}
		}
	}
	nc.Close()
	return nil
}
