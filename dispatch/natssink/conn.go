package natssink

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/dispatch"
)

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
	return dispatch.Backoff(attempts+1, minReconnect, maxReconnect)
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
