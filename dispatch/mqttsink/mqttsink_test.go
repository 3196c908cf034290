package mqttsink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/sinkconf"
	"github.com/serialcbd/serialcbd/serialcb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sharedBroker is the Mosquitto the integration tests and benchmarks use.
const sharedBroker = "127.0.0.1:1883"

// needMosquitto skips (fails under CI=true) when the shared broker is not
// listening.
func needMosquitto(tb testing.TB) {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", sharedBroker, 2*time.Second)
	if err == nil {
		_ = conn.Close()
		return
	}
	msg := "no MQTT broker at " + sharedBroker + " (" + err.Error() + "); start one with: mosquitto -d -c /etc/mosquitto/mosquitto.conf"
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s", msg)
	}
	tb.Skipf("%s", msg)
}

func TestParseSpec(t *testing.T) {
	for _, tt := range []struct {
		spec    string
		addr    string
		secure  bool
		wantErr string
	}{
		{spec: "mqtt://broker/serial/{port}", addr: "broker:1883"},
		{spec: "mqtt://broker:1884/a/b", addr: "broker:1884"},
		{spec: "mqtts://broker/a", addr: "broker:8883", secure: true},
		{spec: "mqtts://[::1]:9000/a", addr: "[::1]:9000", secure: true},
		{spec: "http://broker/a", wantErr: "want mqtt://"},
		{spec: "mqtt:broker/a", wantErr: "want mqtt://"},
	} {
		t.Run(tt.spec, func(t *testing.T) {
			cfg, err := ParseSpec(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			want := Config{URL: tt.spec, QoS: 1, ClientID: DefaultClientID(), CleanSession: true,
				KeepAlive: 30 * time.Second, ConnectTimeout: 5 * time.Second, Format: FormatJSON, MissingField: "unknown"}
			if cfg != want {
				t.Errorf("defaults %+v, want %+v", cfg, want)
			}
			if !strings.HasPrefix(cfg.ClientID, "serialcbd-") {
				t.Errorf("client id %q", cfg.ClientID)
			}
			ep, err := parseURL(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			if ep.addr != tt.addr || ep.secure != tt.secure {
				t.Errorf("addr %s secure %v, want %s %v", ep.addr, ep.secure, tt.addr, tt.secure)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	base := func(spec string) Config {
		cfg, err := ParseSpec(spec)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	for _, tt := range []struct {
		name    string
		cfg     func() Config
		key     string // ConfigKey of the error; "" for a URL error
		wantErr string // "" means valid
	}{
		{name: "ok", cfg: func() Config { return base("mqtt://h/a/{port}/{field.kind}") }},
		{name: "qos 0", cfg: func() Config { c := base("mqtt://h/a"); c.QoS = 0; return c }},
		{name: "qos 2", cfg: func() Config { c := base("mqtt://h/a"); c.QoS = 2; return c }},
		{name: "qos 3", cfg: func() Config { c := base("mqtt://h/a"); c.QoS = 3; return c }, key: "qos", wantErr: "qos 3"},
		{name: "qos -1", cfg: func() Config { c := base("mqtt://h/a"); c.QoS = -1; return c }, key: "qos", wantErr: "qos -1"},
		{name: "no topic", cfg: func() Config { return base("mqtt://h:1883") }, wantErr: "missing topic"},
		{name: "slash only", cfg: func() Config { return base("mqtt://h/") }, wantErr: "missing topic"},
		{name: "no host", cfg: func() Config { return base("mqtt:///a") }, wantErr: "missing host"},
		{name: "bad port", cfg: func() Config { return base("mqtt://h:99999/a") }, wantErr: "port"},
		{name: "bad host", cfg: func() Config { return base("mqtt://h..x/a") }, wantErr: `host "h..x": not a valid host name`},
		{name: "bad escape in password", cfg: func() Config { return base("mqtt://u:hunter2%zz@h/a") }, wantErr: "mqtt sink: url mqtt://u:xxxxx@h/a: invalid %-escape"},
		{name: "plus", cfg: func() Config { return base("mqtt://h/a/+/b") }, wantErr: "wildcards"},
		{name: "hash", cfg: func() Config { return base("mqtt://h/a/#") }, wantErr: "'#'"},
		{name: "escaped hash", cfg: func() Config { return base("mqtt://h/a/%23") }, wantErr: "wildcards"},
		{name: "query", cfg: func() Config { return base("mqtt://h/a?x=1") }, wantErr: "query"},
		{name: "user info", cfg: func() Config { return base("mqtt://u:p@h/a") }, wantErr: "password_env"},
		{name: "unknown placeholder", cfg: func() Config { return base("mqtt://h/a/{host}") }, wantErr: "unknown placeholder {host}"},
		{name: "empty field name", cfg: func() Config { return base("mqtt://h/a/{field.}") }, wantErr: "unknown placeholder"},
		{name: "unclosed", cfg: func() Config { return base("mqtt://h/a/{port") }, wantErr: "without '}'"},
		{name: "stray close", cfg: func() Config { return base("mqtt://h/a/port}") }, wantErr: "without '{'"},
		{name: "tls on mqtt", cfg: func() Config { c := base("mqtt://h/a"); c.TLS.CAFile = "ca.pem"; return c }, key: "tls", wantErr: "mqtts://"},
		{name: "tls on mqtts", cfg: func() Config {
			c := base("mqtts://h/a")
			c.TLS = sinkconf.TLS{CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem", ServerName: "x"}
			return c
		}},
		{name: "cert without key", cfg: func() Config { c := base("mqtts://h/a"); c.TLS.CertFile = "c.pem"; return c }, key: "tls.cert_file", wantErr: "both or neither"},
		{name: "format", cfg: func() Config { c := base("mqtt://h/a"); c.Format = "xml"; return c }, key: "format", wantErr: `format "xml"`},
		{name: "format raw", cfg: func() Config { c := base("mqtt://h/a"); c.Format = FormatRaw; return c }},
		{name: "format fields", cfg: func() Config { c := base("mqtt://h/a"); c.Format = FormatFields; return c }},
		{name: "keepalive fraction", cfg: func() Config { c := base("mqtt://h/a"); c.KeepAlive = 1500 * time.Millisecond; return c }, key: "keepalive", wantErr: "whole seconds"},
		{name: "keepalive off", cfg: func() Config { c := base("mqtt://h/a"); c.KeepAlive = 0; return c }},
		{name: "keepalive huge", cfg: func() Config { c := base("mqtt://h/a"); c.KeepAlive = 24 * time.Hour; return c }, key: "keepalive", wantErr: "65535s"},
		{name: "connect timeout", cfg: func() Config { c := base("mqtt://h/a"); c.ConnectTimeout = 0; return c }, key: "connect_timeout", wantErr: "positive"},
		{name: "password without user", cfg: func() Config { c := base("mqtt://h/a"); c.PasswordEnv = "MQTT_PW"; return c }, key: "username", wantErr: "set username"},
		{name: "password env name", cfg: func() Config {
			c := base("mqtt://h/a")
			c.Username, c.PasswordEnv = "u", "${MQTT_PW}"
			return c
		}, key: "password_env", wantErr: "not an environment variable name"},
		{name: "empty client id persistent", cfg: func() Config {
			c := base("mqtt://h/a")
			c.ClientID, c.CleanSession = "", false
			return c
		}, key: "client_id", wantErr: "clean_session"},
		{name: "empty client id clean", cfg: func() Config { c := base("mqtt://h/a"); c.ClientID = ""; return c }},
		{name: "max_inflight negative", cfg: func() Config { c := base("mqtt://h/a"); c.MaxInflight = -1; return c }, key: "max_inflight", wantErr: "between 1 and 65535"},
		{name: "missing_field wildcard", cfg: func() Config { c := base("mqtt://h/a"); c.MissingField = "+"; return c }, key: "missing_field", wantErr: "wildcards"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg().Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err %v, want %q", err, tt.wantErr)
			}
			var ke *sinkconf.KeyError
			switch {
			case tt.key == "" && errors.As(err, &ke):
				t.Errorf("URL error carries key %q", ke.ConfigKey())
			case tt.key != "" && (!errors.As(err, &ke) || ke.ConfigKey() != tt.key):
				t.Errorf("error %v: want ConfigKey %q", err, tt.key)
			}
			if _, nerr := New(tt.cfg(), nil); nerr == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}

func TestTopicTemplate(t *testing.T) {
	frame := func(port, fields string) *serialcb.Frame {
		f := &serialcb.Frame{Port: port}
		if fields != "" {
			f.Fields = []byte(fields)
		}
		return f
	}
	for _, tt := range []struct {
		name, tmpl string
		frame      *serialcb.Frame
		missing    string
		want       string
		wantErr    string
	}{
		{name: "fixed", tmpl: "a/b", frame: frame("p", ""), want: "a/b"},
		{name: "port", tmpl: "serial/{port}/data", frame: frame("ttyUSB0", ""), want: "serial/ttyUSB0/data"},
		{name: "field string", tmpl: "s/{field.kind}", frame: frame("p", `{"kind":"temp","v":21.5}`), want: "s/temp"},
		{name: "field number", tmpl: "s/{field.v}", frame: frame("p", `{"kind":"temp","v":21.5}`), want: "s/21.5"},
		{name: "two placeholders", tmpl: "{port}-{field.kind}", frame: frame("p1", `{"kind":"x"}`), want: "p1-x"},
		{name: "missing field", tmpl: "s/{field.kind}", frame: frame("p", `{"v":1}`), missing: "unknown", want: "s/unknown"},
		{name: "no fields", tmpl: "s/{field.kind}/{port}", frame: frame("p", ""), missing: "none", want: "s/none/p"},
		{name: "empty missing", tmpl: "s/{field.kind}/x", frame: frame("p", ""), missing: "", want: "s//x"},
		{name: "wildcard in port", tmpl: "s/{port}", frame: frame("a+b", ""), wantErr: "wildcards"},
		{name: "wildcard in field", tmpl: "s/{field.k}", frame: frame("p", `{"k":"#"}`), wantErr: "wildcards"},
		{name: "NUL in field", tmpl: "s/{field.k}", frame: frame("p", `{"k":"a\u0000b"}`), wantErr: "NUL"},
		{name: "empty topic", tmpl: "{port}", frame: frame("", ""), wantErr: "empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := parseTemplate(tt.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tmpl.render(tt.frame, tt.missing)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("topic %q, err %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("topic %q, err %v; want %q", got, err, tt.want)
			}
		})
	}
}

// freeAddr returns a loopback address where nothing listens (it was free a
// moment ago).
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func newSink(t testing.TB, spec string, log *zap.Logger, edit func(*Config)) *Sink {
	t.Helper()
	cfg, err := ParseSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	// Unique per run too: two clients with one id kick each other off.
	cfg.ClientID = fmt.Sprintf("serialcbd-test-%s-%d", strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()), time.Now().UnixNano())
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testFrames(n int) []*serialcb.Frame {
	var gen serialcb.IDGen
	out := make([]*serialcb.Frame, n)
	for i := range out {
		now := time.Now()
		out[i] = &serialcb.Frame{ID: gen.New(now), Port: "p1", Seq: uint64(i + 1), ReceivedAt: now, Payload: []byte("frame")}
	}
	return out
}

// TestStartUnreachable: a broker that is down at start is one warning, not
// an error; writes then fail at once and retryably; Close stops the
// reconnecting goroutine (goleak).
func TestStartUnreachable(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	s := newSink(t, "mqtt://"+freeAddr(t)+"/a", zap.New(core), nil)
	if err := s.Write(context.Background(), testFrames(1)); err == nil || !strings.Contains(err.Error(), "before start") {
		t.Fatalf("write before start: %v", err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	if s.Connected() {
		t.Fatal("connected to nothing")
	}
	err := s.Write(context.Background(), testFrames(3))
	if !errors.Is(err, ErrNotConnected) || dispatch.IsPermanent(err) {
		t.Fatalf("write while down: %v; want retryable ErrNotConnected", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), testFrames(1)); err == nil || !strings.Contains(err.Error(), "after close") {
		t.Fatalf("write after close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	entries := logs.All()
	if len(entries) != 1 || !strings.Contains(entries[0].Message, "unreachable at start") {
		t.Fatalf("logs at warn level: %v; want exactly one 'unreachable at start' warning", entries)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Fatal("start after close succeeded")
	}
}

func TestStartMissingPassword(t *testing.T) {
	s := newSink(t, "mqtt://"+freeAddr(t)+"/a", nil, func(c *Config) {
		c.Username, c.PasswordEnv = "u", "SERIALCBD_TEST_SURELY_UNSET_PW"
	})
	defer s.Close()
	err := s.Start(context.Background())
	var ke *sinkconf.KeyError
	if !errors.As(err, &ke) || ke.ConfigKey() != "password_env" {
		t.Fatalf("start: %v; want a password_env KeyError", err)
	}
}

// silentBroker is a scripted MQTT server that accepts one connection,
// answers CONNECT with CONNACK and then never acknowledges a PUBLISH: the
// broker that hangs. published is signalled once publish bytes arrived.
type silentBroker struct {
	ln        net.Listener
	conn      chan net.Conn
	published chan struct{}
	done      chan struct{}
}

func newSilentBroker(t *testing.T) *silentBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &silentBroker{ln: ln, conn: make(chan net.Conn, 1), published: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		conn, err := ln.Accept()
		_ = ln.Close() // one connection only: reconnects are refused
		if err != nil {
			return
		}
		b.conn <- conn
		var hdr [2]byte
		if _, err := io.ReadFull(conn, hdr[:]); err != nil || hdr[0] != 0x10 {
			return
		}
		// CONNECT's remaining length fits one byte for our short client ids.
		if _, err := io.CopyN(io.Discard, conn, int64(hdr[1])); err != nil {
			return
		}
		if _, err := conn.Write([]byte{0x20, 0x02, 0x00, 0x00}); err != nil {
			return
		}
		var one [1]byte
		if _, err := conn.Read(one[:]); err != nil {
			return
		}
		close(b.published)
		_, _ = io.Copy(io.Discard, conn)
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		select {
		case c := <-b.conn:
			_ = c.Close()
		default:
		}
		<-b.done
	})
	return b
}

// TestWriteUnacknowledged: publishes the broker never acknowledges fail
// retryably when ctx ends, and when the connection is then lost; after
// that, writes fail fast with ErrNotConnected.
func TestWriteUnacknowledged(t *testing.T) {
	b := newSilentBroker(t)
	s := newSink(t, "mqtt://"+b.ln.Addr().String()+"/a", nil, func(c *Config) {
		c.KeepAlive = 0
		c.ConnectTimeout = time.Second // bounds a publish racing with the loss
	})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Connected() {
		t.Fatal("not connected to the scripted broker")
	}
	conn := <-b.conn

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-b.published
		cancel()
	}()
	err := s.Write(ctx, testFrames(5))
	var be *dispatch.BatchError
	if !errors.As(err, &be) || len(be.Errs) != 5 {
		t.Fatalf("write: %v; want a BatchError of 5", err)
	}
	for i, e := range be.Errs {
		if !errors.Is(e, context.Canceled) || dispatch.IsPermanent(e) {
			t.Errorf("frame %d: %v; want retryable context.Canceled", i, e)
		}
	}

	// Lose the connection while a write waits for its acknowledgements.
	writeDone := make(chan error, 1)
	go func() { writeDone <- s.Write(context.Background(), testFrames(4)) }()
	_ = conn.Close()
	err = <-writeDone
	switch {
	case errors.As(err, &be):
		if len(be.Errs) != 4 {
			t.Fatalf("write across a lost connection: %v; want a BatchError of 4", err)
		}
		for i, e := range be.Errs {
			if e == nil || dispatch.IsPermanent(e) {
				t.Errorf("frame %d: %v; want a retryable error", i, e)
			}
		}
	case !errors.Is(err, ErrNotConnected): // the loss was seen before the write began
		t.Fatalf("write across a lost connection: %v", err)
	}
	// The connection is gone and reconnecting is refused. Paho fails the
	// tokens before the sink's run goroutine has taken the loss, so a
	// write in between still publishes (and fails retryably): wait until
	// the sink has seen it.
	for deadline := time.Now().Add(10 * time.Second); s.Connected(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the sink still reports a connection 10 s after the loss")
		}
	}
	if err := s.Write(context.Background(), testFrames(1)); !notConnected(err) {
		t.Fatalf("write after loss: %v; want ErrNotConnected", err)
	}
}

// notConnected reports whether err is ErrNotConnected for the batch or for
// each of its frames.
func notConnected(err error) bool {
	var be *dispatch.BatchError
	if !errors.As(err, &be) {
		return errors.Is(err, ErrNotConnected)
	}
	for _, e := range be.Errs {
		if !errors.Is(e, ErrNotConnected) {
			return false
		}
	}
	return true
}
