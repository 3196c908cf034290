// Package kafkasink produces frames to Apache Kafka with franz-go.
//
// The spec is kafka://BROKER[,BROKER...]/TOPIC (kafkas://… for TLS; a
// broker's port defaults to 9092). TOPIC is a template: {port} is replaced
// by the frame's port name and {field.NAME} by the decoder field NAME (see
// Config.MissingField); substituted values are sanitised to Kafka's topic
// characters.
//
// The producer is idempotent with acks=all: Write returns nil once every
// partition leader has the batch's records replicated to its in-sync
// replicas, else a *dispatch.BatchError with each frame's outcome. Within
// a producer session the broker drops a record the client retries itself;
// a record that dispatch retries after a failed Write is a new record, so
// across those retries delivery is at-least-once: each record carries the
// frame id in the header "serialcbd-id" for consumers to deduplicate on.
// The record key is the port name (or a decoder field, Config.Key), so
// each port's frames go to one partition (in the order of each Write;
// concurrent Writes and retries may interleave).
package kafkasink

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/sinkconf"
	"github.com/serialcbd/serialcbd/serialcb"
)

// Spec schemes and the default broker port.
const (
	SchemeKafka = "kafka"
	SchemeTLS   = "kafkas"
	DefaultPort = "9092"
)

// Defaults applied by ParseSpec.
const (
	DefaultDialTimeout     = 5 * time.Second
	DefaultDeliveryTimeout = 30 * time.Second
	DefaultMissingField    = "unknown"
	DefaultKey             = KeyPort
	DefaultCompression     = "lz4"
)

// IDHeader is the record header that carries the frame's id.
const IDHeader = "serialcbd-id"

// Record keys (Config.Key).
const (
	// KeyPort: the key is the frame's port name (the default).
	KeyPort = "port"
	// KeyNone: no key; the producer spreads records over partitions.
	KeyNone = "none"
	// KeyFieldPrefix + NAME: the key is the decoder field NAME
	// (Config.MissingField when the frame lacks it).
	KeyFieldPrefix = "field."
)

// Message formats (Config.Format).
const (
	FormatJSON   = dispatch.FormatJSON   // the frame's JSON record (dispatch.AppendJSON)
	FormatRaw    = dispatch.FormatRaw    // the payload, unchanged
	FormatFields = dispatch.FormatFields // the decoder's fields object; none fails permanently
)

// SASL mechanisms (SASL.Mechanism).
const (
	MechPlain       = "PLAIN"
	MechScramSHA256 = "SCRAM-SHA-256"
	MechScramSHA512 = "SCRAM-SHA-512"
)

// SASL is the sasl block: the mechanism, and the credentials read from the
// environment at start.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: no SASL.
	Mechanism string `yaml:"mechanism"`
	// User is the user name; UserEnv names an environment variable that
	// holds it instead.
	User    string `yaml:"user"`
	UserEnv string `yaml:"user_env"`
	// PasswordEnv names the environment variable holding the password.
	PasswordEnv string `yaml:"password_env"`
}

// Config configures the Kafka sink.
type Config struct {
	// Brokers are the seed brokers (HOST:PORT), taken from the spec.
	Brokers []string `yaml:"-"`
	// Topic is the topic template, taken from the spec's path.
	Topic string `yaml:"-"`
	// Key is the record key: "port" (default), "field.NAME" or "none".
	Key string `yaml:"key"`
	// MissingField replaces a {field.NAME} (or a field key) the frame
	// does not have.
	MissingField string `yaml:"missing_field"`
	// Format is the record value: json (default), raw or fields.
	Format string `yaml:"format"`
	// Compression of produced batches: none, gzip, snappy, lz4 (default)
	// or zstd.
	Compression string `yaml:"compression"`
	// ClientID is the Kafka client id (default "serialcbd").
	ClientID string `yaml:"client_id"`
	// AutoCreateTopics lets the broker create a missing topic on first
	// produce (if the broker allows it). Default false: a missing topic
	// fails writes retryably, with a message saying so.
	AutoCreateTopics bool `yaml:"auto_create_topics"`
	// SASL authentication; credentials come from the environment.
	SASL SASL `yaml:"sasl"`
	// TLS settings; any of them, or a kafkas:// spec, makes TLS required.
	TLS sinkconf.TLS `yaml:"tls"`
	// DialTimeout bounds one connection attempt.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// DeliveryTimeout bounds how long a Write waits for the brokers'
	// acknowledgement before its records fail retryably (Kafka's
	// delivery.timeout.ms).
	DeliveryTimeout time.Duration `yaml:"delivery_timeout"`
	// TLSRequired is set by a kafkas:// spec.
	TLSRequired bool `yaml:"-"`
}

// ParseSpec returns the default Config for a spec
// "kafka://BROKER[,BROKER...]/TOPIC" or "kafkas://…". The topic is taken as
// written, so that templates keep their braces. Credentials do not belong
// in the spec: use the sasl block.
func ParseSpec(spec string) (Config, error) {
	scheme, rest, ok := strings.Cut(spec, "://")
	if !ok || (scheme != SchemeKafka && scheme != SchemeTLS) {
		return Config{}, fmt.Errorf("kafka sink spec %q: want kafka://BROKER[,BROKER...]/TOPIC or kafkas://…", spec)
	}
	hosts, topic, _ := strings.Cut(rest, "/")
	if strings.Contains(hosts, "@") {
		return Config{}, errors.New("kafka sink spec: credentials in the URL are not supported: use the kafka block's sasl settings")
	}
	if hosts == "" {
		return Config{}, fmt.Errorf("kafka sink spec %q: missing broker", spec)
	}
	var brokers []string
	for _, h := range strings.Split(hosts, ",") {
		if h == "" {
			return Config{}, fmt.Errorf("kafka sink spec %q: empty broker in the list", spec)
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), DefaultPort)
		}
		brokers = append(brokers, h)
	}
	return Config{
		Brokers:         brokers,
		Topic:           topic,
		Key:             DefaultKey,
		MissingField:    DefaultMissingField,
		Format:          FormatJSON,
		Compression:     DefaultCompression,
		ClientID:        "serialcbd",
		DialTimeout:     DefaultDialTimeout,
		DeliveryTimeout: DefaultDeliveryTimeout,
		TLSRequired:     scheme == SchemeTLS,
	}, nil
}

// Validate checks the configuration without I/O (environment variables
// and files are read by Start).
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("kafka sink: no broker"))
	}
	for _, b := range c.Brokers {
		h, port, err := net.SplitHostPort(b)
		if n, perr := strconv.Atoi(port); err != nil || h == "" || perr != nil || n < 1 || n > 65535 {
			errs = append(errs, fmt.Errorf("kafka sink: broker %q: want HOST:PORT with a port between 1 and 65535", b))
		}
	}
	if _, err := parseTemplate(c.Topic); err != nil {
		errs = append(errs, fmt.Errorf("kafka sink: %w", err))
	}
	if c.MissingField == "" || sanitize(c.MissingField) != c.MissingField || len(c.MissingField) > MaxValueLen {
		errs = append(errs, sinkconf.KeyErrorf("missing_field", "kafka sink: missing_field %q: must be 1 to %d letters, digits, '.', '_' or '-'", c.MissingField, MaxValueLen))
	}
	switch {
	case c.Key == "", c.Key == KeyPort, c.Key == KeyNone:
	case strings.HasPrefix(c.Key, KeyFieldPrefix) && len(c.Key) > len(KeyFieldPrefix):
	default:
		errs = append(errs, sinkconf.KeyErrorf("key", "kafka sink: key %q: must be %s, %s or field.NAME", c.Key, KeyPort, KeyNone))
	}
	switch c.Format {
	case "", FormatJSON, FormatRaw, FormatFields:
	default:
		errs = append(errs, sinkconf.KeyErrorf("format", "kafka sink: format %q: must be %s (the frame record), %s (the payload) or %s (the decoder's fields)", c.Format, FormatJSON, FormatRaw, FormatFields))
	}
	if _, err := compression(c.Compression); err != nil {
		errs = append(errs, sinkconf.KeyErrorf("compression", "kafka sink: %w", err))
	}
	switch c.SASL.Mechanism {
	case "":
		if c.SASL != (SASL{}) {
			errs = append(errs, sinkconf.KeyErrorf("sasl.mechanism", "kafka sink: sasl settings need sasl.mechanism (%s, %s or %s)", MechScramSHA256, MechScramSHA512, MechPlain))
		}
	case MechPlain, MechScramSHA256, MechScramSHA512:
		if (c.SASL.User == "") == (c.SASL.UserEnv == "") {
			errs = append(errs, sinkconf.KeyErrorf("sasl.user", "kafka sink: sasl needs one of user or user_env"))
		}
		if c.SASL.PasswordEnv == "" {
			errs = append(errs, sinkconf.KeyErrorf("sasl.password_env", "kafka sink: sasl needs password_env, the name of the environment variable holding the password"))
		}
	default:
		errs = append(errs, sinkconf.KeyErrorf("sasl.mechanism", "kafka sink: sasl.mechanism %q: must be %s, %s or %s", c.SASL.Mechanism, MechScramSHA256, MechScramSHA512, MechPlain))
	}
	if err := c.TLS.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("kafka sink: %w", err))
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, sinkconf.KeyErrorf("dial_timeout", "kafka sink: dial_timeout %s: must be positive, e.g. 5s", c.DialTimeout))
	}
	if c.DeliveryTimeout <= 0 {
		errs = append(errs, sinkconf.KeyErrorf("delivery_timeout", "kafka sink: delivery_timeout %s: must be positive, e.g. 30s", c.DeliveryTimeout))
	}
	return errors.Join(errs...)
}

func compression(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "", "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("compression %q: must be none, gzip, snappy, lz4 or zstd", name)
}

// Errors of Write.
var (
	// ErrNoFields: format "fields" and the frame has none.
	ErrNoFields = dispatch.ErrNoFields
	// ErrUnknownTopic: the brokers do not know the topic.
	ErrUnknownTopic = errors.New("the Kafka cluster has no such topic")
)

// Sink produces frames to Kafka. Write is safe for concurrent use.
type Sink struct {
	cfg  Config
	log  *zap.Logger
	tmpl *template

	mu     sync.Mutex // guards cl, closed
	cl     *kgo.Client
	closed bool

	// failing is set while Writes fail, so that an outage is logged once
	// when it begins and once when it ends.
	outageMu sync.Mutex
	failing  bool
	since    time.Time
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
	if cfg.Key == "" {
		cfg.Key = KeyPort
	}
	t, _ := parseTemplate(cfg.Topic) // validated above
	return &Sink{cfg: cfg, log: log, tmpl: t}, nil
}

// Start reads the SASL credentials and TLS files, builds the client and
// asks the brokers for their metadata. Brokers that cannot be reached are
// not an error: Start logs one warning, the client keeps trying, and
// writes fail retryably meanwhile. Errors are for settings that cannot
// work (a missing file or environment variable).
func (s *Sink) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("kafka sink: start after close")
	}
	if s.cl != nil {
		return nil
	}
	opts, err := s.options()
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka sink: %w", err)
	}
	s.cl = cl
	pctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	if err := cl.Ping(pctx); err != nil {
		s.log.Warn("cannot reach the Kafka brokers at start; starting anyway: the client keeps trying, and frames wait in the sink's queue and spool and are retried until a broker answers",
			zap.Strings("brokers", s.cfg.Brokers), zap.Error(err))
		s.outageMu.Lock()
		s.failing, s.since = true, time.Now()
		s.outageMu.Unlock()
	}
	return nil
}

// options builds the client options, reading the environment variables and
// files the settings name.
func (s *Sink) options() ([]kgo.Opt, error) {
	c := s.cfg
	codec, _ := compression(c.Compression) // validated
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(c.ClientID),
		kgo.DialTimeout(c.DialTimeout),
		// Idempotent (the default) needs acks from all in-sync replicas.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(c.DeliveryTimeout),
		kgo.ProducerBatchCompression(codec),
		// A Write hands the client a whole batch and waits for it: no
		// lingering, the batch is already there.
		kgo.ProducerLinger(0),
		kgo.WithLogger(zapLogger{s.log}),
	}
	if c.AutoCreateTopics {
		opts = append(opts, kgo.AllowAutoTopicCreation())
	}
	if c.SASL.Mechanism != "" {
		m, err := c.SASL.mechanism()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	if c.TLSRequired || c.TLS.IsSet() {
		tc, err := c.TLS.Config("")
		if err != nil {
			return nil, fmt.Errorf("kafka sink: %w", err)
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	return opts, nil
}

// mechanism reads the credentials from the environment.
func (a SASL) mechanism() (sasl.Mechanism, error) {
	user := a.User
	if a.UserEnv != "" {
		u, err := env(a.UserEnv, "sasl.user_env")
		if err != nil {
			return nil, err
		}
		user = u
	}
	pass, err := env(a.PasswordEnv, "sasl.password_env")
	if err != nil {
		return nil, err
	}
	switch a.Mechanism {
	case MechPlain:
		return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
	case MechScramSHA512:
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
	default:
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
	}
}

func env(name, key string) (string, error) {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return "", sinkconf.KeyErrorf(key, "kafka sink: %s: environment variable %s is not set", key, name)
	}
	return v, nil
}

func (s *Sink) client() (*kgo.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, errors.New("kafka sink: write after close")
	case s.cl == nil:
		return nil, errors.New("kafka sink: write before start")
	}
	return s.cl, nil
}

// key returns f's record key.
func (s *Sink) key(f *serialcb.Frame) []byte {
	switch {
	case s.cfg.Key == KeyPort:
		return []byte(f.Port)
	case s.cfg.Key == KeyNone:
		return nil
	}
	if v, ok := f.Field(strings.TrimPrefix(s.cfg.Key, KeyFieldPrefix)); ok {
		return []byte(v)
	}
	return []byte(s.cfg.MissingField)
}

// Write produces the batch and waits for the acknowledgements. It returns
// nil once every record is acknowledged by acks=all, otherwise a
// *dispatch.BatchError with each frame's classified error.
func (s *Sink) Write(ctx context.Context, batch []*serialcb.Frame) error {
	if len(batch) == 0 {
		return nil
	}
	cl, err := s.client()
	if err != nil {
		return err
	}
	errs := make([]error, len(batch))
	recs := make([]kgo.Record, len(batch))
	ptrs := make([]*kgo.Record, 0, len(batch))
	idx := make([]int, 0, len(batch))
	buf := make([]byte, 0, s.bufSize(batch))
	failed := false
	for i, f := range batch {
		start := len(buf)
		var err error
		if buf, err = dispatch.AppendBody(buf, f, s.cfg.Format); err != nil {
			errs[i], failed = dispatch.Permanent(fmt.Errorf("kafka sink: frame %s: %w", f.ID, err)), true
			continue
		}
		idStart := len(buf)
		buf, _ = f.ID.AppendText(buf) // never fails
		r := &recs[i]
		r.Topic = s.tmpl.render(f, s.cfg.MissingField)
		r.Key = s.key(f)
		r.Value = buf[start:idStart:idStart]
		r.Headers = []kgo.RecordHeader{{Key: IDHeader, Value: buf[idStart:len(buf):len(buf)]}}
		// No Timestamp: the client stamps the record when it is produced,
		// and measures delivery_timeout from the timestamp, so a retried
		// frame's received_at would make it time out at once. received_at
		// is in the record (format json).
		ptrs = append(ptrs, r)
		idx = append(idx, i)
	}
	if len(ptrs) > 0 && s.produce(ctx, cl, ptrs, idx, errs) {
		failed = true
	}
	s.outcome(errs)
	if failed {
		return &dispatch.BatchError{Errs: errs}
	}
	return nil
}

// produce hands the records to the client and waits for their
// acknowledgements, or for ctx or DeliveryTimeout, whichever comes first.
// It sets errs[idx[j]] for each record j that failed and reports whether
// any did.
//
// It does not use ProduceSync: the idempotent producer does not fail a
// record whose produce request is in flight when its broker goes away (the
// broker may have stored it), and keeps it until the broker answers, so
// ProduceSync can block for as long as an outage lasts, whatever its
// context says. Here the Write returns at the deadline with the
// unacknowledged records failed retryably; the client may still deliver
// them later, which with the retried copies makes duplicates that
// consumers drop by the id header (at-least-once).
func (s *Sink) produce(ctx context.Context, cl *kgo.Client, recs []*kgo.Record, idx []int, errs []error) (failed bool) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DeliveryTimeout)
	defer cancel()
	type result struct {
		j   int
		err error
	}
	// Buffered for every record, so that late promises never block the
	// client after this Write has returned.
	results := make(chan result, len(recs))
	for j, r := range recs {
		cl.Produce(ctx, r, func(r *kgo.Record, err error) { results <- result{j, err} })
	}
	pending := make([]bool, len(recs))
	for j := range pending {
		pending[j] = true
	}
	for n := len(recs); n > 0; n-- {
		select {
		case res := <-results:
			pending[res.j] = false
			if res.err != nil {
				errs[idx[res.j]], failed = s.classify(recs[res.j].Topic, res.err), true
			}
		case <-ctx.Done():
			err := fmt.Errorf("kafka sink: no acknowledgement within %s: %w", s.cfg.DeliveryTimeout, ctx.Err())
			if ctx.Err() == context.DeadlineExceeded && context.Cause(ctx) == context.DeadlineExceeded {
				err = fmt.Errorf("kafka sink: no acknowledgement within delivery_timeout %s (brokers unreachable, or no leader)", s.cfg.DeliveryTimeout)
			}
			for j, p := range pending {
				if p {
					errs[idx[j]] = err
				}
			}
			return true
		}
	}
	return failed
}

// bufSize estimates the bytes a batch's values and ids need.
func (s *Sink) bufSize(batch []*serialcb.Frame) int {
	n := 0
	for _, f := range batch {
		n += 36 + dispatch.BodySize(f, s.cfg.Format)
	}
	return n
}

// permanentErrs are broker answers that retrying the same record cannot
// change.
var permanentErrs = []error{
	kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord, kerr.CorruptMessage,
	kerr.InvalidTopicException, kerr.PolicyViolation, kerr.UnsupportedForMessageFormat,
}

// classify turns a record's produce error into a sink error.
func (s *Sink) classify(topic string, err error) error {
	for _, p := range permanentErrs {
		if errors.Is(err, p) {
			return dispatch.Permanent(fmt.Errorf("kafka sink: topic %q refused the record: %w", topic, err))
		}
	}
	switch {
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		hint := "create it"
		if !s.cfg.AutoCreateTopics {
			hint += ", or set auto_create_topics: true if the brokers allow it"
		}
		return fmt.Errorf("kafka sink: %w %q (%s); frames are retried until then: %w", ErrUnknownTopic, topic, hint, err)
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed),
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		return fmt.Errorf("kafka sink: not allowed to produce to %q: grant the sink's user WRITE on the topic (and IDEMPOTENT_WRITE on the cluster for brokers before 3.0); frames are retried until then: %w", topic, err)
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return fmt.Errorf("kafka sink: authentication failed: check the sasl settings and the environment variables they name; frames are retried until then: %w", err)
	}
	return fmt.Errorf("kafka sink: produce to %q: %w", topic, err)
}

// outcome logs the start and the end of an outage, once each.
func (s *Sink) outcome(errs []error) {
	var first error
	for _, e := range errs {
		if e != nil && !dispatch.IsPermanent(e) {
			first = e
			break
		}
	}
	s.outageMu.Lock()
	defer s.outageMu.Unlock()
	switch {
	case first != nil && !s.failing:
		s.failing, s.since = true, time.Now()
		s.log.Warn("kafka sink: writes failing; retrying in the background: frames wait in the queue and spool",
			zap.Strings("brokers", s.cfg.Brokers), zap.Error(first))
	case first == nil && s.failing:
		s.failing = false
		s.log.Info("kafka sink delivering again", zap.Strings("brokers", s.cfg.Brokers),
			zap.Duration("after", time.Since(s.since).Round(time.Millisecond)))
	}
}

// Close closes the client: its connections and goroutines. Writes must
// have returned. It is idempotent.
func (s *Sink) Close() error {
	s.mu.Lock()
	cl := s.cl
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if cl != nil && !already {
		cl.Close()
	}
	return nil
}

// zapLogger passes franz-go's warnings and errors to zap at debug level:
// during an outage the client logs every retry, and the sink already logs
// each outage once.
type zapLogger struct{ log *zap.Logger }

func (z zapLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (z zapLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	if ce := z.log.Check(zap.DebugLevel, "kafka client: "+msg); ce != nil {
		fields := make([]zap.Field, 0, len(keyvals)/2+1)
		fields = append(fields, zap.Stringer("level", level))
		for i := 0; i+1 < len(keyvals); i += 2 {
			k, _ := keyvals[i].(string)
			fields = append(fields, zap.Any(k, keyvals[i+1]))
		}
		ce.Write(fields...)
	}
}
