package amqpsink

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/serialcb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sharedAddr is the RabbitMQ broker the integration tests use (guest/guest).
const sharedAddr = "127.0.0.1:5672"

// needRabbit returns the broker's address, or skips the test (fails it
// under CI=true) when nothing answers there.
func needRabbit(tb testing.TB) string {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", sharedAddr, 2*time.Second)
	if err != nil {
		msg := fmt.Sprintf("no RabbitMQ broker at %s (%v); start one with: rabbitmq-server -detached", sharedAddr, err)
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	_ = conn.Close()
	return sharedAddr
}

var uniq atomic.Int64

// names returns an exchange and a queue name no other test (or run) uses.
func names() (exchange, queue string) {
	id := fmt.Sprintf("%d.%d.%d", os.Getpid(), time.Now().UnixNano()%1e9, uniq.Add(1))
	return "scbd.test.x." + id, "scbd.test.q." + id
}

// admin is a test's own connection, to set up and read back.
type admin struct {
	conn *amqp.Connection
	ch   *amqp.Channel
}

func dialAdmin(t *testing.T) *admin {
	t.Helper()
	conn, err := amqp.Dial("amqp://guest:guest@" + sharedAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return &admin{conn: conn, ch: ch}
}

// exchange declares a durable topic exchange, deleted at cleanup.
func (a *admin) exchange(t *testing.T, name string) {
	t.Helper()
	if err := a.ch.ExchangeDeclare(name, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.cleanup(func(ch *amqp.Channel) error { return ch.ExchangeDelete(name, false, false) }) })
}

// queue declares a durable queue bound to exchange with key, deleted at
// cleanup.
func (a *admin) queue(t *testing.T, name, exchange, key string) {
	t.Helper()
	if _, err := a.ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.cleanup(func(ch *amqp.Channel) error { _, err := ch.QueueDelete(name, false, false, false); return err })
	})
	if err := a.ch.QueueBind(name, key, exchange, false, nil); err != nil {
		t.Fatal(err)
	}
}

// cleanup runs fn on a fresh connection (the test's own may have been
// closed by a broker restart).
func (a *admin) cleanup(fn func(*amqp.Channel) error) {
	conn, err := amqp.Dial("amqp://guest:guest@" + sharedAddr + "/")
	if err != nil {
		return
	}
	defer conn.Close()
	if ch, err := conn.Channel(); err == nil {
		_ = fn(ch)
	}
}

// read takes every message of the queue (on a fresh connection).
func read(t *testing.T, queue string) []amqp.Delivery {
	t.Helper()
	conn, err := amqp.Dial("amqp://guest:guest@" + sharedAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	var out []amqp.Delivery
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

// checkDelivered fails unless msgs hold every frame of want (and nothing
// else); with exactlyOnce, each once. It returns the duplicates.
func checkDelivered(t *testing.T, msgs []amqp.Delivery, want []*serialcb.Frame, exactlyOnce bool) int {
	t.Helper()
	ids := map[string]bool{}
	for _, f := range want {
		ids[f.ID.String()] = true
	}
	seen := map[string]int{}
	unknown := 0
	for _, m := range msgs {
		if !ids[m.MessageId] {
			unknown++
		}
		seen[m.MessageId]++
	}
	missing, dupes := 0, 0
	for id := range ids {
		if seen[id] == 0 {
			missing++
		} else {
			dupes += seen[id] - 1
		}
	}
	if missing+unknown > 0 || (exactlyOnce && dupes > 0) {
		t.Fatalf("%d messages for %d frames: %d missing, %d unknown, %d duplicates", len(msgs), len(want), missing, unknown, dupes)
	}
	return dupes
}

func frames(gen *serialcb.IDGen, port string, n int, fields bool) []*serialcb.Frame {
	out := make([]*serialcb.Frame, n)
	for i := range out {
		now := time.Now()
		f := &serialcb.Frame{ID: gen.New(now), Port: port, Seq: uint64(i + 1), ReceivedAt: now,
			Payload: fmt.Appendf(nil, "%-64s", fmt.Sprintf("%s frame %d", port, i+1))}
		if fields {
			f.Fields = fmt.Appendf(nil, `{"dev":"dev.%d"}`, i%3)
		}
		out[i] = f
	}
	return out
}

func newSink(t *testing.T, spec string, edit func(*Config), log *zap.Logger) *Sink {
	t.Helper()
	cfg, err := ParseSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&cfg)
	}
	if log == nil {
		log = zaptest.NewLogger(t, zaptest.Level(zapcore.InfoLevel))
	}
	s, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func write(t *testing.T, s *Sink, batch []*serialcb.Frame) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return s.Write(ctx, batch)
}

type pipeline struct {
	loop *asyncloop.Loop
	d    *dispatch.Dispatcher
}

func newPipeline(t *testing.T, sink dispatch.Sink, opt dispatch.Options) *pipeline {
	t.Helper()
	loop := asyncloop.New(asyncloop.Options{QueueSize: 4096, Workers: 16})
	loop.Start()
	opt.Retry = dispatch.RetryPolicy{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond}
	d, err := dispatch.New(loop, dispatch.Config{Targets: []dispatch.Target{{Name: "amqp", Sink: sink, Options: opt}}},
		zaptest.NewLogger(t, zaptest.Level(zapcore.ErrorLevel)))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &pipeline{loop: loop, d: d}
}

func (p *pipeline) submit(fs []*serialcb.Frame) []*asyncloop.Future[dispatch.Receipt] {
	futs := make([]*asyncloop.Future[dispatch.Receipt], len(fs))
	for i, f := range fs {
		futs[i] = p.d.Submit(*f)
	}
	return futs
}

func wait(t *testing.T, futs []*asyncloop.Future[dispatch.Receipt]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var errs []error
	for _, f := range futs {
		if _, err := f.Result(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		t.Fatalf("%d of %d frames failed, first: %v", len(errs), len(futs), errs[0])
	}
}

func (p *pipeline) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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

// TestIntegrationDispatcher sends 5,000 frames of two ports through the
// real dispatcher: the queue holds each once, persistent, with message_id =
// frame id, the routing key from the template, the JSON record as body.
func TestIntegrationDispatcher(t *testing.T) {
	addr := needRabbit(t)
	ex, q := names()
	a := dialAdmin(t)
	a.exchange(t, ex)
	a.queue(t, q, ex, "#")
	s := newSink(t, "amqp://"+addr+"/"+ex+"/plant.{port}", nil, nil)
	p := newPipeline(t, s, dispatch.Options{MaxBatch: 250, MaxInflight: 2})
	var gen serialcb.IDGen
	all := append(frames(&gen, "ttyA", 2500, false), frames(&gen, "tty.B", 2500, false)...)
	wait(t, p.submit(all))
	p.stop(t)

	msgs := read(t, q)
	checkDelivered(t, msgs, all, true)
	byID := map[string]*serialcb.Frame{}
	for _, f := range all {
		byID[f.ID.String()] = f
	}
	for _, m := range msgs {
		f := byID[m.MessageId]
		if want := "plant." + sanitize(f.Port); m.RoutingKey != want {
			t.Fatalf("routing key %q, want %q", m.RoutingKey, want)
		}
		if m.DeliveryMode != amqp.Persistent || m.ContentType != "application/json" {
			t.Fatalf("delivery mode %d, content type %q", m.DeliveryMode, m.ContentType)
		}
		if want := dispatch.AppendJSON(nil, f); string(m.Body) != string(want) {
			t.Fatalf("body %s, want %s", m.Body, want)
		}
	}
}

// TestIntegrationUnroutable: with no queue bound, the broker returns every
// mandatory message: each frame fails retryably with ErrUnroutable, and a
// fields-less frame under format fields fails permanently. Once a queue is
// bound the same frames go through.
func TestIntegrationUnroutable(t *testing.T) {
	addr := needRabbit(t)
	ex, q := names()
	a := dialAdmin(t)
	a.exchange(t, ex)
	s := newSink(t, "amqp://"+addr+"/"+ex+"/k.{field.dev}", func(c *Config) { c.Format = FormatFields }, nil)
	var gen serialcb.IDGen
	batch := append(frames(&gen, "p", 20, true), frames(&gen, "q", 1, false)...)
	err := write(t, s, batch)
	be, ok := errors.AsType[*dispatch.BatchError](err)
	if !ok {
		t.Fatalf("want a BatchError, got %v", err)
	}
	for i, e := range be.Errs[:20] {
		if !errors.Is(e, ErrUnroutable) || dispatch.IsPermanent(e) || !strings.Contains(e.Error(), "bind a queue") {
			t.Fatalf("frame %d: %v, want a retryable ErrUnroutable saying what to do", i, e)
		}
	}
	if e := be.Errs[20]; !errors.Is(e, ErrNoFields) || !dispatch.IsPermanent(e) {
		t.Fatalf("frame without fields: %v, want permanent ErrNoFields", e)
	}

	a.queue(t, q, ex, "k.*")
	if err := write(t, s, batch[:20]); err != nil {
		t.Fatalf("after binding a queue: %v", err)
	}
	msgs := read(t, q)
	checkDelivered(t, msgs, batch[:20], true)
	for _, m := range msgs {
		if !strings.HasPrefix(m.RoutingKey, "k.dev_") || !strings.HasPrefix(string(m.Body), `{"dev":`) {
			t.Fatalf("routing key %q body %s", m.RoutingKey, m.Body)
		}
	}
}

// TestIntegrationMissingExchange: publishing to an exchange that does not
// exist closes the channel; the Write fails retryably saying what to do,
// and the next Write reconnects. With exchange_type the sink declares it.
func TestIntegrationMissingExchange(t *testing.T) {
	addr := needRabbit(t)
	ex, q := names()
	a := dialAdmin(t)
	var gen serialcb.IDGen
	s := newSink(t, "amqp://"+addr+"/"+ex+"/k", nil, nil)
	for range 2 {
		err := write(t, s, frames(&gen, "p", 5, false))
		be, ok := errors.AsType[*dispatch.BatchError](err)
		if !ok || dispatch.IsPermanent(be.Errs[0]) || !strings.Contains(be.Errs[0].Error(), "does not exist") ||
			!strings.Contains(be.Errs[0].Error(), "exchange_type") {
			t.Fatalf("write to a missing exchange: %v, want a retryable error saying to declare it", err)
		}
	}

	d := newSink(t, "amqp://"+addr+"/"+ex+"/k", func(c *Config) { c.ExchangeType = amqp.ExchangeTopic }, nil)
	t.Cleanup(func() { a.cleanup(func(ch *amqp.Channel) error { return ch.ExchangeDelete(ex, false, false) }) })
	a.queue(t, q, ex, "k")
	batch := frames(&gen, "p", 5, false)
	if err := write(t, d, batch); err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, read(t, q), batch, true)
}

// TestIntegrationAuth: a user other than guest needs its password from the
// environment; an unset variable stops Start; a wrong password fails writes
// retryably.
func TestIntegrationAuth(t *testing.T) {
	addr := needRabbit(t)
	t.Setenv("AMQP_TEST_PASS", "guest")
	_, q := names()
	a := dialAdmin(t)
	if _, err := a.ch.QueueDeclare(q, false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	s2 := newSink(t, "amqp://"+addr+"//"+q, func(c *Config) { c.PasswordEnv = "AMQP_TEST_PASS" }, nil)
	var gen serialcb.IDGen
	batch := frames(&gen, "p", 3, false)
	if err := write(t, s2, batch); err != nil {
		t.Fatalf("publish to the default exchange: %v", err)
	}
	checkDelivered(t, read(t, q), batch, true)

	t.Setenv("AMQP_TEST_PASS", "wrong")
	bad := newSink(t, "amqp://"+addr+"//"+q, func(c *Config) { c.PasswordEnv = "AMQP_TEST_PASS" }, zap.NewNop())
	if err := write(t, bad, frames(&gen, "p", 1, false)); !errors.Is(err, ErrNotConnected) || dispatch.IsPermanent(err) {
		t.Fatalf("write with a wrong password: %v, want retryable ErrNotConnected", err)
	}

	cfg, _ := ParseSpec("amqp://" + addr + "//" + q)
	cfg.User, cfg.PasswordEnv = "someone", "AMQP_TEST_SURELY_UNSET"
	u, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if err := u.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "AMQP_TEST_SURELY_UNSET is not set") {
		t.Fatalf("Start = %v, want an error naming the variable", err)
	}
}

// rabbitmqctl runs rabbitmqctl with args.
func rabbitmqctl(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestIntegrationBrokerRestart stops the RabbitMQ application while frames
// flow through the dispatcher and starts it again (rabbitmqctl stop_app /
// start_app; the test always restarts it): writes fail retryably
// meanwhile, the sink reconnects, and the durable queue ends up with every
// frame. Duplicates (a confirm lost with the connection) are counted.
func TestIntegrationBrokerRestart(t *testing.T) {
	addr := needRabbit(t)
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("rabbitmqctl not found")
		}
		t.Skip("rabbitmqctl not found: cannot restart the broker")
	}
	ex, q := names()
	a := dialAdmin(t)
	a.exchange(t, ex)
	a.queue(t, q, ex, "#")
	core, logs := observer.New(zapcore.InfoLevel)
	s := newSink(t, "amqp://"+addr+"/"+ex+"/r.{port}", func(c *Config) { c.ConfirmTimeout = 5 * time.Second }, zap.New(core))
	fs := &failSignal{Sink: s, failed: make(chan struct{}, 1)}
	p := newPipeline(t, fs, dispatch.Options{MaxBatch: 100, MaxInflight: 2})
	var gen serialcb.IDGen
	var all []*serialcb.Frame
	var futs []*asyncloop.Future[dispatch.Receipt]
	send := func(port string, n int) {
		f := frames(&gen, port, n, false)
		all = append(all, f...)
		futs = append(futs, p.submit(f)...)
	}

	started := true
	t.Cleanup(func() {
		if !started {
			_ = exec.Command("rabbitmqctl", "start_app").Run()
		}
	})
	send("a", 2000) // in flight while the broker stops
	started = false
	rabbitmqctl(t, "stop_app")
	send("b", 1000)
	<-fs.failed
	rabbitmqctl(t, "start_app")
	started = true
	rabbitmqctl(t, "await_startup")
	send("c", 1000)
	wait(t, futs)
	p.stop(t)

	msgs := read(t, q)
	dupes := checkDelivered(t, msgs, all, false)
	t.Logf("%d frames, %d messages, %d duplicates", len(all), len(msgs), dupes)
	if logs.FilterMessageSnippet("cannot connect").Len() < 1 || logs.FilterMessageSnippet("connected again").Len() < 1 {
		t.Errorf("want one line when the outage began and one when it ended: %v", logs.All())
	}
}

type failSignal struct {
	*Sink
	failed chan struct{}
}

func (f *failSignal) Write(ctx context.Context, batch []*serialcb.Frame) error {
	err := f.Sink.Write(ctx, batch)
	if err != nil {
		select {
		case f.failed <- struct{}{}:
		default:
		}
	}
	return err
}
