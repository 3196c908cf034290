package configs

import (
	"encoding/hex"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Poll is one request a port sends on a schedule; the next frame after it
// (that starts with ReplyPrefix, when set) is its reply.
type Poll struct {
	// Name identifies the poll in reply records ("poll"), logs and metrics.
	Name string `yaml:"name"`
	// Every is the schedule's period; ticks are counted from the start and
	// a tick whose previous request is still outstanding is skipped.
	Every time.Duration `yaml:"every"`
	// Send is the request: "hex:010300000002C40B", or text with escapes
	// (\r \n \t \\ \xNN \NNN \uNNNN), e.g. 'READ\r\n' in single quotes.
	Send string `yaml:"send"`
	// ReplyTimeout is how long an attempt waits for the reply; default 1s.
	ReplyTimeout time.Duration `yaml:"reply_timeout"`
	// Retries is how many more attempts a timeout or an invalid reply gets.
	Retries int `yaml:"retries"`
	// ReplyPrefix, when set, is what a reply starts with (escapes as in
	// Send, or hex:); other frames meanwhile are unsolicited. Unset: the
	// first frame after the request is its reply.
	ReplyPrefix string `yaml:"reply_prefix"`
}

// PortWrite lets the rest of the system write to a port. Writes are at
// most once: a write that failed is never retried by serialcbd.
type PortWrite struct {
	// From lists broker sources: mqtt://HOST:PORT/TOPIC (QoS 1
	// subscription; the outcome is published to TOPIC/result) and
	// nats://HOST:PORT/SUBJECT (request/reply; the reply is the outcome).
	From []string `yaml:"from"`
	// HTTP enables POST /ports/NAME/write on the metrics listener.
	HTTP bool `yaml:"http"`
	// TokenEnv names an environment variable holding a bearer token the
	// HTTP endpoint requires.
	TokenEnv string `yaml:"token_env"`
	// MaxBytes caps one write; default DefaultWriteMaxBytes.
	MaxBytes int `yaml:"max_bytes"`
	// PerSecond caps writes per second (a burst of as many); default
	// DefaultWritePerSecond.
	PerSecond float64 `yaml:"per_second"`
	// Queue bounds the writes waiting for the port; default
	// DefaultWriteQueue.
	Queue int `yaml:"queue"`
	// ExpectReply makes every write a request whose outcome carries the
	// reply frame (HTTP may ask per write with ?expect_reply=true).
	ExpectReply bool `yaml:"expect_reply"`
	// ReplyTimeout bounds the wait for a reply; default 1s.
	ReplyTimeout time.Duration `yaml:"reply_timeout"`
	// ReplyPrefix is as in Poll.
	ReplyPrefix string `yaml:"reply_prefix"`
}

// Defaults and bounds of the poll and write settings.
const (
	DefaultReplyTimeout   = time.Second
	DefaultWriteMaxBytes  = 256
	DefaultWritePerSecond = 10
	DefaultWriteQueue     = 16
	MinPollEvery          = 10 * time.Millisecond
	maxWriteBytes         = 64 << 10
	maxRetries            = 10
	maxWriteQueue         = 1024
)

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ParseBytes reads a request spec: "hex:" then hex digits (spaces allowed
// between bytes), or text whose escapes \r \n \t \\ \xNN \NNN \uNNNN are
// read (\xNN is one byte).
func ParseBytes(s string) ([]byte, error) {
	if h, ok := strings.CutPrefix(s, "hex:"); ok {
		h = strings.NewReplacer(" ", "", "_", "").Replace(h)
		b, err := hex.DecodeString(h)
		if err != nil {
			return nil, fmt.Errorf("%q: hex: expected pairs of hex digits, e.g. hex:010300000002C40B", s)
		}
		return b, nil
	}
	return unescape(s, " (or write hex:…)")
}

// WriteSource is a parsed write.from entry.
type WriteSource struct {
	Scheme string // mqtt, mqtts or nats
	Server string // scheme://host:port, for the client
	Topic  string // MQTT topic or NATS subject
}

// ParseWriteSource reads mqtt://HOST:PORT/TOPIC, mqtts://… or
// nats://HOST:PORT/SUBJECT.
func ParseWriteSource(s string) (WriteSource, error) {
	u, err := url.Parse(s)
	if err != nil {
		return WriteSource{}, fmt.Errorf("%q: %v", s, err)
	}
	var w WriteSource
	switch u.Scheme {
	case "mqtt", "mqtts":
		w.Topic = strings.TrimPrefix(u.Path, "/")
		if w.Topic == "" || strings.ContainsAny(w.Topic, "+#") {
			return w, fmt.Errorf("%q: give one MQTT topic without wildcards, e.g. mqtt://127.0.0.1:1883/site/meter/write", s)
		}
	case "nats":
		w.Topic = strings.TrimPrefix(u.Path, "/")
		if w.Topic == "" || strings.ContainsAny(w.Topic, "*> /") {
			return w, fmt.Errorf("%q: give one NATS subject without wildcards, e.g. nats://127.0.0.1:4222/site.meter.write", s)
		}
	default:
		return w, fmt.Errorf("%q: unknown scheme: write sources are mqtt://, mqtts:// or nats://", s)
	}
	if u.Host == "" || u.Port() == "" {
		return w, fmt.Errorf("%q: give host and port, e.g. %s://127.0.0.1:%s/…", s, u.Scheme, map[string]string{"mqtt": "1883", "mqtts": "8883", "nats": "4222"}[u.Scheme])
	}
	w.Scheme = u.Scheme
	w.Server = u.Scheme + "://" + u.Host
	if u.User != nil {
		w.Server = u.Scheme + "://" + u.User.String() + "@" + u.Host
	}
	return w, nil
}

// checkTwoWay checks every port's poll and write blocks.
func (c *Config) checkTwoWay() error {
	for i, p := range c.Ports {
		key := fmt.Sprintf("ports[%d]", i)
		seen := map[string]bool{}
		for j, q := range p.Poll {
			pk := fmt.Sprintf("%s.poll[%d]", key, j)
			if err := c.checkName(pk, "poll", q.Name, seen); err != nil {
				return err
			}
			if q.Every < MinPollEvery {
				return c.Errorf(pk+".every", "missing or below %v: the period, e.g. every: 1s", MinPollEvery)
			}
			if q.Send == "" {
				return c.Errorf(pk+".send", `missing: the request, e.g. "hex:010300000002C40B" or 'READ\r\n'`)
			}
			if b, err := ParseBytes(q.Send); err != nil {
				return c.Errorf(pk+".send", "%v", err)
			} else if len(b) == 0 {
				return c.Errorf(pk+".send", "the request is empty")
			}
			if err := checkReply(c, pk, q.ReplyTimeout, q.ReplyPrefix); err != nil {
				return err
			}
			if q.Retries < 0 || q.Retries > maxRetries {
				return c.Errorf(pk+".retries", "%d: expected 0..%d", q.Retries, maxRetries)
			}
		}
		w := p.Write
		if w == nil {
			continue
		}
		wk := key + ".write"
		if len(w.From) == 0 && !w.HTTP {
			return c.Errorf(wk, "no source: list brokers in from, or set http: true")
		}
		if w.HTTP && c.MetricsAddr != nil && *c.MetricsAddr == "" {
			return c.Errorf(wk+".http", "the write endpoint is served on the metrics listener, which metrics_addr: \"\" turns off: set metrics_addr (default 127.0.0.1:9464) or use from")
		}
		for j, f := range w.From {
			if _, err := ParseWriteSource(f); err != nil {
				return c.Errorf(fmt.Sprintf("%s.from[%d]", wk, j), "%v", err)
			}
		}
		if w.TokenEnv != "" {
			if !envNameRE.MatchString(w.TokenEnv) {
				return c.Errorf(wk+".token_env", "%q: the name of an environment variable, e.g. WRITE_TOKEN", w.TokenEnv)
			}
			if !w.HTTP {
				return c.Errorf(wk+".token_env", "only the HTTP endpoint takes a token: set http: true or remove token_env")
			}
		}
		if w.MaxBytes < 0 || w.MaxBytes > maxWriteBytes {
			return c.Errorf(wk+".max_bytes", "%d: expected 1..%d (0: default %d)", w.MaxBytes, maxWriteBytes, DefaultWriteMaxBytes)
		}
		if w.PerSecond < 0 || w.PerSecond > 10000 {
			return c.Errorf(wk+".per_second", "%v: expected a rate above 0 and up to 10000 (0: default %d)", w.PerSecond, DefaultWritePerSecond)
		}
		if w.Queue < 0 || w.Queue > maxWriteQueue {
			return c.Errorf(wk+".queue", "%d: expected 1..%d (0: default %d)", w.Queue, maxWriteQueue, DefaultWriteQueue)
		}
		if err := checkReply(c, wk, w.ReplyTimeout, w.ReplyPrefix); err != nil {
			return err
		}
	}
	return nil
}

func checkReply(c *Config, key string, timeout time.Duration, prefix string) error {
	if timeout < 0 || timeout > time.Hour {
		return c.Errorf(key+".reply_timeout", "%v: expected up to 1h (0: default %v)", timeout, DefaultReplyTimeout)
	}
	if prefix != "" {
		if _, err := ParseBytes(prefix); err != nil {
			return c.Errorf(key+".reply_prefix", "%v", err)
		}
	}
	return nil
}
