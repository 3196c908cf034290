package mqttsink

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/serialcb"
)

// waitLimit bounds every wait of the integration tests: a safety net that
// turns a hang into a failure, not a timed assertion.
const waitLimit = 2 * time.Minute

// topicPrefix is unique per test (and run), so tests sharing the broker
// never see each other's messages.
func topicPrefix(t testing.TB) string {
	return fmt.Sprintf("serialcbd-test/%s/%d", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano())
}

// subscriber is a separate Paho client subscribed at QoS 1 to prefix/#. It
// keys each message with key and counts the deliveries of each key.
type subscriber struct {
	client mqtt.Client
	key    func(mqtt.Message) (string, error)

	mu      sync.Mutex
	got     map[string]int    // key → deliveries
	bodies  map[string][]byte // key → last body
	bad     []error
	want    map[string]bool // keys waited for, not yet received
	allSeen chan struct{}   // closed when want empties
}

// subscribe connects a subscriber. A non-empty clientID makes a persistent
// session (clean_session false) that survives broker restarts.
func subscribe(t *testing.T, addr, topic, clientID string, key func(mqtt.Message) (string, error)) *subscriber {
	t.Helper()
	sub := &subscriber{key: key, got: map[string]int{}, bodies: map[string][]byte{}}
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).
		SetProtocolVersion(4).
		SetOrderMatters(false).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(500 * time.Millisecond).
		SetConnectRetry(false)
	if clientID != "" {
		opts.SetClientID(clientID).SetCleanSession(false).SetResumeSubs(true)
	} else {
		opts.SetClientID(fmt.Sprintf("sub-%d", time.Now().UnixNano())).SetCleanSession(true)
	}
	sub.client = mqtt.NewClient(opts)
	if tok := sub.client.Connect(); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	t.Cleanup(func() { sub.client.Disconnect(250) })
	if tok := sub.client.Subscribe(topic, 1, sub.handle); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", topic, tok.Error())
	}
	return sub
}

func (s *subscriber) handle(_ mqtt.Client, m mqtt.Message) {
	k, err := s.key(m)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.bad = append(s.bad, err)
		return
	}
	s.got[k]++
	s.bodies[k] = append([]byte(nil), m.Payload()...)
	if s.want[k] {
		delete(s.want, k)
		if len(s.want) == 0 {
			close(s.allSeen)
		}
	}
}

// waitFor waits until every key arrived at least once.
func (s *subscriber) waitFor(t *testing.T, keys []string) {
	t.Helper()
	s.mu.Lock()
	s.want = map[string]bool{}
	for _, k := range keys {
		if s.got[k] == 0 {
			s.want[k] = true
		}
	}
	s.allSeen = make(chan struct{})
	if len(s.want) == 0 {
		close(s.allSeen)
	}
	done := s.allSeen
	s.mu.Unlock()
	select {
	case <-done:
	case <-time.After(waitLimit):
		s.mu.Lock()
		missing := len(s.want)
		s.mu.Unlock()
		t.Fatalf("%d of %d messages never arrived", missing, len(keys))
	}
}

// check compares what arrived with the keys sent: the same set (QoS 1 may
// duplicate, and duplicates are counted and logged) and no bad message.
func (s *subscriber) check(t *testing.T, keys []string) (dupes int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.bad) > 0 {
		t.Errorf("%d unparsable messages, first: %v", len(s.bad), s.bad[0])
	}
	sent := make(map[string]bool, len(keys))
	for _, k := range keys {
		sent[k] = true
		if s.got[k] == 0 {
			t.Errorf("message %s never arrived", k)
		}
	}
	for k, n := range s.got {
		if !sent[k] {
			t.Errorf("message %s arrived but was never sent", k)
		}
		dupes += n - 1
	}
	t.Logf("%d messages sent, %d distinct received, %d duplicates", len(keys), len(s.got), dupes)
	return dupes
}

// idKey keys a message by the id in its JSON body.
func idKey(m mqtt.Message) (string, error) {
	var rec struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(m.Payload(), &rec); err != nil || rec.ID == "" {
		return "", fmt.Errorf("body %q: no id: %v", m.Payload(), err)
	}
	return rec.ID, nil
}

// pipeline is the daemon's delivery path: an event loop and a dispatcher
// with one sink.
type pipeline struct {
	loop *asyncloop.Loop
	d    *dispatch.Dispatcher
	gen  serialcb.IDGen
	seq  map[string]uint64
}

func newPipeline(t *testing.T, sink dispatch.Sink, opt dispatch.Options) *pipeline {
	t.Helper()
	loop := asyncloop.New(asyncloop.Options{QueueSize: 4096, Workers: 16})
	loop.Start()
	d, err := dispatch.New(loop, dispatch.Config{Targets: []dispatch.Target{{Name: "mqtt", Sink: sink, Options: opt}}}, zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &pipeline{loop: loop, d: d, seq: map[string]uint64{}}
}

// frame makes the next frame of port; fields may be nil.
func (p *pipeline) frame(port string, fields []byte) serialcb.Frame {
	p.seq[port]++
	now := time.Now()
	n := p.seq[port]
	return serialcb.Frame{ID: p.gen.New(now), Port: port, Seq: n, ReceivedAt: now,
		Payload: fmt.Appendf(nil, "%s frame %06d %s", port, n, strings.Repeat("x", 40)), Fields: fields}
}

// results waits for every future and fails the test on any error.
func results(t *testing.T, futs []*asyncloop.Future[dispatch.Receipt]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var failed int
	var first error
	for _, f := range futs {
		if _, err := f.Result(ctx); err != nil {
			if first == nil {
				first = err
			}
			failed++
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d frames not delivered, first: %v", failed, len(futs), first)
	}
}

// stop drains and shuts down as the daemon does; the dispatcher closes the
// sink.
func (p *pipeline) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.d.Drain(ctx); err != nil {
		t.Errorf("drain: %v", err)
	}
	if err := p.loop.Shutdown(ctx); err != nil {
		t.Errorf("loop shutdown: %v", err)
	}
	if err := p.d.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

// lane is the delivery setting the integration tests use: big batches,
// two in flight.
var lane = dispatch.Options{MaxBatch: 500, MaxInflight: 2, Retry: dispatch.RetryPolicy{Initial: 20 * time.Millisecond, Max: 500 * time.Millisecond}}

// subscriberWave is how many frames a test sends before it waits for the
// subscriber to have them all.
const subscriberWave = 500

// TestIntegrationJSON sends 10,000 frames through the dispatcher at QoS 1:
// every id arrives at a QoS 1 subscriber, with the frame record as body.
func TestIntegrationJSON(t *testing.T) {
	needMosquitto(t)
	prefix := topicPrefix(t)
	sub := subscribe(t, sharedBroker, prefix+"/#", "", idKey)
	sink := newSink(t, "mqtt://"+sharedBroker+"/"+prefix+"/frames", nil, nil)
	p := newPipeline(t, sink, lane)

	const n = 10_000
	want := make(map[string][]byte, n)
	keys := make([]string, 0, n)
	// In waves that the subscriber takes before the next: the shared
	// broker drops messages for a subscriber that falls more than 1,000
	// behind (max_queued_messages), and that would be its loss, not ours.
	for wave := 0; wave < n; wave += subscriberWave {
		futs := make([]*asyncloop.Future[dispatch.Receipt], 0, subscriberWave)
		for range subscriberWave {
			f := p.frame("ttyUSB0", nil)
			keys = append(keys, f.ID.String())
			want[f.ID.String()] = dispatch.AppendJSON(nil, &f)
			futs = append(futs, p.d.Submit(f))
		}
		results(t, futs)
		sub.waitFor(t, keys[wave:])
	}
	p.stop(t)
	sub.check(t, keys)
	sub.mu.Lock()
	defer sub.mu.Unlock()
	for id, body := range want {
		if got := sub.bodies[id]; string(got) != string(body) {
			t.Fatalf("message %s: body %s, want %s", id, got, body)
		}
	}
}

// TestIntegrationQoS covers QoS 0 and 2 end to end (QoS 1 is the default of
// the other tests).
func TestIntegrationQoS(t *testing.T) {
	needMosquitto(t)
	for _, qos := range []int{0, 2} {
		t.Run(fmt.Sprint("qos", qos), func(t *testing.T) {
			prefix := topicPrefix(t)
			sub := subscribe(t, sharedBroker, prefix+"/#", "", idKey)
			sink := newSink(t, "mqtt://"+sharedBroker+"/"+prefix+"/frames", nil, func(c *Config) { c.QoS = qos })
			p := newPipeline(t, sink, lane)
			var keys []string
			var futs []*asyncloop.Future[dispatch.Receipt]
			for range 500 {
				f := p.frame("p", nil)
				keys = append(keys, f.ID.String())
				futs = append(futs, p.d.Submit(f))
			}
			results(t, futs)
			p.stop(t)
			sub.waitFor(t, keys)
			sub.check(t, keys)
		})
	}
}

// TestIntegrationRaw publishes the payload bytes as they are.
func TestIntegrationRaw(t *testing.T) {
	needMosquitto(t)
	prefix := topicPrefix(t)
	sub := subscribe(t, sharedBroker, prefix+"/#", "", func(m mqtt.Message) (string, error) { return string(m.Payload()), nil })
	sink := newSink(t, "mqtt://"+sharedBroker+"/"+prefix+"/raw", nil, func(c *Config) { c.Format = FormatRaw })
	p := newPipeline(t, sink, lane)
	var keys []string
	var futs []*asyncloop.Future[dispatch.Receipt]
	for range 1000 {
		f := p.frame("p", nil)
		keys = append(keys, string(f.Payload))
		futs = append(futs, p.d.Submit(f))
	}
	// A binary payload goes out unchanged too.
	bin := p.frame("p", nil)
	bin.Payload = []byte{0x00, 0xff, 0x10, 0x80, 'z'}
	keys = append(keys, string(bin.Payload))
	futs = append(futs, p.d.Submit(bin))
	results(t, futs)
	p.stop(t)
	sub.waitFor(t, keys)
	sub.check(t, keys)
}

// TestIntegrationFields publishes the decoded fields; a frame without
// fields fails permanently (and alone), and the topic takes {field.NAME}
// with missing_field for a frame that lacks it.
func TestIntegrationFields(t *testing.T) {
	needMosquitto(t)
	prefix := topicPrefix(t)
	sub := subscribe(t, sharedBroker, prefix+"/#", "", func(m mqtt.Message) (string, error) {
		return m.Topic() + " " + string(m.Payload()), nil
	})
	sink := newSink(t, "mqtt://"+sharedBroker+"/"+prefix+"/{field.kind}", nil, func(c *Config) {
		c.Format = FormatFields
		c.MissingField = "other"
	})
	p := newPipeline(t, sink, lane)
	var keys []string
	var futs []*asyncloop.Future[dispatch.Receipt]
	for i := range 600 {
		var fields []byte
		topic := prefix + "/"
		switch i % 3 {
		case 0:
			fields = fmt.Appendf(nil, `{"kind":"temp","n":%d}`, i)
			topic += "temp"
		case 1:
			fields = fmt.Appendf(nil, `{"kind":"hum","n":%d}`, i)
			topic += "hum"
		default:
			fields = fmt.Appendf(nil, `{"n":%d}`, i)
			topic += "other"
		}
		f := p.frame("p", fields)
		keys = append(keys, topic+" "+string(fields))
		futs = append(futs, p.d.Submit(f))
	}
	bare := p.d.Submit(p.frame("p", nil))
	results(t, futs)
	_, err := bare.Result(context.Background())
	if err == nil || !dispatch.IsPermanent(err) || !strings.Contains(err.Error(), "no decoded fields") {
		t.Errorf("frame without fields: %v; want a permanent 'no decoded fields' failure", err)
	}
	p.stop(t)
	sub.waitFor(t, keys)
	sub.check(t, keys)
}

// TestIntegrationTopicPort routes frames of several ports to topics made
// from {port}.
func TestIntegrationTopicPort(t *testing.T) {
	needMosquitto(t)
	prefix := topicPrefix(t)
	sub := subscribe(t, sharedBroker, prefix+"/#", "", func(m mqtt.Message) (string, error) {
		id, err := idKey(m)
		return m.Topic() + " " + id, err
	})
	sink := newSink(t, "mqtt://"+sharedBroker+"/"+prefix+"/{port}/data", nil, nil)
	p := newPipeline(t, sink, lane)
	var keys []string
	var futs []*asyncloop.Future[dispatch.Receipt]
	for i := range 1500 {
		port := []string{"ttyUSB0", "ttyUSB1", "ttyACM0"}[i%3]
		f := p.frame(port, nil)
		keys = append(keys, prefix+"/"+port+"/data "+f.ID.String())
		futs = append(futs, p.d.Submit(f))
	}
	// A port name with a wildcard cannot be a topic: that frame fails
	// permanently, the others are unaffected.
	bad := p.d.Submit(p.frame("bad+port", nil))
	results(t, futs)
	if _, err := bad.Result(context.Background()); err == nil || !dispatch.IsPermanent(err) {
		t.Errorf("frame of port bad+port: %v; want a permanent failure", err)
	}
	p.stop(t)
	sub.waitFor(t, keys)
	sub.check(t, keys)
}

// broker is a private Mosquitto for tests that stop and restart it.
type broker struct {
	t    *testing.T
	conf string
	addr string
	dir  string
	cmd  *exec.Cmd
	exit chan error
	logs *os.File
}

// startPrivateBroker writes a config for a free loopback port with
// persistence in a temporary directory and starts Mosquitto on it.
// extra, if set, returns more config lines given the directory.
func startPrivateBroker(t *testing.T, extra func(dir string) string) *broker {
	t.Helper()
	const bin = "/usr/sbin/mosquitto"
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s: %v", bin, err)
		}
		t.Skipf("%s: %v (apt-get install mosquitto)", bin, err)
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	conf := filepath.Join(dir, "mosquitto.conf")
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	text := "listener " + port + " 127.0.0.1\n" +
		// Started as root, Mosquitto would switch to user mosquitto, which
		// cannot write the persistence file in our temporary directory.
		"user " + me.Username + "\n" +
		"allow_anonymous true\n" +
		"persistence true\n" +
		"persistence_location " + dir + "/\n" +
		// The subscriber is offline while both clients reconnect: keep
		// everything queued for it (Mosquitto's default cap is 1,000).
		"max_queued_messages 0\n" +
		"log_dest stderr\n" +
		"log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
	if extra != nil {
		text += extra(dir)
	}
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	logs, err := os.Create(filepath.Join(dir, "mosquitto.log"))
	if err != nil {
		t.Fatal(err)
	}
	b := &broker{t: t, conf: conf, addr: addr, dir: dir, logs: logs}
	b.start()
	t.Cleanup(func() {
		if b.cmd != nil {
			b.stop(syscall.SIGKILL)
		}
		_ = logs.Close()
		if t.Failed() {
			if out, err := os.ReadFile(logs.Name()); err == nil {
				t.Logf("mosquitto log:\n%s", out)
			}
		}
	})
	return b
}

// start runs Mosquitto and returns once it listens: it waits for the
// "running" line of its log, not for a time.
func (b *broker) start() {
	b.t.Helper()
	cmd := exec.Command("/usr/sbin/mosquitto", "-c", b.conf)
	// Mosquitto's stderr is unbuffered: its "running" line comes at once.
	out, err := cmd.StderrPipe()
	if err != nil {
		b.t.Fatal(err)
	}
	cmd.Stdout = b.logs
	if err := cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	running := make(chan struct{})
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(out)
		seen := false
		for sc.Scan() {
			_, _ = fmt.Fprintln(b.logs, sc.Text())
			if !seen && strings.Contains(sc.Text(), " running") {
				seen = true
				close(running)
			}
		}
		_, _ = io.Copy(b.logs, out)
	}()
	b.cmd = cmd
	b.exit = make(chan error, 1)
	go func() {
		<-copied // Wait must not close the pipe before the log is read
		b.exit <- cmd.Wait()
	}()
	select {
	case <-running:
	case err := <-b.exit:
		b.cmd = nil
		b.t.Fatalf("mosquitto exited at start: %v", err)
	case <-time.After(waitLimit):
		b.t.Fatal("mosquitto did not start")
	}
}

// stop signals Mosquitto and waits for it to exit.
func (b *broker) stop(sig syscall.Signal) {
	b.t.Helper()
	_ = b.cmd.Process.Signal(sig)
	select {
	case <-b.exit:
	case <-time.After(waitLimit):
		b.t.Fatal("mosquitto did not stop")
	}
	b.cmd = nil
}

// TestIntegrationBrokerRestart stops the broker in the middle of a stream,
// keeps submitting while it is down, restarts it, and checks that every
// frame is acknowledged by the dispatcher and arrives at a persistent QoS 1
// subscriber; the outage is logged once by the sink.
//
// The broker is stopped with SIGTERM: Mosquitto then saves the messages it
// acknowledged (PUBACK) but had not yet delivered to the subscriber, so a
// missing id can only be the sink's loss. SIGKILL would lose those
// messages in the broker itself (it saves its store only every 30 min by
// default), which is not what this test is about; for the sink, both cut
// the connection the same way.
func TestIntegrationBrokerRestart(t *testing.T) {
	b := startPrivateBroker(t, nil)
	prefix := topicPrefix(t)
	sub := subscribe(t, b.addr, prefix+"/#", fmt.Sprintf("restart-sub-%d", time.Now().UnixNano()), idKey)

	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(zapcore.NewTee(core, zaptest.NewLogger(t, zaptest.Level(zapcore.InfoLevel)).Core()))
	sink := newSink(t, "mqtt://"+b.addr+"/"+prefix+"/frames", log, nil)
	p := newPipeline(t, sink, dispatch.Options{MaxBatch: 100, MaxInflight: 2,
		Retry: dispatch.RetryPolicy{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}})

	var keys []string
	var futs []*asyncloop.Future[dispatch.Receipt]
	submit := func(n int) {
		for range n {
			f := p.frame("p", nil)
			keys = append(keys, f.ID.String())
			futs = append(futs, p.d.Submit(f))
		}
	}
	submit(3000)
	// Mid-stream: some frames are acknowledged, others still in flight.
	results(t, futs[:300])
	b.stop(syscall.SIGTERM)
	submit(2000) // while the broker is down
	b.start()
	submit(1000)
	results(t, futs)
	p.stop(t)

	sub.waitFor(t, keys)
	if dupes := sub.check(t, keys); dupes > 0 {
		t.Logf("%d duplicates (allowed by QoS 1)", dupes)
	}
	var lost, back int
	for _, e := range logs.All() {
		switch {
		case strings.Contains(e.Message, "connection lost"):
			lost++
		case strings.Contains(e.Message, "reconnected"):
			back++
		}
	}
	if lost != 1 || back != 1 {
		t.Errorf("logged %d 'connection lost' and %d 'reconnected' lines for one outage; want 1 and 1", lost, back)
	}
}

// TestDefaultClientIDs: sinks left at the default client id get one of
// their own when their session is clean, and the stable host id when it
// is persistent; an id that was set is kept.
func TestDefaultClientIDs(t *testing.T) {
	build := func(edit func(*Config)) string {
		cfg, err := ParseSpec("mqtt://127.0.0.1:1883/t")
		if err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			edit(&cfg)
		}
		s, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s.cfg.ClientID
	}
	a, b := build(nil), build(nil)
	if a == b || !strings.HasPrefix(a, DefaultClientID()+"-") || len(a) != len(DefaultClientID())+9 {
		t.Fatalf("clean-session defaults %q and %q: want two distinct %s-<8 hex digits>", a, b, DefaultClientID())
	}
	if got := build(func(c *Config) { c.CleanSession = false }); got != DefaultClientID() {
		t.Fatalf("persistent-session default %q, want %q", got, DefaultClientID())
	}
	if got := build(func(c *Config) { c.ClientID = "line1" }); got != "line1" {
		t.Fatalf("set client id became %q", got)
	}
}

// TestIntegrationTwoDefaultSinks: two sinks with every default (two sinks
// of one config, or two daemons on one host) publish side by side. With
// one client id for both, the broker kicked each off as the other
// connected, for as long as both ran.
func TestIntegrationTwoDefaultSinks(t *testing.T) {
	needMosquitto(t)
	prefix := topicPrefix(t)
	sub := subscribe(t, sharedBroker, prefix+"/#", "", idKey)
	core, logs := observer.New(zapcore.WarnLevel)
	var pipes []*pipeline
	for range 2 {
		cfg, err := ParseSpec("mqtt://" + sharedBroker + "/" + prefix + "/frames")
		if err != nil {
			t.Fatal(err)
		}
		sink, err := New(cfg, zap.New(core))
		if err != nil {
			t.Fatal(err)
		}
		pipes = append(pipes, newPipeline(t, sink, lane))
	}
	var keys []string
	var futs []*asyncloop.Future[dispatch.Receipt]
	for round := range 5 {
		for _, p := range pipes {
			for range 50 {
				f := p.frame(fmt.Sprint("p", round), nil)
				keys = append(keys, f.ID.String())
				futs = append(futs, p.d.Submit(f))
			}
		}
	}
	results(t, futs)
	sub.waitFor(t, keys)
	for _, p := range pipes {
		p.stop(t)
	}
	sub.check(t, keys)
	if warns := logs.All(); len(warns) > 0 {
		t.Fatalf("warnings: %v", warns)
	}
}

// TestIntegrationSharedClientID: two sinks set to one client id fight over
// it, and the log says so.
func TestIntegrationSharedClientID(t *testing.T) {
	needMosquitto(t)
	core, logs := observer.New(zapcore.WarnLevel)
	id := fmt.Sprintf("serialcbd-test-shared-%d", time.Now().UnixNano())
	for range 2 {
		s := newSink(t, "mqtt://"+sharedBroker+"/"+topicPrefix(t), zap.New(core), func(c *Config) { c.ClientID = id })
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
	}
	deadline := time.Now().Add(waitLimit)
	for logs.FilterMessageSnippet("another client may be using this client_id").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no client_id hint after %v; warnings: %v", waitLimit, logs.All())
		}
		time.Sleep(10 * time.Millisecond)
	}
	e := logs.FilterMessageSnippet("another client may be using this client_id").All()[0]
	if e.ContextMap()["client_id"] != id {
		t.Fatalf("hint names client_id %v, want %s", e.ContextMap()["client_id"], id)
	}
}
