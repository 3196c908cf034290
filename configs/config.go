// Package configs holds serialcbd's configuration schema, its strict YAML
// loader and the commented example configuration (embedded, so the binary
// can print it).
//
// The loader checks structure only: unknown keys, types, required values,
// duplicate names and route references, each reported with file, line and
// key. What a sink URL or a framing spec means is checked by the packages
// that own them, using Pos to point at the right line.
package configs

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

//go:embed example.yaml
var example []byte

// Example returns the commented example configuration.
func Example() []byte { return append([]byte(nil), example...) }

// Config is the whole configuration file.
type Config struct {
	Log          Log           `yaml:"log"`
	MetricsAddr  *string       `yaml:"metrics_addr"`
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// RequirePorts makes a port missing at start fatal (exit 2); by default
	// the daemon starts and opens the port when it appears.
	RequirePorts bool    `yaml:"require_ports"`
	Loop         Loop    `yaml:"loop"`
	Ports        []Port  `yaml:"ports"`
	Sinks        []Sink  `yaml:"sinks"`
	Routes       []Route `yaml:"routes"`

	file  string
	lines map[string]int
}

// Log sets up logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // console or json
}

// Loop sizes the central event loop.
type Loop struct {
	Queue        int           `yaml:"queue"`         // hand-off queue capacity
	Workers      int           `yaml:"workers"`       // sink writes running at once
	OnFull       string        `yaml:"on_full"`       // block or fail
	BlockTimeout time.Duration `yaml:"block_timeout"` // with block: how long a read loop may wait
}

// Port is one serial port to read.
type Port struct {
	Name     string  `yaml:"name"`
	Path     string  `yaml:"path"`
	Baud     int     `yaml:"baud"`
	DataBits int     `yaml:"data_bits"`
	Parity   string  `yaml:"parity"`
	StopBits float64 `yaml:"stop_bits"`
	Framing  string  `yaml:"framing"`
	MaxFrame int     `yaml:"max_frame"`
	// SilenceTimeout reopens the port after this long without a byte; 0 is off.
	SilenceTimeout time.Duration `yaml:"silence_timeout"`
	// Validate checks every frame (a serialcb.ParseValidator spec such as
	// nmea or crc16-modbus); "" checks nothing.
	Validate string `yaml:"validate"`
	// OnInvalid is what happens to a frame that fails Validate: "drop" (the
	// default) or "sink:NAME", which sends it to that sink only, under the
	// port name InvalidPort returns. Without routes, such a sink gets no
	// valid frames.
	OnInvalid string `yaml:"on_invalid"`
}

// InvalidSink returns the sink named by on_invalid: sink:NAME, or "" when
// invalid frames are dropped.
func (p Port) InvalidSink() string {
	name, _ := strings.CutPrefix(p.OnInvalid, "sink:")
	if name == p.OnInvalid {
		return ""
	}
	return name
}

// InvalidPort is the port name invalid frames are routed under when
// on_invalid is sink:NAME: the port's name plus ".invalid".
func (p Port) InvalidPort() string { return p.Name + ".invalid" }

// Sink is one destination. URL takes the same spec as --sink; the block
// named after the URL's scheme (http, sqlite, file) holds the sink's own
// settings and is decoded strictly by the sink's package.
type Sink struct {
	Name        string    `yaml:"name"`
	URL         string    `yaml:"url"`
	Batch       Batch     `yaml:"batch"`
	Concurrency int       `yaml:"concurrency"`
	Queue       int       `yaml:"queue"`
	Retry       Retry     `yaml:"retry"`
	HTTP        yaml.Node `yaml:"http"`
	SQLite      yaml.Node `yaml:"sqlite"`
	File        yaml.Node `yaml:"file"`
}

// Batch bounds how frames are grouped into one write.
type Batch struct {
	Max    int           `yaml:"max"`
	Linger time.Duration `yaml:"linger"`
}

// Retry is the retry policy for retryable failures.
type Retry struct {
	Initial     time.Duration `yaml:"initial"`
	Max         time.Duration `yaml:"max"`
	MaxAttempts int           `yaml:"max_attempts"`
	MaxAge      time.Duration `yaml:"max_age"`
}

// Route sends the frames of some ports to some sinks.
type Route struct {
	Ports []string `yaml:"ports"` // empty: every port
	Sinks []string `yaml:"sinks"`
}

// Error is a configuration mistake with its place in the file.
type Error struct {
	File string
	Line int    // 0 when unknown
	Key  string // dotted path such as sinks[1].url
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads, expands and checks a configuration file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read config: %v", err)}
	}
	return Parse(path, data, os.LookupEnv)
}

// Parse decodes data strictly. Each ${NAME} or ${NAME:-default} in a value
// is replaced by lookup(NAME); an unset variable without a default is an
// error, so a missing secret stops the start instead of reaching a sink.
func Parse(file string, data []byte, lookup func(string) (string, bool)) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlSyntaxError(file, err)
	}
	c := &Config{file: file, lines: map[string]int{}}
	if len(doc.Content) == 0 {
		return nil, &Error{File: file, Msg: "config is empty: see `serialcbd validate --example` for a starting point"}
	}
	root := doc.Content[0]
	if err := expandEnv(file, root, lookup); err != nil {
		return nil, err
	}
	recordLines(root, "", c.lines)
	if err := decodeStrict(file, "", root, c); err != nil {
		var ce *Error
		if errors.As(err, &ce) && ce.Key == "" && ce.Line > 0 {
			ce.Key = c.keyAt(ce.Line)
		}
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// keyAt returns the deepest key path that starts on line.
func (c *Config) keyAt(line int) string {
	best := ""
	for p, l := range c.lines {
		if l == line && len(p) > len(best) {
			best = p
		}
	}
	return best
}

// File is the path the configuration was read from ("" for flags).
func (c *Config) File() string { return c.file }

// Pos returns the line of the key at path (e.g. "sinks[1].url"), or of its
// nearest enclosing key that is in the file, or 0.
func (c *Config) Pos(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := c.lines[p]; ok {
			return l
		}
	}
	return 0
}

// Errorf returns an *Error placed at the key path.
func (c *Config) Errorf(path, format string, args ...any) error {
	return &Error{File: c.file, Line: c.Pos(path), Key: path, Msg: fmt.Sprintf(format, args...)}
}

// DecodeBlock strictly decodes a sink's own settings block (Sink.HTTP,
// Sink.SQLite, Sink.File) into out, which holds the defaults. path names
// the block for errors, e.g. "sinks[0].http".
func (c *Config) DecodeBlock(path string, n *yaml.Node, out any) error {
	if n == nil || n.Kind == 0 {
		return nil
	}
	return decodeStrict(c.file, path, n, out)
}

// Validate checks the structure that does not need any other package.
func (c *Config) Validate() error {
	switch c.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		return c.Errorf("log.level", "unknown level %q (expected debug, info, warn or error)", c.Log.Level)
	}
	switch c.Log.Format {
	case "", "console", "json":
	default:
		return c.Errorf("log.format", "unknown format %q (expected console or json)", c.Log.Format)
	}
	switch c.Loop.OnFull {
	case "", "block", "fail":
	default:
		return c.Errorf("loop.on_full", "unknown policy %q (expected block or fail)", c.Loop.OnFull)
	}
	if c.Loop.Queue < 0 || c.Loop.Workers < 0 || c.Loop.BlockTimeout < 0 || c.DrainTimeout < 0 {
		return c.Errorf("loop", "sizes and timeouts must not be negative")
	}
	if len(c.Ports) == 0 {
		return c.Errorf("ports", "no ports: add at least one entry with name and path")
	}
	ports := map[string]bool{}
	for i, p := range c.Ports {
		key := fmt.Sprintf("ports[%d]", i)
		if err := c.checkName(key, "port", p.Name, ports); err != nil {
			return err
		}
		if p.Path == "" {
			return c.Errorf(key+".path", "missing: the device path, e.g. /dev/ttyUSB0 or /dev/serial/by-id/…")
		}
	}
	if len(c.Sinks) == 0 {
		return c.Errorf("sinks", "no sinks: add at least one entry with name and url (e.g. url: sqlite:./serialcbd.db)")
	}
	sinks := map[string]bool{}
	for i, s := range c.Sinks {
		key := fmt.Sprintf("sinks[%d]", i)
		if err := c.checkName(key, "sink", s.Name, sinks); err != nil {
			return err
		}
		if s.URL == "" {
			return c.Errorf(key+".url", "missing: a sink spec such as sqlite:PATH, http(s)://…, file:PATH or stdout")
		}
		if s.Batch.Max < 0 || s.Batch.Linger < 0 || s.Concurrency < 0 || s.Queue < 0 {
			return c.Errorf(key, "batch, concurrency and queue must not be negative")
		}
		if s.Retry.Initial < 0 || s.Retry.Max < 0 || s.Retry.MaxAttempts < 0 || s.Retry.MaxAge < 0 {
			return c.Errorf(key+".retry", "retry settings must not be negative")
		}
		for _, b := range []struct {
			name string
			node *yaml.Node
		}{{"http", &s.HTTP}, {"sqlite", &s.SQLite}, {"file", &s.File}} {
			if b.node.Kind != 0 && b.node.Kind != yaml.MappingNode {
				return c.Errorf(key+"."+b.name, "must be a mapping of settings")
			}
		}
	}
	if err := c.checkInvalid(ports); err != nil {
		return err
	}
	for i, r := range c.Routes {
		key := fmt.Sprintf("routes[%d]", i)
		for j, p := range r.Ports {
			if !ports[p] {
				return c.Errorf(fmt.Sprintf("%s.ports[%d]", key, j), "no port named %q (ports: %s)", p, strings.Join(names(c.Ports, func(p Port) string { return p.Name }), ", "))
			}
		}
		if len(r.Sinks) == 0 {
			return c.Errorf(key+".sinks", "missing: a route needs at least one sink")
		}
		for j, s := range r.Sinks {
			if !sinks[s] {
				return c.Errorf(fmt.Sprintf("%s.sinks[%d]", key, j), "no sink named %q (sinks: %s)", s, strings.Join(names(c.Sinks, func(s Sink) string { return s.Name }), ", "))
			}
		}
	}
	return nil
}

// checkInvalid checks on_invalid: drop or sink:NAME of an existing sink,
// only with validate, and a ".invalid" port name that is not taken. The
// validate spec itself is checked by serialcbd, which owns the validators.
func (c *Config) checkInvalid(ports map[string]bool) error {
	rejects := map[string]bool{}
	for i, p := range c.Ports {
		key := fmt.Sprintf("ports[%d].on_invalid", i)
		if p.OnInvalid == "" {
			continue
		}
		if p.Validate == "" {
			return c.Errorf(key, "needs validate: set a checksum spec such as validate: nmea")
		}
		if p.OnInvalid == "drop" {
			continue
		}
		name := p.InvalidSink()
		if name == "" {
			return c.Errorf(key, "%q: expected drop or sink:NAME", p.OnInvalid)
		}
		found := false
		for _, s := range c.Sinks {
			found = found || s.Name == name
		}
		if !found {
			return c.Errorf(key, "no sink named %q (sinks: %s)", name, strings.Join(names(c.Sinks, func(s Sink) string { return s.Name }), ", "))
		}
		if ports[p.InvalidPort()] {
			return c.Errorf(key, "invalid frames are routed as port %q, which is the name of another port: rename that port", p.InvalidPort())
		}
		rejects[name] = true
	}
	// Without routes, valid frames go to every sink but the on_invalid ones.
	if len(c.Routes) == 0 && len(rejects) > 0 && len(rejects) == len(c.Sinks) {
		return c.Errorf("sinks", "every sink is an on_invalid target, so valid frames would go nowhere: add a sink or a route")
	}
	return nil
}

// checkName checks the name of entry key (a port or a sink) and records it.
func (c *Config) checkName(key, kind, name string, seen map[string]bool) error {
	switch {
	case name == "":
		return c.Errorf(key+".name", "missing: every %s needs a name (it appears in records, routes and logs)", kind)
	case !validName(name):
		return c.Errorf(key+".name", "%q: use letters, digits, '-', '_' and '.' only", name)
	case seen[name]:
		return c.Errorf(key+".name", "duplicate %s name %q", kind, name)
	}
	seen[name] = true
	return nil
}

func names[T any](xs []T, name func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = name(x)
	}
	return out
}

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return s != ""
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}
