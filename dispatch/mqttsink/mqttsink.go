// Package mqttsink publishes frames to an MQTT broker (protocol v3.1.1,
// Eclipse Paho), one PUBLISH per frame.
//
// A frame counts as delivered only when the broker acknowledged it: PUBACK
// for QoS 1, PUBCOMP for QoS 2. QoS 0 has no acknowledgement: a frame counts
// as delivered once it was written to the socket, so frames written just
// before a connection breaks may be lost (choose QoS 0 only for data that may
// be lost).
//
// Write publishes the whole batch, up to Config.MaxInflight publishes
// awaiting their acknowledgement at once (across Writes), and waits for the
// acknowledgements. While the sink is not connected Write fails at
// once with a retryable error: the sink never queues messages in memory
// (dispatch retries, and keeps undelivered frames in its queue and spool).
// The connection is kept by one goroutine that reconnects in the background
// with a capped backoff; each outage is logged once when it starts and once
// when it ends.
package mqttsink

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/serialcb"
)

// Spec schemes: "mqtt://HOST[:PORT]/TOPIC" (plain TCP) and
// "mqtts://HOST[:PORT]/TOPIC" (TLS).
const (
	Scheme    = "mqtt"
	SchemeTLS = "mqtts"
)

// Defaults applied by ParseSpec.
const (
	DefaultPort           = 1883
	DefaultTLSPort        = 8883
	DefaultQoS            = 1
	DefaultKeepAlive      = 30 * time.Second
	DefaultConnectTimeout = 5 * time.Second
	DefaultMissingField   = "unknown"
	// DefaultMaxInflight is the limit of QoS 2 publishes in flight:
	// Mosquitto's default max_inflight_messages. Over its limit a broker
	// may drop a QoS 2 message it has acknowledged (measured: 439 of 500
	// lost with 1,000 in flight).
	DefaultMaxInflight = 20
	// DefaultMaxInflightQoS1 is the limit at QoS 0 and 1, where a broker
	// that is over its limit does not acknowledge what it drops, so the
	// dispatcher retries: 10,000 frames arrive whole with 1,000 in flight,
	// at 66k frames/s instead of 25k with 20 (BenchmarkWrite/qos1).
	DefaultMaxInflightQoS1 = 1000
)

// Message formats (Config.Format).
const (
	// FormatJSON publishes the frame record (dispatch.AppendJSON).
	FormatJSON = dispatch.FormatJSON
	// FormatRaw publishes the frame's payload bytes as they are.
	FormatRaw = dispatch.FormatRaw
	// FormatFields publishes the frame's decoded fields (a JSON object); a
	// frame without fields fails permanently.
	FormatFields = dispatch.FormatFields
)

const (
	// minReconnectDelay and maxReconnectDelay bound the wait between
	// connection attempts: it doubles from the first to the second after
	// each failure (with jitter), and a lost connection is retried at once.
	minReconnectDelay = 250 * time.Millisecond
	maxReconnectDelay = 10 * time.Second
	// quiesce is how long Close waits for the DISCONNECT packet to go out.
	quiesce = 250 // milliseconds
	// maxTopicLen is MQTT's limit on a topic name's UTF-8 length.
	maxTopicLen = 65535
	// maxPayload is MQTT's limit on a PUBLISH packet's remaining length,
	// less room for the topic and packet id.
	maxPayload = 268_435_455 - maxTopicLen - 4
	// maxKeepAlive is MQTT's limit on the keepalive (16-bit seconds).
	maxKeepAlive = 65535 * time.Second
)

// ErrNotConnected is the retryable error of a Write while the sink has no
// connection to the broker. Match it with errors.Is.
var ErrNotConnected = errors.New("not connected to the MQTT broker")

// errConnLost is the outcome of a publish whose connection broke before the
// broker acknowledged it.
var errConnLost = errors.New("connection lost before the broker acknowledged the message")

// Sink publishes frames to one MQTT broker. Write is safe for concurrent
// use.
type Sink struct {
	cfg      Config
	log      *zap.Logger
	ep       endpoint
	qos      byte
	format   string
	lost     chan error // connection lost, from Paho's handler to run
	payloads sync.Pool  // *scratch
	// window holds a slot per QoS 1/2 publish awaiting its ack (nil at
	// QoS 0, which has none).
	window    chan struct{}
	lingering sync.WaitGroup // releaseLater goroutines

	mu      sync.Mutex // guards the fields below
	client  mqtt.Client
	link    *link // the connection up now; nil while down
	started bool
	closed  bool
	cancel  context.CancelFunc // stops run
	done    chan struct{}      // closed when run has returned
}

var _ dispatch.Sink = (*Sink)(nil)

// link is one established connection. down is closed when it is lost, so
// that Writes stop waiting for acknowledgements that cannot come.
type link struct {
	down chan struct{}
	// publishing counts the Writes publishing on it; Add only under
	// Sink.mu while the link is current, so never after linkDown's Wait.
	publishing sync.WaitGroup
}

// scratch is a Write's working memory, pooled when no publish of the batch
// can still read it.
type scratch struct {
	buf  []byte
	toks []mqtt.Token
}

// New returns a sink for cfg. It does no I/O; Start connects.
func New(cfg Config, log *zap.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	ep, _ := parseURL(cfg.URL) // validated above
	if cfg.ClientID == DefaultClientID() && cfg.CleanSession {
		// A clean session has nothing to resume under a stable id, and a
		// shared one is a fight: two sinks of one config, or two daemons
		// on one host, would kick each other off the broker for ever.
		cfg.ClientID += fmt.Sprintf("-%08x", rand.Uint32())
	}
	s := &Sink{
		cfg:    cfg,
		log:    log.With(zap.String("broker", ep.addr)),
		ep:     ep,
		qos:    byte(cfg.QoS),
		format: cfg.Format,
		lost:   make(chan error, 1),
	}
	if s.format == "" {
		s.format = FormatJSON
	}
	if cfg.QoS > 0 {
		s.window = make(chan struct{}, cfg.maxInflight())
	}
	s.payloads.New = func() any { return new(scratch) }
	return s, nil
}

// Start reads the TLS files and the password, and connects. A broker that
// cannot be reached is not an error: Start logs one warning and returns
// nil, the sink keeps trying to connect in the background, and Writes fail
// retryably meanwhile.
func (s *Sink) Start(ctx context.Context) error {
	first, done, err := s.start(ctx)
	if err != nil || first == nil {
		return err
	}
	select {
	case <-first:
		return nil // run logged the outcome
	case <-done:
		return errors.New("mqtt sink: closed during start")
	case <-ctx.Done():
		return fmt.Errorf("mqtt sink: start: %w", ctx.Err())
	}
}

// Write publishes every frame of the batch, keeping up to MaxInflight
// publishes in flight, and waits for the broker's acknowledgements (see the
// package doc). It returns
// nil when every frame was delivered, ErrNotConnected (retryable) for the
// whole batch while the sink has no connection, and otherwise a
// *dispatch.BatchError: a topic with a wildcard, a too-long topic or body,
// or a frame without fields in format "fields" fails permanently; a lost
// connection, a timeout or ctx ending fail retryably.
func (s *Sink) Write(ctx context.Context, batch []*serialcb.Frame) error {
	if len(batch) == 0 {
		return nil
	}
	s.mu.Lock()
	client, l, started, closed := s.client, s.link, s.started, s.closed
	if l != nil {
		l.publishing.Add(1)
	}
	s.mu.Unlock()
	published := func() {
		if l != nil {
			l.publishing.Done()
			l = nil
		}
	}
	defer published()
	switch {
	case closed:
		return errors.New("mqtt sink: write after close")
	case !started:
		return errors.New("mqtt sink: write before start")
	case l == nil:
		return fmt.Errorf("mqtt %s: %w", s.ep.addr, ErrNotConnected)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mqtt %s: %w", s.ep.addr, err)
	}

	sc := s.payloads.Get().(*scratch)
	buf := sc.buf[:0]
	toks := sc.toks[:0] // toks[i] is batch[i]'s publish; nil when it failed before
	var errs []error
	fail := func(i int, err error) {
		if errs == nil {
			errs = make([]error, len(batch))
		}
		errs[i] = err
	}
	// The in-flight window: every publish awaiting its acknowledgement
	// holds a slot of s.window. oldest is the first of toks whose slot this
	// Write may still hold; slots are given back in order as acks are seen.
	oldest := 0
	release := func() {
		for s.window != nil && oldest < len(toks) {
			t := toks[oldest]
			if t != nil {
				select {
				case <-t.Done():
					<-s.window
				default:
					return
				}
			}
			oldest++
		}
	}
	var abandon error // why the Write stopped waiting, if it did
	stopped := func(ctxDone bool) error {
		if ctxDone {
			return fmt.Errorf("mqtt publish to %s: not acknowledged: %w", s.ep.addr, ctx.Err())
		}
		return fmt.Errorf("mqtt publish to %s: %w", s.ep.addr, errConnLost)
	}

publish:
	for i, f := range batch {
		topic, err := s.ep.topic.render(f, s.cfg.MissingField)
		if err != nil {
			toks = append(toks, nil)
			fail(i, dispatch.Permanent(err))
			continue
		}
		var body []byte
		body, buf, err = s.body(buf, f)
		if err != nil {
			toks = append(toks, nil)
			fail(i, dispatch.Permanent(err))
			continue
		}
		for s.window != nil {
			release()
			var oldestDone <-chan struct{} // nil: none of ours in flight
			if oldest < len(toks) {
				oldestDone = toks[oldest].Done()
			}
			select {
			case s.window <- struct{}{}:
			case <-oldestDone:
				continue // release it and try again
			case <-ctx.Done():
				abandon = stopped(true)
				break publish
			case <-l.down:
				abandon = stopped(false)
				break publish
			}
			break
		}
		select {
		case <-l.down: // gone while this Write published: stop at once
			if s.window != nil {
				<-s.window // the slot taken for this frame
			}
			abandon = stopped(false)
			break publish
		default:
		}
		toks = append(toks, client.Publish(topic, s.qos, s.cfg.Retain, body))
	}
	for i := len(toks); i < len(batch); i++ {
		fail(i, abandon) // never published
	}
	down := l.down
	published()

	// Wait for the acknowledgements; stop waiting when ctx ends or the
	// connection is lost, and count what was acknowledged by then.
	if abandon == nil {
	wait:
		for _, t := range toks[oldest:] {
			if t == nil {
				continue
			}
			select {
			case <-t.Done():
			case <-ctx.Done():
				abandon = stopped(true)
				break wait
			case <-down:
				abandon = stopped(false)
				break wait
			}
			release()
		}
	}
	release()
	reusable := true // no publish may still read buf
	for i, t := range toks {
		if t == nil {
			continue
		}
		select {
		case <-t.Done():
			if err := t.Error(); err != nil {
				reusable = false // Paho's store may still hold the message
				if errors.Is(err, mqtt.ErrNotConnected) {
					err = ErrNotConnected // lost after the check above
				}
				fail(i, fmt.Errorf("mqtt publish to %s: %w", s.ep.addr, err))
			}
		default:
			reusable = false
			fail(i, abandon)
		}
	}
	if oldest < len(toks) && s.window != nil {
		// Slots still held: publishes not acknowledged yet. Their slots
		// come back when the broker acknowledges them or the connection
		// is lost; until then the broker still counts them.
		var held []mqtt.Token
		for _, t := range toks[oldest:] {
			if t != nil {
				held = append(held, t)
			}
		}
		s.releaseLater(held, down)
	}
	if reusable && cap(buf) <= 4<<20 {
		clear(toks)
		sc.buf, sc.toks = buf[:0], toks[:0]
		s.payloads.Put(sc)
	}
	if errs != nil {
		return &dispatch.BatchError{Errs: errs}
	}
	return nil
}

// releaseLater gives back the window slots of held (publishes of a Write
// that stopped waiting) as each is acknowledged, or all of them when the
// connection is lost.
func (s *Sink) releaseLater(held []mqtt.Token, down <-chan struct{}) {
	s.lingering.Go(func() {
		for i, t := range held {
			select {
			case <-t.Done():
				<-s.window
			case <-down:
				for range held[i:] {
					<-s.window
				}
				return
			}
		}
	})
}

// body returns the message body of f, appending to buf when it has to be
// encoded, and the grown buf.
func (s *Sink) body(buf []byte, f *serialcb.Frame) (body, newBuf []byte, err error) {
	switch s.format {
	case FormatRaw:
		body = f.Payload
	case FormatFields:
		if len(f.Fields) == 0 {
			return nil, buf, errors.New("mqtt sink: format fields: the frame has no decoded fields")
		}
		body = f.Fields
	default:
		start := len(buf)
		buf = dispatch.AppendJSON(buf, f)
		body = buf[start:len(buf):len(buf)]
	}
	if len(body) > maxPayload {
		return nil, buf, fmt.Errorf("mqtt sink: message of %d bytes: over MQTT's limit", len(body))
	}
	return body, buf, nil
}

// Close disconnects from the broker (waiting briefly for the DISCONNECT
// packet to go out) and stops the connection goroutine. Call it when no
// Write is running. It is idempotent.
func (s *Sink) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done // run has closed the last link's down channel
	}
	s.lingering.Wait()
	return nil
}
