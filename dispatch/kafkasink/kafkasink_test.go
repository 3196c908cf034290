package kafkasink

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/dispatch/sinkconf"
	"github.com/serialcbd/serialcbd/serialcb"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		spec    string
		brokers []string
		topic   string
		tls     bool
		wantErr string
	}{
		{spec: "kafka://k1:9093,k2/plant.{port}", brokers: []string{"k1:9093", "k2:9092"}, topic: "plant.{port}"},
		{spec: "kafkas://[::1]/t", brokers: []string{"[::1]:9092"}, topic: "t", tls: true},
		{spec: "kafka://u:p@k1/t", wantErr: "credentials in the URL"},
		{spec: "kafka:///t", wantErr: "missing broker"},
		{spec: "kafka://k1,,k2/t", wantErr: "empty broker"},
		{spec: "nats://k1/t", wantErr: "want kafka://"},
	}
	for _, tt := range tests {
		c, err := ParseSpec(tt.spec)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseSpec(%q) = %v, want error containing %q", tt.spec, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("ParseSpec(%q): %v", tt.spec, err)
		}
		if !reflect.DeepEqual(c.Brokers, tt.brokers) || c.Topic != tt.topic || c.TLSRequired != tt.tls {
			t.Errorf("ParseSpec(%q) = %v %q tls=%v", tt.spec, c.Brokers, c.Topic, c.TLSRequired)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("default config of %q: %v", tt.spec, err)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		key  string // the KeyError's key, "" for a spec error
		want string
	}{
		{"bad topic char", func(c *Config) { c.Topic = "a/b" }, "", "not allowed in a Kafka topic"},
		{"unknown placeholder", func(c *Config) { c.Topic = "a.{host}" }, "", "unknown placeholder"},
		{"too long", func(c *Config) { c.Topic = strings.Repeat("{port}", 4) }, "", "over Kafka's limit"},
		{"key", func(c *Config) { c.Key = "seq" }, "key", "must be port, none or field.NAME"},
		{"format", func(c *Config) { c.Format = "xml" }, "format", "format \"xml\""},
		{"compression", func(c *Config) { c.Compression = "brotli" }, "compression", "brotli"},
		{"missing field", func(c *Config) { c.MissingField = "a b" }, "missing_field", "missing_field"},
		{"sasl no mechanism", func(c *Config) { c.SASL.User = "u" }, "sasl.mechanism", "need sasl.mechanism"},
		{"sasl bad mechanism", func(c *Config) { c.SASL = SASL{Mechanism: "GSSAPI", User: "u", PasswordEnv: "P"} }, "sasl.mechanism", "GSSAPI"},
		{"sasl no password", func(c *Config) { c.SASL = SASL{Mechanism: MechPlain, User: "u"} }, "sasl.password_env", "password_env"},
		{"sasl two users", func(c *Config) { c.SASL = SASL{Mechanism: MechPlain, User: "u", UserEnv: "U", PasswordEnv: "P"} }, "sasl.user", "one of user or user_env"},
		{"tls half pair", func(c *Config) { c.TLS.CertFile = "c.pem" }, "tls.cert_file", "go together"},
		{"delivery timeout", func(c *Config) { c.DeliveryTimeout = 0 }, "delivery_timeout", "must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseSpec("kafka://k1/t.{port}")
			if err != nil {
				t.Fatal(err)
			}
			tt.edit(&c)
			err = c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
			if tt.key != "" {
				ke, ok := errors.AsType[*sinkconf.KeyError](err)
				if !ok || ke.ConfigKey() != tt.key {
					t.Errorf("error %v does not name the key %q", err, tt.key)
				}
			}
		})
	}
}

func TestTopicRender(t *testing.T) {
	f := &serialcb.Frame{Port: "tty USB0/é", Fields: []byte(`{"dev":"boiler#1","empty":""}`)}
	long := &serialcb.Frame{Port: strings.Repeat("x", 100)}
	tests := []struct {
		tmpl string
		f    *serialcb.Frame
		want string
	}{
		{"plant", f, "plant"},
		{"plant.{port}", f, "plant.tty_USB0___"},
		{"{field.dev}-{field.empty}-{field.none}", f, "boiler_1-_-unknown"},
		{"p.{port}", long, "p." + strings.Repeat("x", MaxValueLen)},
	}
	for _, tt := range tests {
		tm, err := parseTemplate(tt.tmpl)
		if err != nil {
			t.Fatalf("%q: %v", tt.tmpl, err)
		}
		if got := tm.render(tt.f, "unknown"); got != tt.want {
			t.Errorf("render(%q) = %q, want %q", tt.tmpl, got, tt.want)
		}
	}
}

func TestKey(t *testing.T) {
	f := &serialcb.Frame{Port: "p1", Fields: []byte(`{"dev":"d7"}`)}
	for key, want := range map[string]string{KeyPort: "p1", "field.dev": "d7", "field.nope": "unknown", KeyNone: ""} {
		c, _ := ParseSpec("kafka://k/t")
		c.Key = key
		s, err := New(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(s.key(f)); got != want {
			t.Errorf("key %q: %q, want %q", key, got, want)
		}
	}
	_ = time.Second
}
