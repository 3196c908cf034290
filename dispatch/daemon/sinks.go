package daemon

import (
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/amqpsink"
	"github.com/serialcbd/serialcbd/dispatch/httpsink"
	"github.com/serialcbd/serialcbd/dispatch/jsonlsink"
	"github.com/serialcbd/serialcbd/dispatch/kafkasink"
	"github.com/serialcbd/serialcbd/dispatch/mqttsink"
	"github.com/serialcbd/serialcbd/dispatch/natssink"
	"github.com/serialcbd/serialcbd/dispatch/pgsink"
	"github.com/serialcbd/serialcbd/dispatch/sinkconf"
	"github.com/serialcbd/serialcbd/dispatch/sqlsink"
)

// sinkKind is one entry of the sink registry: the spec prefixes it answers
// to, the config block it reads and its constructor.
type sinkKind struct {
	prefixes []string // matched against the start of a spec
	usage    string   // spec grammar, for error messages and help
	block    string   // name of its settings block in a sink entry
	// build parses spec, lets decode overlay the block's settings, validates
	// and constructs the sink without I/O. It also returns the sink's lane
	// defaults (batch size, Writes in flight), which may depend on its
	// settings; the sink entry's batch.max and concurrency override them.
	build func(spec string, decode func(out any) error, log *zap.Logger) (dispatch.Sink, dispatch.Options, error)
}

// Lane defaults of the HTTP sink: one POST per frame gains from many
// Writes in flight; an NDJSON batch is one POST, so big batches and a few
// in flight.
var (
	httpJSONLane   = dispatch.Options{MaxBatch: 1, MaxInflight: 16}
	httpNDJSONLane = dispatch.Options{MaxBatch: 500, MaxInflight: 4}
)

func httpLane(c httpsink.Config) dispatch.Options {
	if c.Format == httpsink.FormatNDJSON {
		return httpNDJSONLane
	}
	return httpJSONLane
}

// pgLane: one batch per pooled connection; big batches are where the
// unnest insert shines (measured in pgsink/write.go).
func pgLane(c pgsink.Config) dispatch.Options {
	return dispatch.Options{MaxBatch: 1000, MaxInflight: c.MaxConns}
}

// natsLane: JetStream acks come back asynchronously, so a few batches in
// flight keep the pipe full; core NATS has no acks to wait for.
func natsLane(c natssink.Config) dispatch.Options {
	if c.JetStream {
		return dispatch.Options{MaxBatch: 500, MaxInflight: 4}
	}
	return dispatch.Options{MaxBatch: 500, MaxInflight: 1}
}

// fixedLane returns lane defaults that do not depend on the settings.
func fixedLane[C any](o dispatch.Options) func(C) dispatch.Options {
	return func(C) dispatch.Options { return o }
}

// Registry maps sink specs to sink kinds. It is an explicit value, so tests
// can check that every documented scheme resolves.
type Registry struct{ kinds []sinkKind }

// NewRegistry returns the registry of every sink kind serialcbd knows.
func NewRegistry() *Registry {
	return &Registry{kinds: []sinkKind{
		{
			prefixes: []string{"sqlite:"},
			usage:    "sqlite:PATH",
			block:    "sqlite",
			build: builder(sqlsink.ParseSpec, sqlsink.New,
				fixedLane[sqlsink.Config](dispatch.Options{MaxBatch: 1000, MaxInflight: 1})),
		},
		{
			prefixes: []string{"http://", "https://"},
			usage:    "http://HOST[:PORT]/PATH or https://…",
			block:    "http",
			build:    builder(httpsink.ParseSpec, httpsink.New, httpLane),
		},
		{
			prefixes: []string{"postgres://", "postgresql://"},
			usage:    "postgres://USER@HOST[:PORT]/DB[?sslmode=…]",
			block:    "postgres",
			build:    builder(pgsink.ParseSpec, pgsink.New, pgLane),
		},
		{
			prefixes: []string{"mqtt://", "mqtts://"},
			usage:    "mqtt://HOST[:PORT]/TOPIC or mqtts://…",
			block:    "mqtt",
			// Two batches in flight keep the broker busy while acks of the
			// previous one come back; the sink caps unacknowledged publishes
			// itself (max_inflight).
			build: builder(mqttsink.ParseSpec, mqttsink.New,
				fixedLane[mqttsink.Config](dispatch.Options{MaxBatch: 500, MaxInflight: 2})),
		},
		{
			prefixes: []string{"nats://", "tls://"},
			usage:    "nats://HOST[:PORT]/SUBJECT",
			block:    "nats",
			build:    builder(natssink.ParseSpec, natssink.New, natsLane),
		},
		{
			prefixes: []string{"kafka://", "kafkas://"},
			usage:    "kafka://BROKER[,BROKER...]/TOPIC",
			block:    "kafka",
			// A Write waits for acks=all of its records; two in flight keep
			// the brokers busy while the previous acks come back.
			build: builder(kafkasink.ParseSpec, kafkasink.New,
				fixedLane[kafkasink.Config](dispatch.Options{MaxBatch: 500, MaxInflight: 2})),
		},
		{
			prefixes: []string{"amqp://", "amqps://"},
			usage:    "amqp://HOST[:PORT]/EXCHANGE/ROUTINGKEY",
			block:    "amqp",
			// Publishes are serialised on one channel; confirms come back
			// while the next batch is published.
			build: builder(amqpsink.ParseSpec, amqpsink.New,
				fixedLane[amqpsink.Config](dispatch.Options{MaxBatch: 500, MaxInflight: 2})),
		},
		{
			prefixes: []string{"file:", "stdout"},
			usage:    "file:PATH or stdout",
			block:    "file",
			build: builder(jsonlsink.ParseSpec, jsonlsink.New,
				fixedLane[jsonlsink.Config](dispatch.Options{MaxBatch: 1000, MaxInflight: 1})),
		},
	}}
}

func builder[C interface{ Validate() error }, S dispatch.Sink](
	parse func(string) (C, error), newSink func(C, *zap.Logger) (S, error), lane func(C) dispatch.Options,
) func(string, func(any) error, *zap.Logger) (dispatch.Sink, dispatch.Options, error) {
	return func(spec string, decode func(any) error, log *zap.Logger) (dispatch.Sink, dispatch.Options, error) {
		cfg, err := parse(spec)
		if err != nil {
			return nil, dispatch.Options{}, err
		}
		if err := decode(&cfg); err != nil {
			return nil, dispatch.Options{}, err
		}
		if err := cfg.Validate(); err != nil {
			return nil, dispatch.Options{}, err
		}
		sink, err := newSink(cfg, log)
		if err != nil {
			return nil, dispatch.Options{}, err
		}
		return sink, lane(cfg), nil
	}
}

// configKeyer is a settings error that names its key inside the sink's
// block (sinkconf.KeyError), so the error can point at that line.
type configKeyer interface {
	error
	ConfigKey() string
}

// lookup finds the kind for a spec.
func (r *Registry) lookup(spec string) (*sinkKind, error) {
	for i := range r.kinds {
		for _, p := range r.kinds[i].prefixes {
			if strings.HasPrefix(spec, p) {
				return &r.kinds[i], nil
			}
		}
	}
	return nil, fmt.Errorf("unknown sink %q: expected %s", sinkconf.Redact(spec), r.usages())
}

// Prefixes returns the spec prefixes of every sink kind ("sqlite:",
// "http://", …), for help texts and their tests.
func (r *Registry) Prefixes() []string {
	var p []string
	for _, k := range r.kinds {
		p = append(p, k.prefixes...)
	}
	return p
}

func (r *Registry) usages() string {
	var u []string
	for _, k := range r.kinds {
		u = append(u, k.usage)
	}
	return strings.Join(u, ", ")
}

// target builds the dispatch target for config entry i. Errors point at the
// config line (or at the --sink flag in quick mode).
func (r *Registry) target(cfg *configs.Config, i int, log *zap.Logger) (dispatch.Target, error) {
	s := &cfg.Sinks[i]
	key := fmt.Sprintf("sinks[%d]", i)
	fail := func(path string, err error) error {
		if cfg.File() == "" {
			return Usagef("--sink %q: %v", sinkconf.Redact(s.URL), err)
		}
		return cfg.Errorf(path, "%v", err)
	}
	kind, err := r.lookup(s.URL)
	if err != nil {
		return dispatch.Target{}, fail(key+".url", err)
	}
	blocks := map[string]*yaml.Node{"http": &s.HTTP, "sqlite": &s.SQLite, "file": &s.File,
		"postgres": &s.Postgres, "mqtt": &s.MQTT, "nats": &s.NATS, "kafka": &s.Kafka, "amqp": &s.AMQP}
	for name, n := range blocks {
		if n.Kind != 0 && name != kind.block {
			return dispatch.Target{}, fail(key+"."+name, fmt.Errorf("a %s block does not apply to %s (this sink reads a %q block)", name, kind.usage, kind.block))
		}
	}
	blockKey := key + "." + kind.block
	decode := func(out any) error { return cfg.DecodeBlock(blockKey, blocks[kind.block], out) }
	sink, opt, err := kind.build(s.URL, decode, log.With(zap.String("sink", s.Name)))
	if err != nil {
		var ce *configs.Error
		if errors.As(err, &ce) {
			return dispatch.Target{}, err
		}
		if ke, ok := errors.AsType[configKeyer](err); ok {
			if p := blockKey + "." + ke.ConfigKey(); cfg.Pos(p) > 0 {
				return dispatch.Target{}, fail(p, err)
			}
		}
		return dispatch.Target{}, fail(key+".url", err)
	}
	if s.Batch.Max > 0 {
		opt.MaxBatch = s.Batch.Max
	}
	opt.Linger = s.Batch.Linger
	if s.Concurrency > 0 {
		opt.MaxInflight = s.Concurrency
	}
	opt.MaxPending = s.Queue
	opt.Retry = dispatch.RetryPolicy{
		Initial:     s.Retry.Initial,
		Max:         s.Retry.Max,
		MaxAttempts: s.Retry.MaxAttempts,
		MaxAge:      s.Retry.MaxAge,
	}
	return dispatch.Target{Name: s.Name, Sink: sink, Options: opt}, nil
}
