// Package amqpsink publishes frames to an AMQP 0-9-1 broker (RabbitMQ)
// with github.com/rabbitmq/amqp091-go.
//
// The spec is amqp://HOST[:PORT]/EXCHANGE/ROUTINGKEY (amqps:// for TLS; the
// port defaults to 5672, 5671 for amqps). EXCHANGE may be empty
// (amqp://host//queue) for the default exchange, which routes by queue
// name. ROUTINGKEY is a template: {port} and {field.NAME} (see
// Config.MissingField), each value sanitised so that it stays one word of
// a topic exchange's key.
//
// Every message is persistent, carries message_id = the frame id, and is
// published mandatory on a channel in confirm mode: Write returns nil once
// the broker has confirmed every message, else a *dispatch.BatchError with
// each frame's outcome. A message the broker cannot route to any queue
// comes back (basic.return) and fails, retryably: it was not stored. A
// retried frame carries the same message_id, so consumers can drop
// duplicates: delivery is at-least-once.
package amqpsink

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/sinkconf"
	"github.com/serialcbd/serialcbd/serialcb"
)

// Spec schemes and default ports.
const (
	SchemeAMQP     = "amqp"
	SchemeTLS      = "amqps"
	DefaultPort    = "5672"
	DefaultTLSPort = "5671"
)

// Defaults applied by ParseSpec.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultConfirmTimeout = 10 * time.Second
	DefaultHeartbeat      = 10 * time.Second
	DefaultMissingField   = "unknown"
	DefaultUser           = "guest"
	DefaultVhost          = "/"
)

// Message formats (Config.Format).
const (
	FormatJSON   = dispatch.FormatJSON   // the frame's JSON record (dispatch.AppendJSON)
	FormatRaw    = dispatch.FormatRaw    // the payload, unchanged
	FormatFields = dispatch.FormatFields // the decoder's fields object; none fails permanently
)

// Config configures the AMQP sink.
type Config struct {
	// Addr is HOST:PORT, from the spec.
	Addr string `yaml:"-"`
	// TLSRequired is set by an amqps:// spec.
	TLSRequired bool `yaml:"-"`
	// Exchange is the exchange, from the spec ("" is the default exchange).
	Exchange string `yaml:"-"`
	// RoutingKey is the routing key template, from the spec.
	RoutingKey string `yaml:"-"`
	// Vhost is the virtual host (default "/").
	Vhost string `yaml:"vhost"`
	// User (default guest) and the password read from the environment
	// variable PasswordEnv (required unless the user is guest, whose
	// password is then guest).
	User        string `yaml:"user"`
	PasswordEnv string `yaml:"password_env"`
	// ExchangeType, when set (direct, topic, fanout or headers), makes the
	// sink declare the exchange (durable) on each connection. Empty: the
	// exchange must exist.
	ExchangeType string `yaml:"exchange_type"`
	// MissingField replaces a {field.NAME} the frame does not have.
	MissingField string `yaml:"missing_field"`
	// Format is the message body: json (default), raw or fields.
	Format string `yaml:"format"`
	// TLS settings; any of them, or an amqps:// spec, makes TLS required.
	TLS sinkconf.TLS `yaml:"tls"`
	// ConnectTimeout bounds one connection attempt.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// ConfirmTimeout bounds a Write's wait for the broker's confirms.
	ConfirmTimeout time.Duration `yaml:"confirm_timeout"`
	// Heartbeat is the AMQP heartbeat interval.
	Heartbeat time.Duration `yaml:"heartbeat"`
}

// ParseSpec returns the default Config for a spec
// "amqp://HOST[:PORT]/EXCHANGE/ROUTINGKEY" (or amqps://). The exchange is
// URL-unescaped (%2F for a '/'); the routing key is taken as written, so
// that templates keep their braces.
func ParseSpec(spec string) (Config, error) {
	scheme, rest, ok := strings.Cut(spec, "://")
	if !ok || (scheme != SchemeAMQP && scheme != SchemeTLS) {
		return Config{}, fmt.Errorf("amqp sink spec %q: want amqp://HOST[:PORT]/EXCHANGE/ROUTINGKEY or amqps://…", spec)
	}
	host, path, _ := strings.Cut(rest, "/")
	if strings.Contains(host, "@") {
		return Config{}, errors.New("amqp sink spec: credentials in the URL are not supported: use the amqp block's user and password_env")
	}
	if host == "" {
		return Config{}, fmt.Errorf("amqp sink spec %q: missing host", spec)
	}
	exch, key, ok := strings.Cut(path, "/")
	if !ok {
		return Config{}, fmt.Errorf("amqp sink spec %q: want amqp://HOST[:PORT]/EXCHANGE/ROUTINGKEY (an empty EXCHANGE, amqp://HOST//QUEUE, is the default exchange)", spec)
	}
	exch, err := url.PathUnescape(exch)
	if err != nil {
		return Config{}, fmt.Errorf("amqp sink spec %q: exchange: %w", spec, err)
	}
	if _, _, err := net.SplitHostPort(host); err != nil {
		port := DefaultPort
		if scheme == SchemeTLS {
			port = DefaultTLSPort
		}
		host = net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), port)
	}
	return Config{
		Addr:           host,
		TLSRequired:    scheme == SchemeTLS,
		Exchange:       exch,
		RoutingKey:     key,
		Vhost:          DefaultVhost,
		User:           DefaultUser,
		MissingField:   DefaultMissingField,
		Format:         FormatJSON,
		ConnectTimeout: DefaultConnectTimeout,
		ConfirmTimeout: DefaultConfirmTimeout,
		Heartbeat:      DefaultHeartbeat,
	}, nil
}

// Validate checks the configuration without I/O.
func (c Config) Validate() error {
	var errs []error
	h, port, err := net.SplitHostPort(c.Addr)
	if n, perr := strconv.Atoi(port); err != nil || h == "" || perr != nil || n < 1 || n > 65535 {
		errs = append(errs, fmt.Errorf("amqp sink: address %q: want HOST:PORT with a port between 1 and 65535", c.Addr))
	}
	if len(c.Exchange) > 255 {
		errs = append(errs, fmt.Errorf("amqp sink: exchange name is %d bytes, at most 255", len(c.Exchange)))
	}
	if _, err := parseTemplate(c.RoutingKey); err != nil {
		errs = append(errs, fmt.Errorf("amqp sink: %w", err))
	}
	if c.MissingField == "" || sanitize(c.MissingField) != c.MissingField {
		errs = append(errs, sinkconf.KeyErrorf("missing_field", "amqp sink: missing_field %q: must be one non-empty word (no space, '.', '*' or '#')", c.MissingField))
	}
	switch c.Format {
	case "", FormatJSON, FormatRaw, FormatFields:
	default:
		errs = append(errs, sinkconf.KeyErrorf("format", "amqp sink: format %q: must be %s (the frame record), %s (the payload) or %s (the decoder's fields)", c.Format, FormatJSON, FormatRaw, FormatFields))
	}
	switch c.ExchangeType {
	case "", amqp.ExchangeDirect, amqp.ExchangeTopic, amqp.ExchangeFanout, amqp.ExchangeHeaders:
		if c.ExchangeType != "" && c.Exchange == "" {
			errs = append(errs, sinkconf.KeyErrorf("exchange_type", "amqp sink: exchange_type needs an exchange in the spec (the default exchange cannot be declared)"))
		}
	default:
		errs = append(errs, sinkconf.KeyErrorf("exchange_type", "amqp sink: exchange_type %q: must be direct, topic, fanout or headers", c.ExchangeType))
	}
	if c.User == "" {
		errs = append(errs, sinkconf.KeyErrorf("user", "amqp sink: user must not be empty"))
	} else if c.User != DefaultUser && c.PasswordEnv == "" {
		errs = append(errs, sinkconf.KeyErrorf("user", "amqp sink: user %q needs password_env, the name of the environment variable holding the password", c.User))
	}
	if err := c.TLS.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("amqp sink: %w", err))
	}
	for key, d := range map[string]time.Duration{"connect_timeout": c.ConnectTimeout, "confirm_timeout": c.ConfirmTimeout, "heartbeat": c.Heartbeat} {
		if d <= 0 {
			errs = append(errs, sinkconf.KeyErrorf(key, "amqp sink: %s %s: must be positive", key, d))
		}
	}
	return errors.Join(errs...)
}

// Errors of Write.
var (
	// ErrNotConnected: no connection to the broker now; the batch is
	// retried and the sink reconnects on the next Write.
	ErrNotConnected = errors.New("not connected to the AMQP broker")
	// ErrUnroutable: the broker returned the message: no queue is bound
	// to the exchange for its routing key, so it was not stored.
	ErrUnroutable = errors.New("message returned unroutable: no queue is bound for its routing key")
	// ErrNacked: the broker refused to take responsibility for the
	// message (basic.nack).
	ErrNacked = errors.New("broker nacked the message")
	// ErrNoFields: format "fields" and the frame has none.
	ErrNoFields = dispatch.ErrNoFields
)

// Sink publishes frames over AMQP 0-9-1. Write is safe for concurrent use.
type Sink struct {
	cfg  Config
	log  *zap.Logger
	tmpl *template

	mu     sync.Mutex // guards sess, closed, lastDial, failing
	sess   *session
	closed bool
	// failing is set while the broker cannot be reached, so that an
	// outage is logged once when it begins and once when it ends.
	failing bool
	since   time.Time
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
	t, _ := parseTemplate(cfg.RoutingKey) // validated above
	return &Sink{cfg: cfg, log: log, tmpl: t}, nil
}

// Start reads the password and TLS files and connects. A broker that
// cannot be reached is not an error: Start logs one warning, and each
// Write tries to connect again (failing retryably until it can). Errors
// are for settings that cannot work (an unset environment variable, a TLS
// file that cannot be read).
func (s *Sink) Start(ctx context.Context) error {
	if _, err := s.dialConfig(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("amqp sink: start after close")
	}
	if _, err := s.sessionLocked(); err != nil {
		s.log.Warn("cannot connect to the AMQP broker at start; starting anyway: writes reconnect, and frames wait in the sink's queue and spool and are retried until it answers",
			zap.String("broker", s.cfg.Addr), zap.Error(err))
	}
	return nil
}

// dialConfig builds the connection settings, reading the password and the
// TLS files.
func (s *Sink) dialConfig() (amqp.Config, error) {
	c := s.cfg
	pass := "guest"
	if c.PasswordEnv != "" {
		v, ok := os.LookupEnv(c.PasswordEnv)
		if !ok || v == "" {
			return amqp.Config{}, sinkconf.KeyErrorf("password_env", "amqp sink: password_env: environment variable %s is not set", c.PasswordEnv)
		}
		pass = v
	}
	cfg := amqp.Config{
		SASL:      []amqp.Authentication{&amqp.PlainAuth{Username: c.User, Password: pass}},
		Vhost:     c.Vhost,
		Heartbeat: c.Heartbeat,
		Locale:    "en_US",
		Dial:      amqp.DefaultDial(c.ConnectTimeout),
		Properties: amqp.Table{
			"connection_name": "serialcbd",
			"product":         "serialcbd",
		},
	}
	if c.TLSRequired || c.TLS.IsSet() {
		host, _, _ := net.SplitHostPort(c.Addr)
		tc, err := c.TLS.Config(host)
		if err != nil {
			return amqp.Config{}, fmt.Errorf("amqp sink: %w", err)
		}
		cfg.TLSClientConfig = tc
	}
	return cfg, nil
}

func (s *Sink) url() string {
	scheme := SchemeAMQP
	if s.cfg.TLSRequired || s.cfg.TLS.IsSet() {
		scheme = SchemeTLS
	}
	return scheme + "://" + s.cfg.Addr + "/"
}

// sessionLocked returns the open session, connecting if there is none;
// s.mu must be held.
func (s *Sink) sessionLocked() (*session, error) {
	if s.sess != nil && !s.sess.broken() {
		return s.sess, nil
	}
	if s.sess != nil {
		s.sess.close()
		s.sess = nil
	}
	cfg, err := s.dialConfig()
	if err != nil {
		return nil, err
	}
	sess, err := s.open(cfg)
	if err != nil {
		if !s.failing {
			s.failing, s.since = true, time.Now()
			s.log.Warn("amqp sink: cannot connect to the broker; writes fail and are retried, reconnecting on each",
				zap.String("broker", s.cfg.Addr), zap.Error(err))
		}
		return nil, fmt.Errorf("amqp sink: %s: %w: %w", s.cfg.Addr, ErrNotConnected, err)
	}
	if s.failing {
		s.failing = false
		s.log.Info("amqp sink connected again", zap.String("broker", s.cfg.Addr),
			zap.Duration("after", time.Since(s.since).Round(time.Millisecond)))
	}
	s.sess = sess
	return sess, nil
}

// open dials, opens a channel in confirm mode and declares the exchange if
// asked to.
func (s *Sink) open(cfg amqp.Config) (*session, error) {
	conn, err := amqp.DialConfig(s.url(), cfg)
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, err
	}
	if s.cfg.ExchangeType != "" {
		if err := ch.ExchangeDeclare(s.cfg.Exchange, s.cfg.ExchangeType, true, false, false, false, nil); err != nil {
			conn.Close()
			return nil, fmt.Errorf("declare exchange %q (%s): %w", s.cfg.Exchange, s.cfg.ExchangeType, err)
		}
	}
	if err := ch.Confirm(false); err != nil {
		conn.Close()
		return nil, fmt.Errorf("confirm mode: %w", err)
	}
	return newSession(conn, ch), nil
}

// session is one connection and its publishing channel, with the
// goroutine that collects returned messages.
type session struct {
	conn *amqp.Connection
	ch   *amqp.Channel

	chClosed chan *amqp.Error // NotifyClose of ch, 1-buffered
	returns  chan amqp.Return // NotifyReturn of ch, unbuffered (see collect)
	sync     chan chan struct{}
	done     chan struct{} // closed when collect returns

	pubMu sync.Mutex // serialises publishing, so each batch's messages are contiguous

	mu       sync.Mutex // guards returned, reason
	returned map[string]amqp.Return
	reason   *amqp.Error
}

func newSession(conn *amqp.Connection, ch *amqp.Channel) *session {
	s := &session{
		conn: conn, ch: ch,
		chClosed: ch.NotifyClose(make(chan *amqp.Error, 1)),
		returns:  ch.NotifyReturn(make(chan amqp.Return)),
		sync:     make(chan chan struct{}),
		done:     make(chan struct{}),
		returned: map[string]amqp.Return{},
	}
	go s.collect()
	return s
}

// collect records returned messages by message id. The returns channel is
// unbuffered, so the library's reader goroutine, which handles a message's
// basic.return before its basic.ack, cannot deliver the ack until collect
// has taken the return; a Write that has seen its acks then syncs with
// collect (syncReturns) and finds every return of its messages recorded.
// It ends when the library closes the returns channel (channel closed).
func (s *session) collect() {
	defer close(s.done)
	for {
		select {
		case r, ok := <-s.returns:
			if !ok {
				return
			}
			s.mu.Lock()
			s.returned[r.MessageId] = r
			s.mu.Unlock()
		case reply := <-s.sync:
			close(reply)
		}
	}
}

// syncReturns waits until collect has recorded every return the library
// delivered before now.
func (s *session) syncReturns(ctx context.Context) {
	reply := make(chan struct{})
	select {
	case s.sync <- reply:
		<-reply
	case <-s.done:
	case <-ctx.Done():
	}
}

// takeReturn reports whether the message id came back, forgetting it.
func (s *session) takeReturn(id string) (amqp.Return, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.returned[id]
	if ok {
		delete(s.returned, id)
	}
	return r, ok
}

// closeReason returns why the channel closed, if it did and the library
// said why.
func (s *session) closeReason() *amqp.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reason == nil {
		select {
		case e := <-s.chClosed:
			s.reason = e
		default:
		}
	}
	return s.reason
}

func (s *session) broken() bool { return s.ch.IsClosed() || s.conn.IsClosed() }

// close closes the connection and waits for collect.
func (s *session) close() {
	_ = s.conn.Close()
	<-s.done
}

// Write publishes the batch and waits for the broker's confirms.
func (s *Sink) Write(ctx context.Context, batch []*serialcb.Frame) error {
	if len(batch) == 0 {
		return nil
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("amqp sink: write after close")
	}
	sess, err := s.sessionLocked()
	s.mu.Unlock()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConfirmTimeout)
	defer cancel()

	errs := make([]error, len(batch))
	dcs := make([]*amqp.DeferredConfirmation, len(batch))
	ids := make([]string, len(batch))
	failed := false
	var stop error
	sess.pubMu.Lock()
	for i, f := range batch {
		if stop != nil {
			errs[i] = stop
			continue
		}
		body, contentType, err := s.body(f)
		if err != nil {
			errs[i], failed = err, true
			continue
		}
		ids[i] = f.ID.String()
		key := s.tmpl.render(f, s.cfg.MissingField)
		dc, err := sess.ch.PublishWithDeferredConfirmWithContext(ctx, s.cfg.Exchange, key, true, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent,
			MessageId:    ids[i],
			ContentType:  contentType,
			Timestamp:    f.ReceivedAt,
			AppId:        "serialcbd",
			Headers:      amqp.Table{"port": f.Port, "seq": int64(f.Seq)},
			Body:         body,
		})
		if err != nil {
			stop = s.channelError(sess, fmt.Errorf("amqp sink: publish: %w", err))
			errs[i], failed = stop, true
			continue
		}
		dcs[i] = dc
	}
	sess.pubMu.Unlock()

	for i, dc := range dcs {
		if dc == nil {
			continue
		}
		acked, err := dc.WaitContext(ctx)
		switch {
		case err != nil:
			err = fmt.Errorf("amqp sink: no confirm within confirm_timeout %s: %w", s.cfg.ConfirmTimeout, err)
			for j := i; j < len(dcs); j++ {
				if dcs[j] != nil && !dcs[j].Acked() {
					errs[j] = err
				}
			}
			return &dispatch.BatchError{Errs: errs}
		case !acked:
			errs[i], failed = s.channelError(sess, ErrNacked), true
		}
	}
	sess.syncReturns(ctx)
	for i, id := range ids {
		if id == "" || errs[i] != nil {
			continue
		}
		if r, ok := sess.takeReturn(id); ok {
			errs[i], failed = fmt.Errorf("amqp sink: exchange %q, routing key %q: %w (%d %s): bind a queue for it; frames are retried until then",
				r.Exchange, r.RoutingKey, ErrUnroutable, r.ReplyCode, r.ReplyText), true
		}
	}
	if failed {
		return &dispatch.BatchError{Errs: errs}
	}
	return nil
}

// channelError explains a failure of the channel: when it has closed, the
// broker's reason (a missing exchange, a lost connection) says more than
// the library's error.
func (s *Sink) channelError(sess *session, err error) error {
	if !sess.broken() {
		return fmt.Errorf("amqp sink: %w", err)
	}
	reason := sess.closeReason()
	switch {
	case reason == nil:
		return fmt.Errorf("amqp sink: %w: connection or channel closed: %w", ErrNotConnected, err)
	case reason.Code == amqp.NotFound && s.cfg.Exchange != "":
		return fmt.Errorf("amqp sink: exchange %q does not exist (%s): declare it, or set exchange_type to have the sink declare it; frames are retried until then", s.cfg.Exchange, reason.Reason)
	default:
		return fmt.Errorf("amqp sink: %w: channel closed by the broker: %w", ErrNotConnected, reason)
	}
}

// body returns f's message body and content type.
func (s *Sink) body(f *serialcb.Frame) ([]byte, string, error) {
	switch s.cfg.Format {
	case FormatRaw:
		return f.Payload, "application/octet-stream", nil
	case FormatFields:
		if len(f.Fields) == 0 {
			return nil, "", dispatch.Permanent(fmt.Errorf("amqp sink: frame %s: %w", f.ID, ErrNoFields))
		}
		return f.Fields, "application/json", nil
	}
	return dispatch.AppendJSON(nil, f), "application/json", nil
}

// Close closes the connection. Writes must have returned. It is
// idempotent.
func (s *Sink) Close() error {
	s.mu.Lock()
	sess := s.sess
	s.sess, s.closed = nil, true
	s.mu.Unlock()
	if sess != nil {
		sess.close()
	}
	return nil
}
