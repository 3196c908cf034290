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
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/sinkconf"
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
	FormatJSON = "json"
	// FormatRaw: the message is the frame's payload, unchanged.
	FormatRaw = "raw"
	// FormatFields: the message is the decoder's fields object
	// (Frame.Fields); a frame without fields fails permanently.
	FormatFields = "fields"
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

// Config configures the NATS sink.
type Config struct {
	// Server is the server URL, nats://HOST:PORT or tls://HOST:PORT,
	// taken from the spec.
	Server string `yaml:"-"`
	// Subject is the subject template, taken from the spec's path.
	Subject string `yaml:"-"`
	// JetStream publishes through JetStream and waits for the stream's
	// acknowledgement (default true). False publishes with core NATS: no
	// acknowledgement, nothing kept by the server.
	JetStream bool `yaml:"jetstream"`
	// Stream, when set, is the name of a stream the sink creates if it is
	// missing: subjects = the template with each placeholder token
	// replaced by '*', file storage, DuplicateWindow. Empty: an operator
	// creates the stream; until then writes fail retryably.
	Stream string `yaml:"stream"`
	// DuplicateWindow is the created stream's duplicate window: a frame
	// retried within it is stored once.
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// MissingField replaces a {field.NAME} the frame does not have.
	MissingField string `yaml:"missing_field"`
	// Format is the message body: FormatJSON (default), FormatRaw or
	// FormatFields.
	Format string `yaml:"format"`
	// User and the password read from the environment variable
	// PasswordEnv authenticate with a user name and password.
	User        string `yaml:"user"`
	PasswordEnv string `yaml:"password_env"`
	// TokenEnv names the environment variable holding an auth token.
	TokenEnv string `yaml:"token_env"`
	// CredsFile is a NATS credentials file (user JWT and NKey seed).
	CredsFile string `yaml:"creds_file"`
	// NKeyFile is a file holding an NKey seed.
	NKeyFile string `yaml:"nkey_file"`
	// TLS settings; any of them, or a tls:// spec, makes TLS required.
	TLS sinkconf.TLS `yaml:"tls"`
	// ConnectTimeout bounds one connection attempt (dial and handshake).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// AckTimeout bounds the wait for a JetStream acknowledgement (and the
	// flush of a core NATS batch); a frame not acknowledged in time fails
	// retryably.
	AckTimeout time.Duration `yaml:"ack_timeout"`
}

// ParseSpec returns the default Config for a spec
// "nats://HOST[:PORT]/SUBJECT" or "tls://HOST[:PORT]/SUBJECT". The subject
// is taken as written (no URL unescaping), so that templates keep their
// braces. Credentials do not belong in the spec: use the settings block.
func ParseSpec(spec string) (Config, error) {
	scheme, rest, ok := strings.Cut(spec, "://")
	if !ok || (scheme != SchemeNATS && scheme != SchemeTLS) {
		return Config{}, fmt.Errorf("nats sink spec %q: want nats://HOST:PORT/SUBJECT or tls://HOST:PORT/SUBJECT", spec)
	}
	host, subject, _ := strings.Cut(rest, "/")
	if strings.Contains(host, "@") {
		return Config{}, errors.New("nats sink spec: credentials in the URL are not supported: use the nats block's user/password_env, token_env, creds_file or nkey_file")
	}
	if host == "" {
		return Config{}, fmt.Errorf("nats sink spec %q: missing host", spec)
	}
	if _, _, err := net.SplitHostPort(host); err != nil {
		// No port (or an IPv6 literal without one): use the default.
		h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		host = net.JoinHostPort(h, DefaultPort)
	}
	return Config{
		Server:          scheme + "://" + host,
		Subject:         subject,
		JetStream:       true,
		DuplicateWindow: DefaultDuplicateWindow,
		MissingField:    DefaultMissingField,
		Format:          FormatJSON,
		ConnectTimeout:  DefaultConnectTimeout,
		AckTimeout:      DefaultAckTimeout,
	}, nil
}

// Validate checks the configuration without I/O (files and environment
// variables are read by Start).
func (c Config) Validate() error {
	var errs []error
	if err := validServer(c.Server); err != nil {
		errs = append(errs, err)
	}
	if _, err := parseTemplate(c.Subject); err != nil {
		errs = append(errs, fmt.Errorf("nats sink: %w", err))
	}
	if !validToken(c.MissingField) {
		errs = append(errs, sinkconf.KeyErrorf("missing_field", "nats sink: missing_field %q: must be one non-empty subject token (no space, '.', '*' or '>')", c.MissingField))
	}
	switch c.Format {
	case "", FormatJSON, FormatRaw, FormatFields:
	default:
		errs = append(errs, sinkconf.KeyErrorf("format", "nats sink: format %q: must be %s (the frame record), %s (the payload) or %s (the decoder's fields)", c.Format, FormatJSON, FormatRaw, FormatFields))
	}
	if c.Stream != "" {
		switch {
		case !c.JetStream:
			errs = append(errs, sinkconf.KeyErrorf("stream", "nats sink: stream %q needs jetstream: true", c.Stream))
		case !validStreamName(c.Stream):
			errs = append(errs, sinkconf.KeyErrorf("stream", "nats sink: stream %q: a stream name has no space, '.', '*', '>', '/' or '\\'", c.Stream))
		}
		if c.DuplicateWindow <= 0 {
			errs = append(errs, sinkconf.KeyErrorf("duplicate_window", "nats sink: duplicate_window %s: must be positive, e.g. 2m", c.DuplicateWindow))
		}
	}
	if c.ConnectTimeout <= 0 {
		errs = append(errs, sinkconf.KeyErrorf("connect_timeout", "nats sink: connect_timeout %s: must be positive, e.g. 5s", c.ConnectTimeout))
	}
	if c.AckTimeout <= 0 {
		errs = append(errs, sinkconf.KeyErrorf("ack_timeout", "nats sink: ack_timeout %s: must be positive, e.g. 5s", c.AckTimeout))
	}
	// Authentication: one method.
	var methods []string
	if c.User != "" || c.PasswordEnv != "" {
		methods = append(methods, "user/password_env")
		if c.User == "" {
			errs = append(errs, sinkconf.KeyErrorf("password_env", "nats sink: password_env needs user"))
		}
		if c.PasswordEnv == "" {
			errs = append(errs, sinkconf.KeyErrorf("user", "nats sink: user needs password_env (the name of the environment variable holding the password)"))
		}
	}
	if c.TokenEnv != "" {
		methods = append(methods, "token_env")
	}
	if c.CredsFile != "" {
		methods = append(methods, "creds_file")
	}
	if c.NKeyFile != "" {
		methods = append(methods, "nkey_file")
	}
	if len(methods) > 1 {
		key := map[string]string{"user/password_env": "user", "token_env": "token_env", "creds_file": "creds_file", "nkey_file": "nkey_file"}[methods[1]]
		errs = append(errs, sinkconf.KeyErrorf(key, "nats sink: choose one authentication method, not %s", strings.Join(methods, " and ")))
	}
	if err := c.TLS.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("nats sink: %w", err))
	}
	return errors.Join(errs...)
}

func validServer(server string) error {
	scheme, host, ok := strings.Cut(server, "://")
	if !ok || (scheme != SchemeNATS && scheme != SchemeTLS) {
		return fmt.Errorf("nats sink: server %q: want nats://HOST:PORT or tls://HOST:PORT", server)
	}
	h, port, err := net.SplitHostPort(host)
	if err != nil || h == "" {
		return fmt.Errorf("nats sink: server %q: want HOST:PORT", server)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("nats sink: server %q: port %q is not a number between 1 and 65535", server, port)
	}
	return nil
}

func validStreamName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || strings.IndexByte(".*>/\\", c) >= 0 {
			return false
		}
	}
	return true
}

// StreamSubject returns the subject filter that a stream needs to take
// every subject the sink publishes to: the template with each token that
// holds a placeholder replaced by '*'. Sanitising keeps each placeholder
// value inside one token, so '*' matches exactly the sink's subjects. The
// config must be valid.
func (c Config) StreamSubject() string {
	t, err := parseTemplate(c.Subject)
	if err != nil {
		return ""
	}
	return t.pattern
}

// Errors of Write.
var (
	// ErrNotConnected: the sink has no connection to the server now; the
	// batch is retried once it reconnects.
	ErrNotConnected = errors.New("not connected to the NATS server")
	// ErrNoStream: no JetStream stream takes the subject.
	ErrNoStream = errors.New("no JetStream stream takes the subject")
	// ErrNoFields: format "fields" and the frame has none.
	ErrNoFields = errors.New("frame has no decoded fields (format: fields)")
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

// options builds the connection options, reading the files and
// environment variables the settings name.
func (s *Sink) options() ([]nats.Option, error) {
	c := s.cfg
	opts := []nats.Option{
		nats.Name("serialcbd"),
		nats.Timeout(c.ConnectTimeout),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		// Nothing waits in the library's memory while disconnected: a
		// publish then fails at once and the frame stays in dispatch.
		nats.ReconnectBufSize(-1),
		nats.CustomReconnectDelay(reconnectDelay),
		nats.DrainTimeout(c.AckTimeout),
		nats.ConnectHandler(func(nc *nats.Conn) { s.connected(nc, "connected") }),
		nats.ReconnectHandler(func(nc *nats.Conn) { s.connected(nc, "reconnected") }),
		nats.DisconnectErrHandler(s.disconnected),
		nats.ErrorHandler(s.asyncError),
	}
	switch {
	case c.User != "":
		pw, err := env(c.PasswordEnv, "password_env")
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserInfo(c.User, pw))
	case c.TokenEnv != "":
		tok, err := env(c.TokenEnv, "token_env")
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Token(tok))
	case c.CredsFile != "":
		if _, err := os.Stat(c.CredsFile); err != nil {
			return nil, fmt.Errorf("nats sink: creds_file: %w", err)
		}
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	case c.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats sink: nkey_file: %w", err)
		}
		opts = append(opts, o)
	}
	if c.TLS.IsSet() || strings.HasPrefix(c.Server, SchemeTLS+"://") {
		// Without server_name, nats.go checks the certificate against the
		// host of the server it dials (a discovered one included).
		tc, err := c.TLS.Config("")
		if err != nil {
			return nil, fmt.Errorf("nats sink: %w", err)
		}
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

func env(name, key string) (string, error) {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return "", fmt.Errorf("nats sink: %s: environment variable %s is not set", key, name)
	}
	return v, nil
}

// reconnectDelay is the wait before the attempts-th pass over the server
// list: exponential from minReconnect to maxReconnect, jittered to [d/2, d].
func reconnectDelay(attempts int) time.Duration {
	d := maxReconnect
	if attempts < 16 {
		d = min(minReconnect<<attempts, maxReconnect)
	}
	return d/2 + rand.N(d/2+1)
}

func (s *Sink) connected(nc *nats.Conn, what string) {
	s.outageMu.Lock()
	began := s.outage
	s.outage = time.Time{}
	s.outageMu.Unlock()
	fields := []zap.Field{zap.String("server", nc.ConnectedUrlRedacted())}
	if !began.IsZero() {
		fields = append(fields, zap.Duration("after", time.Since(began).Round(time.Millisecond)))
	}
	s.log.Info("nats sink "+what, fields...)
}

func (s *Sink) disconnected(nc *nats.Conn, err error) {
	s.outageMu.Lock()
	first := s.outage.IsZero()
	if first {
		s.outage = time.Now()
	}
	s.outageMu.Unlock()
	if !first || nc.IsClosed() {
		return
	}
	s.log.Warn("nats sink: connection lost; reconnecting in the background: writes fail and are retried meanwhile",
		zap.String("server", s.cfg.Server), zap.Error(err))
}

func (s *Sink) asyncError(_ *nats.Conn, _ *nats.Subscription, err error) {
	now := time.Now().UnixNano()
	last := s.lastAsyncErr.Load()
	if now-last < int64(asyncErrEvery) || !s.lastAsyncErr.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("nats sink: server reported an error", zap.String("server", s.cfg.Server), zap.Error(err))
}

// ensureStream creates the configured stream unless it exists.
func (s *Sink) ensureStream(ctx context.Context, js jetstream.JetStream) error {
	s.streamMu.Lock()
	defer s.streamMu.Unlock()
	if s.streamReady.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AckTimeout)
	defer cancel()
	_, err := js.Stream(ctx, s.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:       s.cfg.Stream,
			Subjects:   []string{s.pattern},
			Storage:    jetstream.FileStorage,
			Duplicates: s.cfg.DuplicateWindow,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			err = nil // created meanwhile by someone else
		}
		if err == nil {
			s.log.Info("nats sink created stream", zap.String("stream", s.cfg.Stream),
				zap.String("subjects", s.pattern), zap.Duration("duplicate_window", s.cfg.DuplicateWindow))
		}
	}
	if err != nil {
		return fmt.Errorf("nats sink: stream %q: %w", s.cfg.Stream, err)
	}
	s.streamReady.Store(true)
	return nil
}

// conn returns the connection, or an error for a Write that cannot run.
func (s *Sink) conn() (*nats.Conn, jetstream.JetStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, nil, errors.New("nats sink: write after close")
	case s.nc == nil:
		return nil, nil, errors.New("nats sink: write before start")
	}
	return s.nc, s.js, nil
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
	switch s.cfg.Format {
	case FormatRaw:
		buf = append(buf, f.Payload...)
	case FormatFields:
		if len(f.Fields) == 0 {
			return nil, buf, dispatch.Permanent(fmt.Errorf("nats sink: frame %s: %w", f.ID, ErrNoFields))
		}
		buf = append(buf, f.Fields...)
	default:
		buf = dispatch.AppendJSON(buf, f)
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
		switch s.cfg.Format {
		case FormatRaw:
			n += len(f.Payload)
		case FormatFields:
			n += len(f.Fields)
		default:
			n += 128 + len(f.Port) + len(f.Payload)*4/3
		}
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
