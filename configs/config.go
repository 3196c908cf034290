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
	"maps"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

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
	RequirePorts bool `yaml:"require_ports"`
	// StateDir holds each sink's spool and dead letters:
	// STATE_DIR/SINK/spool/ and STATE_DIR/SINK/dead.jsonl. Parse sets
	// DefaultStateDir when the file has no state_dir; "" (a Config built
	// in code) means no spool.
	StateDir string  `yaml:"state_dir"`
	Spool    Spool   `yaml:"spool"`
	Loop     Loop    `yaml:"loop"`
	Ports    []Port  `yaml:"ports"`
	Sinks    []Sink  `yaml:"sinks"`
	Routes   []Route `yaml:"routes"`
	// RoutesDefault names the sinks of the frames no route matches.
	RoutesDefault []string `yaml:"routes_default"`
	// UnroutedSink, without routes_default, gets the frames no route
	// matches; without either, such frames are dropped. Both count them.
	UnroutedSink string `yaml:"unrouted_sink"`

	file  string
	lines map[string]int
}

// DefaultStateDir is state_dir when the config file does not set it.
const DefaultStateDir = "./serialcbd-state"

// Spool configures the per-sink on-disk spools.
type Spool struct {
	// Enabled is true unless set to false: then frames wait for their
	// sinks in memory only, and a crash or an outage longer than the
	// queues loses them.
	Enabled *bool `yaml:"enabled"`
	// Sync is when appended frames are fsynced: batch (every group commit),
	// interval (every SyncEvery; the default) or none (the kernel decides).
	Sync      string        `yaml:"sync"`
	SyncEvery time.Duration `yaml:"sync_every"`
	// MaxBytes caps each sink's spool on disk, e.g. 512MiB or 2GB; 0 is no
	// cap but the disk. Default DefaultSpoolMaxBytes.
	MaxBytes *ByteSize `yaml:"max_bytes"`
	// OnFull is drop-oldest (the default: the oldest frames are deleted,
	// counted and logged) or block (reading pauses until there is room).
	OnFull string `yaml:"on_full"`
}

// DefaultSpoolMaxBytes caps a sink's spool when max_bytes is not set.
const DefaultSpoolMaxBytes = 1 << 30

// On reports whether spools are enabled.
func (s Spool) On() bool { return s.Enabled == nil || *s.Enabled }

// ByteSize is a size in bytes written as an integer or with a unit:
// 4096, 64KiB, 512MiB, 2GiB, 1GB.
type ByteSize int64

// UnmarshalYAML parses a size with an optional unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// ParseByteSize parses "4096", "64KiB", "512MiB", "2GiB", "1GB", "10MB", "1kB".
func ParseByteSize(s string) (ByteSize, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range units {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q: expected a number of bytes with an optional unit (KiB, MiB, GiB, kB, MB, GB), e.g. 512MiB", s)
	}
	return ByteSize(n * mult), nil
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
	// PartialAtStop is what a stop does with a frame in progress: emit
	// (deliver it) or drop; default emit for idle framing, drop otherwise.
	PartialAtStop string `yaml:"partial_at_stop"`
	// Validate checks every frame (a serialcb.ParseValidator spec such as
	// nmea or crc16-modbus); "" checks nothing.
	Validate string `yaml:"validate"`
	// OnInvalid is what happens to a frame that fails Validate: "drop" (the
	// default) or "sink:NAME", which sends it to that sink only, under the
	// port name InvalidPort returns. Without routes, such a sink gets no
	// valid frames.
	OnInvalid string `yaml:"on_invalid"`
	// Decode names the fields of every valid frame (a decode.Parse spec
	// such as nmea, csv:ms,temp or regex:EXPR); they travel with the frame
	// as "fields". A frame the decoder cannot read keeps its payload,
	// without fields. "" decodes nothing. The spec is checked by
	// serialcbd, which owns the decoders, at ports[i].decode.
	Decode string `yaml:"decode"`
	// Poll lists requests the daemon sends on a schedule, each reply
	// matched to its request (see Poll).
	Poll []Poll `yaml:"poll"`
	// Write lets brokers and HTTP write to the port; nil: no writes.
	Write *PortWrite `yaml:"write"`
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
	Postgres    yaml.Node `yaml:"postgres"`
	MQTT        yaml.Node `yaml:"mqtt"`
	NATS        yaml.Node `yaml:"nats"`
	Kafka       yaml.Node `yaml:"kafka"`
	AMQP        yaml.Node `yaml:"amqp"`
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

// Route is one routing rule. Rules are tried in order; a frame matches
// when every condition given holds (none given: every frame) and goes to
// Sinks. See dispatch.Route for the semantics.
type Route struct {
	Ports []string `yaml:"ports"` // port names; empty: every port
	// Prefix: the payload starts with these bytes. Escapes \xNN (one
	// byte), \r, \n, \t, \\, \NNN and \uNNNN are read by serialcbd, so
	// write it in single quotes, e.g. '\x02AL'.
	Prefix string `yaml:"prefix"`
	// Regex: a Go (RE2) regular expression found in the payload.
	Regex string `yaml:"regex"`
	// Fields: decoded field NAME equals the value, or matches it when the
	// value is a regular expression between slashes ("/^E[0-9]+$/").
	Fields map[string]string `yaml:"fields"`
	Sinks  []string          `yaml:"sinks"`
	// Continue: try the next rules after a match too. Default: true for a
	// rule with ports only (or no conditions), false for one with prefix,
	// regex or fields.
	Continue *bool `yaml:"continue"`
}

// PrefixBytes returns Prefix with its escapes read.
func (r Route) PrefixBytes() ([]byte, error) { return unescape(r.Prefix, "") }

// unescape reads the escapes \r \n \t \\ \xNN \NNN \uNNNN of s (\xNN is
// one byte); hint ends the message of a bad escape's error.
func unescape(s, hint string) ([]byte, error) {
	var b []byte
	for s != "" {
		if s[0] != '\\' {
			b = append(b, s[0])
			s = s[1:]
			continue
		}
		c, multibyte, tail, err := strconv.UnquoteChar(s, '"')
		if err != nil {
			return nil, errors.New(`bad escape: valid are \r \n \t \\ \xNN \NNN \uNNNN` + hint)
		}
		if multibyte {
			b = utf8.AppendRune(b, c)
		} else {
			b = append(b, byte(c))
		}
		s = tail
	}
	return b, nil
}

// checkRoutes checks routes, routes_default and unrouted_sink against the
// names of the ports and sinks.
func (c *Config) checkRoutes(ports, sinks map[string]bool) error {
	portNames := func() string { return strings.Join(names(c.Ports, func(p Port) string { return p.Name }), ", ") }
	checkSinks := func(key string, list []string) error {
		for j, s := range list {
			if !sinks[s] {
				return c.Errorf(fmt.Sprintf("%s[%d]", key, j), "no sink named %q (sinks: %s)", s, strings.Join(names(c.Sinks, func(s Sink) string { return s.Name }), ", "))
			}
		}
		return nil
	}
	catchAll := false
	for i, r := range c.Routes {
		key := fmt.Sprintf("routes[%d]", i)
		for j, p := range r.Ports {
			if !ports[p] {
				return c.Errorf(fmt.Sprintf("%s.ports[%d]", key, j), "no port named %q (ports: %s)", p, portNames())
			}
		}
		if _, err := r.PrefixBytes(); err != nil {
			return c.Errorf(key+".prefix", "%v", err)
		}
		if r.Regex != "" {
			if _, err := regexp.Compile(r.Regex); err != nil {
				return c.Errorf(key+".regex", "bad regular expression (Go RE2 syntax): %v", err)
			}
		}
		for _, name := range slices.Sorted(maps.Keys(r.Fields)) {
			v, fkey := r.Fields[name], key+".fields."+name
			if name == "" {
				return c.Errorf(key+".fields", "a field name is empty")
			}
			if len(v) >= 2 && v[0] == '/' && v[len(v)-1] == '/' {
				if _, err := regexp.Compile(v[1 : len(v)-1]); err != nil {
					return c.Errorf(fkey, "bad regular expression (Go RE2 syntax) between the slashes: %v", err)
				}
			}
		}
		if len(r.Sinks) == 0 {
			return c.Errorf(key+".sinks", "missing: a route needs at least one sink")
		}
		if err := checkSinks(key+".sinks", r.Sinks); err != nil {
			return err
		}
		catchAll = catchAll || len(r.Ports) == 0 && r.Prefix == "" && r.Regex == "" && len(r.Fields) == 0
	}
	if err := checkSinks("routes_default", c.RoutesDefault); err != nil {
		return err
	}
	if u := c.UnroutedSink; u != "" {
		if !sinks[u] {
			return c.Errorf("unrouted_sink", "no sink named %q (sinks: %s)", u, strings.Join(names(c.Sinks, func(s Sink) string { return s.Name }), ", "))
		}
		switch {
		case len(c.RoutesDefault) > 0:
			return c.Errorf("unrouted_sink", "%q would get no frame: routes_default takes every frame no route matches (keep one of the two)", u)
		case len(c.Routes) == 0:
			return c.Errorf("unrouted_sink", "%q would get no frame: without routes every frame goes to every sink", u)
		case catchAll:
			return c.Errorf("unrouted_sink", "%q would get no frame: a route with no conditions matches every frame", u)
		}
	}
	return nil
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
	data, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data, os.LookupEnv)
}

// Parse decodes data strictly. Each ${NAME} or ${NAME:-default} in a value
// is replaced by lookup(NAME); an unset variable without a default is an
// error, so a missing secret stops the start instead of reaching a sink.
func Parse(file string, data []byte, lookup func(string) (string, bool)) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, sizeError(file, int64(len(data)))
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlSyntaxError(file, err)
	}
	c := &Config{file: file, lines: map[string]int{}}
	if len(doc.Content) == 0 {
		return nil, &Error{File: file, Msg: "config is empty: see `serialcbd validate --example` for a starting point"}
	}
	root := doc.Content[0]
	if err := checkCounts(file, root); err != nil {
		return nil, err
	}
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
	if _, set := c.lines["state_dir"]; !set {
		c.StateDir = DefaultStateDir
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

func (c *Config) checkSpool() error {
	switch c.Spool.Sync {
	case "", "batch", "interval", "none":
	default:
		return c.Errorf("spool.sync", "unknown sync policy %q (expected batch, interval or none)", c.Spool.Sync)
	}
	switch c.Spool.OnFull {
	case "", "drop-oldest", "block":
	default:
		return c.Errorf("spool.on_full", "unknown policy %q (expected drop-oldest or block)", c.Spool.OnFull)
	}
	if c.Spool.SyncEvery < 0 {
		return c.Errorf("spool.sync_every", "must not be negative")
	}
	if m := c.Spool.MaxBytes; m != nil && (*m < 0 || *m > 0 && *m < 1<<20) {
		return c.Errorf("spool.max_bytes", "%d bytes is too small: give 0 (no cap) or at least 1MiB", *m)
	}
	return nil
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
	if err := c.checkSpool(); err != nil {
		return err
	}
	if err := c.checkMetricsAddr(); err != nil {
		return err
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
		if a := p.PartialAtStop; a != "" && a != "emit" && a != "drop" {
			return c.Errorf(key+".partial_at_stop", "%q: expected emit or drop", a)
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
	if err := c.checkTwoWay(); err != nil {
		return err
	}
	if err := c.checkInvalid(ports); err != nil {
		return err
	}
	return c.checkRoutes(ports, sinks)
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
	if len(c.Routes) == 0 && len(c.RoutesDefault) == 0 && len(rejects) > 0 && len(rejects) == len(c.Sinks) {
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
	return s != "" && s != "." && s != ".." // a sink's name is a directory of state_dir
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}
