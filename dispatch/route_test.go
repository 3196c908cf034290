package dispatch_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/serialcb"
)

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }

// newRouted builds a dispatcher over sinks named a..e that is never
// started: enough for SinksFor.
func newRouted(t testing.TB, cfg dispatch.Config) *dispatch.Dispatcher {
	t.Helper()
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		cfg.Targets = append(cfg.Targets, dispatch.Target{Name: n, Sink: newScriptSink(nil)})
	}
	d, err := dispatch.New(asyncloop.New(asyncloop.Options{}), cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

type rf struct { // a frame for a routing case
	port, payload, fields string
}

func (r rf) frame() *serialcb.Frame {
	f := &serialcb.Frame{Port: r.port, Payload: []byte(r.payload)}
	if r.fields != "" {
		f.Fields = []byte(r.fields)
	}
	return f
}

func TestRouteMatching(t *testing.T) {
	portRules := []dispatch.Route{
		{Ports: []string{"gps"}, Sinks: []string{"a"}},
		{Ports: []string{"gps", "scale"}, Sinks: []string{"b", "a"}},
	}
	content := []dispatch.Route{
		{Ports: []string{"gps"}, Sinks: []string{"e"}},                                            // port only: continues
		{Prefix: []byte("\x02AL"), Sinks: []string{"a"}},                                          // content: stops
		{Regex: `^\$GP(GGA|RMC),`, Sinks: []string{"b"}},                                          // content: stops
		{Fields: map[string]string{"kind": "alarm", "code": "/^E[0-9]+$/"}, Sinks: []string{"c"}}, // both must hold
		{Ports: []string{"scale"}, Regex: "kg", Sinks: []string{"d"}, Continue: yes()},
		{Ports: []string{"scale"}, Sinks: []string{"c"}},
	}
	tests := []struct {
		name   string
		cfg    dispatch.Config
		frames map[rf][]string // frame → sinks, nil: dropped
	}{
		{"no routes: every sink", dispatch.Config{}, map[rf][]string{
			{port: "any"}: {"a", "b", "c", "d", "e"},
		}},
		{"port rules fan out to the union, as before rules", dispatch.Config{Routes: portRules}, map[rf][]string{
			{port: "gps"}:   {"a", "b"},
			{port: "scale"}: {"b", "a"},
			{port: "other"}: nil,
		}},
		{"content rules: first match decides", dispatch.Config{Routes: content}, map[rf][]string{
			{port: "gps", payload: "\x02ALARM"}:                  {"e", "a"},
			{port: "x", payload: "\x02ALARM"}:                    {"a"},
			{port: "x", payload: "\x02AB"}:                       nil,
			{port: "x", payload: "$GPGGA,1"}:                     {"b"},
			{port: "x", payload: "$GPGSV,1"}:                     nil,
			{port: "x", payload: "\x02AL $GPGGA,"}:               {"a"}, // stops at the prefix rule
			{port: "x", fields: `{"kind":"alarm","code":"E42"}`}: {"c"},
			{port: "x", fields: `{"kind":"alarm","code":"W42"}`}: nil,
			{port: "x", fields: `{"kind":"alarm"}`}:              nil, // a missing field does not match
			{port: "x", fields: `{"kind":"alarms","code":"E1"}`}: nil, // exact means exact
			{port: "scale", payload: "12 kg"}:                    {"d", "c"},
			{port: "scale", payload: "12 lb"}:                    {"c"},
		}},
		{"continue false on a port rule stops", dispatch.Config{Routes: []dispatch.Route{
			{Ports: []string{"gps"}, Sinks: []string{"a"}, Continue: no()},
			{Sinks: []string{"b"}},
		}}, map[rf][]string{
			{port: "gps"}:   {"a"},
			{port: "scale"}: {"b"},
		}},
		{"continue true on a content rule goes on", dispatch.Config{Routes: []dispatch.Route{
			{Prefix: []byte("!"), Sinks: []string{"a"}, Continue: yes()},
			{Prefix: []byte("!!"), Sinks: []string{"b"}},
			{Sinks: []string{"c", "a"}},
		}}, map[rf][]string{
			{payload: "!!x"}: {"a", "b"},
			{payload: "!x"}:  {"a", "c"},
			{payload: "x"}:   {"c", "a"},
		}},
		{"field values: numbers as JSON text", dispatch.Config{Routes: []dispatch.Route{
			{Fields: map[string]string{"code": "42", "ok": "true"}, Sinks: []string{"a"}},
		}}, map[rf][]string{
			{fields: `{"code":42,"ok":true}`}:   {"a"},
			{fields: `{"code":"42","ok":true}`}: {"a"},
			{fields: `{"code":43,"ok":true}`}:   nil,
			{fields: `not json`}:                nil,
		}},
		{"default sinks take what no rule matched", dispatch.Config{
			Routes:       []dispatch.Route{{Regex: "^ERR", Sinks: []string{"a"}}},
			DefaultSinks: []string{"b", "c"},
		}, map[rf][]string{
			{payload: "ERR 1"}: {"a"},
			{payload: "ok"}:    {"b", "c"},
		}},
		{"default sinks without routes", dispatch.Config{DefaultSinks: []string{"d"}}, map[rf][]string{
			{port: "gps"}: {"d"},
		}},
		{"unrouted sink", dispatch.Config{
			Routes:       []dispatch.Route{{Ports: []string{"gps"}, Sinks: []string{"a"}}},
			UnroutedSink: "e",
		}, map[rf][]string{
			{port: "gps"}:   {"a"},
			{port: "scale"}: {"e"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newRouted(t, tt.cfg)
			for in, want := range tt.frames {
				for range 2 { // the second time from the caches
					if got := d.SinksFor(in.frame()); !slices.Equal(got, want) {
						t.Errorf("%+v: sinks %q, want %q", in, got, want)
					}
				}
			}
		})
	}
}

// Past 64 rules the union of matching rules is built without the cache.
func TestRouteManyRules(t *testing.T) {
	var routes []dispatch.Route
	for i := range 70 {
		routes = append(routes, dispatch.Route{Prefix: []byte(fmt.Sprint(i % 7)), Sinks: []string{string(rune('a' + i%5))}, Continue: yes()})
	}
	d := newRouted(t, dispatch.Config{Routes: routes})
	// Prefix "3": rules 3, 10, 17, ...; sinks a+(i%5): d, a, c, e, b in that order.
	if got, want := d.SinksFor(&serialcb.Frame{Payload: []byte("3")}), []string{"d", "a", "c", "e", "b"}; !slices.Equal(got, want) {
		t.Errorf("sinks %q, want %q", got, want)
	}
}

func TestNewRejectsBadRoutes(t *testing.T) {
	tests := []struct {
		name string
		cfg  dispatch.Config
		want string
	}{
		{"unknown sink", dispatch.Config{Routes: []dispatch.Route{{Sinks: []string{"zz"}}}}, `route 0: no sink named "zz"`},
		{"no sinks", dispatch.Config{Routes: []dispatch.Route{{Ports: []string{"gps"}}}}, "route 0: no sinks"},
		{"bad regex", dispatch.Config{Routes: []dispatch.Route{{Regex: "(", Sinks: []string{"a"}}}}, "route 0: regex: error parsing regexp: missing closing )"},
		{"bad field regex", dispatch.Config{Routes: []dispatch.Route{{Fields: map[string]string{"k": "/[/"}, Sinks: []string{"a"}}}}, "route 0: field k: error parsing regexp: missing closing ]"},
		{"unknown default sink", dispatch.Config{DefaultSinks: []string{"zz"}}, `default route: no sink named "zz"`},
		{"unknown unrouted sink", dispatch.Config{Routes: []dispatch.Route{{Sinks: []string{"a"}}}, UnroutedSink: "zz"}, `unrouted sink: no sink named "zz"`},
		{"unrouted sink with default", dispatch.Config{DefaultSinks: []string{"a"}, UnroutedSink: "b"}, "would get no frame"},
		{"unrouted sink without routes", dispatch.Config{UnroutedSink: "b"}, "would get no frame"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Targets = []dispatch.Target{{Name: "a", Sink: newScriptSink(nil)}, {Name: "b", Sink: newScriptSink(nil)}}
			_, err := dispatch.New(asyncloop.New(asyncloop.Options{}), cfg, zap.NewNop())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// Frames reach exactly the sinks their rules name, through real lanes.
func TestRouteDelivery(t *testing.T) {
	sinks := map[string]*scriptSink{}
	var targets []dispatch.Target
	for _, n := range []string{"archive", "alarms", "positions", "rest"} {
		sinks[n] = newScriptSink(nil)
		targets = append(targets, dispatch.Target{Name: n, Sink: sinks[n], Options: dispatch.Options{MaxBatch: 8}})
	}
	fx := start(t, zap.NewNop(), dispatch.Config{
		Targets: targets,
		Routes: []dispatch.Route{
			{Ports: []string{"gps"}, Sinks: []string{"archive"}},
			{Prefix: []byte("\x02"), Sinks: []string{"alarms"}},
			{Ports: []string{"gps"}, Regex: `^\$GPGGA,`, Sinks: []string{"positions"}},
		},
		DefaultSinks: []string{"rest"},
	})
	want := map[string]map[serialcb.ID]bool{"archive": {}, "alarms": {}, "positions": {}, "rest": {}}
	var futs []*asyncloop.Future[dispatch.Receipt]
	submit := func(port, payload string, to ...string) {
		f := fx.frame(port)
		f.Payload = []byte(payload)
		futs = append(futs, fx.d.Submit(f))
		for _, s := range to {
			want[s][f.ID] = true
		}
	}
	for i := range 50 {
		submit("gps", fmt.Sprintf("$GPGGA,%d", i), "archive", "positions")
		submit("gps", fmt.Sprintf("$GPGSV,%d", i), "archive")
		submit("gps", "\x02ALARM", "archive", "alarms")
		submit("scale", "\x02ALARM", "alarms")
		submit("scale", fmt.Sprintf("%d kg", i), "rest")
	}
	ok, errs := results(t, futs)
	if err := fx.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if ok != len(futs) || len(errs) > 0 {
		t.Fatalf("ok %d of %d, errors %v", ok, len(futs), errs)
	}
	for name, s := range sinks {
		s.mu.Lock()
		got := map[serialcb.ID]bool{}
		for id := range s.delivered {
			got[id] = true
		}
		s.mu.Unlock()
		if len(got) != len(want[name]) {
			t.Errorf("sink %s got %d frames, want %d", name, len(got), len(want[name]))
		}
		for id := range want[name] {
			if !got[id] {
				t.Errorf("sink %s lacks frame %s", name, id)
				break
			}
		}
	}
	if st := fx.d.Stats(); st.Unrouted != 0 || st.Delivered != uint64(len(futs)) || st.Failed != 0 {
		t.Errorf("stats %+v", st)
	}
}

// Frames no rule matches are counted; without an unrouted sink they are
// dropped (ErrUnrouted, not a failure) with one log line per interval.
func TestUnroutedDropped(t *testing.T) {
	a := newScriptSink(nil)
	core, logs := observer.New(zap.WarnLevel)
	fx := start(t, zap.New(core), dispatch.Config{
		Targets: []dispatch.Target{{Name: "a", Sink: a}},
		Routes:  []dispatch.Route{{Regex: "^keep", Sinks: []string{"a"}}},
	})
	var keep, drop []*asyncloop.Future[dispatch.Receipt]
	for i := range 20 {
		f := fx.frame("gps")
		f.Payload = []byte(fmt.Sprintf("keep %d", i))
		keep = append(keep, fx.d.Submit(f))
		g := fx.frame("gps")
		g.Payload = []byte(fmt.Sprintf("other %d", i))
		drop = append(drop, fx.d.Submit(g))
	}
	okKeep, errsKeep := results(t, keep)
	okDrop, errsDrop := results(t, drop)
	if err := fx.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if okKeep != 20 || len(errsKeep) != 0 {
		t.Errorf("kept frames: ok %d, errors %v", okKeep, errsKeep)
	}
	if okDrop != 0 || len(errsDrop) != 20 || !errors.Is(errsDrop[0], dispatch.ErrUnrouted) {
		t.Errorf("dropped frames: ok %d, errors %v", okDrop, errsDrop)
	}
	if n, _ := a.count(); n != 20 {
		t.Errorf("sink got %d frames, want 20", n)
	}
	st := fx.d.Stats()
	if st.Submitted != 40 || st.Delivered != 20 || st.Failed != 0 || st.Unrouted != 20 {
		t.Errorf("stats %+v: want 40 submitted, 20 delivered, 0 failed, 20 unrouted", st)
	}
	if n := logs.FilterMessageSnippet("no route matches").Len(); n != 1 {
		t.Errorf("%d log lines about unrouted frames, want 1 (rate-limited)", n)
	}
}

func TestUnroutedSink(t *testing.T) {
	a, u := newScriptSink(nil), newScriptSink(nil)
	fx := start(t, zap.NewNop(), dispatch.Config{
		Targets:      []dispatch.Target{{Name: "a", Sink: a}, {Name: "u", Sink: u}},
		Routes:       []dispatch.Route{{Ports: []string{"gps"}, Sinks: []string{"a"}}},
		UnroutedSink: "u",
	})
	futs := append(fx.submit("gps", 10), fx.submit("scale", 7)...)
	if ok, errs := results(t, futs); ok != 17 {
		t.Fatalf("ok %d, errors %v", ok, errs)
	}
	if err := fx.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if n, _ := a.count(); n != 10 {
		t.Errorf("a got %d frames, want 10", n)
	}
	if n, _ := u.count(); n != 7 {
		t.Errorf("unrouted sink got %d frames, want 7", n)
	}
	if st := fx.d.Stats(); st.Unrouted != 7 || st.Delivered != 17 {
		t.Errorf("stats %+v: want 7 unrouted, 17 delivered", st)
	}
}

var benchRoutes = map[string]dispatch.Config{
	"ports": {Routes: []dispatch.Route{
		{Ports: []string{"p0", "p1"}, Sinks: []string{"a"}},
		{Ports: []string{"gps"}, Sinks: []string{"b"}},
		{Sinks: []string{"c"}},
	}},
	"prefix": {Routes: []dispatch.Route{
		{Ports: []string{"gps"}, Sinks: []string{"a"}},
		{Prefix: []byte("$GPRMC"), Sinks: []string{"b"}},
		{Prefix: []byte("$GPGGA"), Sinks: []string{"c"}},
	}, DefaultSinks: []string{"d"}},
	"regex": {Routes: []dispatch.Route{
		{Regex: `^\$GP(RMC|GGA),`, Sinks: []string{"b"}},
	}, DefaultSinks: []string{"d"}},
	"fields": {Routes: []dispatch.Route{
		{Fields: map[string]string{"kind": "fix"}, Sinks: []string{"b"}},
	}, DefaultSinks: []string{"d"}},
}

var benchFrame = serialcb.Frame{
	Port:    "gps",
	Payload: []byte("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"),
	Fields:  []byte(`{"kind":"fix","sats":8}`),
}

// Rules on ports and prefixes cost no allocation per frame.
func TestRouteAllocs(t *testing.T) {
	for _, name := range []string{"ports", "prefix"} {
		d := newRouted(t, benchRoutes[name])
		f := benchFrame
		if n := testing.AllocsPerRun(1000, func() { _ = d.SinksFor(&f) }); n != 0 {
			t.Errorf("%s: %.1f allocations per frame, want 0", name, n)
		}
	}
}

// BenchmarkRoute measures the routing decision for one 66-byte NMEA frame.
func BenchmarkRoute(b *testing.B) {
	for _, name := range []string{"ports", "prefix", "regex", "fields"} {
		b.Run(name, func(b *testing.B) {
			d := newRouted(b, benchRoutes[name])
			f := benchFrame
			b.ReportAllocs()
			for b.Loop() {
				if d.SinksFor(&f) == nil {
					b.Fatal("unrouted")
				}
			}
		})
	}
}
