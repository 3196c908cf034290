package natssink

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/dispatch/sinkconf"
	"github.com/serialcbd/serialcbd/serialcb"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		spec            string
		server, subject string
		err             string
	}{
		{spec: "nats://127.0.0.1:4222/frames", server: "nats://127.0.0.1:4222", subject: "frames"},
		{spec: "nats://broker/site.{port}.raw", server: "nats://broker:4222", subject: "site.{port}.raw"},
		{spec: "tls://broker.example.com:4443/a.{field.dev}", server: "tls://broker.example.com:4443", subject: "a.{field.dev}"},
		{spec: "nats://[::1]/x", server: "nats://[::1]:4222", subject: "x"},
		{spec: "nats://[::1]:5222/x", server: "nats://[::1]:5222", subject: "x"},
		{spec: "nats://host:4222", server: "nats://host:4222", subject: ""},
		{spec: "mqtt://host/x", err: "want nats://"},
		{spec: "nats:host/x", err: "want nats://"},
		{spec: "nats:///x", err: "missing host"},
		{spec: "nats://u:p@host/x", err: "credentials in the URL"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			c, err := ParseSpec(tt.spec)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Server != tt.server || c.Subject != tt.subject {
				t.Fatalf("server %q subject %q, want %q %q", c.Server, c.Subject, tt.server, tt.subject)
			}
			if !c.JetStream || c.Format != FormatJSON || c.MissingField != DefaultMissingField ||
				c.ConnectTimeout != DefaultConnectTimeout || c.AckTimeout != DefaultAckTimeout || c.DuplicateWindow != DefaultDuplicateWindow {
				t.Fatalf("defaults not applied: %+v", c)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	base := func() Config {
		c, err := ParseSpec("nats://127.0.0.1:4222/site.{port}")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name string
		edit func(*Config)
		key  string // "" for an error without a key
		err  string // "" when valid
	}{
		{name: "defaults", edit: func(*Config) {}},
		{name: "all settings", edit: func(c *Config) {
			c.Stream, c.Format, c.User, c.PasswordEnv = "FRAMES", FormatRaw, "u", "NATS_PW"
			c.TLS = sinkconf.TLS{CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem", ServerName: "n"}
		}},
		{name: "empty subject", edit: func(c *Config) { c.Subject = "" }, err: "empty subject"},
		{name: "bad template", edit: func(c *Config) { c.Subject = "a.{nope}" }, err: "unknown placeholder {nope}"},
		{name: "wildcard", edit: func(c *Config) { c.Subject = "a.>" }, err: "wildcard"},
		{name: "bad server", edit: func(c *Config) { c.Server = "http://x:1" }, err: "want nats://"},
		{name: "bad port", edit: func(c *Config) { c.Server = "nats://x:99999" }, err: "port"},
		{name: "bad host", edit: func(c *Config) { c.Server = "nats://-x-:4222" }, err: `host "-x-": not a valid host name`},
		{name: "format", edit: func(c *Config) { c.Format = "xml" }, key: "format", err: "format \"xml\""},
		{name: "missing_field", edit: func(c *Config) { c.MissingField = "a.b" }, key: "missing_field", err: "one non-empty subject token"},
		{name: "missing_field empty", edit: func(c *Config) { c.MissingField = "" }, key: "missing_field", err: "missing_field"},
		{name: "stream without jetstream", edit: func(c *Config) { c.Stream, c.JetStream = "S", false }, key: "stream", err: "needs jetstream"},
		{name: "stream name", edit: func(c *Config) { c.Stream = "a.b" }, key: "stream", err: "stream name"},
		{name: "duplicate_window", edit: func(c *Config) { c.Stream, c.DuplicateWindow = "S", 0 }, key: "duplicate_window", err: "must be positive"},
		{name: "connect_timeout", edit: func(c *Config) { c.ConnectTimeout = 0 }, key: "connect_timeout", err: "must be positive"},
		{name: "ack_timeout", edit: func(c *Config) { c.AckTimeout = -time.Second }, key: "ack_timeout", err: "must be positive"},
		{name: "user without password", edit: func(c *Config) { c.User = "u" }, key: "user", err: "needs password_env"},
		{name: "password without user", edit: func(c *Config) { c.PasswordEnv = "P" }, key: "password_env", err: "needs user"},
		{name: "two auth methods", edit: func(c *Config) { c.TokenEnv, c.CredsFile = "T", "x.creds" }, key: "creds_file", err: "one authentication method"},
		{name: "cert without key", edit: func(c *Config) { c.TLS.CertFile = "c.pem" }, key: "tls.cert_file", err: "go together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.edit(&c)
			err := c.Validate()
			if tt.err == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if _, err := New(c, nil); err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err %v, want %q", err, tt.err)
			}
			if _, nerr := New(c, nil); nerr == nil {
				t.Fatal("New accepted an invalid config")
			}
			ke, ok := errors.AsType[*sinkconf.KeyError](err)
			if tt.key == "" {
				return
			}
			if !ok || ke.ConfigKey() != tt.key {
				t.Fatalf("error %v: key %v, want %q", err, ke, tt.key)
			}
		})
	}
}

func TestTemplate(t *testing.T) {
	f := &serialcb.Frame{Port: "tty USB0", Fields: []byte(`{"dev":"boiler.1","n":42,"obj":{"a":"b c"},"wild":"*>","empty":"","utf":"température"}`)}
	tests := []struct {
		tmpl, want, pattern string
	}{
		{"frames", "frames", "frames"},
		{"site.{port}", "site.tty_USB0", "site.*"},
		{"site.{port}.{field.dev}", "site.tty_USB0.boiler_1", "site.*.*"},
		{"d.{field.n}", "d.42", "d.*"},
		{"d.{field.obj}", `d.{"a":"b_c"}`, "d.*"},
		{"d.{field.wild}", "d.__", "d.*"},
		{"d.{field.empty}", "d._", "d.*"},
		{"d.{field.absent}", "d.unknown", "d.*"},
		{"d.{field.utf}", "d.température", "d.*"},
		{"d.dev-{port}-x.raw", "d.dev-tty_USB0-x.raw", "d.*.raw"},
		{"{port}{field.n}", "tty_USB042", "*"},
	}
	for _, tt := range tests {
		t.Run(tt.tmpl, func(t *testing.T) {
			tp, err := parseTemplate(tt.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			if got := tp.render(f, "unknown"); got != tt.want {
				t.Errorf("render %q, want %q", got, tt.want)
			}
			if tp.pattern != tt.pattern {
				t.Errorf("pattern %q, want %q", tp.pattern, tt.pattern)
			}
		})
	}
	// A frame without fields takes missing_field for every field.
	tp, _ := parseTemplate("a.{field.x}.{port}")
	if got := tp.render(&serialcb.Frame{Port: "p"}, "none"); got != "a.none.p" {
		t.Errorf("no fields: %q", got)
	}
}

func TestTemplateErrors(t *testing.T) {
	tests := map[string]string{
		"":                                    "empty subject",
		"a..b":                                "empty token",
		".a":                                  "empty token",
		"a.":                                  "empty token",
		"a.*":                                 "wildcard",
		"a.>":                                 "wildcard",
		"a b":                                 "white space",
		"a.{port":                             "without '}'",
		"a.port}":                             "without '{'",
		"a.{{port}}":                          "without '}'",
		"a.{field.}":                          "needs a field name",
		"a.{Port}":                            "unknown placeholder",
		"a.\xff":                              "UTF-8",
		strings.Repeat("a", maxTemplateLen+1): "long",
	}
	for tmpl, want := range tests {
		if _, err := parseTemplate(tmpl); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", tmpl, err, want)
		}
	}
}

func TestSanitize(t *testing.T) {
	tests := map[string]string{
		"plain":                          "plain",
		"":                               "_",
		"a.b":                            "a_b",
		"a b\tc\nd":                      "a_b_c_d",
		"*":                              "_",
		">":                              "_",
		"x\x00\x7fy":                     "x__y",
		"bad\xffutf":                     "bad_utf",
		"ünïcødé":                        "ünïcødé",
		strings.Repeat("é", MaxValueLen): strings.Repeat("é", MaxValueLen/2),
	}
	for in, want := range tests {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
	// A cut falls on a rune boundary.
	long := "a" + strings.Repeat("é", MaxValueLen)
	got := sanitize(long)
	if len(got) > MaxValueLen || strings.ContainsRune(got, '\uFFFD') || got[len(got)-2:] != "é" {
		t.Errorf("cut value %q (%d bytes)", got, len(got))
	}
}

func TestStreamSubject(t *testing.T) {
	c, _ := ParseSpec("nats://h/plant.{port}.{field.kind}.raw")
	if got := c.StreamSubject(); got != "plant.*.*.raw" {
		t.Errorf("StreamSubject %q", got)
	}
}

func TestSubjectCovers(t *testing.T) {
	tests := []struct {
		filter, pattern string
		want            bool
	}{
		{"a.b", "a.b", true},
		{"a.*", "a.*", true},
		{"a.*", "a.b", true},
		{"a.>", "a.*.c", true},
		{"a.>", "a", false},
		{">", "a.*", true},
		{"a.b", "a.*", false}, // takes only one of the subjects
		{"a.*.c", "a.*.d", false},
		{"a.*", "a.*.c", false},
		{"a.*.c", "a.*", false},
		{"*.*", "a.*", true},
	}
	for _, tt := range tests {
		if got := subjectCovers(tt.filter, tt.pattern); got != tt.want {
			t.Errorf("subjectCovers(%q, %q) = %v, want %v", tt.filter, tt.pattern, got, tt.want)
		}
	}
}
