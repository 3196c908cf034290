package mqttsink

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/serialcbd/serialcbd/dispatch/sinkconf"
)

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
	// ClientID identifies the session at the broker. Two clients with one
	// id kick each other off, so the default is unique per sink with a
	// clean session: serialcbd-<hostname>-<8 random hex digits> (see New);
	// with clean_session false it is serialcbd-<hostname>, stable across
	// restarts so that the session resumes.
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

// DefaultClientID is "serialcbd-" followed by the host name: the client id
// a spec starts with. New makes it unique when the session is clean.
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

func validEnvName(s string) bool { return sinkconf.IsName(s) }

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
