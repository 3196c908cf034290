package configs

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestExampleIsValid(t *testing.T) {
	c, err := Parse("example.yaml", Example(), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Ports) != 3 || len(c.Sinks) != 2 || len(c.Routes) != 2 {
		t.Fatalf("example has %d ports, %d sinks, %d routes; want 3, 2, 2", len(c.Ports), len(c.Sinks), len(c.Routes))
	}
	if c.Ports[1].Framing != `lines:\r` {
		t.Errorf("framing = %q", c.Ports[1].Framing)
	}
	if c.Sinks[1].Retry.MaxAge != 24*time.Hour {
		t.Errorf("max_age = %v", c.Sinks[1].Retry.MaxAge)
	}
	var h struct {
		Timeout time.Duration     `yaml:"timeout"`
		Headers map[string]string `yaml:"headers"`
	}
	if err := c.DecodeBlock("sinks[1].http", &c.Sinks[1].HTTP, &h); err != nil {
		t.Fatal(err)
	}
	if h.Timeout != 5*time.Second || h.Headers["Authorization"] != "Bearer replace-me" {
		t.Errorf("http block = %+v", h)
	}
	if got := c.Pos("sinks[1].retry.max_age"); got == 0 {
		t.Error("no line recorded for sinks[1].retry.max_age")
	}
}

const base = `
ports:
  - name: gps
    path: /dev/ttyUSB0
sinks:
  - name: db
    url: sqlite:x.db
`

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		env        map[string]string
		want       []string // substrings of the error
	}{
		{"on_invalid without validate", strings.Replace(base, "    path:", "    on_invalid: drop\n    path:", 1), nil, []string{"t.yaml:4:", "ports[0].on_invalid", "needs validate"}},
		{"on_invalid bad value", strings.Replace(base, "    path:", "    validate: nmea\n    on_invalid: keep\n    path:", 1), nil, []string{"t.yaml:5:", "ports[0].on_invalid", "expected drop or sink:NAME"}},
		{"on_invalid unknown sink", strings.Replace(base, "    path:", "    validate: nmea\n    on_invalid: sink:bad\n    path:", 1), nil, []string{"t.yaml:5:", `no sink named "bad" (sinks: db)`}},
		{"on_invalid port name taken", strings.Replace(base, "    path:", "    validate: nmea\n    on_invalid: sink:db\n    path: /dev/a\n  - name: gps.invalid\n    path:", 1), nil, []string{"t.yaml:5:", `"gps.invalid"`, "another port"}},
		{"on_invalid sink is the only sink", strings.Replace(base, "    path:", "    validate: nmea\n    on_invalid: sink:db\n    path:", 1), nil, []string{"t.yaml:7:", "valid frames would go nowhere"}},
		{"require_ports not a bool", base + "require_ports: maybe\n", nil, []string{"t.yaml:8:"}},
		{"unknown top key", base + "metrics_adr: x\n", nil, []string{"t.yaml:8:", `unknown key "metrics_adr"`, `did you mean "metrics_addr"`}},
		{"unknown nested key", strings.Replace(base, "path:", "pth: x\n    path:", 1), nil, []string{"t.yaml:4:", "ports[0].pth", `did you mean "path"`}},
		{"duration without unit", base + "drain_timeout: 10\n", nil, []string{"t.yaml:8:", "has no unit"}},
		{"bad type", strings.Replace(base, "name: gps", "name: gps\n    baud: fast", 1), nil, []string{"t.yaml:4:", "ports[0].baud", "fast"}},
		{"missing env", strings.Replace(base, "x.db", "${DB}", 1), nil, []string{"t.yaml:7:", "DB is not set"}},
		{"no ports", "sinks:\n  - name: a\n    url: stdout\n", nil, []string{"no ports"}},
		{"duplicate port", strings.Replace(base, "sinks:", "  - name: gps\n    path: /dev/x\nsinks:", 1), nil, []string{"t.yaml:5:", "duplicate port name"}},
		{"route to unknown sink", base + "routes:\n  - sinks: [nope]\n", nil, []string{"t.yaml:9:", `no sink named "nope"`, "sinks: db"}},
		{"route to unknown port", base + "routes:\n  - ports: [gsp]\n    sinks: [db]\n", nil, []string{"t.yaml:9:", "routes[0].ports[0]", `no port named "gsp" (ports: gps)`}},
		{"route without sinks", base + "routes:\n  - ports: [gps]\n", nil, []string{"t.yaml:9:", "routes[0].sinks", "at least one sink"}},
		{"route bad regex", base + "routes:\n  - sinks: [db]\n    regex: '(ab'\n", nil, []string{"t.yaml:10:", "routes[0].regex", "missing closing )"}},
		{"route bad field regex", base + "routes:\n  - sinks: [db]\n    fields:\n      kind: alarm\n      code: '/E[0-9/'\n", nil, []string{"t.yaml:12:", "routes[0].fields.code", "missing closing ]"}},
		{"route bad prefix escape", base + "routes:\n  - sinks: [db]\n    prefix: '\\q'\n", nil, []string{"t.yaml:10:", "routes[0].prefix", "bad escape"}},
		{"route key typo", base + "routes:\n  - sinks: [db]\n    regx: x\n", nil, []string{"t.yaml:10:", `did you mean "regex"`}},
		{"route continue not a bool", base + "routes:\n  - sinks: [db]\n    continue: maybe\n", nil, []string{"t.yaml:10:", "routes[0].continue"}},
		{"routes_default unknown sink", base + "routes_default: [db, nope]\n", nil, []string{"t.yaml:8:", "routes_default[1]", `no sink named "nope"`}},
		{"unrouted_sink unknown", base + "routes:\n  - ports: [gps]\n    sinks: [db]\nunrouted_sink: nope\n", nil, []string{"t.yaml:11:", "unrouted_sink", `no sink named "nope"`}},
		{"unrouted_sink with routes_default", base + "routes_default: [db]\nunrouted_sink: db\n", nil, []string{"t.yaml:9:", "unrouted_sink", "routes_default takes every frame"}},
		{"unrouted_sink without routes", base + "unrouted_sink: db\n", nil, []string{"t.yaml:8:", "without routes every frame goes to every sink"}},
		{"unrouted_sink after a catch-all", base + "routes:\n  - sinks: [db]\nunrouted_sink: db\n", nil, []string{"t.yaml:10:", "a route with no conditions matches every frame"}},
		{"syntax", "ports: [\n", nil, []string{"t.yaml", "YAML syntax"}},
		{"empty", "", nil, []string{"config is empty"}},
		{"bad level", base + "log:\n  level: loud\n", nil, []string{"t.yaml:9:", "log.level"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tt.yaml), env(tt.env))
			if err == nil {
				t.Fatal("no error")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not *Error: %v", err, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestEnvExpansion(t *testing.T) {
	y := strings.Replace(base, "x.db", "${DIR:-/tmp}/x.db", 1) + "    concurrency: ${N}\n"
	c, err := Parse("t.yaml", []byte(y), env(map[string]string{"N": "7"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Sinks[0].URL != "sqlite:/tmp/x.db" || c.Sinks[0].Concurrency != 7 {
		t.Errorf("got url %q concurrency %d", c.Sinks[0].URL, c.Sinks[0].Concurrency)
	}
	// A value that looks like YAML structure stays a plain string.
	y = strings.Replace(base, "x.db", "${SECRET}", 1)
	c, err = Parse("t.yaml", []byte(y), env(map[string]string{"SECRET": "a: b # c"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Sinks[0].URL != "sqlite:a: b # c" {
		t.Errorf("url = %q", c.Sinks[0].URL)
	}
}

func TestDecodeBlockUnknownKey(t *testing.T) {
	y := base + "    http:\n      timeout: 1s\n      hedaers: {}\n"
	c, err := Parse("t.yaml", []byte(y), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Timeout time.Duration     `yaml:"timeout"`
		Headers map[string]string `yaml:"headers"`
	}
	err = c.DecodeBlock("sinks[0].http", &c.Sinks[0].HTTP, &h)
	if err == nil || !strings.Contains(err.Error(), "t.yaml:10:") || !strings.Contains(err.Error(), `did you mean "headers"`) {
		t.Fatalf("err = %v", err)
	}
}

// Every routing key decodes; prefix escapes are serialcbd's (one byte per
// \xNN); a field value may be a number; the example's second rule is a
// content rule.
func TestRouteRules(t *testing.T) {
	y := base + `  - name: alarms
    url: stdout
routes:
  - ports: [gps]
    sinks: [db]
  - prefix: '\x02\xffA'
    regex: '^\x02'
    fields:
      kind: alarm
      code: 42
      level: /^(high|crit)$/
    sinks: [alarms, db]
    continue: true
routes_default: [db]
`
	c, err := Parse("t.yaml", []byte(y), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Routes[1]
	p, err := r.PrefixBytes()
	if err != nil || string(p) != "\x02\xffA" {
		t.Errorf("prefix %q (%v), want 02 ff 41", p, err)
	}
	if r.Regex != `^\x02` || r.Fields["kind"] != "alarm" || r.Fields["code"] != "42" || r.Fields["level"] != "/^(high|crit)$/" {
		t.Errorf("route %+v", r)
	}
	if r.Continue == nil || !*r.Continue || c.Routes[0].Continue != nil {
		t.Errorf("continue: %v, %v", r.Continue, c.Routes[0].Continue)
	}
	if len(c.RoutesDefault) != 1 || c.RoutesDefault[0] != "db" || c.UnroutedSink != "" {
		t.Errorf("routes_default %q, unrouted_sink %q", c.RoutesDefault, c.UnroutedSink)
	}
	// A prefix from a double-quoted YAML string arrives with YAML's escapes
	// already read; plain bytes stand for themselves.
	if p, err := (Route{Prefix: "$GP"}).PrefixBytes(); err != nil || string(p) != "$GP" {
		t.Errorf("plain prefix %q, %v", p, err)
	}
	ex, err := Parse("example.yaml", Example(), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if ex.Routes[1].Regex == "" || ex.Routes[1].Continue != nil {
		t.Errorf("example's second route %+v: want a regex rule with the default continue", ex.Routes[1])
	}
}
