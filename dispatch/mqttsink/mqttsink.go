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
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/sinkconf"
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
	FormatJSON = "json"
	// FormatRaw publishes the frame's payload bytes as they are.
	FormatRaw = "raw"
	// FormatFields publishes the frame's decoded fields (a JSON object); a
	// frame without fields fails permanently.
	FormatFields = "fields"
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

// Config configures the MQTT sink.
type Config struct {
	// URL is the whole sink spec: mqtt://HOST[:PORT]/TOPIC or mqtts://….
	// TOPIC is a template (see the package README): {port} and
	// {field.NAME} are replaced per frame.
	URL string `yaml:"-"`
	// QoS is the publish quality of service: 0, 1 (default) or 2.
	QoS int `yaml:"qos"`
	// Retain sets the retain flag on every message.
	Retain bool `yaml:"retain"`
	// ClientID identifies the session at the broker; default
	// serialcbd-<hostname>. Two clients with one id kick each other off.
	ClientID string `yaml:"client_id"`
	// Username is sent at connect when set.
	Username string `yaml:"username"`
	// PasswordEnv names the environment variable holding the password, so
	// the secret stays out of the config file. Read by Start.
	PasswordEnv string `yaml:"password_env"`
	// CleanSession asks the broker to discard the session at connect
	// (default true).
	CleanSession bool `yaml:"clean_session"`
	// KeepAlive is the MQTT keepalive; 0 disables pings.
	KeepAlive time.Duration `yaml:"keepalive"`
	// ConnectTimeout bounds one connection attempt: TCP, TLS and CONNACK.
	// It also bounds writing one packet: a broker that takes none for this
	// long has a broken connection.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// TLS applies to mqtts URLs.
	TLS sinkconf.TLS `yaml:"tls"`
	// Format is the message body: FormatJSON (default), FormatRaw or
	// FormatFields.
	Format string `yaml:"format"`
	// MissingField replaces a {field.NAME} whose field the frame lacks.
	MissingField string `yaml:"missing_field"`
	// MaxInflight bounds the QoS 1 and 2 publishes awaiting the broker's
	// acknowledgement, across all Writes (0: DefaultMaxInflight at QoS 2,
	// DefaultMaxInflightQoS1 otherwise). At QoS 2 keep it at or below the
	// broker's limit (Mosquitto: max_inflight_messages, default 20): a
	// broker may acknowledge and drop a QoS 2 message over it.
	MaxInflight int `yaml:"max_inflight"`
}

// ParseSpec returns the default Config for a spec "mqtt://HOST[:PORT]/TOPIC"
// or "mqtts://…". Validate checks the rest.
func ParseSpec(spec string) (Config, error) {
	if !strings.HasPrefix(spec, Scheme+"://") && !strings.HasPrefix(spec, SchemeTLS+"://") {
		return Config{}, fmt.Errorf("mqtt sink spec %q: want mqtt://HOST[:PORT]/TOPIC or mqtts://…", sinkconf.Redact(spec))
	}
	return Config{
		URL:            spec,
		QoS:            DefaultQoS,
		ClientID:       DefaultClientID(),
		CleanSession:   true,
		KeepAlive:      DefaultKeepAlive,
		ConnectTimeout: DefaultConnectTimeout,
		Format:         FormatJSON,
		MissingField:   DefaultMissingField,
	}, nil
}

// DefaultClientID is "serialcbd-" followed by the host name.
func DefaultClientID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "unknown"
	}
	return "serialcbd-" + h
}

// endpoint is a parsed spec.
type endpoint struct {
	secure bool
	host   string // without port, for TLS server name
	addr   string // host:port
	topic  template
}

// parseURL splits a spec into broker and topic template.
func parseURL(spec string) (endpoint, error) {
	if strings.Contains(spec, "#") {
		return endpoint{}, errors.New("mqtt sink: topic: MQTT wildcard '#' is not allowed in a topic to publish to")
	}
	u, err := sinkconf.ParseURL(spec)
	if err != nil {
		return endpoint{}, fmt.Errorf("mqtt sink: %w", err)
	}
	var ep endpoint
	port := DefaultPort
	switch u.Scheme {
	case Scheme:
	case SchemeTLS:
		ep.secure = true
		port = DefaultTLSPort
	default:
		return endpoint{}, fmt.Errorf("mqtt sink: url scheme %q: must be %s or %s", u.Scheme, Scheme, SchemeTLS)
	}
	if u.User != nil {
		return endpoint{}, errors.New("mqtt sink: url: user info is not supported: set username and password_env in the mqtt block")
	}
	if u.RawQuery != "" || u.ForceQuery {
		return endpoint{}, errors.New("mqtt sink: url: a query is not supported (write '?' in a topic as %3F)")
	}
	ep.host = u.Hostname()
	if err := sinkconf.CheckHostPort(u); err != nil {
		return endpoint{}, fmt.Errorf("mqtt sink: url %s://%s: %w", u.Scheme, u.Host, err)
	}
	if p := u.Port(); p != "" {
		port, _ = strconv.Atoi(p) // checked above
	}
	ep.addr = net.JoinHostPort(ep.host, strconv.Itoa(port))
	topic, _ := strings.CutPrefix(u.Path, "/")
	if topic == "" {
		return endpoint{}, fmt.Errorf("mqtt sink: url %s://%s: missing topic: write mqtt://HOST:PORT/TOPIC", u.Scheme, u.Host)
	}
	ep.topic, err = parseTemplate(topic)
	if err != nil {
		return endpoint{}, fmt.Errorf("mqtt sink: topic %q: %w", topic, err)
	}
	return ep, nil
}

// Validate checks the configuration without I/O (Start reads the TLS files
// and the password's environment variable).
func (c Config) Validate() error {
	var errs []error
	ep, err := parseURL(c.URL)
	if err != nil {
		errs = append(errs, err)
	} else if !ep.secure && c.TLS.IsSet() {
		errs = append(errs, sinkconf.KeyErrorf("tls", "mqtt sink: tls settings need an mqtts:// URL"))
	}
	if c.QoS < 0 || c.QoS > 2 {
		errs = append(errs, sinkconf.KeyErrorf("qos", "mqtt sink: qos %d: must be 0, 1 or 2", c.QoS))
	}
	switch {
	case c.ClientID == "" && !c.CleanSession:
		errs = append(errs, sinkconf.KeyErrorf("client_id", "mqtt sink: client_id: an empty client id needs clean_session: true"))
	case len(c.ClientID) > maxTopicLen || !utf8.ValidString(c.ClientID) || strings.ContainsRune(c.ClientID, 0):
		errs = append(errs, sinkconf.KeyErrorf("client_id", "mqtt sink: client_id: must be UTF-8 text without NUL, at most 65535 bytes"))
	}
	if c.PasswordEnv != "" {
		if !validEnvName(c.PasswordEnv) {
			errs = append(errs, sinkconf.KeyErrorf("password_env", "mqtt sink: password_env %q: not an environment variable name (letters, digits, underscore)", c.PasswordEnv))
		}
		if c.Username == "" {
			errs = append(errs, sinkconf.KeyErrorf("username", "mqtt sink: username: MQTT 3.1.1 sends a password only with a username: set username"))
		}
	}
	if c.KeepAlive < 0 || c.KeepAlive > maxKeepAlive || (c.KeepAlive > 0 && c.KeepAlive%time.Second != 0) {
		errs = append(errs, sinkconf.KeyErrorf("keepalive", "mqtt sink: keepalive %s: must be whole seconds between 0 (off) and 65535s", c.KeepAlive))
	}
	if c.MaxInflight < 0 || c.MaxInflight > 65535 {
		errs = append(errs, sinkconf.KeyErrorf("max_inflight", "mqtt sink: max_inflight %d: must be between 1 and 65535 (MQTT packet ids), or 0 for the default", c.MaxInflight))
	}
	if c.ConnectTimeout <= 0 {
		errs = append(errs, sinkconf.KeyErrorf("connect_timeout", "mqtt sink: connect_timeout %s: must be positive, e.g. 5s", c.ConnectTimeout))
	}
	if err := c.TLS.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("mqtt sink: %w", err))
	}
	switch c.Format {
	case "", FormatJSON, FormatRaw, FormatFields:
	default:
		errs = append(errs, sinkconf.KeyErrorf("format", "mqtt sink: format %q: must be %s (the frame record), %s (the payload bytes) or %s (the decoded fields)", c.Format, FormatJSON, FormatRaw, FormatFields))
	}
	if err := checkTopicText(c.MissingField); err != nil {
		errs = append(errs, sinkconf.KeyErrorf("missing_field", "mqtt sink: missing_field %q: %v", c.MissingField, err))
	}
	return errors.Join(errs...)
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

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

// start builds the client and starts run; first gets the outcome of the
// first connection attempt. It returns a nil first when already started.
func (s *Sink) start(ctx context.Context) (first <-chan error, done <-chan struct{}, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, errors.New("mqtt sink: start after close")
	}
	if s.started {
		return nil, nil, nil
	}
	tlsCfg, err := s.tlsConfig()
	if err != nil {
		return nil, nil, err
	}
	opts := mqtt.NewClientOptions().
		SetClientID(s.cfg.ClientID).
		SetProtocolVersion(4).
		SetCleanSession(s.cfg.CleanSession).
		SetKeepAlive(s.cfg.KeepAlive).
		SetConnectTimeout(s.cfg.ConnectTimeout).
		// A broker that does not take a packet within the connect timeout
		// has a broken connection; this also bounds a Publish that raced
		// with the loss of the connection (see linkDown).
		SetWriteTimeout(s.cfg.ConnectTimeout).
		SetOrderMatters(false).
		// The sink reconnects itself (run): Paho's own reconnect and
		// connect retry keep publishes made while down in memory and, at
		// QoS 0, report them sent.
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetResumeSubs(false).
		SetMaxResumePubInFlight(s.cfg.maxInflight()).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			select {
			case s.lost <- err:
			default: // run has not taken the previous one: one is enough
			}
		})
	scheme := "tcp://"
	if s.ep.secure {
		scheme = "ssl://"
	}
	opts.AddBroker(scheme + s.ep.addr)
	if s.cfg.Username != "" {
		opts.SetUsername(s.cfg.Username)
	}
	if s.cfg.PasswordEnv != "" {
		pw, ok := os.LookupEnv(s.cfg.PasswordEnv)
		if !ok {
			return nil, nil, &sinkconf.KeyError{Key: "password_env", Err: fmt.Errorf("mqtt sink: password_env: environment variable %s is not set", s.cfg.PasswordEnv)}
		}
		opts.SetPassword(pw)
	}
	// run outlives Start's ctx (which may be a start-up deadline) but
	// keeps its values; Close cancels it.
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	opts.SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) {
		return s.dial(life, tlsCfg)
	})
	s.client = mqtt.NewClient(opts)
	s.started = true
	s.cancel = cancel
	s.done = make(chan struct{})
	firstCh := make(chan error, 1)
	go s.run(life, s.client, firstCh)
	return firstCh, s.done, nil
}

// tlsConfig builds the TLS configuration of an mqtts broker; nil for mqtt.
func (s *Sink) tlsConfig() (*tls.Config, error) {
	if !s.ep.secure {
		return nil, nil
	}
	cfg, err := s.cfg.TLS.Config(s.ep.host)
	if err != nil {
		return nil, fmt.Errorf("mqtt sink: %w", err)
	}
	return cfg, nil
}

// dial opens the network connection for Paho, within the connect timeout,
// and gives up at once when the sink closes.
func (s *Sink) dial(ctx context.Context, tlsCfg *tls.Config) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.ep.addr)
	if err != nil {
		return nil, err
	}
	conn = quickAck(conn)
	if tlsCfg == nil {
		return conn, nil
	}
	tc := tls.Client(conn, tlsCfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return tc, nil
}

// run owns the connection: it connects, waits for the connection to be
// lost, reconnects with a capped backoff, and disconnects when ctx ends.
// The outcome of the first attempt goes to first. Each outage is logged
// once when it starts and once when it ends; the attempts in between only
// at debug level.
func (s *Sink) run(ctx context.Context, client mqtt.Client, first chan<- error) {
	defer close(s.done)
	delay := minReconnectDelay
	var downSince time.Time // start of the current outage; zero before the first connection
	attempts := 0           // failed attempts in the current outage
	for ctx.Err() == nil {
		select {
		case <-s.lost: // stale: no connection is up
		default:
		}
		tok := client.Connect()
		<-tok.Done() // bounded by the connect timeout
		if err := tok.Error(); err != nil {
			attempts++
			switch {
			case first != nil:
				s.log.Warn("MQTT broker unreachable at start; starting anyway: writes fail and are retried by the dispatcher while the sink keeps trying to connect",
					zap.Error(err))
				downSince = time.Now()
				first <- err
				first = nil
			case ctx.Err() == nil:
				s.log.Debug("mqtt connect attempt failed", zap.Int("attempt", attempts), zap.Duration("next_in", delay), zap.Error(err))
			}
			t := time.NewTimer(delay/2 + rand.N(delay/2+1))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			delay = min(2*delay, maxReconnectDelay)
			continue
		}

		l := &link{down: make(chan struct{})}
		s.setLink(l)
		switch {
		case first != nil:
			s.log.Info("mqtt sink connected", zap.String("client_id", s.cfg.ClientID))
			first <- nil
			first = nil
		default:
			s.log.Info("MQTT broker reconnected", zap.Duration("outage", time.Since(downSince)), zap.Int("failed_attempts", attempts))
		}
		delay, attempts = minReconnectDelay, 0

		select {
		case <-ctx.Done():
			s.linkDown(l)
			client.Disconnect(quiesce)
			return
		case err := <-s.lost:
			s.linkDown(l)
			downSince = time.Now()
			s.log.Warn("MQTT connection lost; reconnecting in the background: writes fail and are retried by the dispatcher until it is back",
				zap.Error(err))
		}
	}
}

func (s *Sink) setLink(l *link) {
	s.mu.Lock()
	s.link = l
	s.mu.Unlock()
}

// linkDown retires l: no new Write takes it, Writes waiting on it stop,
// and it returns once no Write is inside Paho's Publish on it. A Publish
// that raced with the loss of the connection waits inside Paho (for up to
// the write timeout) and would go out on the next connection with a packet
// id that the next session may reuse; reconnecting only after it failed
// keeps each publish on the connection its Write waits on.
func (s *Sink) linkDown(l *link) {
	s.setLink(nil)
	close(l.down)
	l.publishing.Wait()
}

// Connected reports whether the sink has a connection to the broker now.
func (s *Sink) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.link != nil
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

// maxInflight applies the QoS-dependent default of MaxInflight.
func (c Config) maxInflight() int {
	switch {
	case c.MaxInflight > 0:
		return c.MaxInflight
	case c.QoS == 2:
		return DefaultMaxInflight
	default:
		return DefaultMaxInflightQoS1
	}
}
