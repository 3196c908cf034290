package dispatch

import (
	"bytes"
	"fmt"
	"maps"
	"math/bits"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/serialcb"
)

// Route is one routing rule. Rules are tried in order; a frame matches a
// rule when every condition the rule gives holds (a rule with none matches
// every frame), and then goes to the rule's Sinks. Whether the next rules
// are tried too is Continue's business. A frame that matches no rule goes
// to Config.DefaultSinks, else to Config.UnroutedSink, else nowhere.
type Route struct {
	// Ports are the port names the rule applies to; empty: every port.
	Ports []string
	// Prefix: the payload starts with these bytes.
	Prefix []byte
	// Regex: an RE2 expression (Go regexp syntax) that matches somewhere
	// in the payload; anchor it with ^ and $ to match all of it.
	Regex string
	// Fields: each named field of the frame (serialcb.Frame.Field) exists
	// and equals the value, or matches it when the value is a regular
	// expression between slashes, such as "/^E[0-9]+$/".
	Fields map[string]string
	// Sinks are the names of the sinks a matching frame goes to.
	Sinks []string
	// Continue says whether the rules after this one are tried when this
	// one matched (the frame then goes to the union of the sinks of every
	// rule that matched). nil takes the default: true for a rule that looks
	// at ports only (or at nothing), so that port rules fan out to the
	// union of their sinks; false for a rule with Prefix, Regex or Fields,
	// so that the first content rule that matches decides.
	Continue *bool
}

// inspectsContent reports whether r looks at the payload or the fields.
func (r *Route) inspectsContent() bool {
	return len(r.Prefix) > 0 || r.Regex != "" || len(r.Fields) > 0
}

// continues resolves Continue's default.
func (r *Route) continues() bool {
	if r.Continue != nil {
		return *r.Continue
	}
	return !r.inspectsContent()
}

// fieldPattern returns the regular expression of a Route.Fields value
// written between slashes ("/re/"), or ok false for an exact value.
func fieldPattern(value string) (expr string, ok bool) {
	if len(value) >= 2 && value[0] == '/' && value[len(value)-1] == '/' {
		return value[1 : len(value)-1], true
	}
	return "", false
}

// dest is where a frame goes: a set of lanes and their sink names, shared
// by every frame routed the same way (never modified once built).
type dest struct {
	lanes    []*lane
	names    []string
	unrouted bool // no rule matched: count the frame
}

type fieldCond struct {
	name, value string
	re          *regexp.Regexp // nil: value must be equal
}

type rule struct {
	ports  []string
	prefix []byte
	re     *regexp.Regexp
	fields []fieldCond
	cont   bool
	dest   *dest
}

// maxUnions bounds the cache of sink sets made of several matching rules.
const maxUnions = 1024

// router holds the compiled routes. It is immutable after newRouter but
// for its caches and counters, so any goroutine may use it.
type router struct {
	rules    []rule
	all      *dest // non-nil: no routing configured, every frame to every sink
	fallback *dest // frames no rule matched
	// static: no rule looks at the payload or fields, so a frame's sinks
	// depend on its port only and are cached per port.
	static bool
	byPort sync.Map // port → *dest

	unionMu sync.Mutex
	unions  atomic.Pointer[map[uint64]*dest] // matched-rules mask → sink set; copy on write

	unrouted atomic.Uint64
	dropLog  limiter
}

// newRouter checks and compiles cfg's routes against the lanes.
func newRouter(cfg Config, lanes []*lane, byName map[string]*lane) (*router, error) {
	rt := &router{}
	mk := func(names []string, what string) (*dest, error) {
		ds := &dest{}
		for _, s := range names {
			l := byName[s]
			if l == nil {
				return nil, fmt.Errorf("dispatch: %s: no sink named %q", what, s)
			}
			if !slices.Contains(ds.lanes, l) {
				ds.lanes = append(ds.lanes, l)
				ds.names = append(ds.names, s)
			}
		}
		return ds, nil
	}
	if len(cfg.Routes) == 0 && len(cfg.DefaultSinks) == 0 {
		if cfg.UnroutedSink != "" {
			return nil, fmt.Errorf("dispatch: unrouted sink %q would get no frame: without routes every frame goes to every sink", cfg.UnroutedSink)
		}
		rt.all = &dest{lanes: lanes}
		for _, l := range lanes {
			rt.all.names = append(rt.all.names, l.name)
		}
		return rt, nil
	}
	rt.static = true
	for i := range cfg.Routes {
		r := &cfg.Routes[i]
		what := fmt.Sprintf("route %d", i)
		if len(r.Sinks) == 0 {
			return nil, fmt.Errorf("dispatch: %s: no sinks", what)
		}
		ds, err := mk(r.Sinks, what)
		if err != nil {
			return nil, err
		}
		ru := rule{ports: r.Ports, prefix: r.Prefix, cont: r.continues(), dest: ds}
		if r.Regex != "" {
			if ru.re, err = regexp.Compile(r.Regex); err != nil {
				return nil, fmt.Errorf("dispatch: %s: regex: %w", what, err)
			}
		}
		for _, name := range slices.Sorted(maps.Keys(r.Fields)) {
			fc := fieldCond{name: name, value: r.Fields[name]}
			if expr, ok := fieldPattern(fc.value); ok {
				if fc.re, err = regexp.Compile(expr); err != nil {
					return nil, fmt.Errorf("dispatch: %s: field %s: %w", what, name, err)
				}
			}
			ru.fields = append(ru.fields, fc)
		}
		rt.static = rt.static && !r.inspectsContent()
		rt.rules = append(rt.rules, ru)
	}
	switch {
	case len(cfg.DefaultSinks) > 0:
		if cfg.UnroutedSink != "" {
			return nil, fmt.Errorf("dispatch: unrouted sink %q would get no frame: the default sinks take every frame no route matches", cfg.UnroutedSink)
		}
		ds, err := mk(cfg.DefaultSinks, "default route")
		if err != nil {
			return nil, err
		}
		rt.fallback = ds
	case cfg.UnroutedSink != "":
		ds, err := mk([]string{cfg.UnroutedSink}, "unrouted sink")
		if err != nil {
			return nil, err
		}
		ds.unrouted = true
		rt.fallback = ds
	default:
		rt.fallback = &dest{unrouted: true}
	}
	return rt, nil
}

// match returns where f goes. It allocates nothing for rules on ports and
// prefixes; regular expressions and fields cost what they cost.
func (rt *router) match(f *serialcb.Frame) *dest {
	if rt.all != nil {
		return rt.all
	}
	if !rt.static {
		return rt.eval(f)
	}
	if ds, ok := rt.byPort.Load(f.Port); ok {
		return ds.(*dest)
	}
	ds := rt.eval(f)
	rt.byPort.Store(f.Port, ds)
	return ds
}

func (rt *router) eval(f *serialcb.Frame) *dest {
	var mask uint64
	var last *dest
	var beyond []int // matched rules past the 64 a mask holds (rare)
	matched := 0
	for i := range rt.rules {
		ru := &rt.rules[i]
		if !ru.matches(f) {
			continue
		}
		matched++
		last = ru.dest
		if i < 64 {
			mask |= 1 << i
		} else {
			beyond = append(beyond, i)
		}
		if !ru.cont {
			break
		}
	}
	switch {
	case matched == 0:
		return rt.fallback
	case matched == 1:
		return last
	case beyond == nil:
		return rt.union(mask)
	}
	return rt.build(mask, beyond)
}

func (ru *rule) matches(f *serialcb.Frame) bool {
	if len(ru.ports) > 0 && !contains(ru.ports, f.Port) {
		return false
	}
	if !bytes.HasPrefix(f.Payload, ru.prefix) {
		return false
	}
	if ru.re != nil && !ru.re.Match(f.Payload) {
		return false
	}
	for i := range ru.fields {
		fc := &ru.fields[i]
		v, ok := f.Field(fc.name)
		if !ok {
			return false
		}
		if fc.re != nil {
			if !fc.re.MatchString(v) {
				return false
			}
		} else if v != fc.value {
			return false
		}
	}
	return true
}

// union returns the sink set of the rules in mask, cached.
func (rt *router) union(mask uint64) *dest {
	if m := rt.unions.Load(); m != nil {
		if ds, ok := (*m)[mask]; ok {
			return ds
		}
	}
	ds := rt.build(mask, nil)
	rt.unionMu.Lock()
	defer rt.unionMu.Unlock()
	old := rt.unions.Load()
	if old != nil && len(*old) >= maxUnions {
		return ds // bounded: past the cap, build each time
	}
	m := make(map[uint64]*dest, 1+len(deref(old)))
	for k, v := range deref(old) {
		m[k] = v
	}
	m[mask] = ds
	rt.unions.Store(&m)
	return ds
}

func deref(m *map[uint64]*dest) map[uint64]*dest {
	if m == nil {
		return nil
	}
	return *m
}

// build makes the union, in rule order, of the sinks of the rules in mask
// and beyond.
func (rt *router) build(mask uint64, beyond []int) *dest {
	ds := &dest{}
	add := func(i int) {
		for j, l := range rt.rules[i].dest.lanes {
			if !slices.Contains(ds.lanes, l) {
				ds.lanes = append(ds.lanes, l)
				ds.names = append(ds.names, rt.rules[i].dest.names[j])
			}
		}
	}
	for m := mask; m != 0; m &= m - 1 {
		add(bits.TrailingZeros64(m))
	}
	for _, i := range beyond {
		add(i)
	}
	return ds
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}

// route returns the lanes f goes to, counting it when no rule matched; nil
// when it goes nowhere. Called once per frame, by Submit.
func (d *Dispatcher) route(f *serialcb.Frame) []*lane {
	ds := d.routes.match(f)
	if ds.unrouted {
		d.routes.unrouted.Add(1)
	}
	return ds.lanes
}

// drop settles the future of a frame that no route matched and no unrouted
// sink takes: it fails with ErrUnrouted, is counted in Stats.Unrouted (not
// in Failed: the routes said so), and is logged at a limited rate.
func (d *Dispatcher) drop(f *serialcb.Frame) *asyncloop.Future[Receipt] {
	fut := asyncloop.NewFuture[Receipt](d.loop)
	fut.Resolve(Receipt{ID: f.ID, Port: f.Port, Seq: f.Seq}, fmt.Errorf("port %q: %w", f.Port, ErrUnrouted))
	_ = fut.Err() // counted and logged here; callers may ignore the future
	if ok, more := d.routes.dropLog.allow(time.Now()); ok {
		d.log.Warn("frame dropped: no route matches it (a default route or an unrouted sink would keep such frames)",
			zap.Stringer("id", f.ID), zap.String("port", f.Port), zap.Uint64("seq", f.Seq),
			zap.Int("more_since_last_report", more))
	}
	return fut
}

// SinksFor returns the names of the sinks Submit would send f to, in rule
// order, without submitting or counting it; nil when f would be dropped as
// unrouted. The slice is shared: do not modify it. It is for tools that
// show what a configuration does and for tests.
func (d *Dispatcher) SinksFor(f *serialcb.Frame) []string {
	return d.routes.match(f).names
}
