package natssink

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/serialcbd/serialcbd/dispatch/sinkconf"
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
		return Config{}, fmt.Errorf("nats sink spec %q: want nats://HOST:PORT/SUBJECT or tls://HOST:PORT/SUBJECT", sinkconf.Redact(spec))
	}
	host, subject, _ := strings.Cut(rest, "/")
	if strings.Contains(host, "@") {
		return Config{}, errors.New("nats sink spec: credentials in the URL are not supported: use the nats block's user/password_env, token_env, creds_file or nkey_file")
	}
	if host == "" {
		return Config{}, fmt.Errorf("nats sink spec %q: missing host", sinkconf.Redact(spec))
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
	if err := sinkconf.CheckHost(h); err != nil {
		return fmt.Errorf("nats sink: server %q: %w", server, err)
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
