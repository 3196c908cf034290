package mqttsink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/sinkconf"
)

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
	var downSince time.Time // start of the current outage; zero before the first connection
	attempts := 0           // failed attempts in the current outage
	shortLived := 0         // connections in a row lost soon after they were made
	for ctx.Err() == nil {
		select {
		case <-s.lost: // stale: no connection is up
		default:
		}
		tok := client.Connect()
		<-tok.Done() // bounded by the connect timeout
		if err := tok.Error(); err != nil {
			attempts++
			delay := dispatch.Backoff(attempts, minReconnectDelay, maxReconnectDelay)
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
			if !sleep(ctx, delay) {
				return
			}
			continue
		}

		l := &link{down: make(chan struct{})}
		s.setLink(l)
		upSince := time.Now()
		switch {
		case first != nil:
			s.log.Info("mqtt sink connected", zap.String("client_id", s.cfg.ClientID))
			first <- nil
			first = nil
		default:
			s.log.Info("MQTT broker reconnected", zap.Duration("outage", time.Since(downSince)), zap.Int("failed_attempts", attempts))
		}
		attempts = 0

		select {
		case <-ctx.Done():
			s.linkDown(l)
			client.Disconnect(quiesce)
			return
		case err := <-s.lost:
			s.linkDown(l)
			downSince = time.Now()
			up := downSince.Sub(upSince)
			if up >= takeoverHint {
				shortLived = 0
				s.log.Warn("MQTT connection lost; reconnecting in the background: writes fail and are retried by the dispatcher until it is back",
					zap.String("client_id", s.cfg.ClientID), zap.Error(err))
				continue
			}
			// What a broker does to the older of two clients with one id;
			// that one reconnects and kicks the other off, and so on. The
			// backoff keeps such a fight from spinning both.
			shortLived++
			delay := dispatch.Backoff(shortLived, minReconnectDelay, maxReconnectDelay)
			s.log.Warn("MQTT connection lost soon after it was made; reconnecting in the background. If this repeats, another client may be using this client_id: give each its own",
				zap.String("client_id", s.cfg.ClientID), zap.Duration("connected_for", up), zap.Duration("reconnect_in", delay), zap.Error(err))
			if !sleep(ctx, delay) {
				return
			}
		}
	}
}

// sleep waits for d, or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// takeoverHint: a connection lost sooner than this after it was made is
// logged with the hint that another client may share the client id.
const takeoverHint = 2 * time.Second

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
