// Package source carries writes from message brokers to a port: an MQTT
// subscription (QoS 1; the outcome is published to TOPIC/result) and a
// NATS subscription (request/reply; the reply is the outcome). Message
// bodies are written as they are.
//
// Writes are at most once. An MQTT message the broker marks as a
// redelivery (DUP) is not written, since its first delivery may have been:
// it is counted, logged, and answered with an error outcome. Sessions are
// clean, so a reconnect does not replay old messages either.
package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/dispatch/portio"
)

// Target is the port the writes go to: *portio.Port.
type Target interface {
	Write(data []byte, opts portio.WriteOptions) *asyncloop.Future[portio.Outcome]
}

// ErrDuplicate answers an MQTT message redelivered by the broker.
var ErrDuplicate = errors.New("redelivered MQTT message not written (writes are at most once)")

// Config is one source.
type Config struct {
	// URL is mqtt://HOST:PORT/TOPIC, mqtts://… or nats://HOST:PORT/SUBJECT.
	URL string
	// Port names the port, for logs and the client name.
	Port string
	// ExpectReply makes each write a request whose outcome carries the
	// reply frame.
	ExpectReply bool
}

// Source is one running subscription.
type Source struct {
	cfg    Config
	target Target
	log    *zap.Logger
	life   context.Context
	cancel context.CancelFunc
	ready  chan struct{}
	once   sync.Once
	wg     sync.WaitGroup // the goroutines that wait for a subscription

	mc     mqtt.Client
	topic  string
	nc     *nats.Conn
	nsub   *nats.Subscription
	closed atomic.Bool

	received, duplicates atomic.Uint64
}

// Stats counts a Source's messages.
type Stats struct {
	Received, Duplicates uint64
}

// Start connects and subscribes in the background: a broker that is down
// at start is retried, and the subscription is made again after each
// reconnect. Ready is closed once subscribed the first time.
func Start(ctx context.Context, cfg Config, target Target, log *zap.Logger) (*Source, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, err
	}
	topic := strings.TrimPrefix(u.Path, "/")
	if topic == "" || u.Host == "" {
		return nil, fmt.Errorf("write source %q: want scheme://HOST:PORT/TOPIC", cfg.URL)
	}
	if log == nil {
		log = zap.NewNop()
	}
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Source{cfg: cfg, target: target, topic: topic, life: life, cancel: cancel, ready: make(chan struct{}),
		log: log.With(zap.String("port", cfg.Port), zap.String("write_source", redact(u)))}
	switch u.Scheme {
	case "mqtt", "mqtts":
		err = s.startMQTT(u)
	case "nats":
		err = s.startNATS(u)
	default:
		err = fmt.Errorf("write source %q: unknown scheme (mqtt, mqtts or nats)", cfg.URL)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	return s, nil
}

func redact(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User(c.User.Username())
	}
	return c.String()
}

// Ready is closed once the subscription is in place.
func (s *Source) Ready() <-chan struct{} { return s.ready }

// Stats returns the Source's counters.
func (s *Source) Stats() Stats {
	return Stats{Received: s.received.Load(), Duplicates: s.duplicates.Load()}
}

func (s *Source) subscribed() { s.once.Do(func() { close(s.ready) }) }

func (s *Source) startMQTT(u *url.URL) error {
	scheme := "tcp://"
	if u.Scheme == "mqtts" {
		scheme = "ssl://"
	}
	opts := mqtt.NewClientOptions().
		AddBroker(scheme + u.Host).
		SetClientID(fmt.Sprintf("serialcbd-write-%s-%d", s.cfg.Port, time.Now().UnixNano()%1e9)).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10 * time.Second).
		SetOrderMatters(true).
		SetOnConnectHandler(func(c mqtt.Client) {
			// A clean session forgets subscriptions: make it again.
			tok := c.Subscribe(s.topic, 1, s.onMQTT)
			s.wg.Go(func() {
				if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
					s.log.Info("subscribed for writes")
					s.subscribed()
				} else {
					s.log.Warn("cannot subscribe for writes", zap.Error(tok.Error()))
				}
			})
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			s.log.Warn("write source connection lost; reconnecting", zap.Error(err))
		})
	if u.User != nil {
		opts.SetUsername(u.User.Username())
		if pw, ok := u.User.Password(); ok {
			opts.SetPassword(pw)
		}
	}
	s.mc = mqtt.NewClient(opts)
	s.mc.Connect() // with connect retry it keeps trying in the background
	return nil
}

func (s *Source) onMQTT(_ mqtt.Client, m mqtt.Message) {
	s.received.Add(1)
	if m.Duplicate() {
		s.duplicates.Add(1)
		s.log.Warn("redelivered write message not written (at most once)", zap.Uint16("message_id", m.MessageID()))
		s.publishResult(portio.Outcome{Port: s.cfg.Port, Source: "mqtt", Error: ErrDuplicate.Error()})
		return
	}
	fut := s.target.Write(m.Payload(), portio.WriteOptions{Source: "mqtt", ExpectReply: s.cfg.ExpectReply})
	fut.AddDoneCallback(func(f *asyncloop.Future[portio.Outcome]) {
		o, _ := f.Result(s.life) // done: does not wait
		s.publishResult(o)
	})
}

func (s *Source) publishResult(o portio.Outcome) {
	if s.closed.Load() {
		return
	}
	b, err := json.Marshal(o)
	if err != nil {
		return
	}
	// Not waited for: the loop goroutine must not block on the broker.
	s.mc.Publish(s.topic+"/result", 1, false, b)
}

func (s *Source) startNATS(u *url.URL) error {
	server := "nats://" + u.Host
	opts := []nats.Option{
		nats.Name("serialcbd-write-" + s.cfg.Port),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ConnectHandler(func(*nats.Conn) { s.log.Info("write source connected") }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				s.log.Warn("write source disconnected; reconnecting", zap.Error(err))
			}
		}),
	}
	if u.User != nil {
		pw, _ := u.User.Password()
		opts = append(opts, nats.UserInfo(u.User.Username(), pw))
	}
	nc, err := nats.Connect(server, opts...)
	if err != nil {
		return fmt.Errorf("write source %s: %w", server, err)
	}
	sub, err := nc.Subscribe(s.topic, s.onNATS)
	if err != nil {
		nc.Close()
		return fmt.Errorf("write source %s: subscribe %q: %w", server, s.topic, err)
	}
	s.nc, s.nsub = nc, sub
	if nc.IsConnected() && nc.Flush() == nil {
		s.subscribed()
	} else {
		// Subscribed as soon as the connection comes: the client sends
		// its subscriptions on connect.
		s.wg.Go(func() {
			for !nc.IsConnected() {
				select {
				case <-s.life.Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
			if nc.Flush() == nil {
				s.subscribed()
			}
		})
	}
	return nil
}

func (s *Source) onNATS(m *nats.Msg) {
	s.received.Add(1)
	fut := s.target.Write(m.Data, portio.WriteOptions{Source: "nats", ExpectReply: s.cfg.ExpectReply})
	if m.Reply == "" {
		fut.AddDoneCallback(func(f *asyncloop.Future[portio.Outcome]) { _ = f.Err() })
		return
	}
	fut.AddDoneCallback(func(f *asyncloop.Future[portio.Outcome]) {
		o, _ := f.Result(s.life)
		if b, err := json.Marshal(o); err == nil && !s.closed.Load() {
			_ = m.Respond(b)
		}
	})
}

// Close unsubscribes, disconnects and waits for its goroutines. Outcomes
// of writes still running are no longer sent.
func (s *Source) Close() {
	if s.closed.Swap(true) {
		return
	}
	s.cancel()
	if s.mc != nil {
		s.mc.Disconnect(250)
	}
	if s.nc != nil {
		_ = s.nsub.Unsubscribe()
		s.nc.Close()
	}
	s.wg.Wait()
}
