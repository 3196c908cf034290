package pgsink

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/serialcbd/serialcbd/serialcb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseSpec(t *testing.T) {
	tests := []struct {
		spec    string
		wantErr string
	}{
		{spec: "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"},
		{spec: "postgresql://u:secret@db.example:6432/frames"},
		{spec: "postgres:///serialcbd?host=/var/run/postgresql"},
		{spec: "postgres://a.example,b.example:5433/db?target_session_attrs=read-write"},
		{spec: "postgres:/x", wantErr: "want a postgres:// or postgresql:// URL"},
		{spec: "pg://u@h/db", wantErr: "want a postgres:// or postgresql:// URL"},
		{spec: "", wantErr: "want a postgres:// or postgresql:// URL"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			cfg, err := ParseSpec(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSpec(%q) error = %v, want it to contain %q", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := Config{URL: tt.spec, Table: "frames", MaxConns: 4, CreateTable: true, ConnectTimeout: 5 * time.Second}
			if cfg != want {
				t.Fatalf("ParseSpec(%q) = %+v, want %+v", tt.spec, cfg, want)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("default config invalid: %v", err)
			}
		})
	}
}

func TestParseSpecHidesPassword(t *testing.T) {
	_, err := ParseSpec("pg://user:hunter2@host/db")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %v: want an error without the password", err)
	}
}

func TestValidate(t *testing.T) {
	base, err := ParseSpec("postgres://u:hunter2@127.0.0.1/db")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mod     func(*Config)
		key     string // ConfigKey of the error; "" for a URL error
		wantErr string
	}{
		{name: "schema.table", mod: func(c *Config) { c.Table = "telemetry.Frames_2" }},
		{name: "password env", mod: func(c *Config) { c.PasswordEnv = "PG_PASS" }},
		{name: "empty table", mod: func(c *Config) { c.Table = "" }, key: "table", wantErr: "plain identifier"},
		{name: "quoted table", mod: func(c *Config) { c.Table = `"frames"` }, key: "table", wantErr: "plain identifier"},
		{name: "injection", mod: func(c *Config) { c.Table = "frames; DROP TABLE x" }, key: "table", wantErr: "plain identifier"},
		{name: "digit first", mod: func(c *Config) { c.Table = "1frames" }, key: "table", wantErr: "plain identifier"},
		{name: "bad schema", mod: func(c *Config) { c.Table = "a-b.frames" }, key: "table", wantErr: "schema"},
		{name: "three parts", mod: func(c *Config) { c.Table = "db.public.frames" }, key: "table", wantErr: "plain identifier"},
		{name: "too long", mod: func(c *Config) { c.Table = strings.Repeat("t", 55) }, key: "table", wantErr: "at most 54"},
		{name: "no conns", mod: func(c *Config) { c.MaxConns = 0 }, key: "max_conns", wantErr: "between 1 and"},
		{name: "too many conns", mod: func(c *Config) { c.MaxConns = 1000 }, key: "max_conns", wantErr: "between 1 and"},
		{name: "password as env", mod: func(c *Config) { c.PasswordEnv = "s3cr3t-pass" }, key: "password_env", wantErr: "name of an environment variable"},
		{name: "no timeout", mod: func(c *Config) { c.ConnectTimeout = 0 }, key: "connect_timeout", wantErr: "must be positive"},
		{name: "scheme", mod: func(c *Config) { c.URL = "mysql://u:hunter2@h/db" }, wantErr: "scheme must be postgres"},
		{name: "bad url", mod: func(c *Config) { c.URL = "postgres://u:hunter2@h:port/db" }, wantErr: "postgres sink: url"},
		{name: "port too high", mod: func(c *Config) { c.URL = "postgres://u:hunter2@h:70000/db" }, wantErr: `port "70000": must be a number between 1 and 65535`},
		{name: "second port", mod: func(c *Config) { c.URL = "postgres://u:hunter2@a:5432,b:0/db" }, wantErr: `port "0"`},
		{name: "bad host", mod: func(c *Config) { c.URL = "postgres://u:hunter2@a_b-/db" }, wantErr: `host "a_b-"`},
		{name: "bad escape", mod: func(c *Config) { c.URL = "postgres://u:hunter2%zz@h/db" }, wantErr: "invalid %-escape"},
		{name: "ipv6", mod: func(c *Config) { c.URL = "postgres://u:hunter2@[::1]:5432/db" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.mod(&cfg)
			err := cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("Validate() = %v: shows a secret", err)
			}
			ke, ok := errors.AsType[interface {
				error
				ConfigKey() string
			}](err)
			switch {
			case tt.key == "" && ok:
				t.Fatalf("error %v has key %q, want none", err, ke.ConfigKey())
			case tt.key != "" && (!ok || ke.ConfigKey() != tt.key):
				t.Fatalf("error %v: want ConfigKey %q", err, tt.key)
			}
			if _, err := New(cfg, nil); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

func TestTableNames(t *testing.T) {
	for table, want := range map[string][2]string{
		"frames":           {`"frames"`, `"frames_port_seq"`},
		"Telemetry.Frames": {`"telemetry"."frames"`, `"frames_port_seq"`},
	} {
		cfg, _ := ParseSpec("postgres://h/db")
		cfg.Table = table
		s, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.table != want[0] || s.index != want[1] {
			t.Errorf("table %q: %s, index %s; want %s, %s", table, s.table, s.index, want[0], want[1])
		}
	}
}

// TestStartPasswordEnvUnset: a password variable that is not set is a
// configuration error of Start, found before any connection attempt.
func TestStartPasswordEnvUnset(t *testing.T) {
	cfg, _ := ParseSpec("postgres://u@127.0.0.1:1/db?sslmode=disable")
	cfg.PasswordEnv = "SERIALCBD_PGSINK_TEST_UNSET_PASSWORD"
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), "SERIALCBD_PGSINK_TEST_UNSET_PASSWORD is not set") {
		t.Fatalf("Start() = %v, want a password_env error", err)
	}
}

func TestWriteBeforeStartAndAfterClose(t *testing.T) {
	cfg, _ := ParseSpec("postgres://u@127.0.0.1:1/db")
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	batch := []*serialcb.Frame{{Port: "p", Seq: 1, ReceivedAt: time.Now()}}
	if err := s.Write(context.Background(), batch); err == nil || !strings.Contains(err.Error(), "before start") {
		t.Fatalf("Write before Start = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Write(context.Background(), batch); err == nil || !strings.Contains(err.Error(), "after close") {
		t.Fatalf("Write after Close = %v", err)
	}
}
