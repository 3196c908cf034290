package amqpsink

import (
	"errors"
	"strings"
	"testing"

	"github.com/serialcbd/serialcbd/dispatch/sinkconf"
	"github.com/serialcbd/serialcbd/serialcb"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		spec, addr, exchange, key string
		tls                       bool
		wantErr                   string
	}{
		{spec: "amqp://rabbit/plant/site.{port}", addr: "rabbit:5672", exchange: "plant", key: "site.{port}"},
		{spec: "amqps://rabbit:5000/a%2Fb/k", addr: "rabbit:5000", exchange: "a/b", key: "k", tls: true},
		{spec: "amqps://rabbit//q", addr: "rabbit:5671", exchange: "", key: "q", tls: true},
		{spec: "amqp://guest:guest@rabbit/x/k", wantErr: "credentials in the URL"},
		{spec: "amqp://rabbit/x", wantErr: "EXCHANGE/ROUTINGKEY"},
		{spec: "amqp:///x/k", wantErr: "missing host"},
		{spec: "http://rabbit/x/k", wantErr: "want amqp://"},
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
		if c.Addr != tt.addr || c.Exchange != tt.exchange || c.RoutingKey != tt.key || c.TLSRequired != tt.tls {
			t.Errorf("ParseSpec(%q) = %q %q %q tls=%v", tt.spec, c.Addr, c.Exchange, c.RoutingKey, c.TLSRequired)
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
		key  string
		want string
	}{
		{"placeholder", func(c *Config) { c.RoutingKey = "{host}" }, "", "unknown placeholder"},
		{"too long", func(c *Config) { c.RoutingKey = strings.Repeat("{port}", 4) }, "", "over AMQP's limit"},
		{"format", func(c *Config) { c.Format = "xml" }, "format", "format \"xml\""},
		{"exchange type", func(c *Config) { c.ExchangeType = "fast" }, "exchange_type", "direct, topic"},
		{"default exchange declared", func(c *Config) { c.Exchange, c.ExchangeType = "", "topic" }, "exchange_type", "default exchange"},
		{"user without password", func(c *Config) { c.User = "bob" }, "user", "password_env"},
		{"missing field", func(c *Config) { c.MissingField = "a.b" }, "missing_field", "one non-empty word"},
		{"tls pair", func(c *Config) { c.TLS.KeyFile = "k.pem" }, "tls.key_file", "go together"},
		{"confirm timeout", func(c *Config) { c.ConfirmTimeout = 0 }, "confirm_timeout", "must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseSpec("amqp://rabbit/x/k.{port}")
			if err != nil {
				t.Fatal(err)
			}
			tt.edit(&c)
			err = c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
			if tt.key != "" {
				if ke, ok := errors.AsType[*sinkconf.KeyError](err); !ok || ke.ConfigKey() != tt.key {
					t.Errorf("error %v does not name the key %q", err, tt.key)
				}
			}
		})
	}
}

func TestRoutingKey(t *testing.T) {
	f := &serialcb.Frame{Port: "tty USB0.1", Fields: []byte(`{"dev":"a*b#c","e":""}`)}
	for tmpl, want := range map[string]string{
		"":                                "",
		"fixed.key":                       "fixed.key",
		"s.{port}":                        "s.tty_USB0_1",
		"{field.dev}.{field.e}.{field.x}": "a_b_c._.unknown",
	} {
		tm, err := parseTemplate(tmpl)
		if err != nil {
			t.Fatalf("%q: %v", tmpl, err)
		}
		if got := tm.render(f, "unknown"); got != want {
			t.Errorf("render(%q) = %q, want %q", tmpl, got, want)
		}
	}
}
