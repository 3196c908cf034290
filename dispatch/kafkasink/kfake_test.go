package kafkasink

// These tests run against franz-go's in-process Kafka cluster (pkg/kfake):
// real Kafka protocol over real TCP sockets on 127.0.0.1, several brokers,
// leader elections and broker restarts on demand. No Kafka broker runs on
// the build machine, so this is how the sink is tested.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
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

// frames makes n frames of port, each with a 64-byte payload and, when
// fields is set, a decoder fields object.
func frames(gen *serialcb.IDGen, port string, n int, fields bool) []*serialcb.Frame {
	out := make([]*serialcb.Frame, n)
	for i := range out {
		now := time.Now()
		f := &serialcb.Frame{ID: gen.New(now), Port: port, Seq: uint64(i + 1), ReceivedAt: now,
			Payload: fmt.Appendf(nil, "%-64s", fmt.Sprintf("%s frame %d", port, i+1))}
		if fields {
			f.Fields = fmt.Appendf(nil, `{"dev":"dev.%d","n":%d}`, i%3, i)
		}
		out[i] = f
	}
	return out
}

// newCluster starts a kfake cluster, closed at cleanup.
func newCluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func spec(addrs []string, topic string) string {
	return "kafka://" + strings.Join(addrs, ",") + "/" + topic
}

// newSink builds and starts a sink for spec, closed at cleanup.
func newSink(t *testing.T, spec string, edit func(*Config)) *Sink {
	t.Helper()
	return newSinkLog(t, spec, edit, zaptest.NewLogger(t, zaptest.Level(zapcore.InfoLevel)))
}

func newSinkLog(t *testing.T, spec string, edit func(*Config), log *zap.Logger) *Sink {
	t.Helper()
	cfg, err := ParseSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DeliveryTimeout = 5 * time.Second
	if edit != nil {
		edit(&cfg)
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

// readAll returns every record of the topics, reading until it has as many
// as the partitions' end offsets say.
func readAll(t *testing.T, addrs []string, topics ...string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topics...)
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("end offset of %s/%d: %v", o.Topic, o.Partition, o.Err)
		}
		total += o.Offset
	})
	var out []*kgo.Record
	for int64(len(out)) < total {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d records: %v", len(out), total, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		out = append(out, fs.Records()...)
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// checkDelivered fails unless the records hold every frame of want, each
// record's id header naming a frame of want. With exactlyOnce it also fails
// on duplicates. It returns the number of duplicates.
func checkDelivered(t *testing.T, recs []*kgo.Record, want []*serialcb.Frame, exactlyOnce bool) int {
	t.Helper()
	byID := make(map[string]*serialcb.Frame, len(want))
	for _, f := range want {
		byID[f.ID.String()] = f
	}
	seen := make(map[string]int, len(recs))
	unknown := 0
	for _, r := range recs {
		id := header(r, IDHeader)
		if byID[id] == nil {
			unknown++
		}
		seen[id]++
	}
	missing, dupes := 0, 0
	for id := range byID {
		switch n := seen[id]; {
		case n == 0:
			missing++
		case n > 1:
			dupes += n - 1
		}
	}
	if missing+unknown > 0 || (exactlyOnce && dupes > 0) {
		t.Fatalf("%d records for %d frames: %d frames missing, %d records unknown, %d duplicates",
			len(recs), len(want), missing, unknown, dupes)
	}
	return dupes
}

// pipeline is the daemon's delivery path: an asyncloop and a dispatcher
// with one sink.
type pipeline struct {
	loop *asyncloop.Loop
	d    *dispatch.Dispatcher
}

func newPipeline(t *testing.T, sink dispatch.Sink, opt dispatch.Options) *pipeline {
	t.Helper()
	loop := asyncloop.New(asyncloop.Options{QueueSize: 4096, Workers: 16})
	loop.Start()
	if opt.Retry == (dispatch.RetryPolicy{}) {
		opt.Retry = dispatch.RetryPolicy{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	}
	d, err := dispatch.New(loop, dispatch.Config{Targets: []dispatch.Target{{Name: "kafka", Sink: sink, Options: opt}}},
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

// wait fails the test unless every future resolves without error.
func wait(t *testing.T, futs []*asyncloop.Future[dispatch.Receipt]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
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

// TestKfakeDispatcher sends 6,000 frames of two ports through the real
// dispatcher to a three-broker cluster with a topic per port: every frame
// is stored once, on its port's topic, keyed by port, with its id header,
// its JSON record as value, each port on
// one partition.
func TestKfakeDispatcher(t *testing.T) {
	c := newCluster(t, kfake.NumBrokers(3), kfake.SeedTopics(3, "plant.ttyA", "plant.tty_B"))
	s := newSink(t, spec(c.ListenAddrs(), "plant.{port}"), nil)
	p := newPipeline(t, s, dispatch.Options{MaxBatch: 500, MaxInflight: 2})
	var gen serialcb.IDGen
	all := append(frames(&gen, "ttyA", 3000, false), frames(&gen, "tty B", 3000, false)...)
	wait(t, p.submit(all))
	p.stop(t)

	recs := readAll(t, c.ListenAddrs(), "plant.ttyA", "plant.tty_B")
	checkDelivered(t, recs, all, true)
	byID := make(map[string]*serialcb.Frame, len(all))
	for _, f := range all {
		byID[f.ID.String()] = f
	}
	partition := map[string]int32{}
	for _, r := range recs {
		f := byID[header(r, IDHeader)]
		if want := "plant." + sanitize(f.Port); r.Topic != want {
			t.Fatalf("topic %q, want %q", r.Topic, want)
		}
		if string(r.Key) != f.Port {
			t.Fatalf("key %q, want the port %q", r.Key, f.Port)
		}
		if p, ok := partition[f.Port]; ok && p != r.Partition {
			t.Fatalf("port %s on partitions %d and %d, want one", f.Port, p, r.Partition)
		}
		partition[f.Port] = r.Partition
		if want := dispatch.AppendJSON(nil, f); string(r.Value) != string(want) {
			t.Fatalf("value %s, want %s", r.Value, want)
		}
	}
}

// TestKfakeKeyAndFormats checks the record key settings and the value
// formats; format "fields" fails a frame without fields permanently while
// the rest of its batch is stored.
func TestKfakeKeyAndFormats(t *testing.T) {
	c := newCluster(t, kfake.NumBrokers(1), kfake.SeedTopics(2, "f.json", "f.raw", "f.fields"))
	var gen serialcb.IDGen
	for _, tc := range []struct{ format, key string }{
		{FormatJSON, "field.dev"}, {FormatRaw, KeyNone}, {FormatFields, KeyPort},
	} {
		t.Run(tc.format, func(t *testing.T) {
			s := newSink(t, spec(c.ListenAddrs(), "f."+tc.format), func(c *Config) { c.Format, c.Key = tc.format, tc.key })
			batch := append(frames(&gen, "p", 10, true), frames(&gen, "q", 1, false)...)
			err := write(t, s, batch)
			delivered := batch
			if tc.format == FormatFields {
				be, ok := errors.AsType[*dispatch.BatchError](err)
				if !ok || len(be.Errs) != len(batch) {
					t.Fatalf("want a BatchError, got %v", err)
				}
				for i, e := range be.Errs[:10] {
					if e != nil {
						t.Fatalf("frame %d: %v", i, e)
					}
				}
				if last := be.Errs[10]; !dispatch.IsPermanent(last) || !errors.Is(last, ErrNoFields) {
					t.Fatalf("frame without fields: %v, want permanent ErrNoFields", last)
				}
				delivered = batch[:10]
			} else if err != nil {
				t.Fatal(err)
			}
			recs := readAll(t, c.ListenAddrs(), "f."+tc.format)
			checkDelivered(t, recs, delivered, true)
			byID := map[string]*serialcb.Frame{}
			for _, f := range delivered {
				byID[f.ID.String()] = f
			}
			for _, r := range recs {
				f := byID[header(r, IDHeader)]
				var wantVal, wantKey string
				switch tc.format {
				case FormatJSON:
					wantVal = string(dispatch.AppendJSON(nil, f))
				case FormatRaw:
					wantVal = string(f.Payload)
				case FormatFields:
					wantVal = string(f.Fields)
				}
				switch tc.key {
				case KeyPort:
					wantKey = f.Port
				case "field.dev":
					wantKey = "unknown"
					if v, ok := f.Field("dev"); ok {
						wantKey = v
					}
				}
				if string(r.Value) != wantVal || string(r.Key) != wantKey {
					t.Fatalf("record key %q value %q, want %q %q", r.Key, r.Value, wantKey, wantVal)
				}
			}
		})
	}
}

// TestKfakeLeaderMoves moves partition leaders between brokers while
// frames flow through the dispatcher (every partition's leader changes
// between chunks, and some chunks in the middle of a Write): nothing is
// lost.
func TestKfakeLeaderMoves(t *testing.T) {
	const topic = "moves"
	c := newCluster(t, kfake.NumBrokers(3), kfake.SeedTopics(4, topic))
	s := newSink(t, spec(c.ListenAddrs(), topic), nil)
	p := newPipeline(t, s, dispatch.Options{MaxBatch: 200, MaxInflight: 2})
	var gen serialcb.IDGen
	var all []*serialcb.Frame
	var futs []*asyncloop.Future[dispatch.Receipt]
	ports := []string{"a", "b", "c", "d", "e"}
	for round := range 20 {
		var chunk []*serialcb.Frame
		for _, port := range ports {
			fs := frames(&gen, port, 100, false)
			for i, f := range fs {
				f.Seq = uint64(round*100 + i + 1)
			}
			chunk = append(chunk, fs...)
		}
		all = append(all, chunk...)
		futs = append(futs, p.submit(chunk)...)
		if round%2 == 0 {
			c.ShufflePartitionLeaders()
		} else {
			for part := range int32(4) {
				next := (c.LeaderFor(topic, part) + 1) % 3
				if err := c.MoveTopicPartition(topic, part, next); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	wait(t, futs)
	p.stop(t)
	recs := readAll(t, c.ListenAddrs(), topic)
	dupes := checkDelivered(t, recs, all, false)
	t.Logf("%d frames, %d records, %d duplicates", len(all), len(recs), dupes)
}

// freePorts returns n TCP ports free now on 127.0.0.1.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// TestKfakeBrokerRestart stops the whole cluster while frames flow through
// the dispatcher and starts it again on the same ports from its data
// directory, twice (the second time with Writes in flight). Writes
// meanwhile fail retryably, the frames wait in dispatch and
// are retried: every frame ends up stored, and the sink logs the outage
// once when it begins and once when it ends.
func TestKfakeBrokerRestart(t *testing.T) {
	const topic = "restart"
	dir := t.TempDir()
	ports := freePorts(t, 3)
	opts := []kfake.Opt{kfake.NumBrokers(3), kfake.Ports(ports...), kfake.DataDir(dir), kfake.SeedTopics(3, topic)}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	addrs := c.ListenAddrs()
	t.Cleanup(func() { c.Close() })

	core, logs := observer.New(zapcore.InfoLevel)
	s := newSinkLog(t, spec(addrs, topic), func(cfg *Config) { cfg.DeliveryTimeout = 2 * time.Second }, zap.New(core))
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

	send("a", 500)
	wait(t, futs)
	// Whole cluster down: frames sent now fail until it is back.
	c.Close()
	send("b", 500)
	<-fs.failed
	c, err = kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("restart the cluster on the same ports: %v", err)
	}
	send("c", 500)
	wait(t, futs)

	// And once more, with frames in flight when it goes down.
	send("d", 1000)
	c.Close()
	send("e", 500)
	c, err = kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("restart the cluster on the same ports: %v", err)
	}
	send("f", 500)
	wait(t, futs)
	p.stop(t)

	recs := readAll(t, addrs, topic)
	dupes := checkDelivered(t, recs, all, false)
	t.Logf("%d frames, %d records, %d duplicates (retries across the restart)", len(all), len(recs), dupes)
	if n := logs.FilterMessageSnippet("writes failing").Len(); n < 1 {
		t.Errorf("no warning when the outage began: %v", logs.All())
	}
	if n := logs.FilterMessageSnippet("delivering again").Len(); n < 1 {
		t.Errorf("no line when the outage ended: %v", logs.All())
	}
}

// failSignal wraps a sink and signals its failed Writes.
type failSignal struct {
	*Sink
	failed chan struct{} // capacity 1: one pending signal is enough
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

// TestKfakeErrors: broker answers the sink cannot fix by retrying are
// permanent; a missing topic and a refused authorization are retryable,
// with a message saying what to do.
func TestKfakeErrors(t *testing.T) {
	c := newCluster(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "errs"))
	var gen serialcb.IDGen

	t.Run("message too large", func(t *testing.T) {
		s := newSink(t, spec(c.ListenAddrs(), "errs"), nil)
		h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "errs", Err: kerr.MessageTooLarge})
		defer h.Remove()
		err := write(t, s, frames(&gen, "p", 3, false))
		be, ok := errors.AsType[*dispatch.BatchError](err)
		if !ok {
			t.Fatalf("want a BatchError, got %v", err)
		}
		for i, e := range be.Errs {
			if !dispatch.IsPermanent(e) || !errors.Is(e, kerr.MessageTooLarge) {
				t.Errorf("frame %d: %v, want permanent MESSAGE_TOO_LARGE", i, e)
			}
		}
	})
	t.Run("unknown topic", func(t *testing.T) {
		s := newSink(t, spec(c.ListenAddrs(), "nosuchtopic"), nil)
		err := write(t, s, frames(&gen, "p", 2, false))
		be, ok := errors.AsType[*dispatch.BatchError](err)
		if !ok {
			t.Fatalf("want a BatchError, got %v", err)
		}
		for i, e := range be.Errs {
			if dispatch.IsPermanent(e) || !errors.Is(e, ErrUnknownTopic) || !strings.Contains(e.Error(), "auto_create_topics") {
				t.Errorf("frame %d: %v, want retryable ErrUnknownTopic saying what to do", i, e)
			}
		}
	})
	t.Run("auto create", func(t *testing.T) {
		c := newCluster(t, kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
		s := newSink(t, spec(c.ListenAddrs(), "auto.{port}"), func(c *Config) { c.AutoCreateTopics = true })
		batch := frames(&gen, "p", 5, false)
		if err := write(t, s, batch); err != nil {
			t.Fatal(err)
		}
		checkDelivered(t, readAll(t, c.ListenAddrs(), "auto.p"), batch, true)
	})
	t.Run("not authorized", func(t *testing.T) {
		s := newSink(t, spec(c.ListenAddrs(), "errs"), nil)
		h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "errs", Err: kerr.TopicAuthorizationFailed, Count: -1})
		err := write(t, s, frames(&gen, "p", 2, false))
		h.Remove()
		be, ok := errors.AsType[*dispatch.BatchError](err)
		if !ok {
			t.Fatalf("want a BatchError, got %v", err)
		}
		for i, e := range be.Errs {
			if dispatch.IsPermanent(e) || !strings.Contains(e.Error(), "grant the sink's user WRITE") {
				t.Errorf("frame %d: %v, want retryable, saying what to grant", i, e)
			}
		}
	})
}

// TestKfakeSASL authenticates with each mechanism, credentials from the
// environment; a wrong password fails writes retryably and says so.
func TestKfakeSASL(t *testing.T) {
	c := newCluster(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "sasl"), kfake.EnableSASL(),
		kfake.Superuser(MechPlain, "plainuser", "plainpass"),
		kfake.Superuser(MechScramSHA256, "scram256", "pass256"),
		kfake.Superuser(MechScramSHA512, "scram512", "pass512"))
	var gen serialcb.IDGen
	for _, tc := range []struct{ mech, user, pass string }{
		{MechPlain, "plainuser", "plainpass"},
		{MechScramSHA256, "scram256", "pass256"},
		{MechScramSHA512, "scram512", "pass512"},
	} {
		t.Run(tc.mech, func(t *testing.T) {
			t.Setenv("KAFKA_TEST_USER", tc.user)
			t.Setenv("KAFKA_TEST_PASS", tc.pass)
			s := newSink(t, spec(c.ListenAddrs(), "sasl"), func(c *Config) {
				c.SASL = SASL{Mechanism: tc.mech, UserEnv: "KAFKA_TEST_USER", PasswordEnv: "KAFKA_TEST_PASS"}
			})
			batch := frames(&gen, "p", 5, false)
			if err := write(t, s, batch); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		t.Setenv("KAFKA_TEST_PASS", "wrong")
		s := newSink(t, spec(c.ListenAddrs(), "sasl"), func(c *Config) {
			c.SASL = SASL{Mechanism: MechScramSHA256, User: "scram256", PasswordEnv: "KAFKA_TEST_PASS"}
			c.DeliveryTimeout = time.Second
		})
		err := write(t, s, frames(&gen, "p", 1, false))
		be, ok := errors.AsType[*dispatch.BatchError](err)
		if !ok || dispatch.IsPermanent(be.Errs[0]) {
			t.Fatalf("write with a wrong password: %v, want a retryable failure", err)
		}
	})
	t.Run("password variable unset", func(t *testing.T) {
		cfg, err := ParseSpec(spec(c.ListenAddrs(), "sasl"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.SASL = SASL{Mechanism: MechPlain, User: "u", PasswordEnv: "KAFKA_TEST_SURELY_UNSET"}
		s, err := New(cfg, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "KAFKA_TEST_SURELY_UNSET is not set") {
			t.Fatalf("Start = %v, want an error naming the unset variable", err)
		}
	})
}

// TestKfakeTLS connects over TLS (kafkas://) to a cluster whose
// certificate is signed by a private CA given as tls.ca_file.
func TestKfakeTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caPath := writeCA(t, dir)
	cert := serverCert(t, ca, caKey)
	c := newCluster(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "tls"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	addrs := c.ListenAddrs()
	s := newSink(t, "kafkas://"+strings.Join(addrs, ",")+"/tls", func(c *Config) { c.TLS.CAFile = caPath })
	var gen serialcb.IDGen
	batch := frames(&gen, "p", 5, false)
	if err := write(t, s, batch); err != nil {
		t.Fatal(err)
	}

	// Without the CA the certificate is refused: retryable, nothing stored.
	bad := newSink(t, "kafkas://"+strings.Join(addrs, ",")+"/tls", func(c *Config) { c.DeliveryTimeout = time.Second })
	if err := write(t, bad, frames(&gen, "p", 1, false)); err == nil {
		t.Fatal("write with an untrusted certificate succeeded")
	}
}

func writeCA(t *testing.T, dir string) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key, path
}

func serverCert(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
